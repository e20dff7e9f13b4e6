#include "agent/mcp/server.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "agent/mcp/tools.h"

namespace modbox::mcp {

using nlohmann::json;

namespace {

constexpr std::string_view server_name = "modbox-terminal";
constexpr std::string_view instructions =
    "Tools for the sandbox behind this URL. run_command runs a shell command (bash, or sh in an image without "
    "bash) as the image's user with the sandbox's environment, each call in a new shell, for at most 30 seconds, "
    "and answers its exit code, stdout and stderr (1 MiB each at most). read_file, write_file and list_directory "
    "work on the sandbox's files. Relative paths start at /.";

/// Client input (ids, method names) may hold bytes that are not UTF-8: replace them, never throw.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json error_object(const json& id, int code, std::string_view message) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

json result_object(const json& id, json result) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

Reply refused(const json& id, int code, std::string_view message) {
  return Reply{.kind = Reply::Kind::refused, .body = dump(error_object(id, code, message))};
}

/// Whether the text nests arrays and objects deeper than `limit` (outside strings). Checked before
/// parsing, so that no deep value is ever built, copied or destroyed.
bool nested_deeper_than(std::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

/// MCP's ids are strings or numbers (never null).
bool valid_id(const json& message) {
  auto it = message.find("id");
  return it != message.end() && (it->is_string() || it->is_number());
}

/// The id an error response names: the message's when it has a valid one, else null.
json id_of(const json& message) {
  return message.is_object() && valid_id(message) ? message.at("id") : json(nullptr);
}

bool is_method(const json& message, std::string_view method) {
  if (!message.is_object()) return false;
  auto it = message.find("method");
  return it != message.end() && it->is_string() && it->get_ref<const std::string&>() == method;
}

/// Why a message is not a JSON-RPC 2.0 request, notification or response; empty when it is one.
std::string invalid_reason(const json& message) {
  if (!message.is_object()) return "a JSON-RPC message is an object";
  auto jsonrpc = message.find("jsonrpc");
  if (jsonrpc == message.end() || *jsonrpc != "2.0") return "\"jsonrpc\" must be \"2.0\"";
  if (message.contains("id") && !valid_id(message)) return "\"id\" must be a string or a number";
  if (auto method = message.find("method"); method != message.end())
    return method->is_string() ? "" : "\"method\" must be a string";
  if (valid_id(message) && (message.contains("result") != message.contains("error"))) return "";
  return "a message has a \"method\" (a request or notification), or an \"id\" with a \"result\" or \"error\"";
}

class Dispatch {
 public:
  Dispatch(const ExecFunction& exec, std::string_view version, bool session_initialized, Reply& reply)
      : exec_(exec), version_(version), session_initialized_(session_initialized), reply_(reply) {}

  /// The response to one message; nullopt for a notification or a response from the client.
  std::optional<json> message(const json& message) {
    if (std::string reason = invalid_reason(message); !reason.empty())
      return error_object(id_of(message), codes::invalid_request, "Invalid Request: " + reason);
    if (!message.contains("method")) return std::nullopt;  // a response: the server sends no requests
    const std::string& method = message.at("method").get_ref<const std::string&>();
    if (!message.contains("id")) {
      if (method == "notifications/initialized") reply_.initialized_notification = true;
      return std::nullopt;  // other notifications (cancelled, progress, roots) need nothing
    }
    const json& id = message.at("id");
    static const json no_params = json::object();
    auto params = message.find("params");
    if (params != message.end() && !params->is_object())
      return error_object(id, codes::invalid_params, "Invalid params: \"params\" must be an object");
    return request(id, method, params == message.end() ? no_params : *params);
  }

 private:
  json request(const json& id, const std::string& method, const json& params) {
    if (method == "initialize") return initialize(id, params);
    if (method == "ping") return result_object(id, json::object());
    if (method == "tools/list") return result_object(id, {{"tools", tool_descriptions(version_)}});
    if (method == "tools/call") return call(id, params);
    return error_object(id, codes::method_not_found, "Method not found: " + method);
  }

  json initialize(const json& id, const json& params) {
    if (session_initialized_ || reply_.negotiated_version)
      return error_object(id, codes::invalid_request,
                          "Invalid Request: this session is initialized already; start a new session to initialize "
                          "again");
    auto requested = params.find("protocolVersion");
    if (requested == params.end() || !requested->is_string())
      return error_object(id, codes::invalid_params,
                          "Invalid params: initialize needs \"protocolVersion\", the version the client speaks");
    std::string version(negotiate_version(requested->get_ref<const std::string&>()));
    reply_.negotiated_version = version;
    return result_object(id, {{"protocolVersion", version},
                              {"capabilities", {{"tools", json::object()}}},
                              {"serverInfo", {{"name", server_name}, {"version", MODBOX_VERSION}}},
                              {"instructions", instructions}});
  }

  json call(const json& id, const json& params) {
    auto name = params.find("name");
    if (name == params.end() || !name->is_string())
      return error_object(id, codes::invalid_params, "Invalid params: tools/call needs \"name\", the tool to call");
    const std::string& tool = name->get_ref<const std::string&>();
    if (!has_tool(tool)) return error_object(id, codes::invalid_params, "Unknown tool: " + tool);
    static const json no_arguments = json::object();
    auto arguments = params.find("arguments");
    if (arguments != params.end() && !arguments->is_object() && !arguments->is_null())
      return error_object(id, codes::invalid_params, "Invalid params: \"arguments\" must be an object");
    const json& given = arguments == params.end() || arguments->is_null() ? no_arguments : *arguments;
    return result_object(id, call_tool(tool, given, version_, exec_));
  }

  const ExecFunction& exec_;
  std::string_view version_;
  bool session_initialized_;
  Reply& reply_;
};

}  // namespace

bool is_supported_version(std::string_view version) {
  return std::find(protocol_versions.begin(), protocol_versions.end(), version) != protocol_versions.end();
}

std::string_view negotiate_version(std::string_view requested) {
  for (std::string_view version : protocol_versions)
    if (version == requested) return version;
  return latest_protocol_version;
}

// The versions are dates in ISO form: they compare as strings.
bool allows_batches(std::string_view version) {
  return version <= "2025-03-26";
}

bool has_structured_content(std::string_view version) {
  return version >= "2025-06-18";
}

bool has_tool_annotations(std::string_view version) {
  return version >= "2025-03-26";
}

std::string error_body(int code, std::string_view message) {
  return dump(error_object(nullptr, code, message));
}

Reply Server::handle(std::string_view body, const std::optional<SessionState>& state) const {
  if (nested_deeper_than(body, message_depth_max))
    return refused(nullptr, codes::invalid_request,
                   "Invalid Request: the message nests arrays and objects deeper than " +
                       std::to_string(message_depth_max) + " levels");
  json message;
  try {
    message = json::parse(body);
  } catch (const json::exception& error) {
    std::string detail = error.what();
    if (std::size_t bracket = detail.find("] "); detail.starts_with("[json.exception") && bracket != std::string::npos)
      detail.erase(0, bracket + 2);
    return refused(nullptr, codes::parse_error, "Parse error: the body is not JSON (" + detail + ")");
  }

  std::string_view version = state && state->version ? std::string_view(*state->version) : legacy_protocol_version;
  bool initialized = state && state->version;
  if (message.is_array()) {
    if (message.empty()) return refused(nullptr, codes::invalid_request, "Invalid Request: an empty batch");
    bool has_initialize =
        std::any_of(message.begin(), message.end(), [](const json& one) { return is_method(one, "initialize"); });
    if (has_initialize)
      return refused(nullptr, codes::invalid_request,
                     "Invalid Request: initialize must be sent on its own, not in a batch");
    if (!state) return Reply{.kind = Reply::Kind::needs_session};
    if (!allows_batches(version))
      return refused(nullptr, codes::invalid_request,
                     "Invalid Request: protocol version " + std::string(version) +
                         " has no JSON-RPC batches; send one message at a time");
    Reply reply;
    Dispatch dispatch(exec_, version, initialized, reply);
    json responses = json::array();
    for (const json& one : message)
      if (auto response = dispatch.message(one)) responses.push_back(std::move(*response));
    if (!responses.empty()) {
      reply.kind = Reply::Kind::responses;
      reply.body = dump(responses);
    }
    return reply;
  }

  if (std::string reason = invalid_reason(message); !reason.empty())
    return refused(id_of(message), codes::invalid_request, "Invalid Request: " + reason);
  if (!state && !is_method(message, "initialize")) return Reply{.kind = Reply::Kind::needs_session};
  Reply reply;
  Dispatch dispatch(exec_, version, initialized, reply);
  if (auto response = dispatch.message(message)) {
    reply.kind = Reply::Kind::responses;
    reply.body = dump(*response);
  }
  return reply;
}

}  // namespace modbox::mcp
