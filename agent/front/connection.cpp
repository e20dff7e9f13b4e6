// One client connection of the front: request heads read and checked here, bodies read or streamed
// on the loop, handlers run on the pool, and requests for a sandbox's web services relayed through
// its helper — HTTP with keep-alive, streamed bodies, SSE and WebSocket.

#include "agent/front/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "agent/front/http_text.h"
#include "agent/front/proxy_auth.h"
#include "agent/front/terminal_bridge.h"
#include "agent/log.h"
#include "agent/multipart.h"
#include "common/models.h"
#include "common/terminal_protocol.h"

namespace modbox::front {

namespace asio = boost::asio;

namespace {

constexpr std::size_t head_read_size = 4096;
/// The most a body piece in flight holds, per direction: a slow reader slows its writer instead of
/// growing the agent's memory.
constexpr std::size_t piece_size = 64 << 10;
constexpr std::size_t tunnel_piece_size = 16 << 10;
/// A response body of known length is copied as it is, in pieces this large (the bound of a relayed
/// direction): no parsing, and a quarter of the system calls of 64 KiB pieces.
constexpr std::size_t raw_piece_size = 256 << 10;
constexpr std::size_t streamed_body_capacity = 256 << 10;
/// After the last answer of a connection that still has request bytes coming (an upload refused
/// half way), they are read and dropped for this long, so that closing does not reset the
/// connection under the answer before the client reads it.
constexpr auto linger_time = std::chrono::seconds(2);

/// A header value that cannot end the header line early, whatever its origin.
std::string safe_value(std::string_view value) {
  std::string safe(value);
  for (char& c : safe)
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  return safe;
}

/// One piece of a chunked body: its size in hex, the bytes, CRLF (RFC 9112 7.1).
std::string chunk_frame(std::string_view bytes) {
  char size[24];
  int length = std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
  std::string frame(size, static_cast<std::size_t>(length));
  frame.append(bytes);
  frame += "\r\n";
  return frame;
}

std::string status_line(int status) {
  auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason.empty() ? "Unknown" : reason) + "\r\n";
}

HttpResponse detail_response(int status, std::string sentence) {
  return json_response(status, error_to_json(Error{ErrorKind::bad_request, std::move(sentence), {}}));
}

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1); framing is set anew per hop.
bool is_hop_by_hop(const std::string& name, const std::vector<std::string>& connection_tokens) {
  static const char* const names[] = {"connection", "keep-alive",        "proxy-connection", "te",
                                      "trailer",    "transfer-encoding", "content-length",   "upgrade"};
  for (const char* hop : names)
    if (name == hop) return true;
  return std::find(connection_tokens.begin(), connection_tokens.end(), name) != connection_tokens.end();
}

std::vector<std::string> connection_tokens(std::string_view header) {
  std::vector<std::string> tokens;
  while (!header.empty()) {
    std::size_t comma = header.find(',');
    std::string token = lower_case(trim_blanks(header.substr(0, comma)));
    if (!token.empty()) tokens.push_back(std::move(token));
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
  }
  return tokens;
}

std::string chunk(std::string_view bytes) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
  std::string framed = size;
  framed += bytes;
  framed += "\r\n";
  return framed;
}

/// An error of the HTTP parser (a malformed body), as opposed to one of the socket.
bool is_parse_error(const ErrorCode& error) {
  return error.category() == http::make_error_code(http::error::bad_chunk).category();
}

std::string peer_address(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "127.0.0.1";
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&address)->sin_addr, text, sizeof text);
  else if (address.ss_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr, text, sizeof text);
  else
    return "127.0.0.1";
  return text;
}

}  // namespace

Connection::Connection(State& state, std::shared_ptr<Listener> listener, Socket socket)
    : state_(state), listener_(std::move(listener)), socket_(std::move(socket)), timer_(state.io) {}

