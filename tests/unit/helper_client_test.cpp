// The agent's helper client against scripted peers on a real unix socket: a well-behaved helper,
// and the ways code in a sandbox could break or impersonate one. Every failure must be a bounded,
// explained `unavailable` (a refusal the helper sends for a relay, `bad_gateway`), never a hang or
// unbounded memory.

#include "agent/helper_client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <functional>
#include <thread>

#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;
using Clock = std::chrono::steady_clock;

namespace {

/// Listens on a unix socket and runs `script` on the first connection, on its own thread.
class ScriptedHelper {
 public:
  explicit ScriptedHelper(std::function<void(int fd)> script) : script_(std::move(script)) {
    socket_path_ = dir_ / "helper.sock";
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::string path = socket_path_.string();
    REQUIRE(path.size() < sizeof address.sun_path);
    std::copy(path.begin(), path.end(), address.sun_path);
    REQUIRE(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_.get(), 4) == 0);
    thread_ = std::thread([this] {
      UniqueFd connection(::accept(listener_.get(), nullptr, nullptr));
      if (connection.valid()) script_(connection.get());
    });
  }
  ~ScriptedHelper() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes accept() if nobody connected
    thread_.join();
  }
  const std::filesystem::path& socket() const { return socket_path_; }

 private:
  TempDir dir_;
  std::filesystem::path socket_path_;
  UniqueFd listener_;
  std::function<void(int)> script_;
  std::thread thread_;
};

void send_all(int fd, const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t now = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (now <= 0) return;
    sent += static_cast<std::size_t>(now);
  }
}

/// Reads frames until one complete message arrives (or the peer closes).
std::optional<helper::Message> read_message(int fd) {
  helper::FrameDecoder decoder;
  char buffer[65536];
  for (;;) {
    auto next = decoder.next();
    if (!next || *next) return next ? std::optional(**next) : std::nullopt;
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) return std::nullopt;
    decoder.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
  }
}

/// Blocks until the agent closes its end.
void wait_for_close(int fd) {
  char byte;
  while (::recv(fd, &byte, 1, 0) > 0) {
  }
}

std::string hello() {
  return helper::encode(helper::Hello{helper::protocol_version, 1, "/bin/bash"});
}

std::string error_message(const Result<ExecResult>& result) {
  return result ? "" : result.error().message;
}

}  // namespace

TEST_CASE("exec sends the request and assembles the answer", "[helper-client]") {
  std::optional<helper::Message> request;
  ScriptedHelper peer([&](int fd) {
    send_all(fd, hello());
    request = read_message(fd);
    send_all(fd, helper::encode(helper::Output{helper::Stream::stdout_stream, "hel"}) +
                     helper::encode(helper::Output{helper::Stream::stderr_stream, "oops\n"}) +
                     helper::encode(helper::Output{helper::Stream::stdout_stream, "lo\n"}) +
                     helper::encode(helper::Exit{3, "", false, false, "/bin/bash"}));
    wait_for_close(fd);
  });
  auto client = make_helper_client();
  auto result = expect_value(client->exec(peer.socket(), {.command = "echo hello", .timeout_ms = 1500, .cwd = "/tmp"}));
  CHECK(result.exit_code == 3);
  CHECK(result.stdout_text == "hello\n");
  CHECK(result.stderr_text == "oops\n");
  CHECK_FALSE(result.killed);
  CHECK_FALSE(result.signal.has_value());
  CHECK(result.shell == "/bin/bash");
  REQUIRE(request.has_value());
  auto exec = std::get<helper::ExecRequest>(*request);
  CHECK(exec.command == "echo hello");
  CHECK(exec.cwd == "/tmp");
  CHECK(exec.timeout_ms == 1500);
  CHECK(exec.output_cap == limits::exec_output_cap_bytes);
}

TEST_CASE("a helper of the previous protocol version still runs exec", "[helper-client]") {
  // Sandboxes started before an agent upgrade keep their helper: exec and files go on working.
  ScriptedHelper peer([&](int fd) {
    send_all(fd, helper::encode(helper::Hello{helper::oldest_protocol_version, 1, "/bin/bash"}));
    read_message(fd);
    send_all(fd, helper::encode(helper::Exit{0, "", false, false, "/bin/bash"}));
    wait_for_close(fd);
  });
  auto client = make_helper_client();
  auto result = client->exec(peer.socket(), {.command = "true", .timeout_ms = 1500});
  INFO(error_message(result));
  CHECK(result.has_value());
}

