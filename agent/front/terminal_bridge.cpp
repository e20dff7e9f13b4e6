// A sandbox's terminal on the front's loop: the WebSocket (Beast, in this translation unit only)
// bridged to the helper's interactive session; and the Connection's side of opening one.

#include "agent/front/terminal_bridge.h"

#include <boost/beast/websocket.hpp>
#include <deque>

#include "agent/front/http_text.h"
#include "agent/log.h"
#include "common/helper_protocol.h"
#include "common/terminal_protocol.h"

namespace modbox::front {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;

namespace {

/// What is read from the helper at once: one output frame's worth (helper::output_chunk_max).
constexpr std::size_t session_read_size = 64 << 10;
/// What is read of a client's message at once.
constexpr std::size_t client_read_size = 64 << 10;
/// A quiet client is pinged after half of this, and dropped when it has not answered by the end.
constexpr auto client_idle_timeout = std::chrono::seconds(60);
/// How long the closing handshake may take before the connection is just closed.
constexpr auto close_timeout = std::chrono::seconds(5);

/// The helper's frames that carry `bytes` of input, each at most helper::data_chunk_max.
std::string input_frames(std::string_view bytes) {
  std::string frames;
  while (!bytes.empty()) {
    std::size_t size = std::min(bytes.size(), helper::data_chunk_max);
    frames += helper::encode(helper::Data{std::string(bytes.substr(0, size))});
    bytes.remove_prefix(size);
  }
  return frames;
}

class Bridge final : public TerminalBridge, public std::enable_shared_from_this<Bridge> {
 public:
  Bridge(TerminalStart start, std::function<void()> on_end)
      : ws_(std::move(start.client)),
        session_(ws_.get_executor()),
        upgrade_(std::move(start.upgrade)),
        session_fd_(std::move(start.session)),
        pid_(start.pid),
        tty_(start.tty),
        on_end_(std::move(on_end)) {}