void Connection::start() {
  if (listener_->over_tcp) {
    // Heads and bodies go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    // client's delayed ACK add ~40 ms to answers on a kept-alive connection.
    int one = 1;
    ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  read_head();
}

void Connection::abort() {
  close();
}

// ---- heads -----------------------------------------------------------------------------------

void Connection::read_head() {
  if (closed_) return;
  ++exchange_;
  parser_.reset();
  request_body_.clear();
  response_parser_.reset();
  upstream_.reset();
  upgrade_requested_ = chunked_to_client_ = close_delimited_ = false;
  // Between requests a connection keeps only small buffers: idle connections must stay cheap.
  if (buffer_.capacity() > 4 * head_read_size && buffer_.size() == 0) buffer_.shrink_to_fit();
  if (piece_.capacity() > piece_size) std::vector<char>().swap(piece_);
  upstream_buffer_ = {};
  // A new connection must send its head within the head timeout; a kept-alive one may idle first.
  awaiting_first_byte_ = exchange_ > 1 && buffer_.size() == 0;
  arm_timer(awaiting_first_byte_ ? state_.options.idle_timeout : state_.options.head_timeout);
  if (buffer_.size() > 0) return on_head_bytes({}, 0);
  socket_.async_read_some(
      buffer_.prepare(head_read_size),
      [self = shared_from_this()](ErrorCode error, std::size_t bytes) { self->on_head_bytes(error, bytes); });
}

void Connection::on_head_bytes(ErrorCode error, std::size_t bytes) {
  if (closed_) return;
  if (error) return close();
  buffer_.commit(bytes);
  if (awaiting_first_byte_ && buffer_.size() > 0) {
    awaiting_first_byte_ = false;
    arm_timer(state_.options.head_timeout);
  }
  std::string_view received(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  HeadScan scan = scan_request_head(received, state_.options.head_limits);
  if (scan.state == HeadScan::State::refused)
    return answer(detail_response(scan.refusal.status, scan.refusal.reason), false);
  if (scan.state == HeadScan::State::incomplete) {
    socket_.async_read_some(
        buffer_.prepare(head_read_size),
        [self = shared_from_this()](ErrorCode error, std::size_t bytes) { self->on_head_bytes(error, bytes); });
    return;
  }
  buffer_.consume(scan.skipped);
  std::string_view head(static_cast<const char*>(buffer_.data().data()), scan.head_size);
  if (auto refusal = check_request_head(head)) return answer(detail_response(refusal->status, refusal->reason), false);
  if (!parse_head(head)) return;
  buffer_.consume(scan.head_size);
  ++timer_generation_;
  timer_.cancel();
  handle_head();
}

bool Connection::parse_head(std::string_view head) {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(state_.options.head_limits.head_max + 1));
  parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  ErrorCode error;
  parser_->put(asio::buffer(head.data(), head.size()), error);
  if (error || !parser_->is_header_done()) {
    answer(detail_response(400, "the request head is malformed (" + error.message() + ")"), false);
    return false;
  }
  const auto& message = parser_->get();
  host_ = std::string(message[http::field::host]);
  keep_alive_ = parser_->keep_alive();
  return true;
}

HttpRequest Connection::plain_request() const {
  const auto& message = parser_->get();
  HttpRequest request;
  request.method = std::string(message.method_string());
  std::string_view target(message.target().data(), message.target().size());
  std::size_t question = target.find('?');
  request.path = url_decode(target.substr(0, question), false);
  if (question != std::string_view::npos) request.query = parse_query(target.substr(question + 1));
  for (const auto& field : message)
    request.headers.emplace(lower_case(std::string_view(field.name_string().data(), field.name_string().size())),
                            std::string(field.value()));
  request.over_tcp = listener_->over_tcp;
  return request;
}

void Connection::handle_head() {
  if (!listener_->sandbox) {
    HttpRequest head = plain_request();
    bool is_long = listener_->is_long && listener_->is_long(head);
    return serve_with_handler(listener_->handler, is_long);
  }
  std::string_view target(parser_->get().target().data(), parser_->get().target().size());
  if (listener_->sandbox_port == 0 && target.starts_with("/modbox/api/")) {
    SandboxSite* site = state_.site;
    std::string id = listener_->sandbox_id;
    // Its first authorized API call makes the connection the sandbox's activity, as a proxied one.
    if (!activity_.active() && !site->precheck_api(id, plain_request())) hold_activity();
    return serve_with_handler([site, id](HttpRequest& request) { return site->serve_api(id, request); }, true);
  }
  if (listener_->sandbox_port == 0 && is_agent_web_route(target.substr(0, target.find('?'))))
    return serve_agent_web_route();
  proxy();
}

// ---- requests served by a handler -----------------------------------------------------------------

void Connection::serve_with_handler(HttpHandler handler, bool is_long) {
  const auto& message = parser_->get();
  if (parser_->is_done()) return run_handler(std::move(handler), is_long, plain_request(), nullptr);

  // What the headers alone refuse: a declared length over the limit, or a compressed body (a small
  // gzip body can inflate without bound).
  auto declared = parser_->content_length();
  std::uint64_t body_max = listener_->options.body_max_bytes;
  if (declared && *declared > body_max)
    return answer(
        error_response(Error{ErrorKind::too_large,
                             "the request body is larger than the limit of " + std::to_string(body_max) + " bytes",
                             {}}),
        false);
  std::string_view encoding(message[http::field::content_encoding].data(),
                            message[http::field::content_encoding].size());
  if (!encoding.empty() && !equals_ignoring_case(encoding, "identity"))
    return answer(
        detail_response(415, "compressed request bodies (Content-Encoding) are not accepted; send the body as it is"),
        false);

  auto go_on = [self = shared_from_this(), handler = std::move(handler), is_long]() mutable {
    const auto& message = self->parser_->get();
    std::string_view type(message[http::field::content_type].data(), message[http::field::content_type].size());
    auto boundary = self->listener_->options.stream_multipart ? multipart_boundary(type) : std::nullopt;
    if (!boundary) return self->read_whole_body(std::move(handler), is_long);
    auto pipe = std::make_shared<BytePipe>(streamed_body_capacity);
    std::weak_ptr<Connection> weak = self;
    std::uint64_t exchange = self->exchange_;
    pipe->set_on_room([weak, pipe_weak = std::weak_ptr<BytePipe>(pipe), exchange, io = &self->state_.io] {
      asio::post(*io, [weak, pipe_weak, exchange] {
        auto connection = weak.lock();
        auto pipe = pipe_weak.lock();
        if (connection && pipe && !connection->closed_ && connection->exchange_ == exchange)
          connection->stream_body(pipe);
      });
    });
    HttpRequest request = self->plain_request();
    auto stall = self->state_.options.stream_stall_timeout;
    request.read_multipart = [pipe, boundary = *boundary, stall](const MultipartPartHandler& on_part,
                                                                 const BodyChunkHandler& on_data) {
      MultipartParser parser(boundary, on_part, on_data);
      for (;;) {
        auto bytes = pipe->pop_wait(BytePipe::Clock::now() + stall);
        if (!bytes) return pipe->end() == BytePipe::End::finished && parser.complete();
        if (!parser.feed(*bytes)) return false;
      }
    };
    self->request_pipe_ = pipe;
    self->stream_body(pipe);
    self->run_handler(std::move(handler), is_long, std::move(request), pipe);
  };

  std::string_view expect(message[http::field::expect].data(), message[http::field::expect].size());
  if (!equals_ignoring_case(expect, "100-continue")) return go_on();
  // A client that waits before sending its body hears a refusal of its credentials first.
  HttpRequest head = plain_request();
  std::optional<HttpResponse> refusal;
  if (listener_->sandbox)
    refusal = state_.site->precheck_api(listener_->sandbox_id, head);
  else if (listener_->options.precheck)
    refusal = listener_->options.precheck(head);
  if (refusal) return answer(std::move(*refusal), false);
  write_then("HTTP/1.1 100 Continue\r\n\r\n", std::move(go_on));
}

void Connection::read_whole_body(HttpHandler handler, bool is_long) {
  buffer_.reserve(piece_size);
  piece_.resize(piece_size);
  parser_->get().body().data = piece_.data();
  parser_->get().body().size = piece_.size();
  arm_timer(state_.options.stream_stall_timeout);
  http::async_read_some(
      socket_, buffer_, *parser_,
      [self = shared_from_this(), handler = std::move(handler), is_long, exchange = exchange_](ErrorCode error,
                                                                                               std::size_t) mutable {
        if (self->closed_ || exchange != self->exchange_) return;
        if (error == http::error::need_buffer) error = {};
        if (error) {
          if (is_parse_error(error))
            return self->answer(detail_response(400, "the request body could not be read (" + error.message() + ")"),
                                false);
          return self->close();
        }
        std::size_t got = self->piece_.size() - self->parser_->get().body().size;
        if (self->request_body_.size() + got > limits::request_body_max_bytes)
          return self->answer(error_response(Error{ErrorKind::too_large,
                                                   "the request body is larger than the limit of " +
                                                       std::to_string(limits::request_body_max_bytes) + " bytes",
                                                   {}}),
                              false);
        self->request_body_.append(self->piece_.data(), got);
        if (!self->parser_->is_done()) return self->read_whole_body(std::move(handler), is_long);
        ++self->timer_generation_;
        self->timer_.cancel();
        HttpRequest request = self->plain_request();
        request.body = std::exchange(self->request_body_, {});
        self->run_handler(std::move(handler), is_long, std::move(request), nullptr);
      });
}

void Connection::stream_body(std::shared_ptr<BytePipe> pipe) {
  if (closed_ || pipe->end() != BytePipe::End::open) return;
  buffer_.reserve(piece_size);
  piece_.resize(piece_size);
  parser_->get().body().data = piece_.data();
  parser_->get().body().size = piece_.size();
  http::async_read_some(socket_, buffer_, *parser_,
                        [self = shared_from_this(), pipe, exchange = exchange_](ErrorCode error, std::size_t) {
                          if (self->closed_ || exchange != self->exchange_) return;
                          if (error == http::error::need_buffer) error = {};
                          if (error) {
                            // The handler reads a cut-off body and answers; a client that is gone
                            // gets nothing more.
                            pipe->abort();
                            if (!is_parse_error(error)) self->close();
                            return;
                          }
                          std::size_t got = self->piece_.size() - self->parser_->get().body().size;
                          bool room = pipe->push(std::string(self->piece_.data(), got));
                          if (self->parser_->is_done()) return pipe->finish();
                          if (room) self->stream_body(pipe);
                        });
}

void Connection::run_handler(HttpHandler handler, bool is_long, HttpRequest request, std::shared_ptr<BytePipe> body) {
  auto shared_request = std::make_shared<HttpRequest>(std::move(request));
  if (body == nullptr && parser_->is_done()) {
    // Nothing reads the socket until the answer: the handler asks whether its client is still there.
    auto gone = std::make_shared<std::atomic<bool>>(false);
    shared_request->client_connected = [gone] { return !gone->load(); };
    watch_while_handling(gone);
  }
  auto kind = is_long ? WorkPool::Kind::long_call : WorkPool::Kind::short_call;
  State* state = &state_;
  bool submitted = state_.pool.submit(kind, [self = shared_from_this(), state, handler = std::move(handler),
                                             shared_request, body, exchange = exchange_] {
    HttpResponse response;
    try {
      response = handler(*shared_request);
    } catch (const std::exception& error) {
      log_error("unhandled exception serving " + shared_request->method + " " + shared_request->path + ": " +
                error.what());
      response = json_response(
          500, error_to_json(Error{ErrorKind::internal, std::string("internal error: ") + error.what(), {}}));
    }
    if (body) body->abort();  // whatever of the request body the handler left is not wanted
    std::shared_ptr<BytePipe> out;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    bool chunked = response.stream && response.stream_chunked;
    if (chunked) {
      out = std::make_shared<BytePipe>(streamed_body_capacity);
    } else if (response.stream && response.stream_length > 0) {
      length = response.stream_length;
      const std::string* range = shared_request->header("range");
      if (response.status == 206 && range != nullptr) {
        if (auto wanted = single_byte_range(*range, response.stream_length)) {
          offset = wanted->first;
          length = wanted->last - wanted->first + 1;
          response.headers["Content-Range"] = "bytes " + std::to_string(wanted->first) + "-" +
                                              std::to_string(wanted->last) + "/" +
                                              std::to_string(response.stream_length);
        }
      }
      out = std::make_shared<BytePipe>(streamed_body_capacity);
    }
    if (out) {
      std::weak_ptr<Connection> weak = self;
      out->set_on_data([weak, io = &state->io, pipe_weak = std::weak_ptr<BytePipe>(out)] {
        asio::post(*io, [weak, pipe_weak] {
          auto connection = weak.lock();
          auto pipe = pipe_weak.lock();
          if (connection && pipe && !connection->closed_) connection->pump_response_body(pipe);
        });
      });
    }
    auto stream = std::move(response.stream);
    response.stream = nullptr;
    response.stream_length = length;
    asio::post(state->io, [self, response = std::move(response), out, exchange]() mutable {
      if (self->closed_ || exchange != self->exchange_) {
        if (out) out->abort();
        return;
      }
      self->send_response(std::move(response), out);
    });
    if (out) {
      auto stall = state->options.stream_stall_timeout;
      bool complete = stream(offset, length, [&out, stall, chunked](std::string_view bytes) {
        // Empty bytes ask only whether the client is still there (and taking what it was sent).
        if (!chunked || bytes.empty()) return out->push_wait(std::string(bytes), BytePipe::Clock::now() + stall);
        return out->push_wait(chunk_frame(bytes), BytePipe::Clock::now() + stall);
      });
      if (complete && chunked) complete = out->push_wait("0\r\n\r\n", BytePipe::Clock::now() + stall);
      if (complete)
        out->finish();
      else
        out->abort();
    }
  });
  if (!submitted)
    answer(detail_response(503, "the agent is serving " + std::to_string(state_.options.long_calls_max) +
                                    " long calls (wait, exec, transfers) already; try again when some end"),
           body == nullptr && parser_->is_done());
}

void Connection::send_response(HttpResponse response, std::shared_ptr<BytePipe> body_source) {
  if (request_pipe_) {
    request_pipe_->abort();
    request_pipe_ = nullptr;
  }
  // An answer of unknown length is the connection's last: nothing is read while it streams, so
  // only closing tells the client's next request apart from a hang-up.
  bool keep_alive = keep_alive_ && parser_->is_done() && !response.close_connection && !response.stream_chunked;
  if (!body_source) return answer(std::move(response), keep_alive);
  std::string head = status_line(response.status);
  if (!response.content_type.empty()) head += "Content-Type: " + safe_value(response.content_type) + "\r\n";
  for (const auto& [name, value] : response.headers) head += name + ": " + safe_value(value) + "\r\n";
  if (response.stream_chunked)
    head += "Transfer-Encoding: chunked\r\n";
  else
    head += "Content-Length: " + std::to_string(response.stream_length) + "\r\n";
  if (!keep_alive) head += "Connection: close\r\n";
  head += "\r\n";
  response_pipe_ = body_source;
  response_keep_alive_ = keep_alive;
  if (response.stream_chunked) watch_for_hang_up(body_source);
  write_then(std::move(head), [self = shared_from_this(), body_source] { self->pump_response_body(body_source); });
}

void Connection::watch_while_handling(std::shared_ptr<std::atomic<bool>> gone) {
  // A client that leaves makes the socket readable with nothing to read. One that sends its next
  // request early (pipelining) is still there: the watch ends, and so does the request's.
  socket_.async_wait(Socket::wait_read, [self = shared_from_this(), gone, exchange = exchange_](ErrorCode error) {
    if (error || self->closed_ || exchange != self->exchange_) return;
    ErrorCode ignored;
    if (self->socket_.available(ignored) == 0) gone->store(true);
  });
}

void Connection::watch_for_hang_up(std::shared_ptr<BytePipe> pipe) {
  // The handler may wait long between pieces (a followed log): a client that leaves meanwhile makes
  // the socket readable with nothing to read, which ends the answer and so frees its worker.
  socket_.async_wait(Socket::wait_read, [self = shared_from_this(), pipe](ErrorCode error) {
    if (error || self->closed_ || self->response_pipe_ != pipe) return;
    ErrorCode ignored;
    if (self->socket_.available(ignored) == 0) self->close();
  });
}

void Connection::pump_response_body(std::shared_ptr<BytePipe> pipe) {
  if (closed_ || response_pipe_ != pipe || writing_) return;
  waiting_for_data_ = nullptr;
  if (auto bytes = pipe->try_pop()) {
    writing_ = true;
    arm_timer(state_.options.stream_stall_timeout);
    auto held = std::make_shared<std::string>(std::move(*bytes));
    asio::async_write(socket_, asio::buffer(*held),
                      [self = shared_from_this(), held, pipe](ErrorCode error, std::size_t) {
                        self->writing_ = false;
                        if (self->closed_) return;
                        if (error) return self->close();
                        self->pump_response_body(pipe);
                      });
    return;
  }
  switch (pipe->end()) {
    case BytePipe::End::finished:
      ++timer_generation_;
      timer_.cancel();
      response_pipe_ = nullptr;
      return finish_exchange(response_keep_alive_);
    case BytePipe::End::aborted:
      // The handler could not produce what it announced: the cut shows as a closed connection.
      return close();
    case BytePipe::End::open:
      // on_data posts the next round. No operation is pending meanwhile, and the worker that
      // fills the pipe holds the connection only until it finishes: hold it here.
      waiting_for_data_ = shared_from_this();
      return;
  }
}

// ---- requests relayed into the sandbox -----------------------------------------------------------

std::optional<ProxyAuthVerdict> Connection::let_in() {
  bool body_pending = !parser_->is_done();
  if (!listener_->target) {
    auto target = state_.site->proxy_target(listener_->sandbox_id, listener_->sandbox_port);
    if (!target) {
      answer(error_response(target.error()), keep_alive_ && !body_pending);
      return std::nullopt;
    }
    listener_->target = std::move(*target);
  }
  const auto& message = parser_->get();
  std::string cookies;
  for (auto [field, end] = message.equal_range(http::field::cookie); field != end; ++field) {
    if (!cookies.empty()) cookies += "; ";
    cookies += std::string(field->value());
  }
  std::string authorization(message[http::field::authorization]);
  ProxyRequestView view{.method = std::string_view(message.method_string().data(), message.method_string().size()),
                        .target = std::string_view(message.target().data(), message.target().size()),
                        .authorization = message.count(http::field::authorization) ? &authorization : nullptr,
                        .cookie = cookies.empty() ? nullptr : &cookies};
  ProxyCredentials credentials{.sandbox_id = listener_->sandbox_id,
                               .host_port = listener_->host_port,
                               .api_key = listener_->target->api_key,
                               .owner_token = state_.options.owner_token};
  ProxyAuthVerdict verdict = authorize_proxy_request(credentials, view);
  bool keep_alive = keep_alive_ && !body_pending;
  switch (verdict.kind) {
    case ProxyAuthVerdict::Kind::unauthorized: {
      HttpResponse response = detail_response(401, verdict.reason);
      response.headers["WWW-Authenticate"] = "Bearer";
      answer(std::move(response), keep_alive);
      return std::nullopt;
    }
    case ProxyAuthVerdict::Kind::forbidden:
      answer(detail_response(403, verdict.reason), keep_alive);
      return std::nullopt;
    case ProxyAuthVerdict::Kind::redirect: {
      HttpResponse response;
      response.status = 302;
      response.content_type = "text/plain; charset=utf-8";
      response.body = "authenticated; continue at " + verdict.location + "\n";
      response.headers["Location"] = verdict.location;
      response.headers["Set-Cookie"] = verdict.set_cookie;
      response.headers["Cache-Control"] = "no-store";
      response.headers["Referrer-Policy"] = "no-referrer";
      answer(std::move(response), keep_alive);
      return std::nullopt;
    }
    case ProxyAuthVerdict::Kind::allow:
      break;
  }
  return verdict;
}

void Connection::serve_agent_web_route() {
  auto verdict = let_in();
  if (!verdict) return;
  hold_activity();
  if (HttpRequest head = plain_request(); head.path == terminal::websocket_path) return open_terminal(head);
  SandboxSite* site = state_.site;
  std::string id = listener_->sandbox_id;
  serve_with_handler(
      [site, id](HttpRequest& request) {
        request.query.erase("token");  // the credential, when it came in the query
        return site->serve_web(id, request);
      },
      true);
}

void Connection::proxy() {
  auto verdict = let_in();
  if (!verdict) return;
  const ProxyTarget* target = &*listener_->target;
  upstream_port_ = target->port;
  const auto& message = parser_->get();
  // An open connection keeps the sandbox from idling (seed 004), for as long as it stays open:
  // counted once here, not per byte.
  hold_activity();

  // The head that goes into the sandbox: as the client sent it, without what belongs to this hop or
  // to modbox, with the forwarding headers and this hop's framing.
  upgrade_requested_ = parser_->upgrade();
  auto tokens = connection_tokens(
      std::string_view(message[http::field::connection].data(), message[http::field::connection].size()));
  std::string head = std::string(message.method_string()) + " " + verdict->forwarded_target + " HTTP/1.1\r\n";
  for (const auto& field : message) {
    std::string name = lower_case(std::string_view(field.name_string().data(), field.name_string().size()));
    if (is_hop_by_hop(name, tokens) || name == "expect" || name == "cookie" || name == "x-forwarded-for" ||
        name == "x-forwarded-proto" || name == "x-forwarded-host")
      continue;
    if (name == "authorization" && verdict->drop_authorization) continue;
    head += std::string(field.name_string()) + ": " + std::string(field.value()) + "\r\n";
  }
  if (verdict->forwarded_cookie) head += "Cookie: " + *verdict->forwarded_cookie + "\r\n";
  head += "X-Forwarded-For: " + (listener_->over_tcp ? peer_address(socket_.native_handle()) : "127.0.0.1") + "\r\n";
  head += "X-Forwarded-Proto: http\r\n";
  if (!host_.empty()) head += "X-Forwarded-Host: " + host_ + "\r\n";
  if (upgrade_requested_)
    head += "Connection: Upgrade\r\nUpgrade: " + std::string(message[http::field::upgrade]) + "\r\n";
  else
    head += "Connection: close\r\n";
  if (auto length = parser_->content_length())
    head += "Content-Length: " + std::to_string(*length) + "\r\n";
  else if (parser_->chunked())
    head += "Transfer-Encoding: chunked\r\n";
  head += "\r\n";
  upstream_head_ = std::move(head);
  open_relay(*target);
}

void Connection::hold_activity() {
  if (activity_.active()) return;
  if (!listener_->target) {
    auto target = state_.site->proxy_target(listener_->sandbox_id, listener_->sandbox_port);
    if (!target) return;  // not running: nothing to keep from idling
    listener_->target = std::move(*target);
  }
  if (listener_->target->activity) activity_ = listener_->target->activity->hold();
}

void Connection::open_relay(const ProxyTarget& target) {
  State* state = &state_;
  bool submitted =
      state_.pool.submit(WorkPool::Kind::long_call, [self = shared_from_this(), state, target, exchange = exchange_] {
        auto relay = std::make_shared<Result<UniqueFd>>(state->site->open_relay(target));
        asio::post(state->io, [self, relay, exchange] {
          if (self->closed_ || exchange != self->exchange_) return;
          self->on_relay(std::move(*relay));
        });
      });
  if (!submitted)
    answer(detail_response(503, "the agent is serving " + std::to_string(state_.options.long_calls_max) +
                                    " long calls already; try again when some end"),
           false);
}

void Connection::on_relay(Result<UniqueFd> relay) {
  if (!relay) return upstream_failed(relay.error().message);
  upstream_.emplace(state_.io);
  ErrorCode error;
  upstream_->assign(Protocol(AF_UNIX, 0), relay->release(), error);
  if (error) return upstream_failed("cannot use the relay: " + error.message());
  const auto& message = parser_->get();
  std::string_view expect(message[http::field::expect].data(), message[http::field::expect].size());
  if (!parser_->is_done() && equals_ignoring_case(expect, "100-continue"))
    return write_then("HTTP/1.1 100 Continue\r\n\r\n", [self = shared_from_this()] { self->send_upstream_head(); });
  send_upstream_head();
}

void Connection::send_upstream_head() {
  auto head = std::make_shared<std::string>(std::move(upstream_head_));
  asio::async_write(*upstream_, asio::buffer(*head),
                    [self = shared_from_this(), head, exchange = exchange_](ErrorCode error, std::size_t) {
                      if (self->closed_ || exchange != self->exchange_) return;
                      if (error) return self->upstream_failed("the relay closed before the request was sent");
                      if (self->parser_->is_done()) return self->read_upstream_head();
                      self->forward_request_body();
                    });
}

void Connection::forward_request_body() {
  buffer_.reserve(piece_size);
  piece_.resize(piece_size);
  parser_->get().body().data = piece_.data();
  parser_->get().body().size = piece_.size();
  http::async_read_some(
      socket_, buffer_, *parser_, [self = shared_from_this(), exchange = exchange_](ErrorCode error, std::size_t) {
        if (self->closed_ || exchange != self->exchange_) return;
        if (error == http::error::need_buffer) error = {};
        if (error && is_parse_error(error)) {
          // Nothing of the answer has been read yet: the client hears why, and the app's
          // half-sent request is cut off with its connection.
          ErrorCode ignored;
          if (self->upstream_) self->upstream_->close(ignored);
          self->upstream_.reset();
          return self->answer(detail_response(400, "the request's body is malformed (" + error.message() +
                                                       "); nothing more was sent on"),
                              false);
        }
        if (error) return self->close();
        std::size_t got = self->piece_.size() - self->parser_->get().body().size;
        std::string_view bytes(self->piece_.data(), got);
        bool done = self->parser_->is_done();
        std::string out;
        if (self->parser_->chunked()) {
          if (!bytes.empty()) out = chunk(bytes);
          if (done) out += "0\r\n\r\n";
        } else {
          out = std::string(bytes);
        }
        auto held = std::make_shared<std::string>(std::move(out));
        asio::async_write(*self->upstream_, asio::buffer(*held),
                          [self, held, done, exchange](ErrorCode error, std::size_t) {
                            if (self->closed_ || exchange != self->exchange_) return;
                            if (error) return self->close();
                            if (done) return self->read_upstream_head();
                            self->forward_request_body();
                          });
      });
}

void Connection::read_upstream_head() {
  response_parser_.emplace();
  response_parser_->header_limit(static_cast<std::uint32_t>(state_.options.head_limits.head_max));
  response_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  if (parser_->get().method() == http::verb::head) response_parser_->skip(true);
  http::async_read_header(*upstream_, upstream_buffer_, *response_parser_,
                          [self = shared_from_this(), exchange = exchange_](ErrorCode error, std::size_t) {
                            if (self->closed_ || exchange != self->exchange_) return;
                            self->on_upstream_head(error);
                          });
}

void Connection::on_upstream_head(ErrorCode error) {
  if (error)
    return upstream_failed("the server on port " + std::to_string(upstream_port_) +
                           " in the sandbox closed the connection without a complete answer (" + error.message() + ")");
  const auto& response = response_parser_->get();
  int status = static_cast<int>(response.result_int());
  auto tokens = connection_tokens(
      std::string_view(response[http::field::connection].data(), response[http::field::connection].size()));
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + std::string(response.reason()) + "\r\n";
  for (const auto& field : response) {
    std::string name = lower_case(std::string_view(field.name_string().data(), field.name_string().size()));
    if (is_hop_by_hop(name, tokens)) continue;
    head += std::string(field.name_string()) + ": " + std::string(field.value()) + "\r\n";
  }

  if (status == 101 && upgrade_requested_) {
    head += "Connection: Upgrade\r\nUpgrade: " + std::string(response[http::field::upgrade]) + "\r\n\r\n";
    return write_then(std::move(head), [self = shared_from_this()] { self->tunnel(); });
  }
  if (status >= 100 && status < 200) {
    // An interim answer (103 Early Hints): passed on, then the final one follows.
    head += "\r\n";
    return write_then(std::move(head), [self = shared_from_this()] { self->read_upstream_head(); });
  }

  bool no_body = response_parser_->is_done();
  auto length = response_parser_->content_length();
  if (no_body) {
    // HEAD and 304 answers tell the length of what a GET would get.
    if (response.count(http::field::content_length))
      head += "Content-Length: " + std::string(response[http::field::content_length]) + "\r\n";
  } else if (length) {
    head += "Content-Length: " + std::to_string(*length) + "\r\n";
  } else if (parser_->get().version() >= 11) {
    chunked_to_client_ = true;
    head += "Transfer-Encoding: chunked\r\n";
  } else {
    close_delimited_ = true;
  }
  response_keep_alive_ = keep_alive_ && !close_delimited_ && !upgrade_requested_;
  if (!response_keep_alive_) head += "Connection: close\r\n";
  head += "\r\n";
  std::optional<std::uint64_t> raw_length;
  if (!no_body && length) raw_length = *length;
  write_then(std::move(head), [self = shared_from_this(), no_body, raw_length] {
    if (no_body) return self->finish_proxied();
    if (raw_length) return self->relay_raw_body(*raw_length);
    self->forward_response_body();
  });
}

void Connection::relay_raw_body(std::uint64_t remaining) {
  if (remaining == 0) return finish_proxied();
  auto self = shared_from_this();
  std::uint64_t exchange = exchange_;
  if (upstream_buffer_.size() > 0) {
    // What came with the head goes first.
    auto take = static_cast<std::size_t>(std::min<std::uint64_t>(upstream_buffer_.size(), remaining));
    asio::async_write(socket_, asio::buffer(upstream_buffer_.data().data(), take),
                      [self, take, remaining, exchange](ErrorCode error, std::size_t) {
                        if (self->closed_ || exchange != self->exchange_) return;
                        if (error) return self->close();
                        self->upstream_buffer_.consume(take);
                        self->relay_raw_body(remaining - take);
                      });
    return;
  }
  piece_.resize(raw_piece_size);
  auto want = static_cast<std::size_t>(std::min<std::uint64_t>(piece_.size(), remaining));
  upstream_->async_read_some(asio::buffer(piece_.data(), want),
                             [self, remaining, exchange](ErrorCode error, std::size_t bytes) {
                               if (self->closed_ || exchange != self->exchange_) return;
                               // A server that hangs up before the whole body: the client sees the cut.
                               if (error) return self->close();
                               asio::async_write(self->socket_, asio::buffer(self->piece_.data(), bytes),
                                                 [self, remaining, bytes, exchange](ErrorCode error, std::size_t) {
                                                   if (self->closed_ || exchange != self->exchange_) return;
                                                   if (error) return self->close();
                                                   self->relay_raw_body(remaining - bytes);
                                                 });
                             });
}

void Connection::forward_response_body() {
  // Beast reads as much as the buffer has room for, and this one has only held heads so far.
  upstream_buffer_.reserve(piece_size);
  piece_.resize(piece_size);
  response_parser_->get().body().data = piece_.data();
  response_parser_->get().body().size = piece_.size();
  http::async_read_some(*upstream_, upstream_buffer_, *response_parser_,
                        [self = shared_from_this(), exchange = exchange_](ErrorCode error, std::size_t) {
                          if (self->closed_ || exchange != self->exchange_) return;
                          if (error == http::error::need_buffer) error = {};
                          bool ended = error == http::error::end_of_stream && self->close_delimited_;
                          // A server that hangs up in the middle of a body: the client sees the cut.
                          if (error && !ended) return self->close();
                          std::size_t got = self->piece_.size() - self->response_parser_->get().body().size;
                          std::string_view bytes(self->piece_.data(), ended ? 0 : got);
                          bool done = ended || self->response_parser_->is_done();
                          std::string out;
                          if (self->chunked_to_client_) {
                            if (!bytes.empty()) out = chunk(bytes);
                            if (done) out += "0\r\n\r\n";
                          } else {
                            out = std::string(bytes);
                          }
                          auto next = [self, done] {
                            if (done) return self->finish_proxied();
                            self->forward_response_body();
                          };
                          if (out.empty()) return next();
                          self->write_then(std::move(out), std::move(next));
                        });
}

void Connection::finish_proxied() {
  ErrorCode ignored;
  if (upstream_) upstream_->close(ignored);
  upstream_.reset();
  upstream_buffer_.clear();
  finish_exchange(response_keep_alive_);
}

void Connection::tunnel() {
  // After 101 the connection carries the upgraded protocol (WebSocket) both ways, byte for byte.
  // Bytes that came with the heads go first.
  struct Leg {
    Socket* from;
    Socket* to;
    std::vector<char> data;
    bool ended = false;
  };
  struct Tunnel {
    Leg legs[2];
  };
  auto tunnel = std::make_shared<Tunnel>();
  tunnel->legs[0] = {&socket_, &*upstream_, std::vector<char>(tunnel_piece_size)};
  tunnel->legs[1] = {&*upstream_, &socket_, std::vector<char>(tunnel_piece_size)};
  auto self = shared_from_this();
  auto run = std::make_shared<std::function<void(int)>>();
  std::weak_ptr<std::function<void(int)>> weak_run = run;
  *run = [self, tunnel, weak_run](int index) {
    auto run = weak_run.lock();
    if (!run || self->closed_) return;
    Leg& leg = tunnel->legs[index];
    leg.from->async_read_some(asio::buffer(leg.data), [self, tunnel, run, index](ErrorCode error, std::size_t bytes) {
      if (self->closed_) return;
      Leg& leg = tunnel->legs[index];
      if (error == asio::error::eof) {
        // One side is done sending: tell the other, and end when both are.
        ErrorCode ignored;
        leg.to->shutdown(asio::socket_base::shutdown_send, ignored);
        leg.ended = true;
        if (tunnel->legs[0].ended && tunnel->legs[1].ended) self->close();
        return;
      }
      if (error) return self->close();
      asio::async_write(*leg.to, asio::buffer(leg.data.data(), bytes),
                        [self, run, index](ErrorCode error, std::size_t) {
                          if (self->closed_) return;
                          if (error) return self->close();
                          (*run)(index);
                        });
    });
  };
  tunnel_ = run;  // held by the connection while the tunnel lasts
  auto start_leg = [self, run](int index, std::string leftover, Socket& to) {
    if (leftover.empty()) return (*run)(index);
    auto held = std::make_shared<std::string>(std::move(leftover));
    asio::async_write(to, asio::buffer(*held), [self, run, held, index](ErrorCode error, std::size_t) {
      if (self->closed_) return;
      if (error) return self->close();
      (*run)(index);
    });
  };
  std::string from_client(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  buffer_.consume(buffer_.size());
  std::string from_server(static_cast<const char*>(upstream_buffer_.data().data()), upstream_buffer_.size());
  upstream_buffer_.consume(upstream_buffer_.size());
  start_leg(0, std::move(from_client), *upstream_);
  start_leg(1, std::move(from_server), socket_);
}

void Connection::upstream_failed(const std::string& sentence) {
  ErrorCode ignored;
  if (upstream_) upstream_->close(ignored);
  upstream_.reset();
  answer(detail_response(502, sentence), keep_alive_ && parser_ && parser_->is_done());
}

// ---- writing and ending ------------------------------------------------------------------------

void Connection::write_then(std::string bytes, std::function<void()> next) {
  auto held = std::make_shared<std::string>(std::move(bytes));
  asio::async_write(socket_, asio::buffer(*held),
                    [self = shared_from_this(), held, next = std::move(next)](ErrorCode error, std::size_t) {
                      if (self->closed_) return;
                      if (error) return self->close();
                      next();
                    });
}

void Connection::answer(HttpResponse response, bool keep_alive) {
  keep_alive = keep_alive && !response.close_connection;
  std::string out = status_line(response.status);
  bool has_body = !response.body.empty();
  if (has_body && !response.content_type.empty()) out += "Content-Type: " + safe_value(response.content_type) + "\r\n";
  for (const auto& [name, value] : response.headers) out += name + ": " + safe_value(value) + "\r\n";
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  if (!keep_alive)
    out += "Connection: close\r\n";
  else if (parser_ && parser_->get().version() < 11)
    out += "Connection: keep-alive\r\n";
  out += "\r\n";
  bool head_request = parser_ && parser_->get().method() == http::verb::head;
  if (!head_request) out += response.body;
  write_then(std::move(out), [self = shared_from_this(), keep_alive] { self->finish_exchange(keep_alive); });
}

void Connection::finish_exchange(bool keep_alive) {
  if (closed_) return;
  if (keep_alive) return read_head();
  // Done with this connection. Bytes the client may still be sending (a body nobody read) are read
  // and dropped for a moment, so that the close does not reset the answer away.
  ErrorCode ignored;
  socket_.shutdown(asio::socket_base::shutdown_send, ignored);
  ++exchange_;
  arm_timer(std::chrono::duration_cast<std::chrono::milliseconds>(linger_time));
  auto drain = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak_drain = drain;
  *drain = [self = shared_from_this(), weak_drain] {
    auto drain = weak_drain.lock();
    if (!drain || self->closed_) return;
    self->piece_.resize(piece_size);
    self->socket_.async_read_some(asio::buffer(self->piece_), [self, drain](ErrorCode error, std::size_t) {
      if (self->closed_) return;
      if (error) return self->close();
      (*drain)();
    });
  };
  tunnel_drain_ = drain;
  (*drain)();
}

void Connection::close() {
  if (closed_) return;
  // What is released below (the relay's closures, the wait for a handler's bytes) may hold the
  // last references to this connection: it lives until the end of this function.
  auto self = shared_from_this();
  closed_ = true;
  ++timer_generation_;
  timer_.cancel();
  ErrorCode ignored;
  socket_.close(ignored);
  if (upstream_) upstream_->close(ignored);
  if (request_pipe_) request_pipe_->abort();
  if (response_pipe_) response_pipe_->abort();
  if (auto terminal = std::move(terminal_)) terminal->abort();
  tunnel_ = nullptr;
  tunnel_drain_ = nullptr;
  waiting_for_data_ = nullptr;
  activity_.release();
  state_.forget(this);
}

void Connection::arm_timer(std::chrono::milliseconds after) {
  std::uint64_t generation = ++timer_generation_;
  timer_.expires_after(after);
  timer_.async_wait([self = shared_from_this(), generation](ErrorCode error) {
    if (error || self->closed_ || generation != self->timer_generation_) return;
    self->close();
  });
}

}  // namespace modbox::front
