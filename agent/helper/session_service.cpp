#include "agent/helper/session_service.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "agent/helper/os.h"
#include "agent/helper/shim.h"

extern char** environ;

namespace modbox::helper {

namespace {

/// After the command exits, how long output is still collected from a terminal or pipes that a
/// background process keeps open; what is in them then is still sent, later output is not.
constexpr auto linger = std::chrono::milliseconds(50);
/// How long the agent has to take the last output and Exit.
constexpr auto answer_timeout = std::chrono::seconds(10);
/// A terminal's EOF character when its settings cannot be read.
constexpr char default_eof = 0x04;

/// The command's end of its terminal or pipes, as the worker holds them.
struct SessionProcess {
  pid_t pid = -1;
  UniqueFd terminal;    // the pty master (tty only): input is written and the size is set here
  UniqueFd input;       // the write end of the command's stdin (pipes only)
  UniqueFd outputs[2];  // stdout and stderr (pipes), or a second descriptor of the master (tty)
};

/// What the command's child needs, prepared before fork.
struct Launch {
  std::string shell;
  std::vector<std::string> arguments;
  std::string cwd;
  const SessionOpen* request = nullptr;
  const SandboxUser* user = nullptr;
};

void set_environment(const Launch& launch) {
  bool has_term = false;
  for (const auto& entry : launch.request->env) {
    std::size_t equals = entry.find('=');
    std::string name = entry.substr(0, equals);
    ::setenv(name.c_str(), entry.c_str() + equals + 1, 1);
    has_term = has_term || name == "TERM";
  }
  if (launch.request->tty && !has_term) ::setenv("TERM", "xterm-256color", 1);
}

/// The command's child: leads a new session (with the terminal as its controlling terminal),
/// enters the directory, becomes the user, runs the shell. Failures end it as exec's do: 1 for
/// the directory, 126 for the user, 127 for the shell, with the reason on its stderr.
[[noreturn]] void exec_command(const Launch& launch, int stdin_fd, int stdout_fd, int stderr_fd) {
  ::setsid();
  ::dup2(stdin_fd, 0);
  ::dup2(stdout_fd, 1);
  ::dup2(stderr_fd, 2);
  if (launch.request->tty) ::ioctl(0, TIOCSCTTY, 0);
  close_descriptors_from(3);  // the worker's wait for the start ends here too
  reset_signals();
  set_environment(launch);
  if (::chdir(launch.cwd.c_str()) != 0) {
    write_stderr("modbox-helper: cannot change to directory " + launch.cwd + ": " + std::strerror(errno) + "\n");
    ::_exit(1);
  }
  if (launch.user != nullptr) {
    give_stdio_to(*launch.user);
    if (auto became = become_user(*launch.user); !became) {
      write_stderr("modbox-helper: cannot run the session as the image's user: " + became.error().message + "\n");
      ::_exit(126);
    }
  } else if (::geteuid() == 0 && std::getenv("USER") == nullptr) {
    ::setenv("USER", "root", 1);
    ::setenv("LOGNAME", "root", 1);
  }
  ::setenv("SHELL", launch.shell.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& argument : launch.arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  ::execve(launch.shell.c_str(), argv.data(), environ);
  write_stderr("modbox-helper: cannot run " + launch.shell + ": " + std::strerror(errno) + "\n");
  ::_exit(127);
}

/// A new pseudo-terminal sized as asked: the master (non-blocking) and the slave.
Result<std::pair<UniqueFd, UniqueFd>> open_terminal(std::uint16_t cols, std::uint16_t rows) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master.valid()) return std::unexpected(os_error("posix_openpt", "/dev/ptmx", errno));
  if (::grantpt(master.get()) != 0) return std::unexpected(os_error("grantpt", "/dev/ptmx", errno));
  if (::unlockpt(master.get()) != 0) return std::unexpected(os_error("unlockpt", "/dev/ptmx", errno));
  // TIOCGPTPEER opens the slave without a path, so a /dev/pts of another mount cannot be mixed up.
  UniqueFd slave(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave.valid()) {
    char name[128];
    if (::ptsname_r(master.get(), name, sizeof name) != 0) return std::unexpected(os_error("ptsname", "", errno));
    slave = UniqueFd(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!slave.valid()) return std::unexpected(os_error("open", name, errno));
  }
  winsize size{};
  size.ws_col = cols;
  size.ws_row = rows;
  if (::ioctl(master.get(), TIOCSWINSZ, &size) != 0) return std::unexpected(os_error("ioctl", "TIOCSWINSZ", errno));
  ::fcntl(master.get(), F_SETFL, O_NONBLOCK);
  return std::pair{std::move(master), std::move(slave)};
}

Result<pid_t> fork_command(const Launch& launch, int stdin_fd, int stdout_fd, int stderr_fd) {
  // The child holds the write end until it leads its session (close_descriptors_from closes it),
  // so that SessionReady goes out only once the agent's signals can reach the command's group.
  auto started = make_pipe();
  if (!started) return std::unexpected(started.error());
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(os_error("fork", launch.shell, errno));
  if (pid == 0) exec_command(launch, stdin_fd, stdout_fd, stderr_fd);
  started->write_end.reset();
  pollfd entry{started->read_end.get(), POLLIN, 0};
  while (::poll(&entry, 1, 5000) < 0 && errno == EINTR) {
  }
  return pid;
}

Result<SessionProcess> start_on_terminal(const Launch& launch) {
  auto terminal = open_terminal(launch.request->cols, launch.request->rows);
  if (!terminal) return std::unexpected(terminal.error());
  auto& [master, slave] = *terminal;
  SessionProcess process;
  process.outputs[0] = UniqueFd(::fcntl(master.get(), F_DUPFD_CLOEXEC, 3));
  if (!process.outputs[0].valid()) return std::unexpected(os_error("fcntl", "F_DUPFD_CLOEXEC", errno));
  auto pid = fork_command(launch, slave.get(), slave.get(), slave.get());
  if (!pid) return std::unexpected(pid.error());
  // The worker holds no slave: once the command's tree has closed it, the master reads EIO.
  process.pid = *pid;
  process.terminal = std::move(master);
  return process;
}

Result<SessionProcess> start_on_pipes(const Launch& launch) {
  auto input = make_pipe();
  auto output = make_pipe();
  auto errors = make_pipe();
  if (!input || !output || !errors)
    return std::unexpected(!input ? input.error() : !output ? output.error() : errors.error());
  // make_pipe makes the read end non-blocking; here the worker holds the write end of stdin.
  ::fcntl(input->read_end.get(), F_SETFL, 0);
  ::fcntl(input->write_end.get(), F_SETFL, O_NONBLOCK);
  auto pid = fork_command(launch, input->read_end.get(), output->write_end.get(), errors->write_end.get());
  if (!pid) return std::unexpected(pid.error());
  SessionProcess process;
  process.pid = *pid;
  process.input = std::move(input->write_end);
  process.outputs[0] = std::move(output->read_end);
  process.outputs[1] = std::move(errors->read_end);
  return process;
}

/// One session, from SessionReady to Exit (or to the agent's going away).
class SessionPump {
 public:
  SessionPump(int connection, int signals, SessionProcess process, std::string shell, bool tty)
      : connection_(connection), signals_(signals), process_(std::move(process)), shell_(std::move(shell)), tty_(tty) {}