TEST_CASE("a killed command reports its signal", "[helper-client]") {
  ScriptedHelper peer([](int fd) {
    send_all(fd, hello());
    read_message(fd);
    send_all(fd, helper::encode(helper::Exit{137, "SIGKILL", true, false, "/bin/bash"}));
    wait_for_close(fd);
  });
  auto result = expect_value(make_helper_client()->exec(peer.socket(), {.command = "sleep 9", .timeout_ms = 100}));
  CHECK(result.exit_code == 137);
  CHECK(result.killed);
  CHECK(result.signal == "SIGKILL");
}

TEST_CASE("output past the cap is dropped however much the helper sends", "[helper-client]") {
  ScriptedHelper peer([](int fd) {
    send_all(fd, hello());
    read_message(fd);
    std::string chunk(helper::output_chunk_max, 'x');
    for (std::size_t sent = 0; sent < 3 * limits::exec_output_cap_bytes; sent += chunk.size())
      send_all(fd, helper::encode(helper::Output{helper::Stream::stdout_stream, chunk}));
    send_all(fd, helper::encode(helper::Exit{0, "", false, false, "/bin/bash"}));
    wait_for_close(fd);
  });
  auto result = expect_value(make_helper_client()->exec(peer.socket(), {.command = "yes"}));
  CHECK(result.stdout_text.size() == limits::exec_output_cap_bytes);
  CHECK(result.truncated);
}

TEST_CASE("a broken or impersonated helper is unavailable, with a reason", "[helper-client]") {
  auto client = make_helper_client();
  ExecRequest request{.command = "true", .timeout_ms = 200};

  SECTION("nothing listens") {
    TempDir dir;
    auto result = client->exec(dir / "helper.sock", request);
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("not listening"));
  }
  SECTION("a symlink planted where the socket was") {
    TempDir dir;
    std::filesystem::create_symlink("/run/some-other.sock", dir / "helper.sock");
    auto result = client->exec(dir / "helper.sock", request);
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("not a socket"));
  }
  SECTION("garbage instead of a hello") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, "HTTP/1.1 200 OK\r\n\r\n");
      wait_for_close(fd);
    });
    auto result = client->exec(peer.socket(), request);
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("malformed"));
  }
  SECTION("a frame header announcing 4 GiB") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello() + std::string("\x11\xff\xff\xff\xff", 5));
      wait_for_close(fd);
    });
    auto result = client->exec(peer.socket(), request);
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("malformed"));
  }
  SECTION("a peer that never greets is given up on quickly") {
    ScriptedHelper peer([](int fd) { wait_for_close(fd); });
    auto started = Clock::now();
    auto result = client->exec(peer.socket(), {.command = "true", .timeout_ms = 30000});
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK(Clock::now() - started < helper_answer_grace + std::chrono::seconds(1));
  }
  SECTION("a helper that stalls after the request is given up on at the timeout plus grace") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      wait_for_close(fd);
    });
    auto started = Clock::now();
    auto result = client->exec(peer.socket(), request);
    auto elapsed = Clock::now() - started;
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("in time"));
    CHECK(elapsed >= helper_answer_grace);
    CHECK(elapsed < helper_answer_grace + std::chrono::seconds(1));
  }
  SECTION("a helper that dies mid-answer") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, helper::encode(helper::Output{helper::Stream::stdout_stream, "partial"}));
    });
    auto result = client->exec(peer.socket(), request);
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("closed the connection"));
  }
  SECTION("a refusal is passed on with its text made printable") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, helper::encode(helper::Failure{"too busy\r\n\x1b[31m"}));
      wait_for_close(fd);
    });
    auto result = client->exec(peer.socket(), request);
    CHECK(error_kind(result) == ErrorKind::unavailable);
    CHECK_THAT(error_message(result), Catch::Contains("too busy"));
    CHECK(error_message(result).find('\x1b') == std::string::npos);
  }
  SECTION("another protocol version") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, helper::encode(helper::Hello{helper::protocol_version + 1, 1, "/bin/bash"}));
      wait_for_close(fd);
    });
    CHECK(error_kind(client->ping(peer.socket(), std::chrono::seconds(1))) == ErrorKind::unavailable);
  }
  SECTION("the previous protocol version still serves exec") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, helper::encode(helper::Hello{helper::oldest_protocol_version, 1, "/bin/bash"}));
      wait_for_close(fd);
    });
    CHECK(client->ping(peer.socket(), std::chrono::seconds(1)).has_value());
  }
}