  void run() {
    ErrorCode error;
    session_.assign(Protocol(AF_UNIX, 0), session_fd_.release(), error);
    if (!error) session_.non_blocking(true, error);
    if (error) return end(true);
    // The message limit is enforced here, as the message comes (refuse_too_big), not by Beast.
    ws_.read_message_max(0);
    // Output goes out as one frame per message, whatever its size.
    ws_.auto_fragment(false);
    websocket::stream_base::timeout timeout{};
    timeout.handshake_timeout = close_timeout;
    timeout.idle_timeout = client_idle_timeout;
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& response) { response.set(http::field::server, "modboxd"); }));
    // The client's close ends the session at once, not after the closing handshake's teardown.
    ws_.control_callback([weak = weak_from_this()](websocket::frame_type kind, beast::string_view) {
      if (auto self = weak.lock(); self && kind == websocket::frame_type::close) self->close_session();
    });
    ws_.async_accept(upgrade_, [self = shared_from_this()](ErrorCode error) {
      if (self->ended_) return;
      if (error) return self->end(true);
      self->send(true, terminal::event_message(terminal::Ready{self->pid_}), nullptr);
      self->read_session();
      self->read_client();
    });
  }

  void abort() override { end(false); }

  /// Closes the session's connection, which makes the helper kill its processes.
  void close_session() {
    closing_ = true;
    ErrorCode ignored;
    session_.close(ignored);
  }

 private:
  // ---- the session's output → the client ----

  void read_session() {
    if (ended_ || closing_) return;
    if (paused_) {
      output_waiting_ = true;
      return;
    }
    // Waits without a buffer, and reads into the loop's own: an idle terminal holds no output buffer.
    session_.async_wait(Socket::wait_read, [self = shared_from_this()](ErrorCode error) {
      if (self->ended_ || !self->session_.is_open()) return;
      std::size_t bytes = 0;
      if (!error) bytes = self->session_.read_some(asio::buffer(session_scratch()), error);
      if (error == asio::error::would_block) return self->read_session();
      if (error)
        return self->fail("the sandbox's helper ended the session without its exit status (" + error.message() + ")");
      self->decoder_.feed(std::string_view(session_scratch().data(), bytes));
      self->forward_output();
    });
  }

  /// What a read from a session goes into: one buffer for every terminal, since all of them run on
  /// the loop's thread and the bytes are decoded before the next read.
  static std::vector<char>& session_scratch() {
    thread_local std::vector<char> scratch(session_read_size);
    return scratch;
  }

  /// Sends what the frames read so far carry: output, coalesced into one message per stream, then
  /// the exit; reads on once it is written.
  void forward_output() {
    std::vector<std::string> messages;
    std::optional<terminal::OutputStream> last_stream;
    std::optional<terminal::Event> final_event;
    while (!final_event) {
      auto next = decoder_.next();
      if (!next) return fail("the sandbox's helper broke the session protocol (" + next.error().message + ")");
      if (!*next) break;
      if (auto* output = std::get_if<helper::Output>(&**next)) {
        auto stream = output->stream == helper::Stream::stderr_stream ? terminal::OutputStream::stderr_stream
                                                                      : terminal::OutputStream::stdout_stream;
        if (tty_) {
          if (messages.empty()) messages.emplace_back();
          messages.back() += output->data;
        } else if (last_stream == stream) {
          messages.back() += output->data;
        } else {
          messages.push_back(terminal::pipe_output_message(stream, output->data));
          last_stream = stream;
        }
      } else if (auto* exit = std::get_if<helper::Exit>(&**next)) {
        final_event = terminal::Exited{exit->exit_code, exit->signal};
      } else if (auto* failure = std::get_if<helper::Failure>(&**next)) {
        final_event = terminal::Failed{failure->message.substr(0, helper::message_max)};
      } else {
        return fail("the sandbox's helper sent a frame that has no place in a session");
      }
    }
    // Nothing left half-read: let go of what the decoder grew to.
    if (decoder_.pending() == 0) decoder_ = helper::FrameDecoder();
    for (std::size_t i = 0; i < messages.size(); ++i) {
      std::function<void()> then;
      if (i + 1 == messages.size() && !final_event) then = [self = shared_from_this()] { self->read_session(); };
      send(false, std::move(messages[i]), std::move(then));
    }
    if (final_event) return finish(*final_event);
    if (messages.empty()) read_session();
  }

  /// Tells the client how the session ended, then closes: 1000 after an exit, 1011 after a failure.
  void finish(const terminal::Event& event) {
    // The session is over: its connection goes now, whatever the client's closing handshake takes.
    close_session();
    auto code = std::holds_alternative<terminal::Exited>(event) ? websocket::close_code::normal
                                                                : websocket::close_code::internal_error;
    send(true, terminal::event_message(event), [self = shared_from_this(), code] {
      self->ws_.async_close(websocket::close_reason(code), [self](ErrorCode) { self->end(true); });
    });
  }

  void fail(const std::string& sentence) {
    if (closing_) return;
    finish(terminal::Failed{sentence});
  }

  // ---- the client's messages → the session ----

  void read_client() {
    if (ended_) return;
    ws_.async_read_some(client_buffer_, client_read_size, [self = shared_from_this()](ErrorCode error, std::size_t) {
      if (self->ended_) return;
      // The client closed (a close frame, which Beast answered) or went away: the session ends too.
      if (error) return self->end(true);
      if (self->client_buffer_.size() > terminal::message_max) return self->refuse_too_big();
      if (!self->ws_.is_message_done()) return self->read_client();
      std::string message = beast::buffers_to_string(self->client_buffer_.data());
      self->client_buffer_.consume(self->client_buffer_.size());
      // A paste of a megabyte must not stay with the terminal for its lifetime.
      if (self->client_buffer_.capacity() > client_read_size) self->client_buffer_.shrink_to_fit();
      if (self->ws_.got_binary()) return self->write_session(input_frames(message));
      self->on_control(message);
    });
  }

  /// A message over the limit: close 1009, with the closing handshake (which drains the rest of the
  /// message) rather than Beast's own refusal, which ends the connection right after its close frame
  /// and so can reset a client that is still sending the message before it reads why.
  void refuse_too_big() {
    close_session();
    client_buffer_ = beast::flat_buffer();
    ws_.async_close(websocket::close_reason(websocket::close_code::too_big),
                    [self = shared_from_this()](ErrorCode) { self->end(true); });
  }

  void on_control(std::string_view text) {
    auto control = terminal::parse_control(text);
    if (!control)
      return send(true, terminal::event_message(terminal::Failed{control.error().message}),
                  [self = shared_from_this()] { self->read_client(); });
    std::string frames;
    bool ends_input = false;
    if (auto* resize = std::get_if<terminal::Resize>(&*control)) {
      frames = helper::encode(helper::SessionResize{resize->cols, resize->rows});
    } else if (auto* signal = std::get_if<terminal::Signal>(&*control)) {
      frames = helper::encode(helper::SessionSignal{signal->number});
    } else if (std::holds_alternative<terminal::EndOfInput>(*control)) {
      frames = helper::encode(helper::End{});
      ends_input = true;
    } else if (auto* input = std::get_if<terminal::Input>(&*control)) {
      frames = input_frames(input->bytes);
    } else if (std::holds_alternative<terminal::Pause>(*control)) {
      paused_ = true;
    } else if (std::holds_alternative<terminal::Resume>(*control)) {
      paused_ = false;
      if (output_waiting_) {
        output_waiting_ = false;
        read_session();
      }
    }
    write_session(std::move(frames), ends_input);
  }

  /// Writes `frames` to the session, then reads the client's next message. Input after the end of
  /// input, or once the session stopped taking it (it exited: its exit is on the way), is dropped.
  void write_session(std::string frames, bool ends_input = false) {
    if (frames.empty() || input_closed_ || !session_.is_open()) return read_client();
    if (ends_input) input_closed_ = true;
    auto held = std::make_shared<std::string>(std::move(frames));
    asio::async_write(session_, asio::buffer(*held), [self = shared_from_this(), held](ErrorCode error, std::size_t) {
      if (self->ended_) return;
      if (error) self->input_closed_ = true;
      self->read_client();
    });
  }

  // ---- writing to the client, one message at a time ----

  void send(bool text, std::string message, std::function<void()> then) {
    outgoing_.push_back({text, std::move(message), std::move(then)});
    pump();
  }

  void pump() {
    if (writing_ || outgoing_.empty() || ended_) return;
    writing_ = true;
    ws_.text(outgoing_.front().text);
    ws_.async_write(asio::buffer(outgoing_.front().bytes), [self = shared_from_this()](ErrorCode error, std::size_t) {
      self->writing_ = false;
      if (self->ended_) return;
      if (error) {
        // The WebSocket is closing (Beast refused a message over the limit and answers 1009, or the
        // client closed) or broken: the session ends, and the read in progress ends the rest once
        // the closing handshake is done, so the client is not reset before it reads the close.
        self->close_session();
        self->outgoing_.clear();
        return;
      }
      auto then = std::move(self->outgoing_.front().then);
      self->outgoing_.pop_front();
      if (then) then();
      self->pump();
    });
  }

  /// Closes both ends; the helper kills the session's processes when its connection closes.
  void end(bool notify) {
    if (ended_) return;
    auto self = shared_from_this();
    ended_ = true;
    ErrorCode ignored;
    beast::get_lowest_layer(ws_).close(ignored);
    session_.close(ignored);
    outgoing_.clear();
    auto on_end = std::move(on_end_);
    on_end_ = nullptr;
    if (notify && on_end) on_end();
  }

  struct Outgoing {
    bool text = false;
    std::string bytes;
    std::function<void()> then;  // once written
  };

  websocket::stream<Socket> ws_;
  Socket session_;
  http::request<http::empty_body> upgrade_;
  UniqueFd session_fd_;
  const std::uint32_t pid_;
  const bool tty_;
  std::function<void()> on_end_;
  helper::FrameDecoder decoder_;
  beast::flat_buffer client_buffer_;
  std::deque<Outgoing> outgoing_;  // at most a read's worth of output and one answer to a control
  bool writing_ = false;
  bool paused_ = false;          // the client asked for no output for now
  bool output_waiting_ = false;  // a read from the session waits for the client's resume
  bool closing_ = false;         // the session's end is being told: nothing more is read from it
  bool input_closed_ = false;
  bool ended_ = false;
};

}  // namespace

