#include "common/terminal_protocol.h"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "common/helper_protocol.h"
#include "common/system.h"

namespace modbox::terminal {

namespace {

using nlohmann::json;

/// How much of the command line, the directory and the environment a query may carry: the front
/// refuses request lines over 8 KiB before this is ever reached, so these only guard other callers.
constexpr std::size_t command_max = helper::command_max;
constexpr std::size_t path_max = helper::path_max;
constexpr std::size_t env_max = helper::session_env_max;

FieldError query_error(const std::string& name, std::string message) {
  return FieldError{{"query", name}, std::move(message), "value_error"};
}

/// A decimal size 1–size_max, or nullopt.
std::optional<std::uint16_t> parse_size(std::string_view text) {
  std::uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 1 || value > size_max) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

/// The signal a control message names: "SIGINT", "INT" or "int".
std::optional<int> signal_by_name(std::string name) {
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!name.starts_with("SIG")) name = "SIG" + name;
  return helper::signal_number(name);
}

}  // namespace

bool is_terminal_size(std::uint64_t cols, std::uint64_t rows) {
  static_assert(size_max == helper::window_size_max, "the helper applies the sizes the front lets through");
  return cols >= 1 && cols <= size_max && rows >= 1 && rows <= size_max;
}

Result<SessionOptions> session_options_from_query(const std::multimap<std::string, std::string>& query) {
  SessionOptions options;
  std::vector<FieldError> errors;
  auto first = [&](const std::string& name) -> const std::string* {
    auto it = query.find(name);
    return it == query.end() ? nullptr : &it->second;
  };
  if (const std::string* tty = first("tty")) {
    if (*tty == "1" || *tty == "true")
      options.tty = true;
    else if (*tty == "0" || *tty == "false")
      options.tty = false;
    else
      errors.push_back(query_error("tty", "tty must be 1 (a terminal) or 0 (pipes)"));
  }
  for (auto [name, field] : {std::pair{"cols", &options.cols}, std::pair{"rows", &options.rows}}) {
    const std::string* value = first(name);
    if (value == nullptr) continue;
    if (auto size = parse_size(*value))
      *field = *size;
    else
      errors.push_back(
          query_error(name, std::string(name) + " must be a whole number from 1 to " + std::to_string(size_max)));
  }
  if (const std::string* command = first("command")) {
    if (command->size() > command_max || command->find('\0') != std::string::npos)
      errors.push_back(query_error("command", "command must be at most 1 MiB, without NUL bytes"));
    else
      options.command = *command;
  }
  if (const std::string* cwd = first("cwd"); cwd != nullptr && !cwd->empty()) {
    if (cwd->front() != '/' || cwd->size() > path_max || cwd->find('\0') != std::string::npos)
      errors.push_back(query_error("cwd", "cwd must be an absolute path"));
    else
      options.cwd = *cwd;
  }
  for (auto [it, end] = query.equal_range("env"); it != end; ++it) {
    if (!helper::is_environment_entry(it->second)) {
      errors.push_back(query_error("env", "env must be KEY=VALUE, with a name and no NUL bytes"));
      break;
    }
    options.env.push_back(it->second);
  }
  if (options.env.size() > env_max)
    errors.push_back(query_error("env", "at most " + std::to_string(env_max) + " env entries can be given"));
  if (!errors.empty()) return fail_validation(std::move(errors));
  return options;
}

std::string session_query(const SessionOptions& options) {
  std::string query = "tty=" + std::string(options.tty ? "1" : "0");
  if (options.tty) query += "&cols=" + std::to_string(options.cols) + "&rows=" + std::to_string(options.rows);
  if (!options.command.empty()) query += "&command=" + percent_encode(options.command);
  if (!options.cwd.empty()) query += "&cwd=" + percent_encode(options.cwd);
  for (const auto& entry : options.env) query += "&env=" + percent_encode(entry);
  return query;
}

