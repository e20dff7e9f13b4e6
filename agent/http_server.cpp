// The agent's only use of cpp-httplib on the server side: adapts httplib::Server to HttpHandler.

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <thread>

#include "agent/http.h"
#include "agent/log.h"
#include "common/models.h"

namespace modbox {

HttpResponse json_response(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse error_response(const Error& error) { return json_response(http_status(error.kind), error_to_json(error)); }

namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

class HttplibListener final : public HttpListener {
 public:
  HttplibListener() = default;
  ~HttplibListener() override { stop(); }

  Result<void> start(const ListenAddress& address, HttpHandler handler, int threads) {
    handler_ = std::move(handler);
    over_tcp_ = address.unix_path.empty();
    server_.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
    server_.set_read_timeout(30, 0);
    server_.set_write_timeout(30, 0);
    server_.set_payload_max_length(limits::request_body_max_bytes + 1);
    // cpp-httplib listens with a backlog of 5, so a burst of connections (50 parallel execs on one
    // sandbox URL) overflows it and some are reset. Remember the socket to listen again, deeper.
    // Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    // client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
    server_.set_tcp_nodelay(true);
    server_.set_socket_options([this](socket_t sock) {
      httplib::default_socket_options(sock);
      listen_fd_ = sock;
    });
    auto dispatch = [this](const httplib::Request& request, httplib::Response& response) {
      serve(request, response);
    };
    server_.Get(".*", dispatch);
    server_.Post(".*", dispatch);
    server_.Put(".*", dispatch);
    server_.Delete(".*", dispatch);
    server_.Patch(".*", dispatch);
    server_.set_exception_handler([](const httplib::Request& request, httplib::Response& response, std::exception_ptr error) {
      std::string what = "unknown exception";
      try {
        if (error) std::rethrow_exception(error);
      } catch (const std::exception& exception) {
        what = exception.what();
      } catch (...) {
      }
      log_error("unhandled exception serving " + request.method + " " + request.path + ": " + what);
      response.status = 500;
      response.set_content(error_to_json(Error{ErrorKind::internal, "internal error: " + what, {}}), "application/json");
    });

    if (!over_tcp_) {
      ::unlink(address.unix_path.c_str());
      server_.set_address_family(AF_UNIX);
      // The socket is created with the process umask; restrict it before anyone can connect.
      mode_t previous = ::umask(0177);
      bool bound = server_.bind_to_port(address.unix_path.c_str(), 80);
      ::umask(previous);
      if (!bound) return fail(ErrorKind::internal, "cannot listen on unix socket " + address.unix_path);
      ::chmod(address.unix_path.c_str(), 0600);
      port_ = 0;
    } else if (address.port == 0) {
      port_ = server_.bind_to_any_port(address.host.c_str());
      if (port_ < 0) return fail(ErrorKind::internal, "cannot listen on " + address.host);
    } else {
      if (!server_.bind_to_port(address.host.c_str(), address.port))
        return fail(ErrorKind::conflict, "cannot listen on " + address.host + ":" + std::to_string(address.port) +
                                             " (port in use?)");
      port_ = address.port;
    }
    if (listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);
    thread_ = std::thread([this] {
      server_.listen_after_bind();
      listen_returned_ = true;
    });
    // cpp-httplib ignores stop() until listen_after_bind() has begun, so a listener stopped right
    // after start (a gateway port closed when provisioning fails) would serve on and hang in join.
    while (!server_.is_running() && !listen_returned_) std::this_thread::yield();
    return {};
  }

  int port() const override { return port_; }

  void stop() override {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }

 private:
  void serve(const httplib::Request& request, httplib::Response& response) {
    HttpRequest plain;
    plain.method = request.method;
    plain.path = request.path;
    plain.body = request.body;
    plain.over_tcp = over_tcp_;
    for (const auto& [name, value] : request.params) plain.query.emplace(name, value);
    for (const auto& [name, value] : request.headers) plain.headers.emplace(lower(name), value);
    HttpResponse answer = handler_(plain);
    response.status = answer.status;
    for (const auto& [name, value] : answer.headers) response.set_header(name, value);
    response.set_content(std::move(answer.body), answer.content_type.c_str());
  }

  httplib::Server server_;
  HttpHandler handler_;
  std::thread thread_;
  std::atomic<bool> listen_returned_ = false;
  bool over_tcp_ = true;
  int port_ = 0;
  int listen_fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<HttpListener>> HttpListener::start(const ListenAddress& address, HttpHandler handler,
                                                          int threads) {
  auto listener = std::make_unique<HttplibListener>();
  if (auto started = listener->start(address, std::move(handler), threads); !started)
    return std::unexpected(started.error());
  return std::unique_ptr<HttpListener>(std::move(listener));
}

}  // namespace modbox
