#include "agent/helper/process_table.h"

#include <sys/wait.h>

#include <algorithm>
#include <cerrno>

namespace modbox::helper {

namespace {

std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::unexpected<Error> unknown(std::uint32_t id) {
  return fail(ErrorKind::not_found, "no background process " + std::to_string(id) + " in this sandbox");
}

}  // namespace

Result<ProcessInfo> ProcessTable::start(const ProcessStart& request, const std::string& shell) {
  if (running() >= max_running)
    return fail(ErrorKind::conflict, "the sandbox runs " + std::to_string(max_running) +
                                         " background processes already; wait for one to end, or kill one");
  ShellCommand command{shell, request.command, request.cwd, user_, request.env, true};
  auto spawned = spawn_shell(command);
  if (!spawned) return std::unexpected(spawned.error());
  auto process = std::make_unique<Process>();
  process->info.id = next_id_++;
  process->info.started_ms = wall_clock_ms();
  process->info.command = request.command.substr(0, process_command_shown_max);
  process->info.cwd = request.cwd;
  process->shim = spawned->pid;
  process->stdin_fd = std::move(spawned->stdin_fd);
  process->output[0] = std::move(spawned->stdout_fd);
  process->output[1] = std::move(spawned->stderr_fd);
  processes_.push_back(std::move(process));
  return describe(*processes_.back());
}

ProcessInfo ProcessTable::describe(const Process& process) {
  ProcessInfo info = process.info;
  info.stdin_open = process.stdin_fd.valid() && !process.close_stdin;
  info.stdout_bytes = process.ring.written(Stream::stdout_stream);
  info.stderr_bytes = process.ring.written(Stream::stderr_stream);
  info.stdout_dropped = process.ring.dropped(Stream::stdout_stream);
  info.stderr_dropped = process.ring.dropped(Stream::stderr_stream);
  return info;
}

std::vector<ProcessInfo> ProcessTable::list() const {
  std::vector<ProcessInfo> infos;
  infos.reserve(processes_.size());
  for (const auto& process : processes_) infos.push_back(describe(*process));
  return infos;
}

std::optional<ProcessInfo> ProcessTable::info(std::uint32_t id) const {
  const Process* process = find(id);
  if (process == nullptr) return std::nullopt;
  return describe(*process);
}

ProcessTable::Process* ProcessTable::find(std::uint32_t id) {
  return const_cast<Process*>(std::as_const(*this).find(id));
}

const ProcessTable::Process* ProcessTable::find(std::uint32_t id) const {
  for (const auto& process : processes_)
    if (process->info.id == id) return process.get();
  return nullptr;
}

Result<void> ProcessTable::write_stdin(const ProcessStdin& request) {
  Process* process = find(request.id);
  if (process == nullptr) return unknown(request.id);
  std::string name = "background process " + std::to_string(request.id);
  if (!process->stdin_fd.valid() || process->close_stdin)
    return fail(ErrorKind::conflict, name + "'s stdin is closed");
  if (process->stdin_queue.size() + request.data.size() > process_stdin_queue_max)
    return fail(ErrorKind::conflict, name + " is not reading its stdin: " +
                                         std::to_string(process->stdin_queue.size()) +
                                         " bytes still wait for it; try again later");
  process->stdin_queue += request.data;
  process->close_stdin = request.close;
  write_queued_stdin(*process);
  return {};
}

void ProcessTable::write_queued_stdin(Process& process) {
  while (!process.stdin_queue.empty() && process.stdin_fd.valid()) {
    long written = write_some(process.stdin_fd.get(), process.stdin_queue);
    if (written == 0) return;  // the pipe is full: on_ready goes on when it has room
    if (written < 0) {
      // Nobody reads it any more (the command closed its stdin): what waits is lost, as in a shell.
      process.stdin_queue.clear();
      process.stdin_fd.reset();
      return;
    }
    process.stdin_queue.erase(0, static_cast<std::size_t>(written));
  }
  if (process.close_stdin) process.stdin_fd.reset();
}

Result<void> ProcessTable::signal(std::uint32_t id, int signal, Clock::time_point now) {
  Process* process = find(id);
  if (process == nullptr) return unknown(id);
  if (process->wait_status)
    return fail(ErrorKind::conflict, "background process " + std::to_string(id) + " has exited");
  if (signal != SIGKILL) {
    signal_tree(process->shim, signal);
    return {};
  }
  if (!process->kill_requested) {
    request_kill_tree(process->shim);
    process->kill_requested = true;
    process->kill_fallback = now + kill_tree_grace;
  }
  return {};
}

std::optional<Output> ProcessTable::read(std::uint32_t id, OutputRing::Cursor& cursor, std::size_t max) const {
  const Process* process = find(id);
  if (process == nullptr) return std::nullopt;
  return process->ring.next(cursor, max);
}

bool ProcessTable::exited(std::uint32_t id) const {
  const Process* process = find(id);
  return process == nullptr || process->info.state == ProcessState::exited;
}

void ProcessTable::add_poll_entries(std::vector<pollfd>& fds) {
  polled_ = processes_.size();
  for (const auto& process : processes_) {
    bool writing = process->stdin_fd.valid() && !process->stdin_queue.empty();
    fds.push_back({writing ? process->stdin_fd.get() : -1, POLLOUT, 0});
    for (const auto& output : process->output) fds.push_back({output.valid() ? output.get() : -1, POLLIN, 0});
  }
}

void ProcessTable::on_ready(const pollfd* entries, Clock::time_point now) {
  for (std::size_t i = 0; i < polled_ && i < processes_.size(); ++i) {
    Process& process = *processes_[i];
    const pollfd* mine = entries + 3 * i;
    if (mine[0].fd >= 0 && (mine[0].revents & (POLLOUT | closed_events))) write_queued_stdin(process);
    for (std::size_t which = 0; which < 2; ++which)
      if (mine[1 + which].fd >= 0 && (mine[1 + which].revents & (POLLIN | closed_events))) read_output(process, which);
    settle_if_drained(process, now);
  }
}

void ProcessTable::read_output(Process& process, std::size_t which) {
  UniqueFd& fd = process.output[which];
  // A few reads per wake-up at most, so that one chatty process cannot starve the rest of the loop.
  for (int round = 0; round < 4 && fd.valid(); ++round) {
    auto got = read_some(fd.get(), output_chunk_max);
    if (!got) return;
    if (got->empty()) {
      fd.reset();
      return;
    }
    process.ring.append(which == 0 ? Stream::stdout_stream : Stream::stderr_stream, *got);
  }
}

bool ProcessTable::on_exit(pid_t pid, int status, Clock::time_point now) {
  for (auto& process : processes_) {
    if (process->shim != pid || process->wait_status) continue;
    process->wait_status = status;
    process->info.ended_ms = wall_clock_ms();
    process->settle_by = now + linger;
    settle_if_drained(*process, now);
    return true;
  }
  return false;
}

void ProcessTable::settle_if_drained(Process& process, Clock::time_point now) {
  if (!process.wait_status || process.info.state == ProcessState::exited) return;
  bool drained = !process.output[0].valid() && !process.output[1].valid();
  if (!drained && now < process.settle_by) return;
  // Out of time for the jobs it left running: take what is already in the pipes first.
  for (std::size_t which = 0; which < 2; ++which) read_output(process, which);
  int status = *process.wait_status;
  process.info.state = ProcessState::exited;
  if (WIFSIGNALED(status)) {
    process.info.exit_code = 128 + WTERMSIG(status);
    process.info.signal = signal_name(WTERMSIG(status));
  } else {
    process.info.exit_code = WEXITSTATUS(status);
  }
  process.stdin_queue.clear();
  process.stdin_fd.reset();
}

void ProcessTable::on_time(Clock::time_point now) {
  for (auto& process : processes_) {
    if (process->kill_requested && !process->wait_status && now >= process->kill_fallback) {
      // The shim did not end in time (stopped by the sandbox's code, say): kill it and its tree.
      force_kill_tree(process->shim);
      process->kill_fallback = Clock::time_point::max();
    }
    settle_if_drained(*process, now);
  }
}

Clock::time_point ProcessTable::next_deadline() const {
  Clock::time_point next = Clock::time_point::max();
  for (const auto& process : processes_) {
    if (process->kill_requested && !process->wait_status) next = std::min(next, process->kill_fallback);
    if (process->wait_status && process->info.state == ProcessState::running) next = std::min(next, process->settle_by);
  }
  return next;
}

std::vector<UniqueFd> ProcessTable::retire() {
  std::vector<UniqueFd> leftovers;
  auto ended = static_cast<std::size_t>(std::ranges::count_if(
      processes_, [](const auto& process) { return process->info.state == ProcessState::exited; }));
  for (auto it = processes_.begin(); ended > max_ended && it != processes_.end();) {
    if ((*it)->info.state != ProcessState::exited) {
      ++it;
      continue;
    }
    for (auto& output : (*it)->output)
      if (output.valid()) leftovers.push_back(std::move(output));
    it = processes_.erase(it);
    --ended;
  }
  return leftovers;
}

std::size_t ProcessTable::running() const {
  return static_cast<std::size_t>(std::ranges::count_if(
      processes_, [](const auto& process) { return process->info.state == ProcessState::running; }));
}

}  // namespace modbox::helper
