#pragma once
// The front's end of a sandbox's terminal (common/terminal_protocol.h): a WebSocket accepted on a
// client's connection and bridged to an interactive session of the sandbox's helper
// (common/helper_protocol.h, SessionOpen), on the loop: no thread per terminal, an idle one costs
// its two sockets and small buffers.
//
// Each direction holds at most one piece in flight: the session's output is read from the helper
// (64 KiB at a time, into a buffer of the loop's: an idle terminal holds none) only once what came
// before was written to the client, and the client's next message is read only once the last one
// was written to the helper. So a slow client slows the command (the helper stops reading its
// terminal), and a client that types faster than the command reads waits on TCP. Messages over terminal::message_max are closed with 1009; the client is
// pinged when quiet and dropped when it stops answering.
//
// Included by the front's Boost translation units only; Beast's WebSocket is in
// terminal_bridge.cpp alone.

#include <functional>
#include <memory>

#include "agent/front/connection.h"

namespace modbox::front {

/// A terminal being served. Ends by itself when the client or the session does.
class TerminalBridge {
 public:
  virtual ~TerminalBridge() = default;
  /// Closes the client's connection and the session at once (the sandbox is destroyed, the agent
  /// stops); the session's processes are killed.
  virtual void abort() = 0;
};

struct TerminalStart {
  Socket client;                            // the connection the upgrade request came on
  http::request<http::empty_body> upgrade;  // its head, answered with 101 by the bridge
  UniqueFd session;                         // the helper connection, after SessionReady
  std::uint32_t pid = 0;                    // the session's command, in the sandbox
  bool tty = true;                          // on a terminal (output as is), or on pipes
};

/// Answers the upgrade and bridges the WebSocket to the session until either ends. `on_end` is
/// called on the loop once, when both are closed (not when abort() closed them).
std::shared_ptr<TerminalBridge> start_terminal_bridge(TerminalStart start, std::function<void()> on_end);

}  // namespace modbox::front