  /// The worker's exit status: 0 once Exit is delivered, 1 when the session was killed.
  int run(std::string_view early) {
    outgoing_ = encode(SessionReady{static_cast<std::uint32_t>(process_.pid)});
    decoder_.feed(early);
    if (!take_frames()) return kill_session();
    while (!exit_queued_) {
      if (!step()) return kill_session();
    }
    return deliver_last_frames();
  }

 private:
  enum Entry : std::size_t { signal_entry, connection_entry, input_entry, output_entry, error_entry, entry_count };

  bool has_room() const { return outgoing_.size() < session_backlog_max; }
  int input_fd() const { return tty_ ? process_.terminal.get() : process_.input.get(); }

  /// One round of the loop: false when the agent went away, broke the protocol, or the helper died.
  bool step() {
    std::array<pollfd, entry_count> entries{};
    entries[signal_entry] = {signals_, POLLIN, 0};
    short wanted =
        static_cast<short>((input_.size() < session_backlog_max ? POLLIN : 0) | (outgoing_.empty() ? 0 : POLLOUT));
    // Watched even when nothing is wanted: a hangup is the agent going away.
    entries[connection_entry] = {connection_, wanted, 0};
    entries[input_entry] = {!input_.empty() ? input_fd() : -1, POLLOUT, 0};
    for (std::size_t i = 0; i < 2; ++i) {
      const UniqueFd& output = process_.outputs[i];
      entries[output_entry + i] = {output.valid() && has_room() ? output.get() : -1, POLLIN, 0};
    }
    int ready = ::poll(entries.data(), entries.size(), poll_timeout_ms());
    if (ready < 0 && errno != EINTR) return false;
    if (ready > 0) {
      if ((entries[signal_entry].revents & POLLIN) && !handle_signals()) return false;
      const pollfd& connection = entries[connection_entry];
      if ((connection.revents & POLLOUT) && !flush()) return false;
      if (connection.revents & (POLLERR | POLLHUP | POLLNVAL)) return false;
      if ((connection.revents & POLLIN) && !read_agent()) return false;
      for (std::size_t i = 0; i < 2; ++i)
        if (entries[output_entry + i].revents & (POLLIN | POLLHUP | POLLERR)) read_output(i);
    }
    write_input();
    if (!flush()) return false;
    finish_if_drained();
    return true;
  }