std::shared_ptr<TerminalBridge> start_terminal_bridge(TerminalStart start, std::function<void()> on_end) {
  auto bridge = std::make_shared<Bridge>(std::move(start), std::move(on_end));
  bridge->run();
  return bridge;
}

// ---- the Connection's side: opening a terminal ----------------------------------------------------

namespace {

HttpResponse refusal(int status, std::string sentence) {
  HttpResponse response = error_response(Error{ErrorKind::bad_request, std::move(sentence), {}});
  response.status = status;
  return response;
}

}  // namespace

void Connection::open_terminal(const HttpRequest& head) {
  const auto& message = parser_->get();
  std::string_view upgrade(message[http::field::upgrade].data(), message[http::field::upgrade].size());
  std::string_view version(message[http::field::sec_websocket_version].data(),
                           message[http::field::sec_websocket_version].size());
  std::string_view key(message[http::field::sec_websocket_key].data(), message[http::field::sec_websocket_key].size());
  // Checked before the session starts, so that the upgrade cannot be refused once it runs.
  if (message.method() != http::verb::get || !parser_->upgrade() || !equals_ignoring_case(upgrade, "websocket")) {
    HttpResponse response =
        refusal(426, "/terminal/ws is a WebSocket: open it with Upgrade: websocket (the page at /terminal/ does)");
    response.headers["Upgrade"] = "websocket";
    return answer(std::move(response), false);
  }
  if (version != "13") {
    HttpResponse response = refusal(426, "only WebSocket version 13 (RFC 6455) is spoken here");
    response.headers["Sec-WebSocket-Version"] = "13";
    return answer(std::move(response), false);
  }
  if (key.empty() || key.size() > 24)
    return answer(refusal(400, "the Sec-WebSocket-Key is missing or malformed"), false);
  if (!parser_->is_done() || buffer_.size() > 0)
    return answer(refusal(400, "a WebSocket client sends nothing before the server's answer to its upgrade"), false);
  auto options = terminal::session_options_from_query(head.query);
  if (!options) return answer(error_response(options.error()), false);

  helper::SessionOpen request{.tty = options->tty,
                              .cols = options->cols,
                              .rows = options->rows,
                              .command = options->command,
                              .cwd = options->cwd,
                              .env = options->env};
  bool tty = options->tty;
  State* state = &state_;
  ProxyTarget target = *listener_->target;
  bool submitted = state_.pool.submit(
      WorkPool::Kind::long_call, [self = shared_from_this(), state, target, request, tty, exchange = exchange_] {
        auto session = std::make_shared<Result<SessionConnection>>(state->site->open_session(target, request));
        asio::post(state->io, [self, session, tty, exchange] {
          // A connection closed meanwhile drops the session here, which ends it.
          if (self->closed_ || exchange != self->exchange_) return;
          self->on_terminal_session(std::move(*session), tty);
        });
      });
  if (!submitted)
    answer(refusal(503, "the agent is serving " + std::to_string(state_.options.long_calls_max) +
                            " long calls already; try again when some end"),
           false);
}

void Connection::on_terminal_session(Result<SessionConnection> session, bool tty) {
  if (!session) return answer(error_response(session.error()), false);
  TerminalStart start{.client = std::move(socket_),
                      .upgrade = http::request<http::empty_body>(parser_->get().base()),
                      .session = std::move(session->connection),
                      .pid = session->pid,
                      .tty = tty};
  terminal_ = start_terminal_bridge(std::move(start), [self = shared_from_this()] { self->close(); });
}

}  // namespace modbox::front
