#include "agent/mcp/tools.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <nlohmann/json.hpp>

#include "common/encoding.h"

namespace modbox::mcp {

using nlohmann::json;

namespace {

/// Every step of a tool gets exec's longest timeout.
constexpr int tool_timeout_ms = limits::exec_timeout_max_ms;
/// The shell gets a command as one argv string, which Linux bounds at 128 KiB (MAX_ARG_STRLEN): a
/// write_file step stays well below.
constexpr std::size_t write_command_max = 100 << 10;
/// read_file's and list_directory's own exit codes, for what the shell's messages would say less well.
constexpr int missing_status = 3;
constexpr int directory_status = 4;
constexpr int not_directory_status = 5;
constexpr int not_regular_status = 6;

struct Tool {
  std::string_view name;
  std::string_view title;
  std::string_view description;
  json input_schema;
  json output_schema;
  json annotations;
};

json string_property(std::string_view description) {
  return {{"type", "string"}, {"description", description}};
}

json object_schema(json properties, std::initializer_list<std::string_view> required) {
  json schema = {{"type", "object"}, {"properties", std::move(properties)}, {"additionalProperties", false}};
  schema["required"] = json::array();
  for (std::string_view name : required) schema["required"].push_back(name);
  return schema;
}

const std::vector<Tool>& tools() {
  static const std::vector<Tool> all = {
      {"run_command",
       "Run a shell command",
       "Runs a shell command in the sandbox (bash -c, or sh -c in an image without bash) as the image's user, with "
       "the sandbox's environment, and answers its exit code, stdout and stderr once it ends. Each call is a new "
       "shell. The command is killed with its whole process tree at the timeout (30 s at most); stdout and stderr "
       "are kept up to 1 MiB each. A non-zero exit code is a normal result.",
       object_schema({{"command", string_property("The shell command line to run")},
                      {"cwd", string_property("The absolute directory to run it in (default /)")},
                      {"timeout_seconds",
                       {{"type", "number"},
                        {"exclusiveMinimum", 0},
                        {"maximum", limits::exec_timeout_max_ms / 1000},
                        {"description", "How long it may run, in seconds (default and most: 30)"}}}},
                     {"command"}),
       object_schema({{"exitCode", {{"type", "integer"}}},
                      {"stdout", {{"type", "string"}}},
                      {"stderr", {{"type", "string"}}},
                      {"killed", {{"type", "boolean"}}},
                      {"signal", {{"type", {"string", "null"}}}},
                      {"durationMs", {{"type", "integer"}}},
                      {"truncated", {{"type", "boolean"}}}},
                     {"exitCode", "stdout", "stderr", "killed", "signal", "durationMs", "truncated"}),
       {{"readOnlyHint", false}, {"destructiveHint", true}, {"idempotentHint", false}, {"openWorldHint", true}}},
      {"read_file",
       "Read a file",
       "Reads a file of the sandbox: its text when it is UTF-8, else its bytes in base64. At most the first 1 MiB "
       "is read (truncated says so).",
       object_schema({{"path", string_property("The file's path (relative paths start at /)")}}, {"path"}),
       object_schema({{"path", {{"type", "string"}}},
                      {"content", {{"type", "string"}}},
                      {"encoding", {{"type", "string"}, {"enum", {"utf-8", "base64"}}}},
                      {"truncated", {{"type", "boolean"}}}},
                     {"path", "content", "encoding", "truncated"}),
       {{"readOnlyHint", true}, {"openWorldHint", false}}},
      {"write_file",
       "Write a file",
       "Writes text to a file of the sandbox as the image's user, replacing what it held, and creates its missing "
       "parent directories.",
       object_schema({{"path", string_property("The file's path (relative paths start at /)")},
                      {"content", string_property("The text to write")}},
                     {"path", "content"}),
       object_schema({{"path", {{"type", "string"}}}, {"bytesWritten", {{"type", "integer"}}}},
                     {"path", "bytesWritten"}),
       {{"readOnlyHint", false}, {"destructiveHint", true}, {"idempotentHint", true}, {"openWorldHint", false}}},
      {"list_directory",
       "List a directory",
       "Lists a directory of the sandbox: each entry's name and type (file, directory, symlink or other), hidden "
       "ones included, sorted by name.",
       object_schema({{"path", string_property("The directory's path (relative paths start at /)")}}, {"path"}),
       object_schema(
           {{"path", {{"type", "string"}}},
            {"entries",
             {{"type", "array"},
              {"items",
               object_schema({{"name", {{"type", "string"}}},
                              {"type", {{"type", "string"}, {"enum", {"file", "directory", "symlink", "other"}}}}},
                             {"name", "type"})}}},
            {"truncated", {{"type", "boolean"}}}},
           {"path", "entries", "truncated"}),
       {{"readOnlyHint", true}, {"openWorldHint", false}}},
  };
  return all;
}

/// A tool's result: `text` for the model, and `structured` for clients of versions that have it.
json tool_result(std::string text, bool is_error, const json& structured, std::string_view version) {
  json result = {{"content", json::array({{{"type", "text"}, {"text", std::move(text)}}})}, {"isError", is_error}};
  if (!is_error && !structured.is_null() && has_structured_content(version)) result["structuredContent"] = structured;
  return result;
}

json tool_error(std::string sentence) {
  return tool_result(std::move(sentence), true, nullptr, "");
}

/// A tool's arguments, read against what it takes; the first problem found is kept as a sentence.
class Arguments {
 public:
  Arguments(const json& arguments, std::string_view tool, std::initializer_list<std::string_view> known)
      : arguments_(arguments), tool_(tool) {
    for (const auto& [key, value] : arguments.items()) {
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      std::string list;
      for (std::string_view name : known) list += (list.empty() ? "" : ", ") + std::string(name);
      fail(std::string(tool) + " has no argument '" + key + "'; it takes " + list);
    }
  }