TEST_CASE("ping reads the hello", "[helper-client]") {
  ScriptedHelper peer([](int fd) {
    send_all(fd, helper::encode(helper::Hello{helper::protocol_version, 1, "/bin/sh"}));
    wait_for_close(fd);
  });
  auto hello = make_helper_client()->ping(peer.socket(), std::chrono::seconds(1));
  REQUIRE(hello.has_value());
  CHECK(hello->shell == "/bin/sh");
  CHECK(hello->pid == 1);
}

namespace {

/// Everything `fd` delivers until end of file.
std::string read_to_end(int fd) {
  std::string bytes;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) return bytes;
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
}

std::string relay_error(const Result<UniqueFd>& result) {
  return result ? "" : result.error().message;
}

}  // namespace

TEST_CASE("open_relay hands over the socket right after RelayReady, with nothing of the stream taken",
          "[helper-client][relay]") {
  std::optional<helper::Message> request;
  ScriptedHelper peer([&](int fd) {
    send_all(fd, hello());
    request = read_message(fd);
    // The server speaks first, in the same segment as the answer: the client must leave it unread.
    send_all(fd, helper::encode(helper::RelayReady{}) + "SSH-2.0-banner\r\n");
    send_all(fd, "echo:" + read_to_end(fd));
  });
  auto relay = expect_value(make_helper_client()->open_relay(peer.socket(), 8080));
  // A banner the client swallowed fails the test instead of hanging it.
  timeval patience{10, 0};
  REQUIRE(::setsockopt(relay.get(), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience) == 0);
  REQUIRE(request.has_value());
  CHECK(std::get<helper::RelayOpen>(*request).port == 8080);
  CHECK((::fcntl(relay.get(), F_GETFL) & O_NONBLOCK) == 0);
  CHECK((::fcntl(relay.get(), F_GETFD) & FD_CLOEXEC) != 0);
  std::string banner(16, '\0');
  REQUIRE(::recv(relay.get(), banner.data(), banner.size(), MSG_WAITALL) == 16);
  CHECK(banner == "SSH-2.0-banner\r\n");
  send_all(relay.get(), "ping");
  REQUIRE(::shutdown(relay.get(), SHUT_WR) == 0);
  CHECK(read_to_end(relay.get()) == "echo:ping");
}

TEST_CASE("a helper's refusal of a relay is a bad gateway with its sentence", "[helper-client][relay]") {
  auto client = make_helper_client();
  SECTION("after the request") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, helper::encode(helper::Failure{"nothing is listening on port 8080 in the sandbox\x1b[2J"}));
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::bad_gateway);
    CHECK_THAT(relay_error(relay), Catch::StartsWith("nothing is listening on port 8080 in the sandbox"));
    CHECK(relay_error(relay).find('\x1b') == std::string::npos);
  }
  SECTION("right after the hello, from a helper at its limits that does not read the request") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello() + helper::encode(helper::Failure{"the sandbox has 1024 relays open already"}));
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::bad_gateway);
    CHECK(relay_error(relay) == "the sandbox has 1024 relays open already");
  }
}

TEST_CASE("a broken helper makes open_relay unavailable, with a reason", "[helper-client][relay]") {
  auto client = make_helper_client();
  SECTION("nothing listens") {
    TempDir dir;
    auto relay = client->open_relay(dir / "helper.sock", 8080);
    CHECK(error_kind(relay) == ErrorKind::unavailable);
    CHECK_THAT(relay_error(relay), Catch::Contains("not listening"));
  }
  SECTION("garbage instead of an answer") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, "HTTP/1.1 502 Bad Gateway\r\n\r\n");
      wait_for_close(fd);
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::unavailable);
    CHECK_THAT(relay_error(relay), Catch::Contains("malformed"));
  }
  SECTION("a frame that does not answer a relay") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, helper::encode(helper::End{}));
      wait_for_close(fd);
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::unavailable);
    CHECK_THAT(relay_error(relay), Catch::Contains("unexpected frame"));
  }
  SECTION("a helper that hangs up instead of answering") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::unavailable);
    CHECK_THAT(relay_error(relay), Catch::Contains("closed the connection"));
  }
  SECTION("a newer protocol version") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, helper::encode(helper::Hello{helper::protocol_version + 1, 1, "/bin/bash"}));
      wait_for_close(fd);
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::unavailable);
    CHECK_THAT(relay_error(relay), Catch::Contains("protocol version"));
  }
  SECTION("a helper from before relays") {
    // A sandbox started by an older agent keeps its exec and files; its web ports need a new one.
    ScriptedHelper peer([](int fd) {
      send_all(fd, helper::encode(helper::Hello{helper::relay_protocol_version - 1, 1, "/bin/bash"}));
      wait_for_close(fd);
    });
    auto relay = client->open_relay(peer.socket(), 8080);
    CHECK(error_kind(relay) == ErrorKind::bad_gateway);
    CHECK_THAT(relay_error(relay), Catch::Contains("provision it again"));
  }
}

