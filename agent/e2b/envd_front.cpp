#include "agent/e2b/envd_front.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <nlohmann/json.hpp>

#include "agent/e2b/envd_internal.h"
#include "common/json_support.h"

namespace modbox::e2b {

HttpResponse connect_error(int http_status, std::string_view code, std::string_view message) {
  return json_response(http_status, json_support::to_text(nlohmann::json{{"code", code}, {"message", message}}));
}

std::string EnvdFront::access_token(const Sandbox& sandbox) {
  auto key = sandbox.env_vars.find("SANDBOX_API_KEY");
  return key == sandbox.env_vars.end() ? std::string() : key->second;
}

Result<Sandbox> EnvdFront::authorize(const HttpRequest& request) const {
  const std::string* id = request.header("e2b-sandbox-id");
  if (id == nullptr || id->empty())
    return fail(ErrorKind::bad_request,
                "E2b-Sandbox-Id is missing: E2B_SANDBOX_URL serves every sandbox by that header");
  const std::string* token = request.header("x-access-token");
  std::string authorization = token == nullptr ? std::string() : "Bearer " + *token;
  return sandboxes_.authorize(*id, token == nullptr ? nullptr : &authorization, owner_token_);
}

namespace {

/// E2B's edge proxy's answer for a sandbox it does not know (502: the SDK then reports the sandbox as
/// not running, and its calls as a sandbox timeout).
HttpResponse sandbox_not_found(const std::string& sandbox_id) {
  return json_response(
      502, json_support::to_text(
               nlohmann::json{{"sandboxId", sandbox_id}, {"message", "The sandbox was not found"}, {"code", 502}}));
}

/// A refused credential, as each side of envd's API reports it: a Connect error for its RPC, envd's
/// `{"code": 401}` for its HTTP routes, and plain JSON for relayed ports.
HttpResponse unauthenticated(const HttpRequest& request, int status, const std::string& message) {
  bool rpc = request.path.find('.') != std::string::npos && request.path.find('/', 1) != std::string::npos;
  if (rpc) return connect_error(status, status == 401 ? "unauthenticated" : "permission_denied", message);
  return json_response(status,
                       json_support::to_text(nlohmann::json{{"code", status}, {"message", message}}));
}

std::optional<int> port_number(std::string_view text) {
  int port = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (error != std::errc() || end != text.data() + text.size() || port < 1 || port > 65535) return std::nullopt;
  return port;
}

/// Percent-encodes what a request target cannot carry as is (`keep`: the characters left alone).
std::string encode_component(std::string_view text, std::string_view keep) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || keep.find(static_cast<char>(c)) != std::string_view::npos) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

/// Headers that belong to one hop, or to the listener (the sandbox's key), and are not passed on.
bool is_hop_header(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "transfer-encoding" || name == "te" ||
         name == "upgrade" || name == "proxy-connection" || name == "content-length" || name == "x-access-token" ||
         name == "authorization" || name == "e2b-sandbox-id" || name == "e2b-sandbox-port" || name == "trailer";
}

/// Reads an HTTP/1.x answer's head off `fd` (blocking, bounded): the head, and what followed it.
Result<std::pair<std::string, std::string>> read_answer_head(int fd) {
  constexpr std::size_t head_max = 64 << 10;
  std::string bytes;
  char buffer[16 << 10];
  for (;;) {
    if (auto end = bytes.find("\r\n\r\n"); end != std::string::npos)
      return std::pair(bytes.substr(0, end + 2), bytes.substr(end + 4));
    if (bytes.size() > head_max)
      return fail(ErrorKind::bad_gateway, "the server in the sandbox sent an oversized head");
    pollfd entry{fd, POLLIN, 0};
    int ready = ::poll(&entry, 1, 60'000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return fail(ErrorKind::bad_gateway, "the server in the sandbox did not answer within 60 s");
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      return fail(ErrorKind::bad_gateway, "the server in the sandbox closed the connection without answering");
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
}

}  // namespace

Result<EnvdFront::Route> EnvdFront::route_of(const HttpRequest& request) {
  if (const std::string* id = request.header("e2b-sandbox-id"); id != nullptr && !id->empty()) {
    Route route{*id, envd_port};
    if (const std::string* port = request.header("e2b-sandbox-port")) {
      auto number = port_number(*port);
      if (!number) return fail(ErrorKind::bad_request, "E2b-Sandbox-Port must be a port number, 1 to 65535");
      route.port = *number;
    }
    return route;
  }
  // getHost(port): "{port}-{sandboxId}.{domain}", the domain being this listener's.
  if (const std::string* host = request.header("host")) {
    std::string_view label = *host;
    label = label.substr(0, label.find('.'));
    std::size_t dash = label.find('-');
    if (dash != std::string_view::npos && label.find('.') == std::string_view::npos && *host != label) {
      auto port = port_number(label.substr(0, dash));
      std::string_view id = label.substr(dash + 1);
      if (port && !id.empty()) return Route{std::string(id), *port};
    }
  }
  return fail(ErrorKind::bad_request,
              "name the sandbox with E2b-Sandbox-Id (E2B_SANDBOX_URL serves every sandbox by that header), or "
              "with a Host of the form {port}-{sandboxId}.localhost:PORT");
}

HttpResponse EnvdFront::serve(HttpRequest& request) {
  auto route = route_of(request);
  if (!route) return connect_error(400, "invalid_argument", route.error().message);
  const std::string* token = request.header("x-access-token");
  std::string authorization = token == nullptr ? std::string() : "Bearer " + *token;
  const std::string* credential = token != nullptr ? &authorization : request.header("authorization");
  auto sandbox = sandboxes_.authorize(route->sandbox_id, credential, owner_token_);
  if (!sandbox) {
    if (sandbox.error().kind == ErrorKind::not_found) return sandbox_not_found(route->sandbox_id);
    if (sandbox.error().kind == ErrorKind::forbidden)
      return unauthenticated(request, 403, "this sandbox has no SANDBOX_API_KEY: only the agent's token opens it");
    return unauthenticated(request, 401, "unauthorized access, please provide a valid access token (X-Access-Token)");
  }
  if (!running(*sandbox)) {
    if (sandbox->status == SandboxStatus::provisioning)
      return json_response(
          503,
          json_support::to_text(nlohmann::json{{"sandboxId", sandbox->id}, {"message", "The sandbox is still starting"}, {"code", 503}}));
    return sandbox_not_found(route->sandbox_id);
  }
  // Every call is activity of the sandbox (its idle timeout), a stream for as long as it lasts.
  auto busy = std::make_shared<SandboxActivity::Hold>(sandboxes_.hold_activity(sandbox->id));
  HttpResponse response;
  try {
    response = route->port == envd_port ? envd_.serve(*sandbox, request) : relay(*sandbox, route->port, request);
  } catch (const nlohmann::json::exception& error) {
    // A field of the wrong JSON type (a number where a string belongs): the client's mistake.
    response = connect_error(400, "invalid_argument",
                             std::string("the request message has a field of the wrong type: ") + error.what());
  }
  if (request.read_multipart) response.close_connection = true;
  if (response.stream)
    response.stream = [stream = std::move(response.stream), busy](std::uint64_t offset, std::uint64_t length,
                                                                  const BodyWriter& write) {
      return stream(offset, length, write);
    };
  return response;
}

HttpResponse EnvdFront::relay(const Sandbox& sandbox, int port, HttpRequest& request) {
  auto port_closed = [&](const std::string& why) {
    return json_response(502, json_support::to_text(nlohmann::json{{"sandboxId", sandbox.id},
                                             {"message", "The sandbox is running but port is not open"},
                                             {"port", port},
                                             {"detail", why}}));
  };
  if (request.read_multipart)
    return json_response(415, nlohmann::json{{"code", 415},
                                             {"message",
                                              "multipart bodies are not relayed to sandbox ports here: "
                                              "use the sandbox's port URL"}}
                                  .dump());
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return sandbox_not_found(sandbox.id);
  auto relay = helper->client.open_relay(helper->socket, static_cast<std::uint16_t>(port));
  if (!relay) return port_closed(relay.error().message);
  auto connection = std::make_shared<UniqueFd>(std::move(*relay));

  // One HTTP/1.0 exchange: the server delimits its answer by closing, never by chunks to decode.
  std::string target = encode_component(request.path, "/-._~!$&'()*+,;=:@");
  bool first = true;
  for (const auto& [name, value] : request.query) {
    target += first ? "?" : "&";
    first = false;
    target += encode_component(name, "-._~") + "=" + encode_component(value, "-._~");
  }
  std::string head = request.method + " " + target + " HTTP/1.0\r\n";
  for (const auto& [name, value] : request.headers)
    if (!is_hop_header(name)) head += name + ": " + value + "\r\n";
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" || request.method == "PATCH")
    head += "content-length: " + std::to_string(request.body.size()) + "\r\n";
  head += "connection: close\r\n\r\n";
  if (!send_all(connection->get(), head) || !send_all(connection->get(), request.body))
    return port_closed("the server in the sandbox closed the connection");
  ::shutdown(connection->get(), SHUT_WR);

  auto answer = read_answer_head(connection->get());
  if (!answer) return port_closed(answer.error().message);
  auto& [answer_head, body_start] = *answer;
  HttpResponse response;
  response.content_type.clear();
  std::size_t line_end = answer_head.find("\r\n");
  std::string_view status_line = std::string_view(answer_head).substr(0, line_end);
  std::size_t space = status_line.find(' ');
  int status = 0;
  if (space != std::string_view::npos)
    std::from_chars(status_line.data() + space + 1, status_line.data() + status_line.size(), status);
  if (!status_line.starts_with("HTTP/1.") || status < 100 || status > 599)
    return port_closed("the server in the sandbox did not answer HTTP");
  response.status = status;
  for (std::size_t at = line_end + 2; at < answer_head.size();) {
    std::size_t end = answer_head.find("\r\n", at);
    std::string_view line = std::string_view(answer_head).substr(at, end - at);
    at = end + 2;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (lower == "content-type")
      response.content_type = std::string(value);
    else if (!is_hop_header(lower))
      response.headers[name] = std::string(value);
  }
  bool bodiless = request.method == "HEAD" || status == 204 || status == 304 || status < 200;
  if (bodiless) return response;
  response.stream_chunked = true;
  response.stream = [connection, start = std::move(body_start)](std::uint64_t, std::uint64_t, const BodyWriter& write) {
    if (!start.empty() && !write(start)) return false;
    char buffer[64 << 10];
    for (;;) {
      pollfd entry{connection->get(), POLLIN, 0};
      int ready = ::poll(&entry, 1, static_cast<int>(client_check_interval.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        if (!write("")) return false;  // the client left
        continue;
      }
      ssize_t got = ::recv(connection->get(), buffer, sizeof buffer, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return got == 0;
      if (!write(std::string_view(buffer, static_cast<std::size_t>(got)))) return false;
    }
  };
  return response;
}

}  // namespace modbox::e2b
