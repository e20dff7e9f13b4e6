#pragma once
// The WebSocket protocol of a sandbox's terminal, `{sandbox_url}/terminal/ws`, defined once for both
// ends: the agent's front serves it (agent/front/terminal_bridge.cpp), `modbox shell` and
// `modbox exec -i/-t` speak it as clients (cli/interactive_session.cpp), and so does the page at
// /terminal/ (agent/terminal/terminal.js).
//
// Opening: GET /terminal/ws with `Upgrade: websocket`, authorized as every route of the sandbox URL
// (the sandbox's key or the owner token as Bearer, or the cookie that `?token=` sets). Query:
//   cols, rows   the terminal's size, 1–1000 each (default 80×24)
//   tty          1 (default): the command runs on a pseudo-terminal; 0: on pipes (`exec -i`)
//   command      a shell line; absent or empty: an interactive shell (bash, or sh without bash)
//   cwd          an absolute directory (default /workspace when it exists, else /)
//   env          KEY=VALUE added to the sandbox's environment (repeatable)
// A query that breaks these is answered 422 before the upgrade, and a session the sandbox cannot
// start (no shell, a helper older than the agent) 409 or 503: no WebSocket is opened then.
//
// After 101 Switching Protocols:
//   client → server  binary message: input (keystrokes, or the command's stdin on pipes)
//                    text message: a JSON control message (parse_control):
//                      {"type":"resize","cols":N,"rows":N}   1–1000 each
//                      {"type":"signal","signal":"SIGINT"}   to the foreground process group
//                      {"type":"eof"}                        end of input (^D on a terminal)
//                      {"type":"input","data":"..."}         input as UTF-8 text
//                      {"type":"pause"} / {"type":"resume"}  stop / go on sending output: flow
//                        control for a client that renders slower than output comes (the
//                        command then blocks on its writes, as on a slow terminal)
//                    One the server refuses (malformed, a size out of range) is answered with an
//                    error event and ignored: the session goes on.
//   server → client  text {"type":"ready","pid":N} first: the session's command runs as pid N;
//                    binary message: output. On a terminal the bytes as they come; on pipes the
//                      first byte tells the stream, 1 stdout or 2 stderr (as Kubernetes'
//                      channel.k8s.io), the bytes follow;
//                    text {"type":"error","message":"..."}: a control message refused, or the
//                      session broke (then the server closes with 1011);
//                    text {"type":"exit","exit_code":N[,"signal":"SIGKILL"]} once the command has
//                      exited and its output was sent, then the server closes with 1000.
//   A message over message_max bytes is closed with 1009. The client closing the WebSocket (or its
//   connection) kills every process of the session.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace modbox::terminal {

inline constexpr std::string_view websocket_path = "/terminal/ws";
/// The largest WebSocket message either side accepts.
inline constexpr std::size_t message_max = 1 << 20;
/// A terminal's columns and rows are each 1 to this.
inline constexpr std::uint32_t size_max = 1000;
inline constexpr std::uint16_t default_cols = 80;
inline constexpr std::uint16_t default_rows = 24;

/// What a session runs, and how: the query of /terminal/ws.
struct SessionOptions {
  bool tty = true;
  std::uint16_t cols = default_cols;
  std::uint16_t rows = default_rows;
  std::string command;           // empty: an interactive shell
  std::string cwd;               // empty: the helper's default
  std::vector<std::string> env;  // KEY=VALUE
};

/// The options in a query; a FastAPI-shaped validation error (422, loc ["query", NAME]) for a value
/// out of range or malformed. Other parameters are ignored.
Result<SessionOptions> session_options_from_query(const std::multimap<std::string, std::string>& query);
/// The query string (without '?') that asks for `options`, every value percent-encoded.
std::string session_query(const SessionOptions& options);

/// Whether both sizes are 1–size_max.
bool is_terminal_size(std::uint64_t cols, std::uint64_t rows);

// ---- client → server --------------------------------------------------------------------------

struct Resize {
  std::uint16_t cols = 0;
  std::uint16_t rows = 0;
};
struct Signal {
  int number = 0;
};
struct EndOfInput {};
struct Input {
  std::string bytes;
};
struct Pause {};
struct Resume {};
using Control = std::variant<Resize, Signal, EndOfInput, Input, Pause, Resume>;

/// A client's text message; an error (its sentence goes back to the client as an error event) for
/// one that is not JSON, has an unknown type, or a size out of range or a signal unknown.
Result<Control> parse_control(std::string_view text);
/// The text message of a control message.
std::string control_message(const Control& control);

// ---- server → client --------------------------------------------------------------------------

enum class OutputStream : std::uint8_t { stdout_stream = 1, stderr_stream = 2 };

struct Ready {
  std::uint32_t pid = 0;
};
struct Exited {
  int exit_code = 0;   // 0–255; 128+n when signal n ended the command
  std::string signal;  // "SIGKILL", or empty when it exited by itself
};
struct Failed {
  std::string message;
};
using Event = std::variant<Ready, Exited, Failed>;

std::string event_message(const Event& event);
/// A server's text message; an error for one that is none of the events.
Result<Event> parse_event(std::string_view text);

/// A binary output message on pipes: the stream's byte, then `bytes`.
std::string pipe_output_message(OutputStream stream, std::string_view bytes);

}  // namespace modbox::terminal
