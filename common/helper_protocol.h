#pragma once
// The agent ↔ in-sandbox helper wire protocol, defined once for both ends.
//
// A connection to the helper's unix socket carries one conversation:
//   1. the helper speaks first: Hello (so the agent sends nothing to a socket that is not a helper);
//   2. the agent sends one request (Exec);
//   3. the helper answers with Output frames and ends with Exit, or answers Failure.
// Closing the connection before Exit cancels the request: the helper kills every process the command
// started (agent/helper/shim.h).
// A readiness probe is a connection that only reads the Hello.
//
// Frame: [type: 1 byte][payload length: 4 bytes, big-endian][payload]. Each type has a maximum
// payload size; a decoder refuses a larger length before reading the payload, and refuses unknown
// types. Payload fields are big-endian integers and strings as [length: 4 bytes][bytes].
// Type numbers are grouped so that file operations (0x20–0x3f) and TCP relays (0x40–0x4f) can be
// added without renumbering.
//
// The agent treats everything from the helper as untrusted (code in the sandbox can kill or
// impersonate it): every message is validated here, and callers bound the time they wait.
//
// File operations are meant to follow the same shape, one request per connection, so that the
// helper resolves paths inside the container's mount namespace and a symlink in the sandbox can
// never lead the agent to a host file: an upload is a request frame, data chunks (bounded like
// Output) and an end frame, answered by a result or a Failure; a download is a request answered by
// data chunks and an end frame (the helper refuses anything but a regular file, without blocking
// on FIFOs); list and delete are a request and a result.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace modbox::helper {

inline constexpr std::uint32_t protocol_version = 1;
inline constexpr std::string_view hello_magic = "modbox-helper";
/// Where the helper listens, inside the container; the agent bind-mounts a per-sandbox host
/// directory at socket_directory.
inline constexpr std::string_view socket_directory = "/run/modbox";
inline constexpr std::string_view socket_name = "helper.sock";
/// Where the agent bind-mounts the helper binary (read-only) inside the container.
inline constexpr std::string_view binary_path_in_container = "/.modbox/helper";
/// A helper that cannot start (an image whose USER does not exist) writes why into this file in
/// socket_directory before it exits; the agent reads it, bounded and as untrusted, into the
/// sandbox's reason.
inline constexpr std::string_view startup_failure_name = "helper.failed";

/// Whether a Docker USER spec means plain root: empty, "root" or "0". For any other the agent
/// starts the container as root (so that the helper can create its socket) and passes the spec to
/// the helper (`--user SPEC`), which runs the entrypoint and every command as that user.
bool runs_as_root(std::string_view user_spec);

enum class FrameType : std::uint8_t {
  hello = 0x01,    // helper → agent, first frame of every connection
  failure = 0x02,  // helper → agent: the request was refused or could not run; ends the conversation
  exec = 0x10,     // agent → helper
  output = 0x11,   // helper → agent: a chunk of the command's stdout or stderr
  exit = 0x12,     // helper → agent: how the command ended; ends the conversation
};

inline constexpr std::size_t header_size = 5;
inline constexpr std::size_t output_chunk_max = 64 << 10;
inline constexpr std::size_t command_max = 1 << 20;
inline constexpr std::size_t path_max = 4096;
inline constexpr std::size_t message_max = 1024;
/// The largest payload of any frame type, and of each.
std::size_t max_payload(FrameType type);

struct Hello {
  std::uint32_t version = protocol_version;
  std::uint32_t pid = 0;  // the helper's pid in the container (1 when it is init)
  std::string shell;      // what Exec runs commands with: a path to bash, or to sh when the image has no bash
};

struct ExecRequest {
  std::string command;
  std::string cwd = "/";
  std::uint32_t timeout_ms = 30000;
  std::uint32_t output_cap = 1 << 20;  // per stream; the helper drops the rest and reports truncated
};

enum class Stream : std::uint8_t { stdout_stream = 1, stderr_stream = 2 };

struct Output {
  Stream stream = Stream::stdout_stream;
  std::string data;
};

struct Exit {
  std::int32_t exit_code = 0;  // 0–255; 128+n when signal n ended the command
  std::string signal;          // "SIGKILL", or empty when the command exited by itself
  bool killed = false;         // the timeout ended it
  bool truncated = false;      // the helper dropped output past the cap
  std::string shell;           // the shell that ran the command
};

struct Failure {
  std::string message;
};

using Message = std::variant<Hello, Failure, ExecRequest, Output, Exit>;

/// One complete frame, encoded.
std::string encode(const Message& message);
/// Decodes one frame's payload; refuses truncated, overlong or invalid fields.
Result<Message> decode(FrameType type, std::string_view payload);

/// Splits a byte stream into frames. Feed it what arrives; take frames out with next().
class FrameDecoder {
 public:
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  /// The next complete message, nullopt when more bytes are needed, or an error for a frame that
  /// can never be valid (unknown type, oversized length, malformed payload). After an error the
  /// stream is unusable.
  Result<std::optional<Message>> next();
  /// Bytes held that do not yet form a frame.
  std::size_t pending() const { return buffer_.size() - offset_; }

 private:
  std::string buffer_;
  std::size_t offset_ = 0;
};

/// "SIGKILL" for 9; "SIGRTMIN+n" for real-time signals; empty for numbers that are not signals.
std::string signal_name(int number);
/// The number of a name that signal_name() writes, or nullopt.
std::optional<int> signal_number(std::string_view name);

}  // namespace modbox::helper
