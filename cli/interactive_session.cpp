// The CLI's terminal client: Beast's WebSocket (in this translation unit only) on one thread, a
// thread that reads stdin, raw mode and signals.

#include "cli/interactive_session.h"

// clang-format off
#include <utility>  // before Asio, whose awaitable.hpp uses std::exchange without including it
// clang-format on

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "common/models.h"
#include "common/unique_fd.h"

namespace modbox {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

/// What is read from stdin at once, and so the most input one message carries.
constexpr std::size_t stdin_chunk = 64 << 10;

/// The local terminal in raw mode for as long as this lives: every byte goes to the sandbox as typed
/// (^C, ^D, ^Z included) and nothing is echoed here; the sandbox's terminal echoes.
class RawMode {
 public:
  explicit RawMode(int fd) : fd_(fd) {
    if (::tcgetattr(fd, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(fd, TCSADRAIN, &raw) == 0;
  }
  ~RawMode() {
    if (active_) ::tcsetattr(fd_, TCSADRAIN, &saved_);
  }
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;
  bool active() const { return active_; }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

/// The local terminal's size, from whichever of stdout, stdin and stderr is one.
std::optional<terminal::Resize> local_window_size() {
  for (int fd : {STDOUT_FILENO, STDIN_FILENO, STDERR_FILENO}) {
    winsize size{};
    if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 && size.ws_row > 0)
      return terminal::Resize{static_cast<std::uint16_t>(std::min<unsigned>(size.ws_col, terminal::size_max)),
                              static_cast<std::uint16_t>(std::min<unsigned>(size.ws_row, terminal::size_max))};
  }
  return std::nullopt;
}

/// Writes all of `bytes` to `fd`, waiting when it is non-blocking and full; false when it is gone.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && errno == EAGAIN) {
      pollfd entry{fd, POLLOUT, 0};
      ::poll(&entry, 1, -1);
      continue;
    }
    if (written <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return true;
}

/// Reads stdin on a thread of its own and hands each piece to the loop, one at a time: the next is
/// read once the loop says the last was sent (so input waits in the pipe, not in memory). The end
/// of stdin is handed over as nullopt.
class StdinReader {
 public:
  using Deliver = std::function<void(std::optional<std::string>)>;

  StdinReader(asio::io_context& io, Deliver deliver) : io_(io), deliver_(std::move(deliver)) {}
  ~StdinReader() { stop(); }
  StdinReader(const StdinReader&) = delete;
  StdinReader& operator=(const StdinReader&) = delete;

  Result<void> start() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return fail(ErrorKind::internal, "cannot create a pipe: " + std::string(std::strerror(errno)));
    wake_read_ = UniqueFd(fds[0]);
    wake_write_ = UniqueFd(fds[1]);
    thread_ = std::thread([this] { run(); });
    return {};
  }
  /// On the loop: the last piece was sent; read the next.
  void more() {
    std::lock_guard lock(mutex_);
    may_read_ = true;
    changed_.notify_one();
  }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      changed_.notify_one();
    }
    char byte = 0;
    [[maybe_unused]] auto ignored = ::write(wake_write_.get(), &byte, 1);
    thread_.join();
  }

 private:
  void run() {
    std::vector<char> buffer(stdin_chunk);
    for (;;) {
      pollfd entries[2] = {{STDIN_FILENO, POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
      if (::poll(entries, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return hand_over(std::nullopt);
      }
      if (entries[1].revents != 0) return;
      ssize_t got = ::read(STDIN_FILENO, buffer.data(), buffer.size());
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) return hand_over(std::nullopt);
      hand_over(std::string(buffer.data(), static_cast<std::size_t>(got)));
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return may_read_ || stopping_; });
      if (stopping_) return;
      may_read_ = false;
    }
  }
  void hand_over(std::optional<std::string> bytes) {
    asio::post(io_, [deliver = deliver_, bytes = std::move(bytes)]() mutable { deliver(std::move(bytes)); });
  }

  asio::io_context& io_;
  Deliver deliver_;
  UniqueFd wake_read_;
  UniqueFd wake_write_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool may_read_ = false;
  bool stopping_ = false;
};

