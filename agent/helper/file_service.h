#pragma once
// File requests (upload, download, list, remove, watch), each served by a child process of the helper
// with plain blocking I/O, so a 50 MB transfer never stalls the helper's poll loop. The child runs
// in the container's mount namespace: every path resolves inside the sandbox, symlinks included,
// so nothing the sandbox plants can lead to a host file. It serves regular files only and never
// opens anything else (a FIFO would block, a device could have side effects).

#include <sys/types.h>

#include "agent/helper/user.h"
#include "common/helper_protocol.h"
#include "common/unique_fd.h"

namespace modbox::helper {

/// True for the request frames that a file worker serves.
bool is_file_request(const Message& message);

/// Forks a worker that serves `request` on `connection`; `decoder` holds the bytes that arrived
/// after the request (the start of an upload). The worker acts as `user` (the image's USER; null:
/// as the helper), so files get the owner and permissions the sandbox's own code would give them.
/// The helper reaps the worker like any child.
Result<pid_t> spawn_file_worker(UniqueFd connection, const Message& request, const FrameDecoder& decoder,
                                const SandboxUser* user);

/// Serves `request` on the blocking `connection` and returns the worker's exit status. Exposed
/// so tests can drive it over a socketpair without forking.
int serve_file_request(int connection, const Message& request, FrameDecoder decoder);

/// How long a worker waits for the agent to send or take bytes before giving up.
inline constexpr int file_idle_timeout_ms = 60'000;
/// A listing reads at most this many matching entries before it sorts and cuts to the limit.
inline constexpr std::size_t list_scan_max = 100'000;
/// Uploads in progress are written under this prefix and renamed when complete; list skips them.
inline constexpr std::string_view upload_temp_prefix = ".modbox-upload-";

}  // namespace modbox::helper