  std::optional<std::string> text(std::string_view key, bool required, std::string_view what) {
    auto it = arguments_.find(key);
    if (it == arguments_.end() || it->is_null()) {
      if (required) fail(std::string(tool_) + " needs '" + std::string(key) + "', " + std::string(what));
      return std::nullopt;
    }
    if (!it->is_string()) {
      fail("'" + std::string(key) + "' must be a string, not " + type_name(*it));
      return std::nullopt;
    }
    const std::string& value = it->get_ref<const std::string&>();
    if (value.find('\0') != std::string::npos) fail("'" + std::string(key) + "' must not contain NUL bytes");
    return value;
  }

  std::optional<double> number(std::string_view key) {
    auto it = arguments_.find(key);
    if (it == arguments_.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) {
      fail("'" + std::string(key) + "' must be a number, not " + type_name(*it));
      return std::nullopt;
    }
    return it->get<double>();
  }

  void fail(std::string sentence) {
    if (!problem) problem = std::move(sentence);
  }

  std::optional<std::string> problem;

 private:
  static std::string type_name(const json& value) {
    if (value.is_string()) return "a string";
    if (value.is_boolean()) return "a boolean";
    if (value.is_number()) return "a number";
    if (value.is_array()) return "an array";
    if (value.is_object()) return "an object";
    return "null";
  }