  int poll_timeout_ms() const {
    if (!wait_status_) return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(linger_deadline_ - Clock::now()).count();
    // Past the linger, only a full backlog keeps the output open: wait for the agent to take it.
    if (left <= 0) return has_room() ? 0 : -1;
    return static_cast<int>(left);
  }

  bool handle_signals() {
    while (auto signal = read_signal(signals_)) {
      if (*signal == SIGHUP) return false;  // the helper died: nothing will serve the agent
      while (auto reaped = reap_one()) {
        if (reaped->first != process_.pid) continue;  // an orphan of the session's tree
        wait_status_ = reaped->second;
        linger_deadline_ = Clock::now() + linger;
        // Input the command will never read.
        input_.clear();
      }
    }
    return true;
  }

  /// Takes what the agent sent; false when it closed or broke the protocol.
  bool read_agent() {
    auto got = read_some(connection_, 64 << 10);
    if (!got) return true;
    if (got->empty()) return false;  // its end closed: End is how the agent ends the input
    decoder_.feed(*got);
    return take_frames();
  }

  bool take_frames() {
    for (;;) {
      auto message = decoder_.next();
      if (!message) return false;
      if (!*message) return true;
      if (!act_on(**message)) return false;
    }
  }

  bool act_on(Message& message) {
    if (auto* data = std::get_if<Data>(&message)) {
      if (!input_ended_ && !wait_status_) input_ += data->bytes;
    } else if (std::holds_alternative<End>(message)) {
      input_ended_ = true;
    } else if (auto* resize = std::get_if<SessionResize>(&message)) {
      resize_terminal(*resize);
    } else if (auto* signal = std::get_if<SessionSignal>(&message)) {
      send_signal(signal->signal);
    } else {
      return false;  // no other frame belongs in a session
    }
    return true;
  }

  void resize_terminal(const SessionResize& resize) {
    if (!tty_ || !is_window_size(resize.cols, resize.rows)) return;
    winsize size{};
    size.ws_col = resize.cols;
    size.ws_row = resize.rows;
    // The kernel tells the foreground process group with SIGWINCH.
    ::ioctl(process_.terminal.get(), TIOCSWINSZ, &size);
  }

