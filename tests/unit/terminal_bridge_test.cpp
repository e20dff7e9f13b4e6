// The terminal's WebSocket on the front (agent/front/terminal_bridge.h) over real sockets: a WebSocket
// client written here frame by frame, and the test itself as the helper, on the far end of each
// session's socket pair. Checked: refusals before anything starts, output and input both ways, the
// control messages as helper frames (and refused ones as error events that leave the session going),
// pipes' stream byte, the exit and its close, 1009, and the client's close or the sandbox's destroy
// closing the session.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <mutex>
#include <nlohmann/json.hpp>

#include "agent/front/front.h"
#include "common/helper_protocol.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// A site whose sessions are socket pairs: the test holds the helper's end.
class SessionSite final : public SandboxSite {
 public:
  HttpResponse serve_api(const std::string&, HttpRequest&) override { return json_response(200, "{}"); }
  HttpResponse serve_web(const std::string&, HttpRequest& request) override {
    return json_response(200, "{\"web\":\"" + request.path + "\"}");
  }
  std::optional<HttpResponse> precheck_api(const std::string&, const HttpRequest&) override { return std::nullopt; }
  Result<ProxyTarget> proxy_target(const std::string&, int sandbox_port) override {
    return ProxyTarget{.helper_socket = "/nonexistent",
                       .port = sandbox_port ? sandbox_port : 8080,
                       .api_key = "key",
                       .activity = activity};
  }
  Result<UniqueFd> open_relay(const ProxyTarget&) override { return fail(ErrorKind::bad_gateway, "no relays"); }
  Result<SessionConnection> open_session(const ProxyTarget&, const helper::SessionOpen& request) override {
    std::lock_guard lock(mutex_);
    requests.push_back(request);
    if (refusal) return std::unexpected(*refusal);
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return fail(ErrorKind::internal, "socketpair");
    helper_ends.emplace_back(pair[1]);
    return SessionConnection{UniqueFd(pair[0]), 4242};
  }
  /// The helper's end of the last session opened.
  int helper_end() {
    std::lock_guard lock(mutex_);
    REQUIRE(!helper_ends.empty());
    return helper_ends.back().get();
  }
  std::size_t sessions() {
    std::lock_guard lock(mutex_);
    return requests.size();
  }
  helper::SessionOpen last_request() {
    std::lock_guard lock(mutex_);
    REQUIRE(!requests.empty());
    return requests.back();
  }

  std::optional<Error> refusal;
  std::shared_ptr<SandboxActivity> activity =
      std::make_shared<SandboxActivity>([] { return std::chrono::system_clock::now(); });

 private:
  std::mutex mutex_;
  std::vector<helper::SessionOpen> requests;
  std::vector<UniqueFd> helper_ends;
};

/// Bytes from `fd` until `done(bytes)` or the end, within `timeout`.
std::string read_from(int fd, std::string& buffer, const std::function<bool(const std::string&)>& done,
                      std::chrono::milliseconds timeout, bool* ended = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(buffer)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd entry{fd, POLLIN, 0};
    if (::poll(&entry, 1, static_cast<int>(left.count())) <= 0) break;
    char chunk[65536];
    ssize_t got = ::read(fd, chunk, sizeof chunk);
    if (got <= 0) {
      if (ended != nullptr) *ended = true;
      break;
    }
    buffer.append(chunk, static_cast<std::size_t>(got));
  }
  return buffer;
}

void send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent <= 0) return;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
}

/// The test playing the helper on a session's far end: reads the agent's frames, writes its own.
class FakeHelper {
 public:
  explicit FakeHelper(int fd) : fd_(fd) {}
  /// The next frame from the agent, or nullopt when none comes in time or the agent closed.
  std::optional<helper::Message> next(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto message = decoder_.next();
      REQUIRE(message.has_value());
      if (*message) return **message;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || closed_) return std::nullopt;
      std::string bytes;
      read_from(
          fd_, bytes, [](const std::string& got) { return !got.empty(); }, left, &closed_);
      decoder_.feed(bytes);
    }
  }
  /// Whether the agent closed its end (which kills the session) within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      std::string bytes;
      read_from(
          fd_, bytes, [](const std::string& got) { return !got.empty(); }, left, &closed_);
      decoder_.feed(bytes);
    }
    return closed_;
  }
  void send(const helper::Message& message) { send_all(fd_, helper::encode(message)); }

 private:
  int fd_;
  helper::FrameDecoder decoder_;
  bool closed_ = false;
};

