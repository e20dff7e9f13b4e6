// The helper's relay parts in this process: connecting to a loopback port (refusals and timeouts
// as sentences for the agent), and the byte pump over socketpairs. The real helper binary is
// driven end to end in helper_process_test.cpp.

#include "agent/helper/relay_service.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <future>
#include <string>

#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::helper;
using namespace modbox::testing;
using Clock = std::chrono::steady_clock;

namespace {

/// A TCP socket bound to 127.0.0.1 on a port the kernel picks; it listens only when asked to.
UniqueFd bound_ipv4_socket(std::optional<int> backlog) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  if (backlog) REQUIRE(::listen(fd.get(), *backlog) == 0);
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_in address{};
  socklen_t size = sizeof address;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0);
  return ntohs(address.sin_port);
}

/// Keeps ::1 at `port` taken without listening (when the host has IPv6), so that the fallback
/// finds nothing there either.
UniqueFd hold_ipv6_port(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  int on = 1;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  address.sin6_port = htons(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return UniqueFd();
  return fd;
}

/// At the end of a test, shuts the relay's ends down, so that a pump that did not end by itself
/// (a failed test) ends before its future is waited for.
struct ShutDownAtExit {
  int agent;
  int server;
  ~ShutDownAtExit() {
    ::shutdown(agent, SHUT_RDWR);
    ::shutdown(server, SHUT_RDWR);
  }
};

struct SocketPair {
  UniqueFd near;  // the test's end
  UniqueFd far;   // the relay's end, non-blocking
};

SocketPair socket_pair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void send_text(int fd, std::string_view text) {
  REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size()));
}

/// Everything until end of file; nullopt when 10 s pass without a byte or the end.
std::optional<std::string> read_to_end(int fd) {
  timeval patience{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
  std::string bytes;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got == 0) return bytes;
    if (got < 0) return std::nullopt;
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
}

}  // namespace

TEST_CASE("a port nobody listens on is refused with a sentence naming it", "[relay]") {
  auto taken = bound_ipv4_socket(std::nullopt);
  auto port = port_of(taken.get());
  auto ipv6 = hold_ipv6_port(port);
  auto connected = connect_to_loopback(port, std::chrono::seconds(5));
  REQUIRE_FALSE(connected.has_value());
  CHECK(connected.error().message ==
        "nothing is listening on port " + std::to_string(port) + " in the sandbox (connection refused)");
}

TEST_CASE("a port that does not accept within the timeout is given up on with a sentence", "[relay]") {
  // A backlog of 0 takes one connection; the kernel drops the SYNs of the next while it waits.
  auto listener = bound_ipv4_socket(0);
  auto port = port_of(listener.get());
  auto filler = connect_to_loopback(port, std::chrono::seconds(5));
  REQUIRE(filler.has_value());
  auto started = Clock::now();
  auto connected = connect_to_loopback(port, std::chrono::milliseconds(300));
  auto elapsed = Clock::now() - started;
  REQUIRE_FALSE(connected.has_value());
  CHECK(connected.error().message ==
        "port " + std::to_string(port) + " in the sandbox did not accept a connection within 300 ms");
  CHECK(elapsed >= std::chrono::milliseconds(300));
  CHECK(elapsed < std::chrono::seconds(2));
}

TEST_CASE("a connected relay socket has TCP_NODELAY set", "[relay]") {
  auto listener = bound_ipv4_socket(4);
  auto connected = connect_to_loopback(port_of(listener.get()), std::chrono::seconds(5));
  REQUIRE(connected.has_value());
  int nodelay = 0;
  socklen_t size = sizeof nodelay;
  REQUIRE(::getsockopt(connected->get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &size) == 0);
  CHECK(nodelay != 0);
}

TEST_CASE("the relay pump sends the queued bytes first and passes half-closes on", "[relay]") {
  auto agent = socket_pair();
  auto server = socket_pair();
  auto pump = std::async(std::launch::async, [&] {
    return relay_streams(agent.far.get(), server.far.get(), "early ", encode(RelayReady{}));
  });
  ShutDownAtExit cleanup{agent.far.get(), server.far.get()};
  send_text(agent.near.get(), "request");
  REQUIRE(::shutdown(agent.near.get(), SHUT_WR) == 0);
  CHECK(read_to_end(server.near.get()) == "early request");  // the agent's end of file came through
  send_text(server.near.get(), "response");
  REQUIRE(::shutdown(server.near.get(), SHUT_WR) == 0);
  CHECK(read_to_end(agent.near.get()) == encode(RelayReady{}) + "response");
  REQUIRE(pump.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(pump.get() == 0);
}

TEST_CASE("the relay pump ends when the agent closes, though the server stays silent", "[relay]") {
  auto agent = socket_pair();
  auto server = socket_pair();
  auto pump = std::async(std::launch::async, [&] { return relay_streams(agent.far.get(), server.far.get(), "", ""); });
  ShutDownAtExit cleanup{agent.far.get(), server.far.get()};
  send_text(agent.near.get(), "hello");
  char buffer[5];
  REQUIRE(::recv(server.near.get(), buffer, sizeof buffer, MSG_WAITALL) == 5);
  agent.near.reset();
  REQUIRE(pump.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(pump.get() == 1);
}
