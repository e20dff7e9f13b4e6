#pragma once
// One attempt of a sandbox's readiness probe (common/models.h ReadinessProbe), made from inside the
// sandbox through its helper: nothing of the sandbox is published on the host to probe it.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/helper_client.h"
#include "common/models.h"

namespace modbox {

/// Tries `probe` once through the helper at `socket`: nothing when it passes, else why not (the
/// sentence the sandbox's detail shows as the probe's last error). http: a relay to the port, `GET /`
/// with `Connection: close`, passing on a 2xx status line, following up to five redirects to paths on the
/// same port (nginx's `/` → `/vnc/` in the desktop image); tcp: a relay to the port opens; exec: the
/// command exits 0; process: a process of that name runs (its /proc/PID/comm, as pgrep matches). Each attempt takes at
/// most about limits::readiness_attempt_timeout_ms (an HTTP relay's own opening may take relay_open_timeout).
Result<void> probe_once(SandboxHelpers& helpers, const std::filesystem::path& socket, const ReadinessProbe& probe);

/// Whether a sandbox of an image without readiness_port gets seed 000's process probe (supervisord
/// running): when the image's entrypoint + cmd (`image_command`) names supervisord, or
/// `has_supervisord_binary` (the sandbox has /usr/bin/supervisord or /usr/local/bin/supervisord) says
/// so. Asked only when needed.
std::optional<ReadinessProbe> process_probe_for(const std::vector<std::string>& image_command,
                                                const std::function<bool()>& has_supervisord_binary);

/// The command, run through the helper, that exits 0 when the sandbox has a supervisord binary.
inline constexpr const char* supervisord_binary_check =
    "[ -x /usr/bin/supervisord ] || [ -x /usr/local/bin/supervisord ]";

}  // namespace modbox