struct Endpoint {
  std::string host;
  std::string port;
};

Result<Endpoint> endpoint_of(const std::string& url) {
  std::string_view rest(url);
  if (!rest.starts_with("http://"))
    return fail(ErrorKind::bad_request, "the sandbox URL " + url + " is not an http:// URL");
  rest.remove_prefix(7);
  rest = rest.substr(0, rest.find('/'));
  std::size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return Endpoint{std::string(rest), "80"};
  return Endpoint{std::string(rest.substr(0, colon)), std::string(rest.substr(colon + 1))};
}

class Client {
 public:
  explicit Client(const InteractiveOptions& options) : options_(options) {}

  Result<int> run() {
    auto opened = open();
    if (!opened) return std::unexpected(opened.error());
    std::optional<RawMode> raw;
    if (options_.session.tty && options_.forward_stdin && ::isatty(STDIN_FILENO)) raw.emplace(STDIN_FILENO);
    raw_ = raw && raw->active();
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.add(SIGHUP);
    if (options_.session.tty) signals_.add(SIGWINCH);
    wait_for_signal();
    read();
    if (options_.forward_stdin) {
      stdin_.emplace(io_, [this](std::optional<std::string> bytes) { on_stdin(std::move(bytes)); });
      if (auto started = stdin_->start(); !started) return std::unexpected(started.error());
    }
    io_.run();
    if (stdin_) stdin_->stop();
    raw.reset();  // before anything is printed
    if (signal_) return 128 + *signal_;
    if (exit_code_) return *exit_code_;
    return std::unexpected(
        failure_.value_or(Error{ErrorKind::unavailable, "the session ended without an exit status", {}}));
  }

 private:
  Result<void> open() {
    auto endpoint = endpoint_of(options_.sandbox_url);
    if (!endpoint) return std::unexpected(endpoint.error());
    ErrorCode error;
    tcp::resolver resolver(io_);
    auto addresses = resolver.resolve(endpoint->host, endpoint->port, error);
    if (!error) asio::connect(ws_.next_layer(), addresses, error);
    if (error)
      return fail(ErrorKind::unavailable, "cannot connect to " + options_.sandbox_url + " (" + error.message() + ")");
    ws_.next_layer().set_option(tcp::no_delay(true), error);

    terminal::SessionOptions session = options_.session;
    if (session.tty)
      if (auto size = local_window_size()) {
        session.cols = size->cols;
        session.rows = size->rows;
      }
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.set_option(websocket::stream_base::decorator([token = options_.token](websocket::request_type& request) {
      request.set(http::field::authorization, "Bearer " + token);
      request.set(http::field::user_agent, "modbox/" MODBOX_VERSION);
    }));
    ws_.read_message_max(terminal::message_max);
    ws_.auto_fragment(false);
    websocket::response_type response;
    ws_.handshake(response, endpoint->host + ":" + endpoint->port,
                  std::string(terminal::websocket_path) + "?" + terminal::session_query(session), error);
    if (error) {
      int status = static_cast<int>(response.result_int());
      if (status != 0 && status != 101) return std::unexpected(error_from_response(status, response.body()));
      return fail(ErrorKind::unavailable,
                  "cannot open the terminal of " + options_.sandbox_url + " (" + error.message() + ")");
    }
    return {};
  }

  // ---- the sandbox → here ----

