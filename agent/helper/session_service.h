#pragma once
// Interactive sessions: a shell (or a command) with its input open, on a pseudo-terminal for
// terminals or on pipes for `exec -i`. Each is served by a worker process the helper forks for it
// (as relays and file requests are), which takes the connection over, so a session's traffic
// never stalls the helper's poll loop. The wire format is in common/helper_protocol.h.
//
//   helper ── worker (root, child subreaper, holds the connection) ── command (leads a new session)
//
// The worker runs the command as the image's user, pumps its input and output, and answers Exit
// when it exits. When the agent goes away (or the helper dies), the worker kills the command's
// whole tree with kill_subreaper_tree() (agent/helper/shim.h): being a subreaper, it inherits
// every orphan of the tree, also those that left the command's group or session.

#include <sys/types.h>

#include <set>
#include <string>
#include <string_view>

#include "agent/helper/user.h"
#include "common/helper_protocol.h"
#include "common/unique_fd.h"

namespace modbox::helper {

/// Where a session runs when its request names no directory: /workspace when it exists, else /.
std::string session_directory(const SessionOpen& request);

/// Serves `request` on the non-blocking `connection` until the command has exited and Exit is
/// sent, or the agent has gone away (then the command's tree is killed). `signals` is a signalfd
/// for SIGCHLD and SIGHUP (SIGHUP: the helper died), both blocked; the caller is a child
/// subreaper with SIGPIPE ignored. `early` is what the agent sent after the request. Returns the
/// worker's exit status.
int serve_session(int connection, int signals, const SessionOpen& request, std::string_view early,
                  const SandboxUser* user);

/// The session workers of one helper, bounded.
class SessionWorkers {
 public:
  /// Sessions open at once, per sandbox: each is a worker, a terminal or three pipes, and a
  /// shell. Past the bound a request is refused, so a runaway client cannot fork the sandbox out
  /// of processes.
  static constexpr std::size_t max_workers = 64;

  /// Forks a worker that serves `request` on `connection` as `user` (null: as the helper);
  /// `early` is what followed the request. On success the connection is the worker's (closed
  /// here); when max_workers are running, or the fork fails, it is left to the caller, and the
  /// error's message is the sentence to refuse the agent with.
  Result<pid_t> spawn(UniqueFd& connection, const SessionOpen& request, std::string_view early,
                      const SandboxUser* user);
  /// Forgets a worker the helper reaped; false when `pid` was not one.
  bool on_exit(pid_t pid) { return pids_.erase(pid) > 0; }
  std::size_t running() const { return pids_.size(); }

 private:
  std::set<pid_t> pids_;
};

}  // namespace modbox::helper
