#pragma once
// TCP relays: the agent's front reaches a port inside the sandbox (an HTTP, SSE or WebSocket
// server) through the helper, which connects from the sandbox's own network namespace, so no
// container port is published on the host. Each relay is served by a worker process the helper
// forks for it (as file requests are), so its blocking connect and its traffic never stall the
// helper's poll loop. The wire format is in common/helper_protocol.h.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "common/helper_protocol.h"
#include "common/unique_fd.h"

namespace modbox::helper {

/// Bytes held per direction: a side is read only while the buffer towards the other side has
/// room, so a slow reader slows the writer instead of growing the worker's memory.
inline constexpr std::size_t relay_buffer_size = 64 << 10;

/// A TCP connection to `port` on the loopback: 127.0.0.1, then ::1 when 127.0.0.1 refuses (a
/// server may listen on either), all within `timeout`; TCP_NODELAY is set. The error's message is
/// the sentence the agent is told: "nothing is listening on port 8080 in the sandbox (connection
/// refused)", "port 8080 in the sandbox did not accept a connection within 5 s", ...
Result<UniqueFd> connect_to_loopback(std::uint16_t port, std::chrono::milliseconds timeout);

/// Carries bytes between the non-blocking sockets `agent` and `tcp` until both directions have
/// ended (each end's shutdown(SHUT_WR) is passed on to the other), or until either end resets or
/// the agent closes its end completely (a TCP peer's close looks like a half-close until a write
/// to it is reset). `to_tcp_first` and `to_agent_first` are sent ahead of what is read.
/// Returns 0 when both directions ended cleanly, 1 otherwise. Neither socket is closed.
int relay_streams(int agent, int tcp, std::string_view to_tcp_first, std::string_view to_agent_first);

/// Serves a relay on the non-blocking `connection`: connects, answers RelayReady or Failure, then
/// relays. Returns the worker's exit status. Exposed so tests can drive it without forking.
int serve_relay(int connection, const RelayOpen& request, std::string_view early);

/// The relay workers of one helper, bounded.
class RelayWorkers {
 public:
  /// Relays open at once, per sandbox. Each is a process with two sockets and ~250 KiB of memory
  /// of its own (its two buffers among it); past the bound a request is refused, so a runaway
  /// client cannot fork the sandbox out of processes (they count against its pids limit) or
  /// memory.
  static constexpr std::size_t max_workers = 1024;

  /// Forks a worker that serves `request` on `connection`; `early` is what followed the request.
  /// A worker keeps only its connection (no listener, signalfd or other session's descriptors) and
  /// runs as the helper does: it only connects to a port. On success the connection is the
  /// worker's (closed here); when max_workers are running, or the fork fails, it is left to the
  /// caller, and the error's message is the sentence to refuse the agent with.
  Result<pid_t> spawn(UniqueFd& connection, const RelayOpen& request, std::string_view early);
  /// Forgets a worker the helper reaped; false when `pid` was not one.
  bool on_exit(pid_t pid) { return pids_.erase(pid) > 0; }
  std::size_t running() const { return pids_.size(); }

 private:
  std::set<pid_t> pids_;
};

}  // namespace modbox::helper