  void send_signal(int signal) {
    if (wait_status_) return;  // its group may be gone, and its id reused
    pid_t group = process_.pid;
    if (tty_) {
      pid_t foreground = ::tcgetpgrp(process_.terminal.get());
      if (foreground > 0) group = foreground;
    }
    ::kill(-group, signal);
  }

  void write_input() {
    int fd = input_fd();
    while (fd >= 0 && !input_.empty()) {
      ssize_t written = ::write(fd, input_.data(), input_.size());
      if (written > 0) {
        input_.erase(0, static_cast<std::size_t>(written));
        continue;
      }
      if (written < 0 && errno == EINTR) continue;
      if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      // No reader any more (EPIPE, or EIO from a terminal without a slave): the input is moot.
      input_.clear();
      if (!tty_) process_.input.reset();
      return;
    }
    if (!input_ended_ || eof_passed_ || fd < 0) return;
    eof_passed_ = true;
    if (!tty_) {
      process_.input.reset();
      return;
    }
    termios settings{};
    char eof = ::tcgetattr(fd, &settings) == 0 && settings.c_cc[VEOF] != _POSIX_VDISABLE
                   ? static_cast<char>(settings.c_cc[VEOF])
                   : default_eof;
    input_.push_back(eof);
    write_input();
  }

  /// Reads a few chunks of output while the agent keeps up; closes the descriptor at its end
  /// (end of file on a pipe, EIO on a terminal whose every slave is closed).
  void read_output(std::size_t index) {
    UniqueFd& fd = process_.outputs[index];
    for (int round = 0; round < 4 && fd.valid() && has_room(); ++round) {
      auto got = read_some(fd.get(), output_chunk_max);
      if (!got) return;
      if (got->empty()) {
        fd.reset();
        return;
      }
      outgoing_ += encode(Output{index == 0 ? Stream::stdout_stream : Stream::stderr_stream, std::move(*got)});
    }
  }

  /// Sends what the agent takes now; false when it is gone.
  bool flush() {
    if (outgoing_.empty()) return true;
    long sent = send_some(connection_, outgoing_);
    if (sent < 0) return false;
    outgoing_.erase(0, static_cast<std::size_t>(sent));
    return true;
  }

  /// Once the command has exited: Exit when its output has ended, or when the linger has passed
  /// and nothing more is waiting in the terminal or pipes (what a background process writes later
  /// is not the session's).
  void finish_if_drained() {
    if (!wait_status_) return;
    if (Clock::now() >= linger_deadline_) {
      for (std::size_t i = 0; i < 2; ++i) {
        UniqueFd& fd = process_.outputs[i];
        while (fd.valid() && has_room()) {
          std::size_t before = outgoing_.size();
          read_output(i);
          if (fd.valid() && outgoing_.size() == before) fd.reset();  // nothing waiting now
        }
      }
    }
    if (process_.outputs[0].valid() || process_.outputs[1].valid()) return;
    int status = *wait_status_;
    Exit exit;
    exit.shell = shell_;
    if (WIFSIGNALED(status)) {
      exit.exit_code = 128 + WTERMSIG(status);
      exit.signal = signal_name(WTERMSIG(status));
    } else {
      exit.exit_code = WEXITSTATUS(status);
    }
    outgoing_ += encode(exit);
    exit_queued_ = true;
  }

  /// Sends the rest and Exit within answer_timeout, reading (and dropping) what the agent still
  /// sends, so that its last input does not turn the close into a reset.
  int deliver_last_frames() {
    auto deadline = Clock::now() + answer_timeout;
    while (!outgoing_.empty()) {
      if (!flush()) return 1;
      if (outgoing_.empty()) break;
      pollfd entry{connection_, POLLOUT | POLLIN, 0};
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || ::poll(&entry, 1, static_cast<int>(left)) == 0) return 1;
      if (entry.revents & POLLIN) {
        auto got = read_some(connection_, 64 << 10);
        if (got && got->empty()) return 1;
      }
      if (entry.revents & (POLLERR | POLLHUP)) return 1;
    }
    ::shutdown(connection_, SHUT_WR);
    return 0;
  }