Result<Control> parse_control(std::string_view text) {
  json message = json::parse(text, nullptr, false);
  if (message.is_discarded() || !message.is_object() || !message.contains("type") || !message["type"].is_string())
    return fail(ErrorKind::bad_request,
                "a text message must be a JSON object with a \"type\": resize, signal, eof, input, pause or resume");
  std::string type = message["type"];
  if (type == "resize") {
    const json& cols = message.contains("cols") ? message["cols"] : json();
    const json& rows = message.contains("rows") ? message["rows"] : json();
    if (!cols.is_number_integer() || !rows.is_number_integer() || cols.get<std::int64_t>() < 0 ||
        rows.get<std::int64_t>() < 0 || !is_terminal_size(cols.get<std::uint64_t>(), rows.get<std::uint64_t>()))
      return fail(ErrorKind::bad_request,
                  "resize needs whole numbers cols and rows from 1 to " + std::to_string(size_max) + "; ignored");
    return Resize{cols.get<std::uint16_t>(), rows.get<std::uint16_t>()};
  }
  if (type == "signal") {
    const json& name = message.contains("signal") ? message["signal"] : json();
    std::optional<int> number = name.is_string() ? signal_by_name(name.get<std::string>()) : std::nullopt;
    if (!number) return fail(ErrorKind::bad_request, "signal needs a signal name such as \"SIGINT\"; ignored");
    return Signal{*number};
  }
  if (type == "eof") return EndOfInput{};
  if (type == "pause") return Pause{};
  if (type == "resume") return Resume{};
  if (type == "input") {
    if (!message.contains("data") || !message["data"].is_string())
      return fail(ErrorKind::bad_request, "input needs \"data\", a string; ignored");
    return Input{message["data"].get<std::string>()};
  }
  return fail(ErrorKind::bad_request, "unknown message type \"" + type.substr(0, 40) +
                                          "\": the types are resize, signal, eof, input, pause and resume; ignored");
}

std::string control_message(const Control& control) {
  json message;
  if (const auto* resize = std::get_if<Resize>(&control))
    message = {{"type", "resize"}, {"cols", resize->cols}, {"rows", resize->rows}};
  else if (const auto* signal = std::get_if<Signal>(&control))
    message = {{"type", "signal"}, {"signal", helper::signal_name(signal->number)}};
  else if (std::holds_alternative<EndOfInput>(control))
    message = {{"type", "eof"}};
  else if (std::holds_alternative<Pause>(control))
    message = {{"type", "pause"}};
  else if (std::holds_alternative<Resume>(control))
    message = {{"type", "resume"}};
  else
    // Bytes that are not UTF-8 are replaced: send those as a binary message instead.
    message = {{"type", "input"}, {"data", std::get<Input>(control).bytes}};
  return message.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string event_message(const Event& event) {
  json message;
  if (const auto* ready = std::get_if<Ready>(&event)) {
    message = {{"type", "ready"}, {"pid", ready->pid}};
  } else if (const auto* exited = std::get_if<Exited>(&event)) {
    message = {{"type", "exit"}, {"exit_code", exited->exit_code}};
    if (!exited->signal.empty()) message["signal"] = exited->signal;
  } else {
    message = {{"type", "error"}, {"message", std::get<Failed>(event).message}};
  }
  return message.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Event> parse_event(std::string_view text) {
  json message = json::parse(text, nullptr, false);
  auto malformed = [&] {
    return fail(ErrorKind::unavailable,
                "the terminal sent a message that is not one of its events: " + std::string(text.substr(0, 200)));
  };
  if (message.is_discarded() || !message.is_object() || !message.contains("type") || !message["type"].is_string())
    return malformed();
  std::string type = message["type"];
  if (type == "ready" && message.contains("pid") && message["pid"].is_number_unsigned())
    return Ready{message["pid"].get<std::uint32_t>()};
  if (type == "exit" && message.contains("exit_code") && message["exit_code"].is_number_integer()) {
    Exited exited{message["exit_code"].get<int>(), ""};
    if (message.contains("signal") && message["signal"].is_string()) exited.signal = message["signal"];
    return exited;
  }
  if (type == "error" && message.contains("message") && message["message"].is_string())
    return Failed{message["message"].get<std::string>()};
  return malformed();
}

std::string pipe_output_message(OutputStream stream, std::string_view bytes) {
  std::string message(1, static_cast<char>(stream));
  message.append(bytes);
  return message;
}

}  // namespace modbox::terminal