/// A WebSocket client, frame by frame (RFC 6455): masked frames out, unmasked frames in.
class WsClient {
 public:
  struct Frame {
    int opcode = 0;  // 1 text, 2 binary, 8 close
    std::string payload;
    int close_code() const {
      return payload.size() >= 2
                 ? (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1])
                 : 0;
    }
  };

  explicit WsClient(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }

  /// Sends the upgrade for `target`; the answer's head (its status line first).
  std::string upgrade(const std::string& target, const std::string& headers = "Authorization: Bearer key\r\n") {
    send_all(fd_.get(), "GET " + target +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                            headers + "\r\n");
    read_from(
        fd_.get(), buffer_, [](const std::string& got) { return got.find("\r\n\r\n") != std::string::npos; }, 5s);
    auto end = buffer_.find("\r\n\r\n");
    if (end == std::string::npos) return std::exchange(buffer_, {});
    std::string head = buffer_.substr(0, end + 4);
    buffer_.erase(0, end + 4);
    return head;
  }

  void send(int opcode, std::string_view payload) {
    std::string frame(1, static_cast<char>(0x80 | opcode));
    if (payload.size() < 126) {
      frame += static_cast<char>(0x80 | payload.size());
    } else if (payload.size() < 65536) {
      frame += static_cast<char>(0x80 | 126);
      frame += static_cast<char>(payload.size() >> 8);
      frame += static_cast<char>(payload.size() & 0xff);
    } else {
      frame += static_cast<char>(0x80 | 127);
      for (int shift = 56; shift >= 0; shift -= 8) frame += static_cast<char>((payload.size() >> shift) & 0xff);
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    frame.append(mask, 4);
    for (std::size_t i = 0; i < payload.size(); ++i) frame += static_cast<char>(payload[i] ^ mask[i % 4]);
    send_all(fd_.get(), frame);
  }
  void text(const json& message) { send(1, message.dump()); }
  void binary(std::string_view bytes) { send(2, bytes); }
  void close(int code) { send(8, std::string{static_cast<char>(code >> 8), static_cast<char>(code & 0xff)}); }

  /// The next frame from the server (pings answered on the way), or nullopt.
  std::optional<Frame> next(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto frame = take()) {
        if (frame->opcode == 9) {
          send(10, frame->payload);
          continue;
        }
        return frame;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ended_) return std::nullopt;
      std::size_t had = buffer_.size();
      read_from(
          fd_.get(), buffer_, [had](const std::string& got) { return got.size() > had; }, left, &ended_);
    }
  }
  /// The next text frame, as JSON.
  json next_event() {
    auto frame = next();
    REQUIRE(frame.has_value());
    INFO("opcode " << frame->opcode << ": " << frame->payload.substr(0, 200));
    REQUIRE(frame->opcode == 1);
    return json::parse(frame->payload);
  }
  /// Whether the server closed the connection within `timeout` (frames before the end are dropped).
  bool ended_within(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!ended_ && std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      buffer_.clear();
      read_from(
          fd_.get(), buffer_, [](const std::string&) { return false; }, left, &ended_);
    }
    return ended_;
  }

 private:
  std::optional<Frame> take() {
    if (buffer_.size() < 2) return std::nullopt;
    auto byte = [&](std::size_t at) { return static_cast<unsigned char>(buffer_[at]); };
    std::size_t length = byte(1) & 0x7f;
    std::size_t at = 2;
    if (length == 126) {
      if (buffer_.size() < 4) return std::nullopt;
      length = (byte(2) << 8) | byte(3);
      at = 4;
    } else if (length == 127) {
      if (buffer_.size() < 10) return std::nullopt;
      length = 0;
      for (std::size_t i = 2; i < 10; ++i) length = (length << 8) | byte(i);
      at = 10;
    }
    REQUIRE((byte(1) & 0x80) == 0);  // a server never masks
    REQUIRE((byte(0) & 0x80) != 0);  // the bridge sends every message as one frame
    if (buffer_.size() < at + length) return std::nullopt;
    Frame frame{byte(0) & 0x0f, buffer_.substr(at, length)};
    buffer_.erase(0, at + length);
    return frame;
  }

  UniqueFd fd_;
  std::string buffer_;
  bool ended_ = false;
};

struct TerminalHarness {
  SessionSite site;
  Front front{FrontOptions{.owner_token = "owner"}, &site};
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
};

}  // namespace

