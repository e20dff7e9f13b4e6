// The agent's only use of cpp-httplib on the server side: adapts httplib::Server to HttpHandler.

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <thread>

#include "agent/http.h"
#include "agent/log.h"
#include "agent/multipart.h"
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

/// Where a multipart request's Content-Type is kept while httplib must not see it.
constexpr const char* multipart_type_header = "X-Modbox-Multipart-Content-Type";

/// Every path, line breaks included (decoded from %0A): `.` alone does not match them.
constexpr const char* any_path = R"([\s\S]*)";

class HttplibListener final : public HttpListener {
 public:
  HttplibListener() = default;
  ~HttplibListener() override { stop(); }

  Result<void> start(const ListenOptions& options, HttpHandler handler, int threads) {
    handler_ = std::move(handler);
    over_tcp_ = options.unix_path.empty();
    server_.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
    server_.set_read_timeout(30, 0);
    server_.set_write_timeout(30, 0);
    body_max_ = options.body_max_bytes;
    server_.set_payload_max_length(static_cast<std::size_t>(body_max_));
    // A client that asks before sending a body hears at once that it is too large.
    precheck_ = options.precheck;
    server_.set_expect_100_continue_handler([this](const httplib::Request& request, httplib::Response& response) {
      // An answer here goes out without httplib's usual framing, and the client may send its body
      // anyway after a while (curl does after 1 s): give it a length and close the connection.
      if (auto refusal = refuse_from_headers(request)) {
        int status = refusal->status;
        send(std::move(*refusal), response);
        close_after(response, true);
        return status;
      }
      if (precheck_) {
        if (auto answer = precheck_(plain_request(request))) {
          int status = answer->status;
          send(std::move(*answer), response);
          close_after(response, true);
          return status;
        }
      }
      return 100;
    });
    // httplib's own error answers (a malformed request, a body over the limit) carry no body:
    // give them the API's {"detail": ...} shape.
    server_.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& response) {
      if (!response.body.empty() || response.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
      std::string sentence = response.status == 413   ? "the request body is too large"
                             : response.status == 404 ? "no such route"
                                                       : "the request could not be read (HTTP " +
                                                             std::to_string(response.status) + ")";
      response.set_content(error_to_json(Error{ErrorKind::bad_request, sentence, {}}), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }));
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
    // Bodies are read here, bounded, after the checks on the headers: never by httplib itself,
    // which would read (and inflate) them whole before any handler runs.
    stream_multipart_ = options.stream_multipart;
    // httplib parses every multipart/form-data body with its own parser, whose buffer grows
    // without bound on some malformed bodies. Hide the type from it (the request object is
    // httplib's own, non-const, local; only the handler signature is const): the body then
    // reaches our bounded reader and MultipartParser as plain bytes.
    server_.set_pre_routing_handler([](const httplib::Request& request, httplib::Response&) {
      auto& headers = const_cast<httplib::Request&>(request).headers;
      if (auto it = headers.find("Content-Type"); it != headers.end() && multipart_boundary(it->second)) {
        std::string type = it->second;
        headers.erase(it);
        headers.emplace(multipart_type_header, type);
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    auto read_body = [this](const httplib::Request& request, httplib::Response& response,
                            const httplib::ContentReader& reader) { serve_with_body(request, response, reader); };
    server_.Get(any_path, dispatch);
    server_.Post(any_path, read_body);
    server_.Put(any_path, read_body);
    server_.Patch(any_path, read_body);
    server_.Delete(any_path, read_body);
    server_.Delete(any_path, dispatch);  // a DELETE without a body
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
      ::unlink(options.unix_path.c_str());
      server_.set_address_family(AF_UNIX);
      // The socket is created with the process umask; restrict it before anyone can connect.
      mode_t previous = ::umask(0177);
      bool bound = server_.bind_to_port(options.unix_path.c_str(), 80);
      ::umask(previous);
      if (!bound) return fail(ErrorKind::internal, "cannot listen on unix socket " + options.unix_path);
      ::chmod(options.unix_path.c_str(), 0600);
      port_ = 0;
    } else if (options.port == 0) {
      port_ = server_.bind_to_any_port(options.host.c_str());
      if (port_ < 0) return fail(ErrorKind::internal, "cannot listen on " + options.host);
    } else {
      if (!server_.bind_to_port(options.host.c_str(), options.port))
        return fail(ErrorKind::conflict, "cannot listen on " + options.host + ":" + std::to_string(options.port) +
                                             " (port in use?)");
      port_ = options.port;
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
  HttpRequest plain_request(const httplib::Request& request) const {
    HttpRequest plain;
    plain.method = request.method;
    plain.path = request.path;
    plain.over_tcp = over_tcp_;
    for (const auto& [name, value] : request.params) plain.query.emplace(name, value);
    for (const auto& [name, value] : request.headers) plain.headers.emplace(lower(name), value);
    // The handler sees the Content-Type the client sent.
    auto hidden = plain.headers.find(lower(multipart_type_header));
    if (hidden != plain.headers.end()) {
      plain.headers["content-type"] = hidden->second;
      plain.headers.erase(hidden);
    }
    return plain;
  }

  /// A request without a body (GET, a DELETE without one): bodies go through serve_with_body.
  void serve(const httplib::Request& request, httplib::Response& response) {
    HttpRequest plain = plain_request(request);
    send(handler_(plain), response);
  }

  /// A request whose body is read here: refused from its headers when they say it is too large
  /// or compressed; multipart bodies streamed to the handler where the listener allows it; other
  /// bodies read whole within the usual bound.
  void serve_with_body(const httplib::Request& request, httplib::Response& response,
                       const httplib::ContentReader& reader) {
    if (auto refusal = refuse_from_headers(request)) {
      send(std::move(*refusal), response);
      close_after(response, false);
      return;
    }
    HttpRequest plain = plain_request(request);
    if (stream_multipart_ && request.has_header(multipart_type_header)) {
      auto boundary = multipart_boundary(request.get_header_value(multipart_type_header));
      plain.read_multipart = [&reader, boundary = boundary.value_or("")](const MultipartPartHandler& on_part,
                                                                          const BodyChunkHandler& on_data) {
        MultipartParser parser(boundary, on_part, on_data);
        bool read = reader([&](const char* data, std::size_t length) { return parser.feed({data, length}); });
        return read && parser.complete();
      };
      return send(handler_(plain), response);
    }
    bool too_large = false;
    bool complete = reader([&](const char* data, std::size_t length) {
      too_large = plain.body.size() + length > limits::request_body_max_bytes;
      if (!too_large) plain.body.append(data, length);
      return !too_large;
    });
    if (!complete) {
      HttpResponse refusal = too_large ? too_large_response()
                                       : error_response(Error{ErrorKind::bad_request, "the request body could not be read", {}});
      send(std::move(refusal), response);
      close_after(response, false);
      return;
    }
    send(handler_(plain), response);
  }

  /// What the headers alone refuse: a declared length over the limit, or a compressed body (a
  /// small gzip body can inflate without bound).
  std::optional<HttpResponse> refuse_from_headers(const httplib::Request& request) const {
    if (declared_too_large(request)) return too_large_response();
    if (request.has_header("Content-Encoding") && request.get_header_value("Content-Encoding") != "identity")
      return json_response(415, error_to_json(Error{ErrorKind::bad_request,
                                                    "compressed request bodies (Content-Encoding) are not accepted; "
                                                    "send the body as it is",
                                                    {}}));
    return std::nullopt;
  }

  void send(HttpResponse answer, httplib::Response& response) {
    response.status = answer.status;
    for (const auto& [name, value] : answer.headers) response.set_header(name, value);
    if (answer.stream && answer.stream_length > 0) {
      response.set_content_provider(
          static_cast<std::size_t>(answer.stream_length), answer.content_type,
          [stream = std::move(answer.stream), called = false](std::size_t offset, std::size_t length,
                                                               httplib::DataSink& sink) mutable {
            // httplib asks for the range it announced (all of it, or the request's one Range) and
            // writes whatever the sink is given: exactly that range goes out, in the first call;
            // a second call means it fell short.
            if (called) return false;
            called = true;
            return stream(offset, length,
                          [&sink](std::string_view bytes) { return sink.write(bytes.data(), bytes.size()); });
          });
      return;
    }
    response.set_content(std::move(answer.body), answer.content_type.c_str());
    if (answer.close_connection) close_after(response, false);
  }

  bool declared_too_large(const httplib::Request& request) const {
    if (!request.has_header("Content-Length")) return false;
    return std::strtoull(request.get_header_value("Content-Length").c_str(), nullptr, 10) > body_max_;
  }

  HttpResponse too_large_response() const {
    return error_response(Error{
        ErrorKind::too_large, "the request body is larger than the limit of " + std::to_string(body_max_) + " bytes", {}});
  }

  /// Makes httplib close the connection after sending `response`: the request's body was not
  /// read to its end, so the connection cannot carry another request. httplib closes a
  /// connection whose body writer fails, so the body goes out through one that reports failure
  /// after writing it. `set_length`: the answer goes out without httplib's framing (the 100
  /// Continue path), so Content-Length is set here.
  static void close_after(httplib::Response& response, bool set_length) {
    response.set_header("Connection", "close");
    std::string body = std::move(response.body);
    response.body.clear();
    if (body.empty()) body = " ";  // a writer is what closes the connection, and it needs a byte
    std::string type = response.get_header_value("Content-Type");
    response.headers.erase("Content-Type");  // set_content_provider adds it again
    if (set_length) response.set_header("Content-Length", std::to_string(body.size()));
    std::size_t length = body.size();
    response.set_content_provider(
        length, type, [body = std::move(body)](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
          if (offset < body.size()) sink.write(body.data() + offset, std::min(length, body.size() - offset));
          return false;
        });
  }

  httplib::Server server_;
  HttpHandler handler_;
  HttpPrecheck precheck_;
  std::thread thread_;
  std::atomic<bool> listen_returned_ = false;
  bool over_tcp_ = true;
  bool stream_multipart_ = false;
  std::uint64_t body_max_ = limits::request_body_max_bytes;
  int port_ = 0;
  int listen_fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<HttpListener>> HttpListener::start(const ListenOptions& options, HttpHandler handler,
                                                          int threads) {
  auto listener = std::make_unique<HttplibListener>();
  if (auto started = listener->start(options, std::move(handler), threads); !started)
    return std::unexpected(started.error());
  return std::unique_ptr<HttpListener>(std::move(listener));
}

}  // namespace modbox
