#include "common/process_models.h"

#include <cctype>

#include "common/body_reader.h"
#include "common/encoding.h"
#include "common/helper_protocol.h"
#include "common/json_support.h"

namespace modbox {

using json_support::decode;
using json_support::decode_list;
using json_support::json;
using json_support::optional_field;
using json_support::optional_json;

namespace {

constexpr std::string_view signal_help =
    "Value error, not a signal: give a name such as SIGTERM, TERM or KILL, or a number from 1 to 64";

json process_object(const BackgroundProcess& process) {
  return json{{"id", process.id},
              {"command", process.command},
              {"cwd", process.cwd},
              {"state", to_string(process.state)},
              {"exit_code", optional_json(process.exit_code)},
              {"signal", optional_json(process.signal)},
              {"started_at", format_timestamp(process.started_at)},
              {"ended_at", process.ended_at ? json(format_timestamp(*process.ended_at)) : json(nullptr)},
              {"stdin_open", process.stdin_open},
              {"stdout_bytes", process.stdout_bytes},
              {"stderr_bytes", process.stderr_bytes}};
}

std::string dump(const json& value) {
  // Commands and output are the sandbox's bytes: invalid UTF-8 is replaced rather than failing the dump.
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

TimePoint timestamp_field(const json& object, const char* name) {
  auto parsed = parse_timestamp(object.at(name).get<std::string>());
  if (!parsed) throw std::invalid_argument(std::string("malformed ") + name);
  return *parsed;
}

BackgroundProcess process_from_object(const json& object) {
  BackgroundProcess process;
  process.id = object.at("id").get<std::uint32_t>();
  process.command = object.at("command").get<std::string>();
  process.cwd = object.at("cwd").get<std::string>();
  std::string state = object.at("state").get<std::string>();
  if (state != "running" && state != "exited") throw std::invalid_argument("unknown state " + state);
  process.state = state == "running" ? ProcessState::running : ProcessState::exited;
  process.exit_code = optional_field<int>(object, "exit_code");
  process.signal = optional_field<std::string>(object, "signal");
  process.started_at = timestamp_field(object, "started_at");
  if (auto ended = object.find("ended_at"); ended != object.end() && !ended->is_null())
    process.ended_at = timestamp_field(object, "ended_at");
  process.stdin_open = object.at("stdin_open").get<bool>();
  process.stdout_bytes = object.at("stdout_bytes").get<std::uint64_t>();
  process.stderr_bytes = object.at("stderr_bytes").get<std::uint64_t>();
  return process;
}

}  // namespace

std::string_view to_string(ProcessState state) {
  return state == ProcessState::running ? "running" : "exited";
}

Result<ProcessStartRequest> parse_process_start_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ProcessStartRequest request;
  request.command = reader->string("command", true).value_or("");
  if (request.command.find('\0') != std::string::npos)
    reader->add({"body", "command"}, "command must not contain NUL bytes", "value_error");
  request.cwd = reader->string("cwd", false).value_or("/");
  if (request.cwd.empty() || request.cwd.front() != '/' || request.cwd.find('\0') != std::string::npos)
    reader->add({"body", "cwd"}, "cwd must be an absolute path", "value_error");
  request.env = reader->env_vars("env");
  for (const auto& [name, value] : request.env)
    if (name.size() + 1 + value.size() > helper::process_env_entry_max)
      reader->add({"body", "env", name}, "a variable's name and value must be at most 33 KiB together",
                  "string_too_long");
  return reader->finish(std::move(request));
}

Result<ProcessStdinRequest> parse_process_stdin_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ProcessStdinRequest request;
  auto text = reader->string("data", false);
  auto encoded = reader->string("data_base64", false);
  request.close = reader->boolean("close", false).value_or(false);
  if (text && encoded)
    reader->add({"body"}, "Value error, give data or data_base64, not both", "value_error");
  if (text) request.data = std::move(*text);
  if (encoded) {
    if (auto bytes = base64_decode(*encoded))
      request.data = std::move(*bytes);
    else
      reader->add({"body", "data_base64"}, "Value error, not padded base64 (RFC 4648)", "value_error");
  }
  if (!text && !encoded && !request.close)
    reader->add({"body"}, "Value error, give data, data_base64 or close: true", "value_error");
  return reader->finish(std::move(request));
}

std::optional<int> parse_signal(std::string_view text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  if (text.find_first_not_of("0123456789") == std::string_view::npos) {
    if (text.size() > 3) return std::nullopt;
    int number = std::stoi(std::string(text));
    if (helper::signal_name(number).empty()) return std::nullopt;
    return number;
  }
  std::string name;
  for (char c : text) name.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (!name.starts_with("SIG")) name = "SIG" + name;
  return helper::signal_number(name);
}

Result<ProcessSignalRequest> parse_process_signal_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  ProcessSignalRequest request;
  const json* value = reader->value("signal");
  std::optional<int> number;
  if (value == nullptr)
    reader->add({"body", "signal"}, "Field required", "missing");
  else if (value->is_number_integer())
    number = parse_signal(std::to_string(value->get<long long>()));
  else if (value->is_string())
    number = parse_signal(value->get<std::string>());
  if (value != nullptr && !number) reader->add({"body", "signal"}, std::string(signal_help), "value_error");
  request.signal = number.value_or(0);
  return reader->finish(request);
}

std::string process_start_request_to_json(const ProcessStartRequest& request) {
  json body{{"command", request.command}, {"cwd", request.cwd}};
  if (!request.env.empty()) body["env"] = request.env;
  return dump(body);
}

std::string process_signal_request_to_json(const std::string& signal) {
  return dump(json{{"signal", signal}});
}

std::string background_process_to_json(const BackgroundProcess& process) {
  return dump(process_object(process));
}

std::string process_read_end_to_json(const ProcessReadEnd& end) {
  json object = process_object(end.process);
  object["truncated"] = end.truncated;
  return dump(object);
}

Result<ProcessReadEnd> process_read_end_from_json(std::string_view text) {
  return decode<ProcessReadEnd>(text, "end of a process's output", [](const json& object) {
    return ProcessReadEnd{process_from_object(object), object.at("truncated").get<bool>()};
  });
}

std::string background_processes_to_json(const std::vector<BackgroundProcess>& processes) {
  json list = json::array();
  for (const auto& process : processes) list.push_back(process_object(process));
  return dump(list);
}

std::string process_output_answer_to_json(const ProcessOutputAnswer& answer) {
  json object = process_object(answer.process);
  object["stdout"] = answer.stdout_text;
  object["stderr"] = answer.stderr_text;
  object["truncated"] = answer.truncated;
  return dump(object);
}

std::string process_stdin_answer_to_json(std::uint32_t id, std::size_t written, bool closed) {
  return dump(json{{"id", id}, {"written", written}, {"closed", closed}});
}

std::string process_signal_answer_to_json(std::uint32_t id, const std::string& signal) {
  return dump(json{{"id", id}, {"signal", signal}});
}

Result<BackgroundProcess> background_process_from_json(std::string_view text) {
  return decode<BackgroundProcess>(text, "background process", process_from_object);
}

Result<std::vector<BackgroundProcess>> background_processes_from_json(std::string_view text) {
  return decode_list<BackgroundProcess>(text, "background process list", process_from_object);
}

}  // namespace modbox
