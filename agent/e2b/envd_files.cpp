// envd's filesystem: filesystem.Filesystem's unary calls and the /files routes. Each runs as the
// image's user, through the helper's exec (GNU find describes entries) and sessions (a write's bytes
// go to `cat` on a pipe), so permissions, symlinks and homes are the sandbox's own.

#include <sys/socket.h>

#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>

#include "agent/e2b/connect_codec.h"
#include "agent/e2b/envd_service.h"
#include "agent/e2b/envd_internal.h"
#include "agent/multipart.h"

namespace modbox::e2b {

using connect::Code;
using connect::ConnectError;
using nlohmann::json;

namespace {

// Exit statuses the scripts below use to say why they refused.
constexpr int exit_not_found = 66;
constexpr int exit_exists = 67;
constexpr int exit_not_directory = 68;
constexpr int exit_is_directory = 69;

/// Sets $p to `path`, made absolute from the user's home when it is relative.
std::string resolve(std::string_view variable, std::string_view path) {
  std::string name(variable);
  return home_prefix() + name + "=" + shell_quote(path) + "; case \"$" + name + "\" in /*) ;; *) " + name +
         "=\"$PWD/$" + name + "\";; esac; ";
}

std::string require_exists(std::string_view variable) {
  std::string name(variable);
  return "[ -e \"$" + name + "\" ] || [ -L \"$" + name + "\" ] || { printf \"path '%s' does not exist\" \"$" + name +
         "\" >&2; exit " + std::to_string(exit_not_found) + "; }; ";
}

/// find's description of an entry: nine NUL-terminated fields.
constexpr std::string_view entry_format = R"(-printf '%y\0%s\0%m\0%M\0%u\0%g\0%T@\0%l\0%p\0')";

std::string rfc3339(double seconds) {
  auto whole = static_cast<std::time_t>(std::floor(seconds));
  auto nanos = static_cast<long>((seconds - static_cast<double>(whole)) * 1e9);
  std::tm utc{};
  ::gmtime_r(&whole, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  char fraction[16];
  std::snprintf(fraction, sizeof fraction, ".%09ldZ", std::max(0L, std::min(nanos, 999'999'999L)));
  return std::string(text) + fraction;
}

/// EntryInfo messages from find's output; entries of other types (sockets, devices) are left out,
/// as the SDK drops them.
std::vector<json> entries_of(std::string_view output) {
  std::vector<std::string_view> fields;
  while (!output.empty()) {
    std::size_t end = output.find('\0');
    if (end == std::string_view::npos) break;
    fields.push_back(output.substr(0, end));
    output.remove_prefix(end + 1);
  }
  std::vector<json> entries;
  for (std::size_t at = 0; at + 9 <= fields.size(); at += 9) {
    std::string_view kind = fields[at];
    const char* type = kind == "f"   ? "FILE_TYPE_FILE"
                       : kind == "d" ? "FILE_TYPE_DIRECTORY"
                       : kind == "l" ? "FILE_TYPE_SYMLINK"
                                     : nullptr;
    if (type == nullptr) continue;
    std::string path(fields[at + 8]);
    while (path.size() > 1 && path.ends_with('/')) path.pop_back();
    std::uint32_t mode = static_cast<std::uint32_t>(std::strtoul(std::string(fields[at + 2]).c_str(), nullptr, 8));
    if (kind == "d") mode |= 0x80000000u;  // Go's os.ModeDir, as envd reports it
    if (kind == "l") mode |= 0x08000000u;  // os.ModeSymlink
    json entry = {{"name", path == "/" ? "/" : path.substr(path.rfind('/') + 1)},
                  {"type", type},
                  {"path", path},
                  {"size", std::string(fields[at + 1])},
                  {"mode", mode},
                  {"permissions", std::string(fields[at + 3])},
                  {"owner", std::string(fields[at + 4])},
                  {"group", std::string(fields[at + 5])},
                  {"modifiedTime", rfc3339(std::strtod(std::string(fields[at + 6]).c_str(), nullptr))}};
    if (kind == "l") entry["symlinkTarget"] = std::string(fields[at + 7]);
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 1000) text.resize(1000);
  return text;
}

/// Runs a filesystem script in the sandbox: its stdout, or the refusal its status says.
std::expected<std::string, ConnectError> run_script(SandboxService& sandboxes, const Sandbox& sandbox,
                                                    const std::string& script) {
  ExecRequest request;
  request.command = script;
  request.cwd = "/";
  request.timeout_ms = limits::exec_timeout_max_ms;
  auto result = sandboxes.run_exec(sandbox, request);
  if (!result) return std::unexpected(connect::connect_error_for(result.error()));
  std::string message = trimmed(result->stderr_text);
  switch (result->exit_code) {
    case 0:
      return std::move(result->stdout_text);
    case exit_not_found:
      return std::unexpected(ConnectError{Code::not_found, message});
    case exit_exists:
      return std::unexpected(ConnectError{Code::already_exists, message});
    case exit_not_directory:
    case exit_is_directory:
      return std::unexpected(ConnectError{Code::invalid_argument, message});
    default:
      if (message.find("ermission denied") != std::string::npos)
        return std::unexpected(ConnectError{Code::permission_denied, message});
      return std::unexpected(ConnectError{Code::internal, message.empty() ? "the command failed" : message});
  }
}

/// An envd HTTP error: `{"code": status, "message": ...}`.
HttpResponse envd_error(int status, const std::string& message) {
  return json_response(
      status, json{{"code", status}, {"message", message}}.dump(-1, ' ', false, json::error_handler_t::replace));
}
int envd_status(Code code) {
  switch (code) {
    case Code::not_found:
      return 404;
    case Code::invalid_argument:
      return 400;
    case Code::permission_denied:
      return 403;
    case Code::unavailable:
      return 502;
    default:
      return 500;
  }
}

std::optional<std::string> string_field(const json& message, const char* name) {
  auto it = message.find(name);
  if (it == message.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

HttpResponse EnvdService::filesystem_rpc(const Sandbox& sandbox, std::string_view method, const std::string& body) {
  json message = json::parse(body.empty() ? std::string("{}") : body, nullptr, false);
  if (message.is_discarded() || !message.is_object())
    return unary_error({Code::invalid_argument, "the request message is not a JSON object"});
  auto entry_answer = [&](const std::string& script) -> HttpResponse {
    auto output = run_script(sandboxes_, sandbox, script);
    if (!output) return unary_error(output.error());
    auto entries = entries_of(*output);
    if (entries.empty()) return unary_error({Code::internal, "the sandbox described no entry"});
    return unary_ok({{"entry", entries.front()}});
  };
  std::string format(entry_format);

  if (method == "Move") {
    auto source = string_field(message, "source");
    auto destination = string_field(message, "destination");
    if (!source || !destination) return unary_error({Code::invalid_argument, "source and destination are required"});
    return entry_answer(resolve("s", *source) + resolve("d", *destination) + require_exists("s") +
                        "mkdir -p -- \"$(dirname -- \"$d\")\" && mv -T -- \"$s\" \"$d\" && find \"$d\" -maxdepth 0 " +
                        format);
  }
  if (method == "CreateWatcher" || method == "GetWatcherEvents" || method == "RemoveWatcher")
    return watcher_rpc(sandbox, method, body);
  auto path = string_field(message, "path");
  if (!path) return unary_error({Code::invalid_argument, "path is required"});
  std::string p = resolve("p", *path);
  if (method == "Stat") return entry_answer(p + require_exists("p") + "find \"$p\" -maxdepth 0 " + format);
  if (method == "MakeDir") {
    return entry_answer(
        p + "if [ -e \"$p\" ] || [ -L \"$p\" ]; then printf \"directory '%s' already exists\" \"$p\" >&2; exit " +
        std::to_string(exit_exists) + "; fi; mkdir -p -- \"$p\" && find \"$p\" -maxdepth 0 " + format);
  }
  if (method == "Remove") {
    auto removed = run_script(sandboxes_, sandbox, p + require_exists("p") + "rm -rf -- \"$p\"");
    if (!removed) return unary_error(removed.error());
    return unary_ok(json::object());
  }
  if (method == "ListDir") {
    std::int64_t depth = 1;
    if (auto it = message.find("depth"); it != message.end()) {
      auto value = connect::read_int64(*it);
      if (!value || *value < 0) return unary_error({Code::invalid_argument, "depth must be a non-negative number"});
      depth = std::max<std::int64_t>(1, *value);
    }
    auto output = run_script(sandboxes_, sandbox,
                             p + require_exists("p") +
                                 "[ -d \"$p\" ] || { printf \"path '%s' is not a directory\" \"$p\" >&2; exit " +
                                 std::to_string(exit_not_directory) + "; }; find -H \"$p\" -mindepth 1 -maxdepth " +
                                 std::to_string(std::min<std::int64_t>(depth, 64)) + " " + format);
    if (!output) return unary_error(output.error());
    json entries = json::array();
    for (auto& entry : entries_of(*output)) entries.push_back(std::move(entry));
    return unary_ok({{"entries", entries}});
  }
  if (method == "CreateWatcher" || method == "GetWatcherEvents" || method == "RemoveWatcher")
    return watcher_rpc(sandbox, method, body);
  return unary_error({Code::unimplemented, "filesystem.Filesystem has no method " + std::string(method)});
}

Result<std::string> EnvdService::absolute_path(const Sandbox& sandbox, const std::string& path) {
  if (path.starts_with('/')) return path;
  auto resolved = run_script(sandboxes_, sandbox, resolve("p", path) + "printf %s \"$p\"");
  if (!resolved) return fail(ErrorKind::unavailable, resolved.error().message);
  return *resolved;
}

HttpResponse EnvdService::read_file(const Sandbox& sandbox, const HttpRequest& request) {
  const std::string* path = request.query_value("path");
  if (path == nullptr || path->empty()) return envd_error(400, "the path query parameter is required");
  std::string p = resolve("p", *path);
  auto checked =
      run_script(sandboxes_, sandbox,
                 p + require_exists("p") + "[ -d \"$p\" ] && { printf \"path '%s' is a directory\" \"$p\" >&2; exit " +
                     std::to_string(exit_is_directory) +
                     "; }; [ -r \"$p\" ] || { printf \"path '%s' is not readable\" \"$p\" >&2; exit 1; }");
  if (!checked) return envd_error(envd_status(checked.error().code), checked.error().message);
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return envd_error(502, helper.error().message);
  ExecRequest exec;
  exec.command = p + "exec cat -- \"$p\"";
  exec.cwd = "/";
  exec.timeout_ms = 600'000;
  auto opened = helper->client.exec_stream(helper->socket, exec);
  if (!opened) return envd_error(502, opened.error().message);
  std::shared_ptr<SandboxHelpers::ExecStream> stream = std::move(*opened);
  HttpResponse response;
  response.content_type = "application/octet-stream";
  response.stream_chunked = true;
  response.stream = [stream](std::uint64_t, std::uint64_t, const BodyWriter& write) {
    for (;;) {
      auto step = stream->next(client_check_interval);
      if (!step) return false;
      if (step->output) {
        if (step->output->stream == helper::Stream::stdout_stream && !write(step->output->data)) return false;
      } else if (step->result) {
        return step->result->exit_code == 0;  // a read that failed midway ends without its last chunk
      } else if (!write("")) {
        return false;
      }
    }
  };
  return response;
}

namespace {

/// A file being written through a session on pipes: `cat` into the path, as the image's user.
class FileWriter {
 public:
  static std::expected<FileWriter, ConnectError> open(const SandboxService::HelperAccess& helper,
                                                      const std::string& path) {
    helper::SessionOpen request;
    request.command = resolve("p", path) + "mkdir -p -- \"$(dirname -- \"$p\")\" && cat > \"$p\" && printf %s \"$p\"";
    auto session = helper.client.open_session(helper.socket, request);
    if (!session) return std::unexpected(connect::connect_error_for(session.error()));
    return FileWriter(std::move(session->connection));
  }
  bool write(std::string_view bytes) {
    while (!bytes.empty()) {
      std::size_t piece = std::min<std::size_t>(bytes.size(), 64 << 10);
      if (!send_all(connection_.get(), helper::encode(helper::Data{std::string(bytes.substr(0, piece))}))) return false;
      bytes.remove_prefix(piece);
    }
    return true;
  }
  /// Ends the input and waits for `cat`: the absolute path written, or why it failed.
  std::expected<std::string, ConnectError> finish() {
    if (!send_all(connection_.get(), helper::encode(helper::End{})))
      return std::unexpected(ConnectError{Code::unavailable, "the sandbox's helper went away"});
    helper::FrameDecoder decoder;
    std::string out, err;
    char buffer[16 << 10];
    for (;;) {
      auto message = decoder.next();
      if (!message) return std::unexpected(ConnectError{Code::internal, "the sandbox's helper broke the protocol"});
      if (*message) {
        if (auto* output = std::get_if<helper::Output>(&**message)) {
          std::string& into = output->stream == helper::Stream::stdout_stream ? out : err;
          if (into.size() < 64 << 10) into += output->data;
        } else if (auto* exit = std::get_if<helper::Exit>(&**message)) {
          if (exit->exit_code != 0) {
            std::string why = trimmed(err);
            Code code = why.find("ermission denied") != std::string::npos ? Code::permission_denied
                        : why.find("space") != std::string::npos          ? Code::resource_exhausted
                                                                          : Code::internal;
            return std::unexpected(ConnectError{code, why.empty() ? "the file could not be written" : why});
          }
          return out;
        }
        continue;
      }
      ssize_t got = ::recv(connection_.get(), buffer, sizeof buffer, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return std::unexpected(ConnectError{Code::unavailable, "the sandbox's helper went away"});
      decoder.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
    }
  }

 private:
  explicit FileWriter(UniqueFd connection) : connection_(std::move(connection)) {}
  UniqueFd connection_;
};

json written_entry(const std::string& path) {
  return json{{"path", path}, {"name", path.substr(path.rfind('/') + 1)}, {"type", "file"}};
}

HttpResponse write_error(const ConnectError& error) {
  int status = error.code == Code::resource_exhausted ? 507 : envd_status(error.code);
  return envd_error(status, error.message);
}

}  // namespace

HttpResponse EnvdService::write_files(const Sandbox& sandbox, HttpRequest& request) {
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return envd_error(502, helper.error().message);
  const std::string* query_path = request.query_value("path");
  std::string content_type = request.header("content-type") ? *request.header("content-type") : "";
  json written = json::array();
  if (const std::string* encoding = request.header("content-encoding"); encoding != nullptr && *encoding != "identity")
    return envd_error(415, "compressed uploads (Content-Encoding: " + encoding->substr(0, 40) + ") are not supported");

  if (content_type.starts_with("application/octet-stream")) {
    if (query_path == nullptr || query_path->empty()) return envd_error(400, "the path query parameter is required");
    auto writer = FileWriter::open(*helper, *query_path);
    if (!writer) return write_error(writer.error());
    if (!writer->write(request.body)) return envd_error(502, "the sandbox's helper went away");
    auto path = writer->finish();
    if (!path) return write_error(path.error());
    written.push_back(written_entry(*path));
    return json_response(200, written.dump());
  }

  auto boundary = multipart_boundary(content_type);
  if (!boundary && !request.read_multipart)
    return envd_error(400, "send the file as multipart/form-data (field `file`) or application/octet-stream");
  std::optional<FileWriter> writer;
  std::optional<ConnectError> failure;
  std::set<std::string> seen;
  auto finish_current = [&] {
    if (!writer || failure) return;
    auto path = writer->finish();
    writer.reset();
    if (!path)
      failure = path.error();
    else
      written.push_back(written_entry(*path));
  };
  auto on_part = [&](const MultipartPart& part) {
    finish_current();
    if (failure) return false;
    if (part.name != "file") return true;
    std::string path = !part.filename.empty() ? part.filename : query_path ? *query_path : "";
    if (path.empty()) {
      failure = ConnectError{Code::invalid_argument, "a file part names no path"};
      return false;
    }
    if (!seen.insert(path).second) {
      failure = ConnectError{Code::invalid_argument, "the path '" + path + "' is written twice"};
      return false;
    }
    auto opened = FileWriter::open(*helper, path);
    if (!opened) {
      failure = opened.error();
      return false;
    }
    writer.emplace(std::move(*opened));
    return true;
  };
  auto on_data = [&](std::string_view bytes) {
    if (!writer) return true;
    if (!writer->write(bytes)) {
      failure = ConnectError{Code::unavailable, "the sandbox's helper went away"};
      return false;
    }
    return true;
  };
  bool complete = false;
  if (request.read_multipart) {
    complete = request.read_multipart(on_part, on_data);
  } else {
    MultipartParser parser(*boundary, on_part, on_data);
    complete = parser.feed(request.body) && parser.complete();
  }
  if (complete) finish_current();
  if (failure) {
    HttpResponse response = write_error(*failure);
    response.close_connection = !complete;
    return response;
  }
  if (!complete) {
    HttpResponse response = envd_error(400, "the multipart body is malformed or cut short");
    response.close_connection = true;
    return response;
  }
  if (written.empty()) return envd_error(400, "the body holds no `file` part");
  return json_response(200, written.dump());
}

}  // namespace modbox::e2b
