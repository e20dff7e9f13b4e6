#pragma once
// One attempt of a sandbox's readiness probe (common/models.h ReadinessProbe), made from inside the
// sandbox through its helper: nothing of the sandbox is published on the host to probe it.

#include <filesystem>
#include <string>
#include <vector>

#include "agent/helper_client.h"
#include "common/models.h"

namespace modbox {

/// Tries `probe` once through the helper at `socket`: nothing when it passes, else why not (the
/// sentence the sandbox's detail shows as the probe's last error). http: a relay to the port, `GET /`
/// with `Connection: close`, passing on a 2xx status line; tcp: a relay to the port opens; exec: the
/// command exits 0. Each attempt takes at most about limits::readiness_attempt_timeout_ms (an HTTP
/// relay's own opening may take relay_open_timeout).
Result<void> probe_once(SandboxHelpers& helpers, const std::filesystem::path& socket, const ReadinessProbe& probe);

/// argv as one command line for `bash -c` / `sh -c`: each argument single-quoted, its own quotes as '\''.
std::string shell_quote(const std::vector<std::string>& argv);

}  // namespace modbox