  /// The agent went away (or the helper died): nothing of the session may outlive it.
  int kill_session() {
    kill_subreaper_tree(process_.pid);
    return 1;
  }

  int connection_;
  int signals_;
  SessionProcess process_;
  std::string shell_;
  bool tty_;
  FrameDecoder decoder_;
  std::string outgoing_;
  std::string input_;
  bool input_ended_ = false;
  bool eof_passed_ = false;
  std::optional<int> wait_status_;
  Clock::time_point linger_deadline_{};
  bool exit_queued_ = false;
};

void refuse(int connection, const Failure& failure) {
  std::string bytes = encode(failure);
  // Best effort, bounded: the agent is waiting for the answer.
  for (int round = 0; round < 100 && !bytes.empty(); ++round) {
    long sent = send_some(connection, bytes);
    if (sent < 0) return;
    bytes.erase(0, static_cast<std::size_t>(sent));
    if (bytes.empty()) return;
    pollfd entry{connection, POLLOUT, 0};
    ::poll(&entry, 1, 100);
  }
}

bool is_directory(const char* path) {
  struct stat info {};
  return ::stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

}  // namespace

std::string session_directory(const SessionOpen& request) {
  if (!request.cwd.empty()) return request.cwd;
  return is_directory("/workspace") ? "/workspace" : "/";
}

int serve_session(int connection, int signals, const SessionOpen& request, std::string_view early,
                  const SandboxUser* user) {
  Launch launch;
  launch.shell = find_shell();
  if (launch.shell.empty()) {
    refuse(connection, Failure{"this image has neither bash nor sh", FailureKind::refused});
    return 1;
  }
  std::string shell_name = launch.shell.substr(launch.shell.rfind('/') + 1);
  launch.arguments = request.command.empty() ? std::vector<std::string>{shell_name, "-i"}
                                             : std::vector<std::string>{shell_name, "-c", request.command};
  launch.cwd = session_directory(request);
  launch.request = &request;
  launch.user = user;
  auto process = request.tty ? start_on_terminal(launch) : start_on_pipes(launch);
  if (!process) {
    refuse(connection, Failure{"cannot start the session: " + process.error().message});
    return 1;
  }
  SessionPump pump(connection, signals, std::move(*process), launch.shell, request.tty);
  return pump.run(early);
}

Result<pid_t> SessionWorkers::spawn(UniqueFd& connection, const SessionOpen& request, std::string_view early,
                                    const SandboxUser* user) {
  if (pids_.size() >= max_workers)
    return fail(ErrorKind::unavailable,
                "the sandbox has " + std::to_string(max_workers) + " sessions open already; try again when one ends");
  pid_t helper = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0)
    return fail(ErrorKind::unavailable, "cannot start a session: " + os_error("fork", "session worker", errno).message);
  if (pid > 0) {
    pids_.insert(pid);
    connection.reset();
    return pid;
  }
  // The worker keeps only its connection, as fd 3; its signalfd comes next, as fd 4.
  int fd = become_worker(std::move(connection));
  auto signals = block_and_watch_signals({SIGCHLD, SIGHUP});
  if (!signals) {
    refuse(fd, Failure{"cannot start a session: " + signals.error().message});
    ::_exit(1);
  }
  ::signal(SIGPIPE, SIG_IGN);
  // Blocked above, so that the helper's death reaches the worker as a request to end the session.
  ::prctl(PR_SET_PDEATHSIG, SIGHUP);
  if (::getppid() != helper) ::_exit(1);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::_exit(serve_session(fd, signals->get(), request, early, user));
}

}  // namespace modbox::helper
