#pragma once
// The helper's one loop: PID 1 duties (start the image's entrypoint, reap every child, forward
// signals) and the agent's connections on the unix socket, all on one thread with poll(2).

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "agent/helper/exec_session.h"
#include "common/main_log.h"

namespace modbox::helper {

struct ServerOptions {
  std::string socket_path;
  /// The image's USER (Docker's form: name, uid, name:group, uid:gid) that the entrypoint and every
  /// command run as; empty, "root" or "0": they run as the helper does, root.
  std::string user_spec;
  std::vector<std::string> entrypoint;  // the image's entrypoint + cmd; empty: no child, just serve
  /// The child is the sandbox's main process (a provision's `command`): when it exits, the helper
  /// rings the agent's bell (main_exit_name) and exits with its status, which ends the sandbox.
  bool exit_with_child = false;
};

class HelperServer {
  struct Token {
    explicit Token() = default;
  };

 public:
  /// Concurrent requests served; more are answered with a Failure at once. File, relay and
  /// session requests leave this count once their worker has taken them over; relays and sessions
  /// have bounds of their own (RelayWorkers::max_workers, SessionWorkers::max_workers).
  static constexpr std::size_t max_sessions = 200;
  /// Pipes of finished commands that background processes still write to, drained and dropped.
  static constexpr std::size_t max_draining = 200;

  /// Resolves the user, blocks the signals it handles, listens, starts the entrypoint. An unknown
  /// user fails before the socket exists.
  static Result<std::unique_ptr<HelperServer>> create(const ServerOptions& options);
  /// Serves until SIGTERM or SIGINT (and the entrypoint's exit, when there is one); returns the
  /// helper's exit status. The entrypoint exiting on its own does not stop the helper (the sandbox
  /// stays usable) unless exit_with_child: then the helper returns the child's status (128+n for
  /// signal n) once it has taken the output the child left in its pipe.
  int run();
  explicit HelperServer(Token) {}  // use create()

  /// Who the entrypoint and the commands run as; nullopt: as the helper (root).
  const std::optional<SandboxUser>& user() const { return user_; }

 private:
  void handle_signals();
  void reap_children();
  void accept_connections(Clock::time_point now);
  void drain_leftovers(const std::vector<pollfd>& entries, std::size_t first);
  /// Copies what the child wrote (at most `max_reads` pieces, so that sessions are served too) into
  /// the main log and onto the helper's own stdout; closes the pipe at its end.
  void pump_main_output(int max_reads);
  /// The child, run with exit_with_child, has ended with `code`: ring the bell and stop.
  void end_with_child(int code);
  void retire_finished_sessions();
  int poll_timeout_ms(Clock::time_point now) const;

  std::optional<SandboxUser> user_;
  UniqueFd signals_;
  UniqueFd listener_;
  pid_t entrypoint_ = -1;
  bool exit_with_child_ = false;
  std::string directory_;  // the socket's directory: where the main log and the bell are
  UniqueFd main_output_;   // the read end of the child's stdout and stderr
  UniqueFd forward_;       // the helper's stdout, where the child's output is passed on
  std::optional<main_log::Writer> main_log_;
  bool main_log_failed_ = false;
  std::optional<std::uint64_t> oom_kills_at_start_;  // the cgroup's OOM kill count when the child started
  bool stopping_ = false;
  std::optional<int> exit_status_;
  Clock::time_point accept_paused_until_{};
  std::vector<std::unique_ptr<ExecSession>> sessions_;
  RelayWorkers relays_;
  SessionWorkers session_workers_;
  std::deque<UniqueFd> draining_;
};

/// Leaves `message`, why the helper could not start, in a file beside the socket (startup_failure_name)
/// for the agent to read into the sandbox's reason; best effort.
void record_startup_failure(const std::string& socket_path, const std::string& message);

}  // namespace modbox::helper
