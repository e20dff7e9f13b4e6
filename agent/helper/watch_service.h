#pragma once
// File watches (common/helper_protocol.h, WatchOpen): a file worker (agent/helper/file_service.h)
// watches a directory with inotify, as the image's user, and passes each change on to the agent.
// Memory stays bounded: the worker writes only while the agent reads, and the kernel's inotify
// queue holds what comes meanwhile; what overflows it is reported as one `overflow` event.

#include "common/helper_protocol.h"

namespace modbox::helper {

/// The most directories a recursive watch follows (each costs an inotify watch of the user's).
inline constexpr std::size_t watch_directories_max = 8192;

/// Serves `request` on the blocking `connection` until the agent closes it; the worker's status.
int serve_watch(int connection, const WatchOpen& request);

}  // namespace modbox::helper