  const json& arguments_;
  std::string_view tool_;
};

/// A path argument: present, not empty. Relative paths start at /: they get "./" in front (the
/// commands run in /), which also keeps a leading '-' from reading as an option.
std::optional<std::string> path_argument(Arguments& arguments, std::string_view what) {
  auto path = arguments.text("path", true, what);
  if (path && path->empty()) arguments.fail("'path' must not be empty");
  return path;
}

std::string shell_path(const std::string& path) {
  return shell_quote(path.front() == '/' ? path : "./" + path);
}

ExecRequest tool_exec(std::string command) {
  return ExecRequest{.command = std::move(command), .timeout_ms = tool_timeout_ms, .cwd = "/"};
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

/// Why a tool's step failed, from its result: what it wrote to stderr, else its status.
std::string step_failure(const ExecResult& result) {
  if (result.killed) return "it did not finish within " + std::to_string(tool_timeout_ms / 1000) + " s";
  std::string stderr_text = trimmed(result.stderr_text);
  if (!stderr_text.empty()) return stderr_text;
  return "it exited with status " + std::to_string(result.exit_code);
}

json run_command(const json& given, std::string_view version, const ExecFunction& exec) {
  Arguments arguments(given, "run_command", {"command", "cwd", "timeout_seconds"});
  auto command = arguments.text("command", true, "the shell command line to run");
  if (command && command->empty()) arguments.fail("'command' must not be empty");
  auto cwd = arguments.text("cwd", false, "");
  if (cwd && (cwd->empty() || cwd->front() != '/')) arguments.fail("'cwd' must be an absolute path");
  auto seconds = arguments.number("timeout_seconds");
  constexpr int most = limits::exec_timeout_max_ms / 1000;
  if (seconds && !(*seconds > 0 && *seconds <= most))
    arguments.fail("'timeout_seconds' must be more than 0 and at most " + std::to_string(most));
  if (arguments.problem) return tool_error(*arguments.problem);

  ExecRequest request = tool_exec(*command);
  if (cwd) request.cwd = *cwd;
  if (seconds) request.timeout_ms = std::clamp(static_cast<int>(std::lround(*seconds * 1000)), 1, tool_timeout_ms);
  auto result = exec(request);
  if (!result) return tool_error("the command could not run: " + result.error().message);

  std::string text = "exit code: " + std::to_string(result->exit_code);
  if (result->killed)
    text += " (killed with " + result->signal.value_or("SIGKILL") + " at the timeout of " +
            std::to_string(request.timeout_ms) + " ms)";
  else if (result->signal)
    text += " (ended by " + *result->signal + ")";
  if (!result->stdout_text.empty()) text += "\n--- stdout ---\n" + result->stdout_text;
  if (!result->stderr_text.empty()) text += "\n--- stderr ---\n" + result->stderr_text;
  if (result->truncated) text += "\n--- output truncated: at most 1 MiB of each stream is kept ---";
  json structured = {{"exitCode", result->exit_code},
                     {"stdout", result->stdout_text},
                     {"stderr", result->stderr_text},
                     {"killed", result->killed},
                     {"signal", result->signal ? json(*result->signal) : json(nullptr)},
                     {"durationMs", result->duration_ms},
                     {"truncated", result->truncated}};
  return tool_result(std::move(text), false, structured, version);
}

/// `bytes` without a UTF-8 sequence cut short at its end (where a truncated read stopped).
std::string_view without_cut_sequence(std::string_view bytes) {
  std::size_t start = bytes.size();
  for (int back = 0; back < 4 && start > 0; ++back) {
    auto byte = static_cast<unsigned char>(bytes[start - 1]);
    if ((byte & 0xC0) != 0x80) {
      std::size_t length = byte < 0x80 ? 1 : (byte & 0xE0) == 0xC0 ? 2 : (byte & 0xF0) == 0xE0 ? 3 : 4;
      return bytes.size() - (start - 1) < length ? bytes.substr(0, start - 1) : bytes;
    }
    --start;
  }
  return bytes;
}

json read_file(const json& given, std::string_view version, const ExecFunction& exec) {
  Arguments arguments(given, "read_file", {"path"});
  auto path = path_argument(arguments, "the file to read");
  if (arguments.problem) return tool_error(*arguments.problem);
  std::string file = shell_path(*path);
  std::string command = "if [ ! -e " + file + " ]; then exit " + std::to_string(missing_status) + "; fi; if [ -d " +
                        file + " ]; then exit " + std::to_string(directory_status) + "; fi; if [ ! -f " + file +
                        " ]; then exit " + std::to_string(not_regular_status) + "; fi; exec cat " + file;
  auto result = exec(tool_exec(command));
  if (!result) return tool_error("could not read " + *path + ": " + result.error().message);
  if (!result->killed && result->exit_code == missing_status) return tool_error(*path + ": no such file");
  if (!result->killed && result->exit_code == directory_status)
    return tool_error(*path + " is a directory: list it with list_directory");
  if (!result->killed && result->exit_code == not_regular_status)
    return tool_error(*path + " is not a regular file (a device, FIFO or socket): read_file reads files");
  if (result->killed || result->exit_code != 0)
    return tool_error("could not read " + *path + ": " + step_failure(*result));

  std::string_view bytes = result->stdout_text;
  if (result->truncated) bytes = without_cut_sequence(bytes);
  bool text = is_utf8(bytes);
  std::string content = text ? std::string(bytes) : base64_encode(result->stdout_text);
  std::string shown = text ? content : "[" + *path + " is not UTF-8 text: its bytes in base64]\n" + content;
  if (result->truncated)
    shown += "\n[truncated: only the first " + std::to_string(limits::exec_output_cap_bytes) + " bytes were read]";
  json structured = {
      {"path", *path}, {"content", content}, {"encoding", text ? "utf-8" : "base64"}, {"truncated", result->truncated}};
  return tool_result(std::move(shown), false, structured, version);
}

json write_file(const json& given, std::string_view version, const ExecFunction& exec) {
  Arguments arguments(given, "write_file", {"path", "content"});
  auto path = path_argument(arguments, "the file to write");
  auto content = arguments.text("content", true, "the text to write");
  if (arguments.problem) return tool_error(*arguments.problem);
  std::size_t written = 0;
  for (const WriteStep& step :
       write_file_commands(path->front() == '/' ? *path : "./" + *path, *content, write_command_max)) {
    auto result = exec(tool_exec(step.command));
    std::string so_far = written == 0 ? "" : " (the first " + std::to_string(written) + " bytes were written)";
    if (!result) return tool_error("could not write " + *path + ": " + result.error().message + so_far);
    if (result->killed || result->exit_code != 0)
      return tool_error("could not write " + *path + ": " + step_failure(*result) + so_far);
    written += step.bytes;
  }
  json structured = {{"path", *path}, {"bytesWritten", written}};
  return tool_result("wrote " + std::to_string(written) + " bytes to " + *path, false, structured, version);
}

json list_directory(const json& given, std::string_view version, const ExecFunction& exec) {
  Arguments arguments(given, "list_directory", {"path"});
  auto path = path_argument(arguments, "the directory to list");
  if (arguments.problem) return tool_error(*arguments.problem);
  std::string directory = shell_path(*path);
  // Only shell builtins, so that it works in any image; a NUL ends each entry, which no name holds.
  std::string command =
      "if [ ! -e " + directory + " ]; then exit " + std::to_string(missing_status) + "; fi; if [ ! -d " + directory +
      " ]; then exit " + std::to_string(not_directory_status) + "; fi; cd " + directory +
      " || exit 1; for f in .[!.]* ..?* *; do if [ -L \"$f\" ]; then t=symlink; elif [ -d \"$f\" ]; then "
      "t=directory; elif [ -f \"$f\" ]; then t=file; elif [ -e \"$f\" ]; then t=other; else continue; fi; "
      "printf '%s %s\\0' \"$t\" \"$f\"; done";
  auto result = exec(tool_exec(command));
  if (!result) return tool_error("could not list " + *path + ": " + result.error().message);
  if (!result->killed && result->exit_code == missing_status) return tool_error(*path + ": no such directory");
  if (!result->killed && result->exit_code == not_directory_status)
    return tool_error(*path + " is not a directory: read it with read_file");
  if (result->killed || result->exit_code != 0)
    return tool_error("could not list " + *path + ": " + step_failure(*result));

  std::vector<std::pair<std::string, std::string>> entries;  // name, type
  std::string_view rest = result->stdout_text;
  for (std::size_t end; (end = rest.find('\0')) != std::string_view::npos; rest.remove_prefix(end + 1)) {
    std::string_view record = rest.substr(0, end);
    std::size_t space = record.find(' ');
    if (space == std::string_view::npos) continue;
    entries.emplace_back(record.substr(space + 1), record.substr(0, space));
  }
  std::sort(entries.begin(), entries.end());
  std::string text = *path + ": " + std::to_string(entries.size()) + (entries.size() == 1 ? " entry" : " entries");
  json listed = json::array();
  for (const auto& [name, type] : entries) {
    text += "\n" + name + (type == "directory" ? "/" : type == "symlink" ? "@" : "");
    listed.push_back({{"name", name}, {"type", type}});
  }
  if (result->truncated) text += "\n[truncated: the listing was longer than 1 MiB]";
  json structured = {{"path", *path}, {"entries", std::move(listed)}, {"truncated", result->truncated}};
  return tool_result(std::move(text), false, structured, version);
}

}  // namespace

json tool_descriptions(std::string_view version) {
  json described = json::array();
  for (const Tool& tool : tools()) {
    json entry = {{"name", tool.name}, {"description", tool.description}, {"inputSchema", tool.input_schema}};
    if (has_structured_content(version)) {
      entry["title"] = tool.title;
      entry["outputSchema"] = tool.output_schema;
    }
    if (has_tool_annotations(version)) {
      entry["annotations"] = tool.annotations;
      entry["annotations"]["title"] = tool.title;
    }
    described.push_back(std::move(entry));
  }
  return described;
}

bool has_tool(std::string_view name) {
  const auto& all = tools();
  return std::any_of(all.begin(), all.end(), [name](const Tool& tool) { return tool.name == name; });
}

json call_tool(std::string_view name, const json& arguments, std::string_view version, const ExecFunction& exec) {
  if (name == "run_command") return run_command(arguments, version, exec);
  if (name == "read_file") return read_file(arguments, version, exec);
  if (name == "write_file") return write_file(arguments, version, exec);
  if (name == "list_directory") return list_directory(arguments, version, exec);
  return tool_error("there is no tool '" + std::string(name) + "'");
}

std::vector<WriteStep> write_file_commands(std::string_view path, std::string_view content, std::size_t command_max) {
  std::string target = shell_quote(path);
  std::size_t slash = path.rfind('/');
  std::string parent = slash == std::string_view::npos ? "." : slash == 0 ? "/" : std::string(path.substr(0, slash));
  std::string first = "mkdir -p " + shell_quote(parent) + " && printf '%s' ";
  std::string first_end = " > " + target;
  std::string next = "printf '%s' ";
  std::string next_end = " >> " + target;

  std::vector<WriteStep> commands;
  std::size_t at = 0;
  do {
    std::size_t from = at;
    const std::string& head = commands.empty() ? first : next;
    const std::string& tail = commands.empty() ? first_end : next_end;
    std::size_t frame = head.size() + tail.size() + 2;  // and the two quotes
    std::size_t room = command_max > frame ? command_max - frame : 0;
    std::string quoted = "'";
    while (at < content.size()) {
      std::size_t cost = content[at] == '\'' ? 4 : 1;
      if (at > from && quoted.size() - 1 + cost > room) break;  // every step writes a byte at least
      quoted += content[at] == '\'' ? std::string_view("'\\''") : content.substr(at, 1);
      ++at;
    }
    commands.push_back({head + quoted + "'" + tail, at - from});
  } while (at < content.size());
  return commands;
}

bool is_utf8(std::string_view bytes) {
  auto whole = utf8_whole_prefix(bytes);
  return whole && *whole == bytes.size();
}

}  // namespace modbox::mcp
