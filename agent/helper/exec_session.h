#pragma once
// One connection from the agent: hello, one exec request, the command's output, its exit. A file,
// relay or interactive session request is handed to a worker process instead, which takes the
// connection over.
// Driven by the helper's poll loop: the session says which fds it waits on and when it next needs
// the clock, and is told what happened.

#include <poll.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "agent/helper/os.h"
#include "agent/helper/relay_service.h"
#include "agent/helper/session_service.h"
#include "agent/helper/shim.h"
#include "common/helper_protocol.h"

namespace modbox::helper {

class ExecSession {
 public:
  /// How long the agent has to send its request, and to take the answer once it is ready.
  static constexpr auto request_timeout = std::chrono::seconds(10);
  static constexpr auto answer_timeout = std::chrono::seconds(10);
  /// After the command exits, how long output is still collected from pipes that a background
  /// process keeps open; after that the answer goes out and the helper drains them silently.
  static constexpr auto linger = std::chrono::milliseconds(50);
  /// Output is read from the pipes only while less than this waits to be sent to the agent, so a
  /// slow agent slows the command instead of growing the helper's memory.
  static constexpr std::size_t send_backlog_max = 256 << 10;

  /// Commands run as `user` (null: as the helper); relays are started by `relays`, interactive
  /// sessions by `sessions`. All must outlive the session.
  ExecSession(UniqueFd connection, Clock::time_point now, std::string hello, const SandboxUser* user,
              RelayWorkers& relays, SessionWorkers& sessions);

  /// Adds poll_entries entries to `fds` (unused ones with fd -1); on_ready() gets them back.
  static constexpr std::size_t poll_entries = 3;
  void add_poll_entries(std::vector<pollfd>& fds) const;
  void on_ready(const pollfd* entries, Clock::time_point now);
  /// The command (its shim, pid()) ended with wait status `status`.
  void on_exit(int status, Clock::time_point now);
  /// Acts on deadlines that have passed.
  void on_time(Clock::time_point now);
  /// When on_time() next needs to run.
  Clock::time_point next_deadline() const;

  pid_t pid() const { return command_.pid; }
  bool done() const { return state_ == State::done; }
  /// Pipes that background processes of a finished command still hold: the server drains them.
  std::vector<UniqueFd> take_leftover_pipes();

 private:
  // cancelling: the agent went away while the command ran; its tree is being killed, and the
  // session stays until the shim is gone so that the fallback kill can still happen.
  enum class State { awaiting_request, running, lingering, answering, cancelling, done };
  struct StreamState {
    UniqueFd fd;
    std::size_t forwarded = 0;
  };

  void read_request();
  void start(const ExecRequest& request, Clock::time_point now);
  void read_stream(Stream which);
  void send_pending();
  void finish_if_drained(Clock::time_point now);
  void answer(Message message);
  void abandon();
  /// Has the command's tree killed: asks its shim first, kills the shim itself at the next call.
  void kill_tree(Clock::time_point now);

  const SandboxUser* user_;
  RelayWorkers* relays_;
  SessionWorkers* sessions_;
  State state_ = State::awaiting_request;
  UniqueFd connection_;
  FrameDecoder decoder_;
  std::string outgoing_;
  RunningCommand command_;
  StreamState streams_[2];
  std::uint32_t output_cap_ = 0;
  bool truncated_ = false;
  bool killed_ = false;
  bool kill_requested_ = false;
  std::optional<int> wait_status_;
  std::string shell_;
  Clock::time_point deadline_;
};

}  // namespace modbox::helper
