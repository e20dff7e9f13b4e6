#pragma once
// Plain request/response types for the agent's HTTP handlers. Only http_server.cpp knows the HTTP
// library; handlers take these structs, so they are testable without sockets.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/result.h"

namespace modbox {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::map<std::string, std::string> path_params;
  std::string body;
  bool over_tcp = false;  // false: the owner's unix socket

  const std::string* header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

using HttpHandler = std::function<HttpResponse(HttpRequest&)>;

/// A JSON response; an Error becomes its status and `{"detail": ...}` body.
HttpResponse json_response(int status, std::string body);
HttpResponse error_response(const Error& error);

/// Where a listener accepts connections.
struct ListenAddress {
  std::string unix_path;  // when set, a unix socket created with mode 0600
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
};

/// A running HTTP server on its own threads; stopping it (or destroying it) closes the socket.
class HttpListener {
 public:
  virtual ~HttpListener() = default;
  virtual int port() const = 0;
  virtual void stop() = 0;

  /// Binds `address` and starts serving `handler` with up to `threads` concurrent requests.
  static Result<std::unique_ptr<HttpListener>> start(const ListenAddress& address, HttpHandler handler,
                                                     int threads);
};

}  // namespace modbox
