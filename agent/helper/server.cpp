#include "agent/helper/server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace modbox::helper {

namespace {

constexpr int stop_signals[] = {SIGTERM, SIGINT};
constexpr int forwarded_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

void log_line(const std::string& text) {
  std::fprintf(stderr, "modbox-helper: %s\n", text.c_str());
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "was killed by " + signal_name(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

std::string hello_frame() {
  return encode(Hello{protocol_version, static_cast<std::uint32_t>(::getpid()), find_shell()});
}

}  // namespace

Result<std::unique_ptr<HelperServer>> HelperServer::create(const ServerOptions& options) {
  auto server = std::make_unique<HelperServer>(Token());
  if (!runs_as_root(options.user_spec)) {
    auto user = resolve_user(options.user_spec);
    if (!user) return std::unexpected(user.error());
    server->user_ = std::move(*user);
  }
  std::vector<int> handled(std::begin(forwarded_signals), std::end(forwarded_signals));
  handled.push_back(SIGCHLD);
  auto signals = block_and_watch_signals(handled);
  if (!signals) return std::unexpected(signals.error());
  server->signals_ = std::move(*signals);
  // Writes to an agent that went away fail with EPIPE instead of killing the helper.
  ::signal(SIGPIPE, SIG_IGN);
  // Orphans come to the helper even when it is not PID 1 (a container started with --init).
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  raise_file_limit();
  auto listener = listen_unix(options.socket_path);
  if (!listener) return std::unexpected(listener.error());
  server->listener_ = std::move(*listener);
  server->directory_ = options.socket_path.substr(0, options.socket_path.rfind('/') + 1);
  server->exit_with_child_ = options.exit_with_child && !options.entrypoint.empty();
  if (!options.entrypoint.empty()) {
    // stdout and stderr share one pipe, so the log keeps the order in which they were written.
    auto output = make_pipe();
    if (!output) return std::unexpected(output.error());
    // A bell left by an earlier start of this container (an interrupted provision) is not this child's.
    ::unlink((server->directory_ + std::string(main_exit_name)).c_str());
    auto log = main_log::Writer::create(server->directory_ + std::string(main_log_name));
    if (log)
      server->main_log_ = std::move(*log);
    else
      log_line("cannot keep the log of the sandbox's main process: " + log.error().message);
    // What the helper passes on to its own stdout must never block it: dropped when no one reads.
    // A pipe (conmon's) is opened anew, so that the non-blocking mode stays off whoever else
    // shares the helper's stdout; a terminal or a file is written to as it is.
    struct stat out {};
    if (::fstat(1, &out) == 0 && S_ISFIFO(out.st_mode))
      server->forward_ = UniqueFd(::open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    else
      server->forward_ = UniqueFd(::fcntl(1, F_DUPFD_CLOEXEC, 3));
    server->oom_kills_at_start_ = cgroup_oom_kills();
    auto child =
        spawn_entrypoint(options.entrypoint, server->user_ ? &*server->user_ : nullptr, output->write_end.get());
    if (!child) return std::unexpected(child.error());
    server->entrypoint_ = *child;
    server->main_output_ = std::move(output->read_end);
  }
  return server;
}

int HelperServer::run() {
  std::vector<pollfd> entries;
  while (!exit_status_) {
    auto now = Clock::now();
    entries.clear();
    entries.push_back({signals_.get(), POLLIN, 0});
    bool accepting = now >= accept_paused_until_;
    entries.push_back({accepting ? listener_.get() : -1, POLLIN, 0});
    for (const auto& session : sessions_) session->add_poll_entries(entries);
    std::size_t first_draining = entries.size();
    for (const auto& fd : draining_) entries.push_back({fd.get(), POLLIN, 0});
    std::size_t main_output_entry = entries.size();
    entries.push_back({main_output_.valid() ? main_output_.get() : -1, POLLIN, 0});

    int ready = ::poll(entries.data(), entries.size(), poll_timeout_ms(now));
    now = Clock::now();
    if (ready > 0) {
      if (entries[0].revents & POLLIN) handle_signals();
      if (entries[1].revents & POLLIN) accept_connections(now);
      // Sessions accepted just now are not in `entries` yet; only the polled ones are told.
      std::size_t polled = (first_draining - 2) / ExecSession::poll_entries;
      for (std::size_t i = 0; i < polled; ++i) sessions_[i]->on_ready(&entries[2 + i * ExecSession::poll_entries], now);
      drain_leftovers(entries, first_draining);
      if (entries[main_output_entry].revents & (POLLIN | POLLHUP | POLLERR)) pump_main_output(4);
    }
    for (auto& session : sessions_) session->on_time(now);
    retire_finished_sessions();
  }
  return *exit_status_;
}

void HelperServer::handle_signals() {
  while (auto signal = read_signal(signals_.get())) {
    if (*signal == SIGCHLD) {
      reap_children();
      continue;
    }
    if (entrypoint_ > 0) ::kill(entrypoint_, *signal);
    if (std::find(std::begin(stop_signals), std::end(stop_signals), *signal) == std::end(stop_signals)) continue;
    stopping_ = true;
    // With no entrypoint to wait for, stop now; otherwise when it has exited.
    if (entrypoint_ <= 0) exit_status_ = 0;
  }
}

void HelperServer::reap_children() {
  // As PID 1 the helper inherits every orphan in the sandbox: reap them all, not just its own.
  while (auto reaped = reap_one()) {
    auto [pid, status] = *reaped;
    if (pid == entrypoint_) {
      entrypoint_ = -1;
      int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
      if (exit_with_child_) {
        log_line("the sandbox's command " + describe_status(status) + "; ending the sandbox");
        end_with_child(code);
      } else if (stopping_) {
        exit_status_ = code;
      } else {
        log_line("the image's entrypoint " + describe_status(status) + "; still serving the sandbox");
      }
      continue;
    }
    if (relays_.on_exit(pid)) continue;
    if (session_workers_.on_exit(pid)) continue;
    for (auto& session : sessions_)
      if (session->pid() == pid) session->on_exit(status, Clock::now());
  }
}

void HelperServer::pump_main_output(int max_reads) {
  for (int i = 0; i < max_reads && main_output_.valid(); ++i) {
    auto got = read_some(main_output_.get(), output_chunk_max);
    if (!got) return;  // nothing more for now
    if (got->empty()) {
      main_output_.reset();  // every writer has closed it
      return;
    }
    if (main_log_) {
      if (auto appended = main_log_->append(*got); !appended && !main_log_failed_) {
        main_log_failed_ = true;
        log_line("the log of the sandbox's main process stopped: " + appended.error().message);
      }
    }
    // Best effort: `podman logs` shows it too when conmon keeps up.
    if (forward_.valid()) {
      ssize_t ignored = ::write(forward_.get(), got->data(), got->size());
      (void)ignored;
    }
  }
}

void HelperServer::end_with_child(int code) {
  // What the child wrote before it exited is in the pipe: into the log before the sandbox ends.
  // Bounded, as its background processes may still be writing.
  pump_main_output(64);
  std::string path = directory_ + std::string(main_exit_name);
  UniqueFd bell(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (bell.valid()) {
    std::string text = std::to_string(code);
    // SIGKILL from the OOM killer looks like any SIGKILL: the cgroup's counter tells them apart.
    auto oom_kills = cgroup_oom_kills();
    if (code == 128 + SIGKILL && oom_kills && *oom_kills > oom_kills_at_start_.value_or(0))
      text += std::string(main_exit_oom_mark);
    text += "\n";
    ssize_t ignored = ::write(bell.get(), text.data(), text.size());
    (void)ignored;
  }
  exit_status_ = code;
}

void HelperServer::accept_connections(Clock::time_point now) {
  for (;;) {
    auto accepted = accept_connection(listener_.get());
    if (!accepted) {
      // Out of file descriptors, most likely: pause accepting rather than spin.
      log_line(accepted.error().message);
      accept_paused_until_ = now + std::chrono::milliseconds(100);
      return;
    }
    if (!*accepted) return;
    UniqueFd connection = std::move(**accepted);
    if (sessions_.size() >= max_sessions) {
      send_some(connection.get(),
                hello_frame() + encode(Failure{"the sandbox is running " + std::to_string(max_sessions) +
                                               " commands already; try again when one ends"}));
      continue;
    }
    sessions_.push_back(std::make_unique<ExecSession>(std::move(connection), now, hello_frame(),
                                                      user_ ? &*user_ : nullptr, relays_, session_workers_));
  }
}

void HelperServer::drain_leftovers(const std::vector<pollfd>& entries, std::size_t first) {
  std::vector<bool> closed(draining_.size(), false);
  for (std::size_t i = 0; i < draining_.size() && first + i < entries.size(); ++i) {
    if (!(entries[first + i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;
    auto got = read_some(draining_[i].get(), output_chunk_max);
    if (got && got->empty()) closed[i] = true;
  }
  std::deque<UniqueFd> open;
  for (std::size_t i = 0; i < draining_.size(); ++i)
    if (!closed[i]) open.push_back(std::move(draining_[i]));
  draining_ = std::move(open);
}

void HelperServer::retire_finished_sessions() {
  auto finished =
      std::stable_partition(sessions_.begin(), sessions_.end(), [](const auto& session) { return !session->done(); });
  for (auto it = finished; it != sessions_.end(); ++it)
    for (auto& pipe : (*it)->take_leftover_pipes()) draining_.push_back(std::move(pipe));
  sessions_.erase(finished, sessions_.end());
  // Past the bound the oldest pipe is closed: its writer then gets EPIPE, as if its reader quit.
  while (draining_.size() > max_draining) draining_.pop_front();
}

int HelperServer::poll_timeout_ms(Clock::time_point now) const {
  Clock::time_point next = Clock::time_point::max();
  for (const auto& session : sessions_) next = std::min(next, session->next_deadline());
  if (now < accept_paused_until_) next = std::min(next, accept_paused_until_);
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::min<long long>(wait, 60'000));
}

void record_startup_failure(const std::string& socket_path, const std::string& message) {
  std::string directory = socket_path.substr(0, socket_path.rfind('/') + 1);
  std::string path = directory + std::string(startup_failure_name);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return;
  std::string text = message.substr(0, message_max);
  ssize_t ignored = ::write(fd.get(), text.data(), text.size());
  (void)ignored;
}

}  // namespace modbox::helper
