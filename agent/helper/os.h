#pragma once
// The helper's system calls, each wrapped once: failures come back as an Error naming the call and
// errno. The helper is single-threaded, so the code between fork and exec may allocate-free format.

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/helper/user.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace modbox::helper {

using Clock = std::chrono::steady_clock;

/// The poll() events of a descriptor whose other end is gone (or that is not open).
inline constexpr short closed_events = POLLHUP | POLLERR | POLLNVAL;

Error os_error(const char* call, const std::string& subject, int errno_value);

/// A pipe whose ends are close-on-exec; the read end is non-blocking.
struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};
Result<Pipe> make_pipe();
/// A pipe for a child's stdin: both ends close-on-exec, the write end (the helper's) non-blocking.
Result<Pipe> make_input_pipe();

/// A non-blocking unix stream socket listening at `path` (replacing a stale socket), mode 0600.
Result<UniqueFd> listen_unix(const std::string& path);
/// The next pending connection, non-blocking and close-on-exec; nullopt when none is pending.
Result<std::optional<UniqueFd>> accept_connection(int listener);

/// A signalfd for `signals`, which are blocked in the calling thread (and so in children until
/// they unblock them).
Result<UniqueFd> block_and_watch_signals(const std::vector<int>& signals);
/// Reads one pending signal number from a signalfd; nullopt when none is pending.
std::optional<int> read_signal(int signal_fd);

/// Reaps one exited child: {pid, wait status}; nullopt when none has exited.
std::optional<std::pair<pid_t, int>> reap_one();

/// Reads what is available: the bytes, empty at end of file, nullopt when nothing is there now.
/// An error other than "try again" counts as end of file.
std::optional<std::string> read_some(int fd, std::size_t max);
/// Writes what the peer takes now without blocking; returns the bytes written, or -1 when the
/// peer is gone.
long send_some(int fd, const std::string& data);
/// The same for a pipe: the bytes written now without blocking (0 when it is full), or -1 when
/// its reader is gone.
long write_some(int fd, std::string_view data);

/// Starts the image's entrypoint (argv[0] searched in PATH) with the helper's environment and stdin,
/// as `user` (null: as the helper); its stdout and stderr both go to `output_fd` (-1: the helper's).
Result<pid_t> spawn_entrypoint(const std::vector<std::string>& argv, const SandboxUser* user, int output_fd = -1);

/// The children of process `pid` (from /proc/PID/task/PID/children: those of its main thread,
/// all of them for a single-threaded process). A child that exits meanwhile may be missing.
std::vector<pid_t> child_processes(pid_t pid);

/// Closes every descriptor from `first` up (close_range).
void close_descriptors_from(int first);

/// In a child between fork and exec: default signal handling, nothing blocked.
void reset_signals();
/// In a worker just forked from the helper: keeps only `connection`, as fd 3 (no listener, no
/// other session's sockets or pipes), and resets the signals; returns 3.
int become_worker(UniqueFd connection);
/// Writes `text` to fd 2, for children that report a failure before they _exit.
void write_stderr(const std::string& text);

/// bash when the image has it (its usual places, then PATH), else sh; empty when neither exists.
std::string find_shell();

/// How many processes the OOM killer has killed in the helper's own memory cgroup (`oom_kill` of
/// memory.events on cgroup v2, of memory.oom_control on v1, as the container sees /sys/fs/cgroup);
/// nullopt when neither can be read.
std::optional<std::uint64_t> cgroup_oom_kills();

/// Raises the soft limit of open files to the hard limit.
void raise_file_limit();

}  // namespace modbox::helper