  void read() {
    ws_.async_read(buffer_, [this](ErrorCode error, std::size_t) {
      if (finished_) return;
      if (error) return on_closed(error);
      std::string_view data(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      bool keep_on = ws_.got_text() ? on_event(data) : on_output(data);
      buffer_.consume(buffer_.size());
      if (keep_on) read();
    });
  }

  bool on_output(std::string_view data) {
    int fd = STDOUT_FILENO;
    if (!options_.session.tty) {
      if (data.empty()) return true;
      fd = static_cast<std::uint8_t>(data[0]) == static_cast<std::uint8_t>(terminal::OutputStream::stderr_stream)
               ? STDERR_FILENO
               : STDOUT_FILENO;
      data.remove_prefix(1);
    }
    if (write_all(fd, data)) return true;
    // Nobody reads our output any more (`modbox exec -i ... | head`): end as a pipeline would.
    signal_ = SIGPIPE;
    finish();
    return false;
  }

  bool on_event(std::string_view text) {
    auto event = terminal::parse_event(text);
    if (!event) {
      failure_ = event.error();
      finish();
      return false;
    }
    if (auto* exited = std::get_if<terminal::Exited>(&*event)) {
      exit_code_ = exited->exit_code;
    } else if (auto* failed = std::get_if<terminal::Failed>(&*event)) {
      // A refused control message (the session goes on), or the session's failure (the close follows).
      std::string line = "modbox: " + failed->message + (raw_ ? "\r\n" : "\n");
      write_all(STDERR_FILENO, line);
      last_failure_ = Error{ErrorKind::unavailable, failed->message, {}};
    }
    return true;
  }

  void on_closed(const ErrorCode& error) {
    if (!exit_code_ && !failure_ && last_failure_) failure_ = last_failure_;
    if (!exit_code_ && !failure_) {
      std::string why =
          error == websocket::error::closed
              ? "the sandbox closed the terminal before the command exited" +
                    (ws_.reason().reason.empty()
                         ? std::string()
                         : " (" + std::string(ws_.reason().reason.data(), ws_.reason().reason.size()) + ")")
              : "the connection to the sandbox was lost (" + error.message() + ")";
      failure_ = Error{ErrorKind::unavailable, why, {}};
    }
    finish();
  }

  // ---- here → the sandbox ----

  void on_stdin(std::optional<std::string> bytes) {
    if (finished_) return;
    if (bytes) return send(false, std::move(*bytes), [this] { stdin_->more(); });
    // The end of stdin: on pipes, the command's; a terminal that hangs up ends the session.
    if (options_.session.tty) {
      signal_ = SIGHUP;
      return finish();
    }
    send(true, terminal::control_message(terminal::EndOfInput{}), nullptr);
  }

  void wait_for_signal() {
    signals_.async_wait([this](ErrorCode error, int number) {
      if (error || finished_) return;
      if (number == SIGWINCH) {
        if (auto size = local_window_size()) send(true, terminal::control_message(*size), nullptr);
        return wait_for_signal();
      }
      // Given up on: closing the connection ends the session and kills its processes.
      signal_ = number;
      finish();
    });
  }

  void send(bool text, std::string message, std::function<void()> then) {
    outgoing_.push_back({text, std::move(message), std::move(then)});
    pump();
  }

  void pump() {
    if (writing_ || outgoing_.empty() || finished_) return;
    writing_ = true;
    ws_.text(outgoing_.front().text);
    ws_.async_write(asio::buffer(outgoing_.front().bytes), [this](ErrorCode error, std::size_t) {
      writing_ = false;
      if (finished_) return;
      if (error) return on_closed(error);
      auto then = std::move(outgoing_.front().then);
      outgoing_.pop_front();
      if (then) then();
      pump();
    });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    ErrorCode ignored;
    beast::get_lowest_layer(ws_).close(ignored);
    signals_.cancel(ignored);
    io_.stop();
  }

  struct Outgoing {
    bool text = false;
    std::string bytes;
    std::function<void()> then;
  };

  const InteractiveOptions& options_;
  asio::io_context io_{1};
  websocket::stream<tcp::socket> ws_{io_};
  asio::signal_set signals_{io_};
  beast::flat_buffer buffer_;
  std::optional<StdinReader> stdin_;
  std::deque<Outgoing> outgoing_;
  bool writing_ = false;
  bool raw_ = false;
  bool finished_ = false;
  std::optional<int> exit_code_;
  std::optional<int> signal_;
  std::optional<Error> failure_;       // why the session ended without an exit status
  std::optional<Error> last_failure_;  // the sandbox's last error event
};

}  // namespace

Result<int> run_interactive_session(const InteractiveOptions& options) {
  Client client(options);
  return client.run();
}

}  // namespace modbox
