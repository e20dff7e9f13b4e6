#include "agent/helper/relay_service.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <expected>
#include <vector>

#include "agent/helper/os.h"

namespace modbox::helper {

namespace {

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
}

/// A connect to `address` that waits until `deadline`: the socket, or the errno that stopped it
/// (ETIMEDOUT when the deadline came first).
std::expected<UniqueFd, int> connect_before(const sockaddr* address, socklen_t size, Clock::time_point deadline) {
  UniqueFd fd(::socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return std::unexpected(errno);
  if (::connect(fd.get(), address, size) == 0) return fd;
  if (errno != EINPROGRESS && errno != EINTR) return std::unexpected(errno);
  for (;;) {
    pollfd entry{fd.get(), POLLOUT, 0};
    int ready = ::poll(&entry, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return std::unexpected(errno);
    if (ready == 0) return std::unexpected(ETIMEDOUT);
    break;
  }
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) return std::unexpected(errno);
  if (error != 0) return std::unexpected(error);
  return fd;
}

std::expected<UniqueFd, int> connect_ipv4(std::uint16_t port, Clock::time_point deadline) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect_before(reinterpret_cast<const sockaddr*>(&address), sizeof address, deadline);
}

std::expected<UniqueFd, int> connect_ipv6(std::uint16_t port, Clock::time_point deadline) {
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_port = htons(port);
  address.sin6_addr = in6addr_loopback;
  return connect_before(reinterpret_cast<const sockaddr*>(&address), sizeof address, deadline);
}

/// A sandbox without IPv6 (or without ::1) answers with one of these.
bool lacks_ipv6(int errno_value) {
  return errno_value == EAFNOSUPPORT || errno_value == EADDRNOTAVAIL || errno_value == ENETUNREACH ||
         errno_value == EPROTONOSUPPORT;
}

std::string describe_duration(std::chrono::milliseconds duration) {
  auto ms = duration.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

/// Bytes on their way from one socket to the other, at most relay_buffer_size of them.
class Direction {
 public:
  Direction(int from, int to) : from_(from), to_(to) {}

  /// Queues bytes ahead of what is read (they may exceed the buffer's size once).
  void preload(std::string_view bytes) {
    if (bytes.empty()) return;
    if (bytes.size() > buffer_.size()) buffer_.resize(bytes.size());
    std::memcpy(buffer_.data(), bytes.data(), bytes.size());
    end_ = bytes.size();
  }
  bool wants_input() const { return !input_ended_ && end_ - begin_ < buffer_.size(); }
  bool has_output() const { return end_ > begin_; }
  /// `from` ended, everything was delivered and `to` is shut down for writing.
  bool ended() const { return shut_; }

  /// Reads what `from` has, as far as the buffer has room; false when `from` failed (a reset).
  bool fill() {
    if (!wants_input()) return true;
    if (end_ == buffer_.size()) {
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    for (;;) {
      ssize_t got = ::recv(from_, buffer_.data() + end_, buffer_.size() - end_, 0);
      if (got > 0) {
        end_ += static_cast<std::size_t>(got);
        return true;
      }
      if (got == 0) {
        input_ended_ = true;
        return true;
      }
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }

  /// Writes what `to` takes now, and passes the end of `from` on once all is delivered; false
  /// when `to` failed (a reset, or a peer that closed).
  bool flush() {
    while (has_output()) {
      ssize_t sent = ::send(to_, buffer_.data() + begin_, end_ - begin_, MSG_NOSIGNAL);
      if (sent > 0) {
        begin_ += static_cast<std::size_t>(sent);
        continue;
      }
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;
    }
    if (begin_ == end_) begin_ = end_ = 0;
    if (input_ended_ && !has_output() && !shut_) {
      ::shutdown(to_, SHUT_WR);
      shut_ = true;
    }
    return true;
  }

 private:
  int from_;
  int to_;
  std::vector<char> buffer_ = std::vector<char>(relay_buffer_size);
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  bool input_ended_ = false;
  bool shut_ = false;
};

/// What to poll `fd` for. While bytes may still go to it (`writes_ended` false) it is watched even
/// when nothing else is wanted, so that a peer closing completely ends the relay at once: an idle
/// WebSocket server would otherwise keep the worker for as long as it stays silent.
pollfd watch(int fd, bool input, bool output, bool writes_ended) {
  short events = static_cast<short>((input ? POLLIN : 0) | (output ? POLLOUT : 0));
  return {events != 0 || !writes_ended ? fd : -1, events, 0};
}

/// An error, or a hangup of a peer that could still have been written to: it closed completely
/// (a shutdown of its write side alone is no hangup), or reset.
bool peer_gone(const pollfd& entry, bool writes_ended) {
  if (entry.revents & (POLLERR | POLLNVAL)) return true;
  return (entry.revents & POLLHUP) && !writes_ended;
}

}  // namespace

Result<UniqueFd> connect_to_loopback(std::uint16_t port, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto connected = connect_ipv4(port, deadline);
  if (!connected && connected.error() == ECONNREFUSED) {
    auto over_ipv6 = connect_ipv6(port, deadline);
    // Without IPv6 in the sandbox, 127.0.0.1's refusal is the answer.
    if (over_ipv6 || !lacks_ipv6(over_ipv6.error())) connected = std::move(over_ipv6);
  }
  std::string where = "port " + std::to_string(port) + " in the sandbox";
  if (!connected) {
    int error = connected.error();
    if (error == ECONNREFUSED)
      return fail(ErrorKind::unavailable, "nothing is listening on " + where + " (connection refused)");
    if (error == ETIMEDOUT)
      return fail(ErrorKind::unavailable, where + " did not accept a connection within " + describe_duration(timeout));
    return fail(ErrorKind::unavailable, "cannot connect to " + where + ": " + std::strerror(error));
  }
  // Interactive traffic (WebSocket echoes, SSE events) must not wait for Nagle's coalescing.
  int on = 1;
  ::setsockopt(connected->get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return std::move(*connected);
}

int relay_streams(int agent, int tcp, std::string_view to_tcp_first, std::string_view to_agent_first) {
  Direction upstream(agent, tcp);
  Direction downstream(tcp, agent);
  upstream.preload(to_tcp_first);
  downstream.preload(to_agent_first);
  if (!upstream.flush() || !downstream.flush()) return 1;
  while (!upstream.ended() || !downstream.ended()) {
    pollfd entries[2] = {
        watch(agent, upstream.wants_input(), downstream.has_output(), downstream.ended()),
        watch(tcp, downstream.wants_input(), upstream.has_output(), upstream.ended()),
    };
    if (::poll(entries, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (peer_gone(entries[0], downstream.ended()) || peer_gone(entries[1], upstream.ended())) return 1;
    if ((entries[0].revents & (POLLIN | POLLHUP)) && !upstream.fill()) return 1;
    if ((entries[1].revents & (POLLIN | POLLHUP)) && !downstream.fill()) return 1;
    // Written at once rather than after the next poll: one wake-up per round trip.
    if (!upstream.flush() || !downstream.flush()) return 1;
  }
  return 0;
}

int serve_relay(int connection, const RelayOpen& request, std::string_view early) {
  auto tcp = connect_to_loopback(request.port, relay_connect_timeout);
  if (!tcp) {
    send_some(connection, encode(Failure{tcp.error().message}));
    return 1;
  }
  return relay_streams(connection, tcp->get(), early, encode(RelayReady{}));
}

Result<pid_t> RelayWorkers::spawn(UniqueFd& connection, const RelayOpen& request, std::string_view early) {
  if (pids_.size() >= max_workers)
    return fail(ErrorKind::unavailable,
                "the sandbox has " + std::to_string(max_workers) + " relays open already; try again when one closes");
  pid_t pid = ::fork();
  if (pid < 0)
    return fail(ErrorKind::unavailable, "cannot start a relay to port " + std::to_string(request.port) + ": " +
                                            os_error("fork", "relay worker", errno).message);
  if (pid > 0) {
    pids_.insert(pid);
    connection.reset();
    return pid;
  }
  // The worker keeps only its connection, as fd 3; its TCP socket comes next, as fd 4.
  int fd = become_worker(std::move(connection));
  ::_exit(serve_relay(fd, request, early));
}

}  // namespace modbox::helper
