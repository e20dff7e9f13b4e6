#pragma once
// Background processes: commands started by one request that outlive it, until they exit or the
// sandbox ends. The table lives in the helper's loop, like the exec sessions: each process runs
// under a shim of its own (agent/helper/shim.h), so a signal or a kill reaches its whole tree;
// its stdout and stderr are always read (a process never blocks on a slow reader) into an
// OutputRing, the last process_output_kept bytes of each, for readers that come late; its stdin is
// a pipe that requests write to through a bounded queue.
//
// Bounds: at most max_running processes run at once (a start past that is refused); of those that
// ended, the most recent max_ended stay listed and readable, older ones are forgotten.

#include <poll.h>
#include <sys/types.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/helper/os.h"
#include "agent/helper/output_ring.h"
#include "agent/helper/shim.h"
#include "common/helper_protocol.h"

namespace modbox::helper {

class ProcessTable {
 public:
  static constexpr std::size_t max_running = 64;
  static constexpr std::size_t max_ended = 64;
  static_assert(max_running + max_ended <= processes_listed_max, "a listing must fit what the agent accepts");
  /// After the shell exits, how long output is still awaited from pipes that a job it left
  /// running keeps open, before the process counts as exited (what it writes later is still kept).
  static constexpr auto linger = std::chrono::milliseconds(50);

  /// Processes run as `user` (null: as the helper), which must outlive the table.
  explicit ProcessTable(const SandboxUser* user) : user_(user) {}

  /// Starts one; the error's message is the sentence to refuse the agent with (a full table, a
  /// failed fork), its kind `conflict` when the table is full.
  Result<ProcessInfo> start(const ProcessStart& request, const std::string& shell);
  /// Every process the table holds, oldest first, with what is no longer kept as `dropped`.
  std::vector<ProcessInfo> list() const;
  /// One process, or nullopt for an id the table does not hold.
  std::optional<ProcessInfo> info(std::uint32_t id) const;
  /// Queues `data` for the process's stdin, then closes it when `close`. Errors: not_found, or
  /// conflict (stdin already closed, or the queue would pass process_stdin_queue_max).
  Result<void> write_stdin(const ProcessStdin& request);
  /// Sends `signal` to the process's tree; SIGKILL kills it as an exec's tree is at its timeout.
  /// Errors: not_found, or conflict once it has exited.
  Result<void> signal(std::uint32_t id, int signal, Clock::time_point now);

  /// The next piece of the process's output for `cursor`; nullopt when the reader has everything
  /// written so far (or the id is gone).
  std::optional<Output> read(std::uint32_t id, OutputRing::Cursor& cursor, std::size_t max) const;
  /// Whether the process has exited, its output settled; true for an id the table no longer holds.
  bool exited(std::uint32_t id) const;

  // The helper's loop.
  /// Adds poll_entries() entries; on_ready() gets them back in the same order.
  void add_poll_entries(std::vector<pollfd>& fds);
  std::size_t poll_entries() const { return polled_ * 3; }
  void on_ready(const pollfd* entries, Clock::time_point now);
  /// True when `pid` was one of the table's shims, which ended with wait status `status`.
  bool on_exit(pid_t pid, int status, Clock::time_point now);
  void on_time(Clock::time_point now);
  Clock::time_point next_deadline() const;
  /// Forgets the oldest ended processes past max_ended; call between loop rounds. Their pipes, still
  /// held by jobs they left running, are handed back for the helper to drain.
  std::vector<UniqueFd> retire();
  std::size_t running() const;

 private:
  struct Process {
    ProcessInfo info;
    pid_t shim = -1;
    UniqueFd stdin_fd;
    std::string stdin_queue;
    bool close_stdin = false;  // once the queue is written
    std::array<UniqueFd, 2> output;
    OutputRing ring;
    std::optional<int> wait_status;
    Clock::time_point settle_by{};    // exited: when the pipes stop being awaited
    bool kill_requested = false;
    Clock::time_point kill_fallback = Clock::time_point::max();
  };

  Process* find(std::uint32_t id);
  const Process* find(std::uint32_t id) const;
  void read_output(Process& process, std::size_t which);
  void write_queued_stdin(Process& process);
  void settle_if_drained(Process& process, Clock::time_point now);
  static ProcessInfo describe(const Process& process);

  const SandboxUser* user_;
  std::deque<std::unique_ptr<Process>> processes_;
  std::uint32_t next_id_ = 1;
  std::size_t polled_ = 0;  // processes whose entries the last add_poll_entries() added
};

}  // namespace modbox::helper