TEST_CASE("front terminal: what is refused before the upgrade starts nothing", "[terminal]") {
  TerminalHarness harness;
  CHECK(WsClient(harness.port).upgrade("/terminal/ws", "").starts_with("HTTP/1.1 401"));
  CHECK(WsClient(harness.port).upgrade("/terminal/ws", "Authorization: Bearer wrong\r\n").starts_with("HTTP/1.1 401"));
  std::string bad_size = WsClient(harness.port).upgrade("/terminal/ws?cols=0&rows=24");
  CHECK(bad_size.starts_with("HTTP/1.1 422"));
  CHECK(WsClient(harness.port).upgrade("/terminal/ws?tty=maybe").starts_with("HTTP/1.1 422"));
  CHECK(harness.site.sessions() == 0);

  // Not an upgrade: 426 with what to do.
  std::string answer;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    UniqueFd holder(fd);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(harness.port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    send_all(fd, "GET /terminal/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer key\r\n\r\n");
    read_from(
        fd, answer, [](const std::string& got) { return got.find("\r\n\r\n") != std::string::npos; }, 5s);
  }
  CHECK(answer.starts_with("HTTP/1.1 426"));
  CHECK(answer.find("Upgrade: websocket") != std::string::npos);
  CHECK(harness.site.sessions() == 0);

  // The session that cannot start: its refusal, as HTTP.
  harness.site.refusal = Error{ErrorKind::conflict, "the image has no shell", {}};
  std::string refused = WsClient(harness.port).upgrade("/terminal/ws");
  CHECK(refused.starts_with("HTTP/1.1 409"));
  CHECK(harness.site.sessions() == 1);
}

TEST_CASE("front terminal: output and input both ways, control messages as helper frames, the exit", "[terminal]") {
  TerminalHarness harness;
  WsClient client(harness.port);
  std::string head = client.upgrade("/terminal/ws?cols=120&rows=40&env=A%3D1&token=ignored");
  INFO(head);
  REQUIRE(head.starts_with("HTTP/1.1 101"));
  helper::SessionOpen asked = harness.site.last_request();
  CHECK(asked.tty);
  CHECK(asked.cols == 120);
  CHECK(asked.rows == 40);
  CHECK(asked.command.empty());
  CHECK(asked.env == std::vector<std::string>{"A=1"});
  CHECK(client.next_event() == json{{"type", "ready"}, {"pid", 4242}});
  FakeHelper helper(harness.site.helper_end());

  helper.send(helper::Output{helper::Stream::stdout_stream, "prompt$ "});
  auto output = client.next();
  REQUIRE(output.has_value());
  CHECK(output->opcode == 2);
  CHECK(output->payload == "prompt$ ");

  client.binary("ls\r");
  auto input = helper.next();
  REQUIRE(input.has_value());
  CHECK(std::get<helper::Data>(*input).bytes == "ls\r");

  client.text({{"type", "resize"}, {"cols", 100}, {"rows", 30}});
  auto resize = helper.next();
  REQUIRE(resize.has_value());
  CHECK(std::get<helper::SessionResize>(*resize).cols == 100);
  CHECK(std::get<helper::SessionResize>(*resize).rows == 30);

  // Refused: an error event each, nothing for the helper, and the session goes on.
  client.text({{"type", "resize"}, {"cols", 0}, {"rows", 30}});
  CHECK(client.next_event()["type"] == "error");
  client.send(1, "not json");
  CHECK(client.next_event()["type"] == "error");
  client.text({{"type", "signal"}, {"signal", "SIGINT"}});
  auto signal = helper.next();
  REQUIRE(signal.has_value());
  CHECK(std::get<helper::SessionSignal>(*signal).signal == 2);
  client.text({{"type", "input"}, {"data", "exit 3\r"}});
  CHECK(std::get<helper::Data>(*helper.next()).bytes == "exit 3\r");
  client.text({{"type", "eof"}});
  CHECK(std::holds_alternative<helper::End>(*helper.next()));

  helper.send(helper::Output{helper::Stream::stdout_stream, "bye\r\n"});
  helper.send(helper::Exit{.exit_code = 3});
  auto last_output = client.next();
  REQUIRE(last_output.has_value());
  CHECK(last_output->payload == "bye\r\n");
  CHECK(client.next_event() == json{{"type", "exit"}, {"exit_code", 3}});
  auto close = client.next();
  REQUIRE(close.has_value());
  CHECK(close->opcode == 8);
  CHECK(close->close_code() == 1000);
  client.close(1000);
  CHECK(client.ended_within(5s));
  CHECK(helper.closed_within(5s));
}

