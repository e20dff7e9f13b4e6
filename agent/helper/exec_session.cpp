#include "agent/helper/exec_session.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "agent/helper/file_service.h"

namespace modbox::helper {

namespace {

void log_error(const std::string& text) {
  std::fprintf(stderr, "modbox-helper: %s\n", text.c_str());
}
}  // namespace

ExecSession::ExecSession(UniqueFd connection, Clock::time_point now, std::string hello, const SandboxUser* user,
                         RelayWorkers& relays, SessionWorkers& sessions, ProcessTable& processes)
    : user_(user),
      relays_(&relays),
      sessions_(&sessions),
      processes_(&processes),
      connection_(std::move(connection)),
      outgoing_(std::move(hello)),
      deadline_(now + request_timeout) {
  send_pending();
}

void ExecSession::add_poll_entries(std::vector<pollfd>& fds) const {
  short connection_events = outgoing_.empty() ? POLLIN : POLLIN | POLLOUT;
  fds.push_back({state_ == State::done ? -1 : connection_.get(), connection_events, 0});
  for (const auto& stream : streams_) {
    // Keep reading a stream that is past its cap (its bytes are dropped, so the command never
    // blocks on it); read the others only while the agent keeps up.
    bool capped = stream.forwarded >= output_cap_;
    bool collecting = state_ == State::running || state_ == State::lingering;
    bool wanted = collecting && stream.fd.valid() && (capped || outgoing_.size() < send_backlog_max);
    fds.push_back({wanted ? stream.fd.get() : -1, POLLIN, 0});
  }
}

void ExecSession::on_ready(const pollfd* entries, Clock::time_point now) {
  if (state_ == State::done || state_ == State::cancelling) return;
  const pollfd& connection = entries[0];
  if (connection.revents & POLLOUT) {
    send_pending();
    pump_process_output();  // a reader of a process's output has room for more
  }
  if (state_ != State::done && (connection.revents & (POLLIN | closed_events))) {
    if (state_ == State::awaiting_request) {
      read_request();
    } else {
      // Nothing more is expected from the agent: its end closing (or anything it sends) cancels.
      auto got = read_some(connection_.get(), 4096);
      if (got && (got->empty() || state_ != State::answering)) abandon();
    }
  }
  for (std::size_t i = 0; i < 2 && (state_ == State::running || state_ == State::lingering); ++i)
    if (entries[1 + i].fd >= 0 && (entries[1 + i].revents & (POLLIN | closed_events)))
      read_stream(i == 0 ? Stream::stdout_stream : Stream::stderr_stream);
  if (state_ == State::running || state_ == State::lingering) finish_if_drained(now);
  if (state_ == State::answering && outgoing_.empty()) {
    connection_.reset();
    state_ = State::done;
  }
}

void ExecSession::read_request() {
  auto got = read_some(connection_.get(), 64 << 10);
  if (!got) return;
  if (got->empty()) return abandon();
  decoder_.feed(*got);
  auto message = decoder_.next();
  if (!message) return answer(Failure{"bad request: " + message.error().message});
  if (!*message) return;
  if (is_file_request(**message)) {
    // A worker process takes the connection over; this session is done with it.
    auto worker = spawn_file_worker(std::move(connection_), **message, decoder_, user_);
    if (!worker) log_error(worker.error().message);
    state_ = State::done;
    return;
  }
  if (auto* relay = std::get_if<RelayOpen>(&**message)) {
    // What followed the request is the start of the agent's stream: the worker passes it on.
    auto worker = relays_->spawn(connection_, *relay, decoder_.unread());
    if (!worker) return answer(Failure{worker.error().message});
    state_ = State::done;
    return;
  }
  if (auto* session = std::get_if<SessionOpen>(&**message)) {
    // Input the agent sent right after the request is the session's: the worker takes it.
    auto worker = sessions_->spawn(connection_, *session, decoder_.unread(), user_);
    if (!worker) return answer(Failure{worker.error().message});
    state_ = State::done;
    return;
  }
  if (auto* request = std::get_if<ExecRequest>(&**message)) return start(*request, Clock::now());
  serve_process_request(**message);
}

void ExecSession::serve_process_request(const Message& message) {
  if (auto* start = std::get_if<ProcessStart>(&message)) {
    std::string shell = find_shell();
    if (shell.empty()) return answer(Failure{"this image has neither bash nor sh"});
    auto started = processes_->start(*start, shell);
    if (!started) return refuse(started.error());
    return answer(*started);
  }
  if (std::holds_alternative<ProcessList>(message)) {
    for (const auto& info : processes_->list()) outgoing_ += encode(info);
    return answer(End{});
  }
  if (auto* input = std::get_if<ProcessStdin>(&message)) {
    auto written = processes_->write_stdin(*input);
    if (!written) return refuse(written.error());
    return answer(End{});
  }
  if (auto* signal = std::get_if<ProcessSignal>(&message)) {
    auto sent = processes_->signal(signal->id, static_cast<int>(signal->signal), Clock::now());
    if (!sent) return refuse(sent.error());
    return answer(End{});
  }
  if (auto* read = std::get_if<ProcessRead>(&message)) return start_reading(*read);
  if (auto* environment = std::get_if<EnvironmentSet>(&message)) {
    // The helper's own environment: every command, process, session and worker forked from now on
    // inherits it (a pooled sandbox's claim).
    for (const auto& entry : environment->env) {
      std::size_t equals = entry.find('=');
      if (::setenv(entry.substr(0, equals).c_str(), entry.c_str() + equals + 1, 1) != 0)
        return answer(Failure{"cannot set " + entry.substr(0, equals) + " in the helper's environment"});
    }
    return answer(End{});
  }
  answer(Failure{"bad request: expected an exec, file, relay, session or background process request"});
}

void ExecSession::refuse(const Error& error) {
  FailureKind kind = error.kind == ErrorKind::not_found  ? FailureKind::not_found
                     : error.kind == ErrorKind::conflict ? FailureKind::refused
                                                         : FailureKind::error;
  answer(Failure{error.message, kind});
}

void ExecSession::start_reading(const ProcessRead& request) {
  auto info = processes_->info(request.id);
  if (!info)
    return answer(Failure{"no background process " + std::to_string(request.id) + " in this sandbox",
                          FailureKind::not_found});
  reading_ = ProcessReading{request.id, request.follow, {}, *info};
  outgoing_ += encode(*info);
  state_ = State::reading;
  deadline_ = Clock::time_point::max();  // the agent decides how long it reads
  pump_process_output();
}

void ExecSession::pump_process_output() {
  if (state_ != State::reading) return;
  bool caught_up = false;
  for (;;) {
    while (outgoing_.size() < send_backlog_max) {
      auto piece = processes_->read(reading_.id, reading_.cursor, output_chunk_max);
      if (!piece) {
        caught_up = true;
        break;
      }
      outgoing_ += encode(*piece);
    }
    send_pending();
    // What is still unsent asks for POLLOUT, which brings us back. A backlog the socket took whole
    // asks for nothing: refill it now, or the reader would wait forever for the rest.
    if (state_ != State::reading || caught_up || !outgoing_.empty()) break;
  }
  if (state_ != State::reading || !caught_up) return;
  if (reading_.follow && !processes_->exited(reading_.id)) return;
  ProcessInfo last = processes_->info(reading_.id).value_or(reading_.last);
  last.stdout_dropped = reading_.cursor.skipped[0];
  last.stderr_dropped = reading_.cursor.skipped[1];
  answer(last);
}

void ExecSession::start(const ExecRequest& request, Clock::time_point now) {
  shell_ = find_shell();
  if (shell_.empty()) return answer(Failure{"this image has neither bash nor sh"});
  auto running = spawn_shell({shell_, request.command, request.cwd, user_});
  if (!running) return answer(Failure{"cannot start the command: " + running.error().message});
  command_ = std::move(*running);
  streams_[0].fd = std::move(command_.stdout_fd);
  streams_[1].fd = std::move(command_.stderr_fd);
  // A streamed exec asks for no cap at all: the agent passes the output on as it comes.
  output_cap_ = request.output_cap;
  deadline_ = now + std::chrono::milliseconds(request.timeout_ms);
  state_ = State::running;
}

void ExecSession::read_stream(Stream which) {
  StreamState& stream = streams_[which == Stream::stdout_stream ? 0 : 1];
  // A few reads per wake-up at most, so one chatty command cannot starve the others.
  for (int round = 0; round < 4 && stream.fd.valid(); ++round) {
    auto got = read_some(stream.fd.get(), output_chunk_max);
    if (!got) return;
    if (got->empty()) {
      stream.fd.reset();
      return;
    }
    std::size_t room = stream.forwarded < output_cap_ ? output_cap_ - stream.forwarded : 0;
    if (got->size() > room) {
      truncated_ = true;
      got->resize(room);
    }
    if (got->empty()) continue;
    stream.forwarded += got->size();
    outgoing_ += encode(Output{which, std::move(*got)});
    send_pending();
    if (outgoing_.size() >= send_backlog_max && stream.forwarded < output_cap_) return;
  }
}

void ExecSession::send_pending() {
  if (outgoing_.empty() || !connection_.valid()) return;
  long sent = send_some(connection_.get(), outgoing_);
  if (sent < 0) return abandon();
  outgoing_.erase(0, static_cast<std::size_t>(sent));
}

void ExecSession::on_exit(int status, Clock::time_point now) {
  if (state_ == State::cancelling) state_ = State::done;
  if (state_ != State::running) return;
  wait_status_ = status;
  state_ = State::lingering;
  deadline_ = now + linger;
  finish_if_drained(now);
}

void ExecSession::finish_if_drained(Clock::time_point now) {
  if (state_ != State::lingering) return;
  bool drained = !streams_[0].fd.valid() && !streams_[1].fd.valid();
  if (!drained && now < deadline_) return;
  // Out of time for background writers: take what is already in the pipes, then answer.
  if (!drained) {
    read_stream(Stream::stdout_stream);
    read_stream(Stream::stderr_stream);
  }
  int status = *wait_status_;
  Exit exit;
  exit.shell = shell_;
  exit.killed = killed_;
  exit.truncated = truncated_;
  if (WIFSIGNALED(status)) {
    exit.exit_code = 128 + WTERMSIG(status);
    exit.signal = signal_name(WTERMSIG(status));
  } else {
    exit.exit_code = WEXITSTATUS(status);
  }
  answer(exit);
}

void ExecSession::answer(Message message) {
  outgoing_ += encode(message);
  state_ = State::answering;
  deadline_ = Clock::now() + answer_timeout;
  send_pending();
  if (state_ == State::answering && outgoing_.empty()) {
    connection_.reset();
    state_ = State::done;
  }
}

void ExecSession::abandon() {
  connection_.reset();
  if (state_ != State::running) {
    // Background jobs of a command that has ended live on, as after an answered exec.
    state_ = State::done;
    return;
  }
  // The agent gave up (or broke the protocol) while the command ran: nothing of it may outlive the request.
  if (!kill_requested_) kill_tree(Clock::now());
  state_ = State::cancelling;
}

void ExecSession::kill_tree(Clock::time_point now) {
  if (!kill_requested_) {
    request_kill_tree(command_.pid);
    kill_requested_ = true;
    deadline_ = now + kill_tree_grace;
    return;
  }
  // The shim did not end in time (stopped by the sandbox's code, say): kill it and what it started.
  force_kill_tree(command_.pid);
  deadline_ = Clock::time_point::max();
}

void ExecSession::on_time(Clock::time_point now) {
  if (state_ == State::reading) return pump_process_output();
  if (now < deadline_) return;
  switch (state_) {
    case State::awaiting_request:
      return abandon();
    case State::running:
      // The timeout: the whole tree goes, background jobs included, wherever they moved.
      killed_ = true;
      return kill_tree(now);
    case State::lingering:
      return finish_if_drained(now);
    case State::answering:
      return abandon();
    case State::cancelling:
      kill_tree(now);
      state_ = State::done;
      return;
    case State::reading:
    case State::done:
      return;
  }
}

Clock::time_point ExecSession::next_deadline() const {
  return state_ == State::done ? Clock::time_point::max() : deadline_;
}

std::vector<UniqueFd> ExecSession::take_leftover_pipes() {
  std::vector<UniqueFd> pipes;
  for (auto& stream : streams_)
    if (stream.fd.valid()) pipes.push_back(std::move(stream.fd));
  return pipes;
}

}  // namespace modbox::helper