TEST_CASE("port 0 is refused before the helper is asked", "[helper-client][relay]") {
  TempDir dir;
  CHECK(error_kind(make_helper_client()->open_relay(dir / "helper.sock", 0)) == ErrorKind::bad_request);
}

namespace {
std::string session_error(const Result<SandboxHelpers::Session>& result) {
  return result ? "" : result.error().message;
}
}  // namespace

TEST_CASE("open_session hands over the socket right after SessionReady, with no frame after it taken",
          "[helper-client][session]") {
  std::optional<helper::Message> request;
  ScriptedHelper peer([&](int fd) {
    send_all(fd, hello());
    request = read_message(fd);
    // The first output comes in the same segment as the answer: the client must leave it unread.
    send_all(fd, helper::encode(helper::SessionReady{77}) +
                     helper::encode(helper::Output{helper::Stream::stdout_stream, "$ "}));
    wait_for_close(fd);
  });
  helper::SessionOpen open{true, 80, 24, "", "/workspace", {"A=1"}};
  auto session = expect_value(make_helper_client()->open_session(peer.socket(), open));
  CHECK(session.pid == 77);
  REQUIRE(request.has_value());
  auto sent = std::get<helper::SessionOpen>(*request);
  CHECK(sent.tty);
  CHECK(sent.cols == 80);
  CHECK(sent.env == std::vector<std::string>{"A=1"});
  CHECK((::fcntl(session.connection.get(), F_GETFL) & O_NONBLOCK) == 0);
  CHECK((::fcntl(session.connection.get(), F_GETFD) & FD_CLOEXEC) != 0);
  timeval patience{10, 0};
  REQUIRE(::setsockopt(session.connection.get(), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience) == 0);
  auto output = read_message(session.connection.get());
  REQUIRE(output.has_value());
  CHECK(std::get<helper::Output>(*output).data == "$ ");
}

TEST_CASE("open_session refuses old helpers, bad requests, and passes the helper's refusal on",
          "[helper-client][session]") {
  auto client = make_helper_client();
  helper::SessionOpen shell{true, 80, 24, "", "", {}};
  SECTION("a helper from before sessions") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, helper::encode(helper::Hello{helper::session_protocol_version - 1, 1, "/bin/bash"}));
      wait_for_close(fd);
    });
    auto session = client->open_session(peer.socket(), shell);
    CHECK(error_kind(session) == ErrorKind::conflict);
    CHECK_THAT(session_error(session), Catch::Contains("older modboxd") && Catch::Contains("provision it again"));
  }
  SECTION("a helper at its limits") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello() + helper::encode(helper::Failure{"the sandbox has 64 sessions open already"}));
    });
    auto session = client->open_session(peer.socket(), shell);
    CHECK(error_kind(session) == ErrorKind::unavailable);
    CHECK_THAT(session_error(session), Catch::StartsWith("the sandbox has 64 sessions"));
  }
  SECTION("an image without a shell") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, helper::encode(helper::Failure{"this image has neither bash nor sh", helper::FailureKind::refused}));
    });
    auto session = client->open_session(peer.socket(), shell);
    CHECK(error_kind(session) == ErrorKind::conflict);
  }
  SECTION("a helper that answers with another frame") {
    ScriptedHelper peer([](int fd) {
      send_all(fd, hello());
      read_message(fd);
      send_all(fd, helper::encode(helper::RelayReady{}));
      wait_for_close(fd);
    });
    CHECK(error_kind(client->open_session(peer.socket(), shell)) == ErrorKind::unavailable);
  }
  SECTION("requests the helper would refuse are refused before it is asked") {
    TempDir dir;
    auto socket = dir / "helper.sock";
    CHECK(error_kind(client->open_session(socket, {true, 0, 24, "", "", {}})) == ErrorKind::bad_request);
    CHECK(error_kind(client->open_session(socket, {true, 80, 1001, "", "", {}})) == ErrorKind::bad_request);
    CHECK(error_kind(client->open_session(socket, {false, 0, 0, "", "relative", {}})) == ErrorKind::bad_request);
    CHECK(error_kind(client->open_session(socket, {false, 0, 0, "", "", {"NOVALUE"}})) == ErrorKind::bad_request);
  }
}