TEST_CASE("front terminal: on pipes each output message starts with its stream's byte", "[terminal]") {
  TerminalHarness harness;
  WsClient client(harness.port);
  REQUIRE(client.upgrade("/terminal/ws?tty=0&command=cat").starts_with("HTTP/1.1 101"));
  CHECK_FALSE(harness.site.last_request().tty);
  CHECK(harness.site.last_request().command == "cat");
  CHECK(client.next_event()["type"] == "ready");
  FakeHelper helper(harness.site.helper_end());
  helper.send(helper::Output{helper::Stream::stdout_stream, "out"});
  auto out = client.next();
  REQUIRE(out.has_value());
  CHECK(out->payload == std::string("\x01out"));
  helper.send(helper::Output{helper::Stream::stderr_stream, "err"});
  auto err = client.next();
  REQUIRE(err.has_value());
  CHECK(err->payload == std::string("\x02") + "err");
  helper.send(helper::Exit{.exit_code = 137, .signal = "SIGKILL"});
  CHECK(client.next_event() == json{{"type", "exit"}, {"exit_code", 137}, {"signal", "SIGKILL"}});
}

TEST_CASE("front terminal: a message over 1 MiB is closed with 1009 and ends the session", "[terminal]") {
  TerminalHarness harness;
  WsClient client(harness.port);
  REQUIRE(client.upgrade("/terminal/ws").starts_with("HTTP/1.1 101"));
  CHECK(client.next_event()["type"] == "ready");
  FakeHelper helper(harness.site.helper_end());
  client.binary(std::string(1 << 20, 'a'));  // exactly the limit: input
  std::size_t received = 0;
  while (received < (1u << 20)) {
    auto data = helper.next();
    REQUIRE(data.has_value());
    received += std::get<helper::Data>(*data).bytes.size();
  }
  CHECK(received == (1u << 20));
  client.binary(std::string((1 << 20) + 1, 'b'));
  auto close = client.next();
  REQUIRE(close.has_value());
  CHECK(close->opcode == 8);
  CHECK(close->close_code() == 1009);
  CHECK(helper.closed_within(5s));
}

TEST_CASE("front terminal: the client's close, or the sandbox's destroy, closes the session at once", "[terminal]") {
  TerminalHarness harness;
  {
    WsClient client(harness.port);
    REQUIRE(client.upgrade("/terminal/ws").starts_with("HTTP/1.1 101"));
    CHECK(client.next_event()["type"] == "ready");
    FakeHelper helper(harness.site.helper_end());
    CHECK(harness.site.activity->under_way() > 0);
    client.close(1000);
    auto answer = client.next();
    REQUIRE(answer.has_value());
    CHECK(answer->opcode == 8);
    CHECK(helper.closed_within(5s));
    CHECK(client.ended_within(5s));
  }
  CHECK(eventually([&] { return harness.site.activity->under_way() == 0; }, 5s));

  WsClient client(harness.port);
  REQUIRE(client.upgrade("/terminal/ws").starts_with("HTTP/1.1 101"));
  CHECK(client.next_event()["type"] == "ready");
  FakeHelper helper(harness.site.helper_end());
  auto started = std::chrono::steady_clock::now();
  harness.front.close_sandbox("sb");
  CHECK(client.ended_within(5s));
  CHECK(helper.closed_within(5s));
  CHECK(std::chrono::steady_clock::now() - started < 1s);
}

TEST_CASE("front terminal: a paused client is sent no more output until it resumes", "[terminal]") {
  TerminalHarness harness;
  WsClient client(harness.port);
  REQUIRE(client.upgrade("/terminal/ws").starts_with("HTTP/1.1 101"));
  CHECK(client.next_event()["type"] == "ready");
  FakeHelper helper(harness.site.helper_end());
  client.text({{"type", "pause"}});
  client.text({{"type", "eof"}});  // a frame after the pause tells that the pause was taken
  CHECK(std::holds_alternative<helper::End>(*helper.next()));
  // The read that was waiting when the pause came still delivers; the next one waits for the resume.
  helper.send(helper::Output{helper::Stream::stdout_stream, "first"});
  auto first = client.next();
  REQUIRE(first.has_value());
  CHECK(first->payload == "first");
  helper.send(helper::Output{helper::Stream::stdout_stream, "second"});
  CHECK_FALSE(client.next(300ms).has_value());
  client.text({{"type", "resume"}});
  auto second = client.next();
  REQUIRE(second.has_value());
  CHECK(second->payload == "second");
}
