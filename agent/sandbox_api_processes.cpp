// The sandbox URL's background processes, /modbox/api/processes: each route decodes its request,
// asks the sandbox's helper (agent/helper_client.h), and maps the answer; the helper keeps the
// processes (agent/helper/process_table.h), so they outlive the request, the client and the agent.

#include <algorithm>
#include <charconv>
#include <limits>

#include "agent/sandbox_api.h"
#include "common/body_reader.h"
#include "common/output_events.h"
#include "common/process_models.h"

namespace modbox {

namespace {

/// A process's id from the URL: 1 to 2^32-1, in decimal.
std::optional<std::uint32_t> process_id(std::string_view text) {
  std::uint32_t id = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (error != std::errc() || end != text.data() + text.size() || id == 0 || text.front() == '0') return std::nullopt;
  return id;
}

HttpResponse unknown_process(std::string_view id) {
  return error_response(Error{ErrorKind::not_found,
                              "no background process '" + std::string(id.substr(0, 40)) +
                                  "' in this sandbox: GET /modbox/api/processes lists them",
                              {}});
}

TimePoint from_epoch_ms(std::int64_t ms) {
  // The sandbox's clock: bounded, so that no time it reports overflows ours.
  constexpr std::int64_t max_ms = 9'000'000'000'000;  // 2255-03-14
  return TimePoint(std::chrono::milliseconds(std::clamp<std::int64_t>(ms, 0, max_ms)));
}

BackgroundProcess background_process(const helper::ProcessInfo& info) {
  BackgroundProcess process;
  process.id = info.id;
  process.command = info.command;
  process.cwd = info.cwd;
  process.started_at = from_epoch_ms(info.started_ms);
  process.stdin_open = info.stdin_open;
  process.stdout_bytes = info.stdout_bytes;
  process.stderr_bytes = info.stderr_bytes;
  if (info.state == helper::ProcessState::exited) {
    process.state = ProcessState::exited;
    process.exit_code = info.exit_code;
    if (!info.signal.empty()) process.signal = info.signal;
    process.ended_at = from_epoch_ms(info.ended_ms);
  }
  return process;
}

bool missed_output(const helper::ProcessInfo& info) {
  return info.stdout_dropped > 0 || info.stderr_dropped > 0;
}

/// Writes a read's events: the output, then `exit` (the process has exited) or `end` (it runs on,
/// and the read did not follow it), or `error`.
bool write_process_events(SandboxHelpers::ProcessOutput& output, const BodyWriter& write) {
  OutputEventWriter events;
  for (;;) {
    auto step = output.next(client_check_interval);
    if (!step) return write(events.flush() + event_text("error", error_event_data(step.error().message)));
    if (step->output) {
      if (!write(events.add(output_stream(step->output->stream), step->output->data))) return false;
    } else if (step->end) {
      BackgroundProcess process = background_process(*step->end);
      const char* name = process.state == ProcessState::exited ? "exit" : "end";
      ProcessReadEnd end{std::move(process), missed_output(*step->end)};
      return write(events.flush() + event_text(name, process_read_end_to_json(end)));
    } else if (!write("")) {
      return false;  // the client left; the process runs on
    }
  }
}

/// A whole read, for the JSON answer: what is kept is sent at once, so this takes no longer than
/// the helper takes to send it.
Result<ProcessOutputAnswer> collect_output(SandboxHelpers::ProcessOutput& output) {
  ProcessOutputAnswer answer;
  for (;;) {
    auto step = output.next(std::chrono::seconds(1));
    if (!step) return std::unexpected(step.error());
    if (step->output) {
      bool is_stdout = step->output->stream == helper::Stream::stdout_stream;
      (is_stdout ? answer.stdout_text : answer.stderr_text) += step->output->data;
    } else if (step->end) {
      answer.process = background_process(*step->end);
      answer.truncated = missed_output(*step->end);
      return answer;
    }
  }
}

}  // namespace

HttpResponse SandboxApi::processes(const Sandbox& sandbox, HttpRequest& request) {
  std::string_view rest = std::string_view(request.path).substr(processes_path.size());
  if (rest.empty() || rest == "/") {
    if (request.method == "POST") return start_process(sandbox, request);
    if (request.method == "GET") return list_processes(sandbox);
    return refuse_method(request, "GET, POST");
  }
  rest.remove_prefix(1);
  std::size_t slash = rest.find('/');
  std::string_view id_text = rest.substr(0, slash);
  std::string_view action = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  auto id = process_id(id_text);
  if (!id) return unknown_process(id_text);
  if (action.empty()) return request.method == "GET" ? show_process(sandbox, *id) : refuse_method(request, "GET");
  if (action == "output")
    return request.method == "GET" ? process_output(sandbox, *id, request) : refuse_method(request, "GET");
  if (action == "stdin")
    return request.method == "POST" ? process_stdin(sandbox, *id, request) : refuse_method(request, "POST");
  if (action == "signal")
    return request.method == "POST" ? process_signal(sandbox, *id, request) : refuse_method(request, "POST");
  return error_response(Error{ErrorKind::not_found,
                              "no route " + request.method + " " + request.path +
                                  ": a process has /output, /stdin and /signal",
                              {}});
}

HttpResponse SandboxApi::start_process(const Sandbox& sandbox, const HttpRequest& request) {
  auto parsed = parse_process_start_request(request.body);
  if (!parsed) return error_response(parsed.error());
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  helper::ProcessStart start{parsed->command, parsed->cwd, {}};
  for (const auto& [name, value] : parsed->env) start.env.push_back(name + "=" + value);
  auto started = helper->client.start_process(helper->socket, start);
  if (!started) return error_response(started.error());
  HttpResponse response = json_response(201, background_process_to_json(background_process(*started)));
  response.headers["Location"] = std::string(processes_path) + "/" + std::to_string(started->id);
  return response;
}

HttpResponse SandboxApi::list_processes(const Sandbox& sandbox) {
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto listed = helper->client.list_processes(helper->socket);
  if (!listed) return error_response(listed.error());
  std::vector<BackgroundProcess> processes;
  for (const auto& info : *listed) processes.push_back(background_process(info));
  return json_response(200, background_processes_to_json(processes));
}

HttpResponse SandboxApi::show_process(const Sandbox& sandbox, std::uint32_t id) {
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto listed = helper->client.list_processes(helper->socket);
  if (!listed) return error_response(listed.error());
  auto found = std::ranges::find_if(*listed, [id](const helper::ProcessInfo& info) { return info.id == id; });
  if (found == listed->end()) return unknown_process(std::to_string(id));
  return json_response(200, background_process_to_json(background_process(*found)));
}

HttpResponse SandboxApi::process_output(const Sandbox& sandbox, std::uint32_t id, const HttpRequest& request) {
  bool follow = false;
  if (const std::string* value = request.query_value("follow")) {
    auto parsed = parse_query_bool(*value);
    if (!parsed)
      return error_response(Error{ErrorKind::validation,
                                  "invalid query",
                                  {{{"query", "follow"}, "Input should be a valid boolean", "bool_parsing"}}});
    follow = *parsed;
  }
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto opened = helper->client.read_process(helper->socket, {id, follow});
  if (!opened) return error_response(opened.error());
  std::shared_ptr<SandboxHelpers::ProcessOutput> output = std::move(*opened);
  if (follow || wants_event_stream(request))
    return event_stream_response([output](const BodyWriter& write) { return write_process_events(*output, write); });
  auto answer = collect_output(*output);
  if (!answer) return error_response(answer.error());
  return json_response(200, process_output_answer_to_json(*answer));
}

HttpResponse SandboxApi::process_stdin(const Sandbox& sandbox, std::uint32_t id, const HttpRequest& request) {
  auto parsed = parse_process_stdin_request(request.body);
  if (!parsed) return error_response(parsed.error());
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto written = helper->client.write_process_stdin(helper->socket, {id, parsed->data, parsed->close});
  if (!written) return error_response(written.error());
  return json_response(200, process_stdin_answer_to_json(id, parsed->data.size(), parsed->close));
}

HttpResponse SandboxApi::process_signal(const Sandbox& sandbox, std::uint32_t id, const HttpRequest& request) {
  auto parsed = parse_process_signal_request(request.body);
  if (!parsed) return error_response(parsed.error());
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto sent = helper->client.signal_process(helper->socket, {id, static_cast<std::uint32_t>(parsed->signal)});
  if (!sent) return error_response(sent.error());
  return json_response(200, process_signal_answer_to_json(id, helper::signal_name(parsed->signal)));
}

}  // namespace modbox
