#include "agent/e2b/envd_service.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>

#include "agent/e2b/connect_codec.h"
#include "agent/e2b/envd_internal.h"
#include "common/json_support.h"

namespace modbox::e2b {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using connect::Code;
using connect::ConnectError;

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

/// A PTY's helper session: the Start stream reads it; SendInput, Update and SendSignal write to it.
struct PtySession {
  UniqueFd connection;
  std::mutex write_mutex;
  std::atomic<bool> killed = false;

  bool send(const helper::Message& message) {
    std::lock_guard lock(write_mutex);
    return send_all(connection.get(), helper::encode(message));
  }
  /// Ends the session: the helper kills its processes when the connection closes.
  void end() { ::shutdown(connection.get(), SHUT_RDWR); }
};

EnvdService::~EnvdService() {
  std::lock_guard lock(mutex_);
  for (auto& [key, pty] : ptys_) pty->end();
}

HttpResponse unary_error(const ConnectError& error) {
  return json_response(connect::http_status(error.code), connect::error_json(error));
}

HttpResponse unary_ok(const json& message) {
  return json_response(200, json_support::to_text(message));
}

namespace {

HttpResponse stream_error(const ConnectError& error) {
  HttpResponse response;
  response.content_type = "application/connect+json";
  response.body = connect::end_stream_envelope(error);
  return response;
}

/// A streamed Connect answer: envelopes written as `produce` goes, ending with the end-of-stream
/// envelope that `produce` returns (its error, or none).
using EnvelopeSink = std::function<bool(const json& message)>;
HttpResponse stream_response(
    std::function<std::optional<ConnectError>(const EnvelopeSink& send, const BodyWriter& write)> produce) {
  HttpResponse response;
  response.content_type = "application/connect+json";
  response.stream_chunked = true;
  response.stream = [produce = std::move(produce)](std::uint64_t, std::uint64_t, const BodyWriter& write) {
    bool client_gone = false;
    EnvelopeSink send = [&](const json& message) {
      if (client_gone) return false;
      client_gone = !write(connect::message_envelope(message.dump(-1, ' ', false, json::error_handler_t::replace)));
      return !client_gone;
    };
    auto error = produce(send, write);
    if (client_gone) return false;
    return write(connect::end_stream_envelope(error));
  };
  return response;
}

std::optional<ConnectError> parse_json(const std::string& body, json& out) {
  out = json::parse(body.empty() ? std::string("{}") : body, nullptr, false);
  if (out.is_discarded() || !out.is_object())
    return ConnectError{Code::invalid_argument, "the request message is not a JSON object"};
  return std::nullopt;
}

/// The pid a ProcessSelector names.
std::expected<std::uint32_t, ConnectError> selected_pid(const json& request) {
  auto process = request.find("process");
  if (process == request.end() || !process->is_object())
    return std::unexpected(ConnectError{Code::invalid_argument, "the request names no process"});
  if (auto pid = process->find("pid"); pid != process->end()) {
    if (auto value = connect::read_uint32(*pid)) return *value;
    return std::unexpected(ConnectError{Code::invalid_argument, "process.pid is not a valid pid"});
  }
  if (process->contains("tag"))
    return std::unexpected(ConnectError{Code::not_found, "processes are not tagged here: select them by pid"});
  return std::unexpected(ConnectError{Code::invalid_argument, "the request names no process"});
}

/// How Go's ProcessState.String() and exec.ExitError describe an ending, as envd reports it.
json end_event(int exit_code, const std::string& signal) {
  json end = json::object();
  if (!signal.empty()) {
    int number = helper::signal_number(signal).value_or(0);
    std::string description;
    switch (number) {
      case SIGKILL:
        description = "killed";
        break;
      case SIGTERM:
        description = "terminated";
        break;
      case SIGINT:
        description = "interrupt";
        break;
      case SIGHUP:
        description = "hangup";
        break;
      case SIGQUIT:
        description = "quit";
        break;
      case SIGPIPE:
        description = "broken pipe";
        break;
      default:
        description = signal;
    }
    end["exitCode"] = -1;
    end["exited"] = false;
    end["status"] = "signal: " + description;
    end["error"] = "signal: " + description;
  } else {
    if (exit_code != 0) end["exitCode"] = exit_code;
    end["exited"] = true;
    end["status"] = "exit status " + std::to_string(exit_code);
    if (exit_code != 0) end["error"] = "exit status " + std::to_string(exit_code);
  }
  return json{{"event", {{"end", end}}}};
}

json data_event(const char* stream, std::string_view bytes) {
  return json{{"event", {{"data", {{stream, base64_encode(bytes)}}}}}};
}
json keepalive_event() {
  return json{{"event", {{"keepalive", json::object()}}}};
}

constexpr std::chrono::milliseconds keepalive_max{15'000};

/// The stream's deadlines, from its headers.
struct StreamTiming {
  /// The front closes a streamed answer that stays quiet for its stall timeout (30 s): keepalives
  /// come at least every 15 s, however long an interval the client asks for.
  std::chrono::milliseconds keepalive{keepalive_max};
  std::optional<Clock::time_point> deadline;
};
StreamTiming stream_timing(const HttpRequest& request) {
  StreamTiming timing;
  if (const std::string* interval = request.header("keepalive-ping-interval")) {
    if (auto seconds = connect::read_int64(json(*interval)); seconds && *seconds > 0)
      timing.keepalive = std::min<std::chrono::milliseconds>(std::chrono::seconds(*seconds), keepalive_max);
  }
  if (const std::string* timeout = request.header("connect-timeout-ms")) {
    if (auto ms = connect::read_int64(json(*timeout)); ms && *ms > 0)
      timing.deadline = Clock::now() + std::chrono::milliseconds(std::min<std::int64_t>(*ms, 30LL * 24 * 3600 * 1000));
  }
  return timing;
}

ConnectError gone_error(const Error& error) {
  return ConnectError{Code::unavailable, "the sandbox stopped answering: " + error.message};
}

/// A command line for `shell -c`: the E2B request's cmd and args, each quoted.
std::string command_line(const json& process) {
  std::string line = "exec " + shell_quote(process.value("cmd", std::string()));
  if (auto args = process.find("args"); args != process.end() && args->is_array())
    for (const auto& arg : *args)
      if (arg.is_string()) line += " " + shell_quote(arg.get<std::string>());
  return line;
}

std::vector<std::string> environment(const json& process) {
  std::vector<std::string> entries;
  if (auto envs = process.find("envs"); envs != process.end() && envs->is_object())
    for (const auto& [name, value] : envs->items())
      if (value.is_string()) entries.push_back(name + "=" + value.get<std::string>());
  return entries;
}

/// Reads a session's frames off its connection with a deadline per read.
class SessionReader {
 public:
  explicit SessionReader(int fd) : fd_(fd) {}
  /// The next frame; nullopt when none came within `wait`, or at the end (ended() then).
  Result<std::optional<helper::Message>> next(std::chrono::milliseconds wait) {
    for (;;) {
      auto message = decoder_.next();
      if (!message) return std::unexpected(message.error());
      if (*message) return message;
      if (ended_) return std::optional<helper::Message>();
      pollfd entry{fd_, POLLIN, 0};
      int ready = ::poll(&entry, 1, static_cast<int>(wait.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::optional<helper::Message>();
      char buffer[64 << 10];
      ssize_t got = ::recv(fd_, buffer, sizeof buffer, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        ended_ = true;
        continue;
      }
      decoder_.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
    }
  }
  bool ended() const { return ended_; }

 private:
  int fd_;
  helper::FrameDecoder decoder_;
  bool ended_ = false;
};

/// Output bytes of each stream that a stream leaves out (Connect: what came before it attached).
struct SkipCounts {
  std::uint64_t stdout_bytes = 0;
  std::uint64_t stderr_bytes = 0;
};
/// Sends a background process's output as data events, keepalives while it is quiet, and its end
/// event; `kill` at the stream's deadline. An error when the helper went away.
std::optional<ConnectError> follow_process(SandboxHelpers::ProcessOutput& output, SkipCounts skip,
                                           const StreamTiming& timing, const EnvelopeSink& send,
                                           const BodyWriter& write, const std::function<void()>& kill);
/// The same for a PTY's session, read off its connection.
std::optional<ConnectError> follow_pty(PtySession& pty, const StreamTiming& timing, const EnvelopeSink& send,
                                       const BodyWriter& write);

}  // namespace

bool EnvdService::is_long(const HttpRequest& request) {
  return request.path == "/files" || request.path.ends_with("/Start") || request.path.ends_with("/Connect") ||
         request.path.ends_with("/WatchDir");
}

void EnvdService::close_sandbox(const std::string& sandbox_id) {
  std::lock_guard lock(mutex_);
  for (auto it = ptys_.lower_bound({sandbox_id, 0}); it != ptys_.end() && it->first.first == sandbox_id;) {
    it->second->end();
    it = ptys_.erase(it);
  }
  for (auto it = configs_.lower_bound({sandbox_id, 0}); it != configs_.end() && it->first.first == sandbox_id;)
    it = configs_.erase(it);
  for (auto it = watchers_.lower_bound({sandbox_id, ""}); it != watchers_.end() && it->first.first == sandbox_id;)
    it = watchers_.erase(it);
}

std::shared_ptr<PtySession> EnvdService::find_pty(const std::string& sandbox_id, std::uint32_t pid) {
  std::lock_guard lock(mutex_);
  auto it = ptys_.find({sandbox_id, pid});
  return it == ptys_.end() ? nullptr : it->second;
}

HttpResponse EnvdService::serve(const Sandbox& sandbox, HttpRequest& request) {
  if (request.path == "/health") {
    if (request.method != "GET") return refuse_method(request, "GET");
    HttpResponse response;
    response.status = 204;
    response.content_type.clear();
    return response;
  }
  if (request.path == "/files") {
    if (request.method == "GET") return read_file(sandbox, request);
    if (request.method == "POST") return write_files(sandbox, request);
    return refuse_method(request, "GET, POST");
  }
  std::string_view path = request.path;
  if (path.starts_with('/')) path.remove_prefix(1);
  std::size_t slash = path.find('/');
  if (slash != std::string_view::npos &&
      (path.starts_with("process.Process/") || path.starts_with("filesystem.Filesystem/"))) {
    if (request.method != "POST") return refuse_method(request, "POST");
    return rpc(sandbox, path.substr(0, slash), path.substr(slash + 1), request);
  }
  return json_response(404, json{{"code", 404}, {"message", "envd has no route " + request.path}}.dump());
}

HttpResponse EnvdService::rpc(const Sandbox& sandbox, std::string_view service, std::string_view method,
                              HttpRequest& request) {
  bool streaming = (service == "process.Process" && (method == "Start" || method == "Connect")) ||
                   (service == "filesystem.Filesystem" && method == "WatchDir");
  std::string content_type = request.header("content-type") ? *request.header("content-type") : "";
  if (auto semicolon = content_type.find(';'); semicolon != std::string::npos) content_type.resize(semicolon);
  if (streaming) {
    if (content_type != "application/connect+json")
      return unary_error(
          {Code::invalid_argument, std::string(method) + " is a server stream: send application/connect+json"});
    auto message = connect::single_request_message(request.body);
    if (!message) return stream_error(message.error());
    if (method == "Start") return start(sandbox, *message, request);
    if (method == "Connect") return attach(sandbox, *message, request);
    return watch_dir(sandbox, *message, request);
  }
  if (content_type != "application/json")
    return unary_error({Code::invalid_argument, "send the message as application/json (Connect's JSON codec)"});
  if (request.body.size() > connect::envelope_payload_max)
    return unary_error({Code::resource_exhausted, "the message is larger than 4 MiB"});
  if (service == "process.Process") return process_rpc(sandbox, method, request.body, request);
  return filesystem_rpc(sandbox, method, request.body);
}

HttpResponse EnvdService::process_rpc(const Sandbox& sandbox, std::string_view method, const std::string& body,
                                      const HttpRequest&) {
  json message;
  if (auto error = parse_json(body, message)) return unary_error(*error);
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return unary_error(connect::connect_error_for(helper.error()));

  if (method == "List") {
    auto listed = helper->client.list_processes(helper->socket);
    if (!listed) return unary_error(connect::connect_error_for(listed.error()));
    json processes = json::array();
    std::lock_guard lock(mutex_);
    auto config_of = [&](std::uint32_t pid, const std::string& fallback) {
      auto it = configs_.find({sandbox.id, pid});
      if (it != configs_.end()) return json::parse(it->second);
      return json{{"cmd", "/bin/sh"}, {"args", {"-c", fallback}}, {"envs", json::object()}};
    };
    for (const auto& info : *listed) {
      if (info.state != helper::ProcessState::running) {
        configs_.erase({sandbox.id, info.id});
        continue;
      }
      processes.push_back({{"pid", info.id}, {"config", config_of(info.id, info.command)}});
    }
    for (auto it = ptys_.lower_bound({sandbox.id, 0}); it != ptys_.end() && it->first.first == sandbox.id; ++it)
      processes.push_back({{"pid", it->first.second}, {"config", config_of(it->first.second, "")}});
    return unary_ok({{"processes", processes}});
  }

  auto pid = selected_pid(message);
  if (!pid) return unary_error(pid.error());
  auto pty = find_pty(sandbox.id, *pid);
  auto not_found = [&] {
    return unary_error({Code::not_found, "process with pid " + std::to_string(*pid) + " not found"});
  };

  if (method == "SendInput") {
    const json input = message.value("input", json::object());
    std::optional<std::string> bytes;
    if (input.contains("stdin") && input["stdin"].is_string())
      bytes = connect::decode_bytes(input["stdin"].get<std::string>());
    else if (input.contains("pty") && input["pty"].is_string())
      bytes = connect::decode_bytes(input["pty"].get<std::string>());
    else
      return unary_error({Code::invalid_argument, "input holds neither stdin nor pty bytes"});
    if (!bytes) return unary_error({Code::invalid_argument, "input is not valid base64"});
    if (pty) return pty->send(helper::Data{*bytes}) ? unary_ok(json::object()) : not_found();
    auto written = helper->client.write_process_stdin(helper->socket, {*pid, *bytes, false});
    if (!written) return unary_error(connect::connect_error_for(written.error()));
    return unary_ok(json::object());
  }
  if (method == "CloseStdin") {
    if (pty) return pty->send(helper::End{}) ? unary_ok(json::object()) : not_found();
    auto closed = helper->client.write_process_stdin(helper->socket, {*pid, "", true});
    if (!closed) return unary_error(connect::connect_error_for(closed.error()));
    return unary_ok(json::object());
  }
  if (method == "SendSignal") {
    int signal = 0;
    const json& value = message.value("signal", json());
    if (value == "SIGNAL_SIGKILL" || value == 9)
      signal = SIGKILL;
    else if (value == "SIGNAL_SIGTERM" || value == 15)
      signal = SIGTERM;
    else
      return unary_error({Code::invalid_argument, "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM"});
    if (pty) {
      if (signal == SIGKILL) {
        pty->killed = true;
        pty->end();
        return unary_ok(json::object());
      }
      return pty->send(helper::SessionSignal{signal}) ? unary_ok(json::object()) : not_found();
    }
    auto sent = helper->client.signal_process(helper->socket, {*pid, static_cast<std::uint32_t>(signal)});
    if (!sent) {
      if (sent.error().kind == ErrorKind::conflict) return not_found();  // it has exited already
      return unary_error(connect::connect_error_for(sent.error()));
    }
    return unary_ok(json::object());
  }
  if (method == "Update") {
    if (!pty) return unary_error({Code::failed_precondition, "process " + std::to_string(*pid) + " has no PTY"});
    const json size = message.value("pty", json::object()).value("size", json::object());
    auto cols = connect::read_uint32(size.value("cols", json(0)));
    auto rows = connect::read_uint32(size.value("rows", json(0)));
    if (!cols || !rows || !helper::is_window_size(*cols, *rows))
      return unary_error({Code::invalid_argument, "pty.size needs cols and rows of 1 to 1000"});
    if (!pty->send(helper::SessionResize{static_cast<std::uint16_t>(*cols), static_cast<std::uint16_t>(*rows)}))
      return not_found();
    return unary_ok(json::object());
  }
  if (method == "StreamInput")
    return unary_error({Code::unimplemented, "StreamInput needs a streamed request body: use SendInput"});
  return unary_error({Code::unimplemented, "process.Process has no method " + std::string(method)});
}

HttpResponse EnvdService::start(const Sandbox& sandbox, const std::string& body, const HttpRequest& request) {
  json message;
  if (auto error = parse_json(body, message)) return stream_error(*error);
  const json process = message.value("process", json::object());
  if (!process.is_object() || !process.contains("cmd") || !process["cmd"].is_string() ||
      process["cmd"].get<std::string>().empty())
    return stream_error({Code::invalid_argument, "process.cmd is required"});
  if (message.contains("pty") && message["pty"].is_object()) return start_pty(sandbox, body, request);

  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return stream_error(connect::connect_error_for(helper.error()));
  std::string cwd = process.value("cwd", std::string());
  helper::ProcessStart start_request{cwd.empty() ? home_prefix() + command_line(process) : command_line(process),
                                     cwd.empty() ? "/" : cwd, environment(process)};
  auto started = helper->client.start_process(helper->socket, start_request);
  if (!started) {
    Code code = started.error().kind == ErrorKind::unavailable ? Code::unavailable : Code::invalid_argument;
    return stream_error({code, started.error().message});
  }
  std::uint32_t pid = started->id;
  {
    std::lock_guard lock(mutex_);
    configs_[{sandbox.id, pid}] = json{
        {"cmd", process["cmd"]},
        {"args", process.value("args", json::array())},
        {"envs", process.value("envs", json::object())},
        {"cwd", cwd}}.dump();
  }
  if (!message.value("stdin", false)) helper->client.write_process_stdin(helper->socket, {pid, "", true});
  auto opened = helper->client.read_process(helper->socket, {pid, true});
  if (!opened) return stream_error(gone_error(opened.error()));
  std::shared_ptr<SandboxHelpers::ProcessOutput> output = std::move(*opened);
  StreamTiming timing = stream_timing(request);
  auto socket = helper->socket;
  SandboxHelpers* client = &helper->client;
  return stream_response([=](const EnvelopeSink& send, const BodyWriter& write) -> std::optional<ConnectError> {
    if (!send({{"event", {{"start", {{"pid", pid}}}}}})) return std::nullopt;
    return follow_process(*output, {}, timing, send, write, [&] { client->signal_process(socket, {pid, SIGKILL}); });
  });
}

HttpResponse EnvdService::attach(const Sandbox& sandbox, const std::string& body, const HttpRequest& request) {
  json message;
  if (auto error = parse_json(body, message)) return stream_error(*error);
  auto pid = selected_pid(message);
  if (!pid) return stream_error(pid.error());
  if (find_pty(sandbox.id, *pid))
    return stream_error({Code::failed_precondition, "a PTY is read by the stream that started it"});
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return stream_error(connect::connect_error_for(helper.error()));
  auto opened = helper->client.read_process(helper->socket, {*pid, true});
  if (!opened) {
    if (opened.error().kind == ErrorKind::not_found)
      return stream_error({Code::not_found, "process with pid " + std::to_string(*pid) + " not found"});
    return stream_error(gone_error(opened.error()));
  }
  std::shared_ptr<SandboxHelpers::ProcessOutput> output = std::move(*opened);
  // Connect streams from the attach point on: what the helper kept from before is skipped.
  const helper::ProcessInfo& info = output->info();
  SkipCounts skip{info.stdout_bytes - std::min(info.stdout_bytes, info.stdout_dropped),
                  info.stderr_bytes - std::min(info.stderr_bytes, info.stderr_dropped)};
  StreamTiming timing = stream_timing(request);
  timing.deadline.reset();  // envd's deadline belongs to the Start that launched the command
  std::uint32_t selected = *pid;
  return stream_response([=](const EnvelopeSink& send, const BodyWriter& write) -> std::optional<ConnectError> {
    if (!send({{"event", {{"start", {{"pid", selected}}}}}})) return std::nullopt;
    return follow_process(*output, skip, timing, send, write, [] {});
  });
}

namespace {

std::optional<ConnectError> follow_process(SandboxHelpers::ProcessOutput& output, SkipCounts skip,
                                           const StreamTiming& timing, const EnvelopeSink& send,
                                           const BodyWriter& write, const std::function<void()>& kill) {
  auto last_sent = Clock::now();
  bool killed = false;
  for (;;) {
    auto step = output.next(client_check_interval);
    if (!step) return gone_error(step.error());
    if (step->output) {
      bool is_stdout = step->output->stream == helper::Stream::stdout_stream;
      std::uint64_t& to_skip = is_stdout ? skip.stdout_bytes : skip.stderr_bytes;
      std::string_view data = step->output->data;
      std::size_t dropped = static_cast<std::size_t>(std::min<std::uint64_t>(to_skip, data.size()));
      to_skip -= dropped;
      data.remove_prefix(dropped);
      if (!data.empty()) {
        if (!send(data_event(is_stdout ? "stdout" : "stderr", data))) return std::nullopt;
        last_sent = Clock::now();
      }
    } else if (step->end) {
      const helper::ProcessInfo& end = *step->end;
      if (end.state != helper::ProcessState::exited) return std::nullopt;
      send(end_event(end.exit_code, end.signal));
      return std::nullopt;
    } else {
      if (!write("")) return std::nullopt;  // the client left: the command runs on, as envd's does
      auto now = Clock::now();
      if (timing.deadline && now >= *timing.deadline && !killed) {
        killed = true;
        kill();
      }
      if (now - last_sent >= timing.keepalive) {
        if (!send(keepalive_event())) return std::nullopt;
        last_sent = now;
      }
    }
  }
}

}  // namespace

HttpResponse EnvdService::start_pty(const Sandbox& sandbox, const std::string& body, const HttpRequest& request) {
  json message = json::parse(body);
  const json process = message["process"];
  const json size = message["pty"].value("size", json::object());
  auto cols = connect::read_uint32(size.value("cols", json(80)));
  auto rows = connect::read_uint32(size.value("rows", json(24)));
  if (!cols || !rows || !helper::is_window_size(*cols, *rows))
    return stream_error({Code::invalid_argument, "pty.size needs cols and rows of 1 to 1000"});
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return stream_error(connect::connect_error_for(helper.error()));
  std::string cwd = process.value("cwd", std::string());
  helper::SessionOpen open{true,
                           static_cast<std::uint16_t>(*cols),
                           static_cast<std::uint16_t>(*rows),
                           cwd.empty() ? home_prefix() + command_line(process) : command_line(process),
                           cwd,
                           environment(process)};
  auto session = helper->client.open_session(helper->socket, open);
  if (!session) {
    Code code = session.error().kind == ErrorKind::unavailable ? Code::unavailable : Code::invalid_argument;
    return stream_error({code, session.error().message});
  }
  auto pty = std::make_shared<PtySession>();
  pty->connection = std::move(session->connection);
  std::uint32_t pid = session->pid;
  {
    std::lock_guard lock(mutex_);
    ptys_[{sandbox.id, pid}] = pty;
    configs_[{sandbox.id, pid}] = json{
        {"cmd", process["cmd"]},
        {"args", process.value("args", json::array())},
        {"envs", process.value("envs", json::object())},
        {"cwd", cwd}}.dump();
  }
  StreamTiming timing = stream_timing(request);
  std::string sandbox_id = sandbox.id;
  return stream_response([=, this](const EnvelopeSink& send, const BodyWriter& write) -> std::optional<ConnectError> {
    auto forget = [&] {
      std::lock_guard lock(mutex_);
      auto it = ptys_.find({sandbox_id, pid});
      if (it != ptys_.end() && it->second == pty) ptys_.erase(it);
      configs_.erase({sandbox_id, pid});
      pty->end();
    };
    std::optional<ConnectError> result;
    if (send({{"event", {{"start", {{"pid", pid}}}}}})) result = follow_pty(*pty, timing, send, write);
    forget();
    return result;
  });
}

namespace {

std::optional<ConnectError> follow_pty(PtySession& pty, const StreamTiming& timing, const EnvelopeSink& send,
                                       const BodyWriter& write) {
  SessionReader reader(pty.connection.get());
  auto last_sent = Clock::now();
  for (;;) {
    auto frame = reader.next(client_check_interval);
    if (!frame) return ConnectError{Code::internal, "the sandbox's helper broke the session protocol"};
    if (*frame) {
      if (auto* output = std::get_if<helper::Output>(&**frame)) {
        if (!send(data_event("pty", output->data))) return std::nullopt;
        last_sent = Clock::now();
      } else if (auto* exit = std::get_if<helper::Exit>(&**frame)) {
        send(end_event(exit->exit_code, exit->signal));
        return std::nullopt;
      }
      continue;
    }
    if (reader.ended()) {
      if (pty.killed) {
        send(end_event(128 + SIGKILL, "SIGKILL"));
        return std::nullopt;
      }
      return ConnectError{Code::unavailable, "the sandbox's terminal session ended without an exit status"};
    }
    if (!write("")) return std::nullopt;
    auto now = Clock::now();
    if (timing.deadline && now >= *timing.deadline) {
      pty.killed = true;
      pty.end();
    }
    if (now - last_sent >= timing.keepalive) {
      if (!send(keepalive_event())) return std::nullopt;
      last_sent = now;
    }
  }
}

}  // namespace

namespace {

const char* event_type(helper::WatchKind kind) {
  switch (kind) {
    case helper::WatchKind::create:
      return "EVENT_TYPE_CREATE";
    case helper::WatchKind::write:
      return "EVENT_TYPE_WRITE";
    case helper::WatchKind::remove:
      return "EVENT_TYPE_REMOVE";
    case helper::WatchKind::rename:
      return "EVENT_TYPE_RENAME";
    case helper::WatchKind::chmod:
      return "EVENT_TYPE_CHMOD";
    case helper::WatchKind::overflow:
      break;
  }
  return nullptr;
}

std::expected<std::shared_ptr<SandboxHelpers::FileWatch>, ConnectError> open_watch(SandboxService& sandboxes,
                                                                                   const Sandbox& sandbox,
                                                                                   const std::string& path,
                                                                                   bool recursive) {
  auto helper = sandboxes.helper_access(sandbox);
  if (!helper) return std::unexpected(connect::connect_error_for(helper.error()));
  auto opened = helper->client.open_watch(helper->socket, {path, recursive});
  if (!opened) {
    Code code =
        opened.error().kind == ErrorKind::bad_request ? Code::invalid_argument : connect::code_for(opened.error().kind);
    return std::unexpected(ConnectError{code, opened.error().message});
  }
  return std::shared_ptr<SandboxHelpers::FileWatch>(std::move(*opened));
}

}  // namespace

HttpResponse EnvdService::watch_dir(const Sandbox& sandbox, const std::string& body, const HttpRequest& request) {
  json message;
  if (auto error = parse_json(body, message)) return stream_error(*error);
  if (!message.contains("path") || !message["path"].is_string())
    return stream_error({Code::invalid_argument, "path is required"});
  auto path = absolute_path(sandbox, message["path"].get<std::string>());
  if (!path) return stream_error(connect::connect_error_for(path.error()));
  auto watch = open_watch(sandboxes_, sandbox, *path, message.value("recursive", false));
  if (!watch) return stream_error(watch.error());
  StreamTiming timing = stream_timing(request);
  std::shared_ptr<SandboxHelpers::FileWatch> watcher = *watch;
  return stream_response([=](const EnvelopeSink& send, const BodyWriter& write) -> std::optional<ConnectError> {
    if (!send({{"start", json::object()}})) return std::nullopt;
    auto last_sent = Clock::now();
    for (;;) {
      auto event = watcher->next(client_check_interval);
      if (!event) return gone_error(event.error());
      auto now = Clock::now();
      if (*event) {
        const char* type = event_type((*event)->kind);
        if (type == nullptr) continue;  // an overflow: envd has no event for lost changes
        if (!send({{"filesystem", {{"name", (*event)->name}, {"type", type}}}})) return std::nullopt;
        last_sent = now;
        continue;
      }
      if (!write("")) return std::nullopt;
      if (timing.deadline && now >= *timing.deadline) return std::nullopt;  // the watch's time is up: a clean end
      if (now - last_sent >= timing.keepalive) {
        if (!send({{"keepalive", json::object()}})) return std::nullopt;
        last_sent = now;
      }
    }
  });
}

HttpResponse EnvdService::watcher_rpc(const Sandbox& sandbox, std::string_view method, const std::string& body) {
  constexpr std::size_t watchers_max = 64;
  constexpr std::size_t events_per_call_max = 4096;
  json message;
  if (auto error = parse_json(body, message)) return unary_error(*error);
  if (method == "CreateWatcher") {
    if (!message.contains("path") || !message["path"].is_string())
      return unary_error({Code::invalid_argument, "path is required"});
    auto path = absolute_path(sandbox, message["path"].get<std::string>());
    if (!path) return unary_error(connect::connect_error_for(path.error()));
    {
      std::lock_guard lock(mutex_);
      // Watchers of sandboxes that ended go here: their helper is gone, and nobody removes them.
      for (auto it = watchers_.begin(); it != watchers_.end();)
        it = sandboxes_.activity(it->first.first) == nullptr ? watchers_.erase(it) : std::next(it);
      std::size_t open = 0;
      for (auto it = watchers_.lower_bound({sandbox.id, ""}); it != watchers_.end() && it->first.first == sandbox.id;
           ++it)
        ++open;
      if (open >= watchers_max)
        return unary_error({Code::resource_exhausted, "this sandbox has 64 watchers already: remove one first"});
    }
    auto watch = open_watch(sandboxes_, sandbox, *path, message.value("recursive", false));
    if (!watch) return unary_error(watch.error());
    std::lock_guard lock(mutex_);
    std::string id = "w" + std::to_string(next_watcher_++);
    watchers_[{sandbox.id, id}] = *watch;
    return unary_ok({{"watcherId", id}});
  }
  std::string id = message.value("watcherId", std::string());
  std::shared_ptr<SandboxHelpers::FileWatch> watcher;
  {
    std::lock_guard lock(mutex_);
    auto it = watchers_.find({sandbox.id, id});
    if (it == watchers_.end()) return unary_error({Code::not_found, "watcher '" + id.substr(0, 64) + "' not found"});
    watcher = it->second;
    if (method == "RemoveWatcher") {
      watchers_.erase(it);
      return unary_ok(json::object());
    }
  }
  json events = json::array();
  while (events.size() < events_per_call_max) {
    auto event = watcher->next(std::chrono::milliseconds(0));
    if (!event) return unary_error(gone_error(event.error()));
    if (!*event) break;
    if (const char* type = event_type((*event)->kind)) events.push_back({{"name", (*event)->name}, {"type", type}});
  }
  return unary_ok({{"events", events}});
}

}  // namespace modbox::e2b
