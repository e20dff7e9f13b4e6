#pragma once
// One conversation with a sandbox's helper (common/helper_protocol.h) over its unix socket, every
// step bounded by a deadline, every byte from the helper treated as untrusted. Internal to the
// agent's helper client (agent/helper_client.cpp, agent/helper_process_client.cpp).

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/helper_protocol.h"
#include "common/unique_fd.h"

namespace modbox {

using HelperClock = std::chrono::steady_clock;

/// An `unavailable` error: "the sandbox's helper " + what.
std::unexpected<Error> helper_unavailable(const std::string& what);

/// Text from the helper goes into answers and logs: printable ASCII only, bounded.
std::string sanitize(std::string_view text, std::size_t max = 300);

class Conversation {
 public:
  /// Connects to the helper at `socket` (which must be a socket, not a symlink the sandbox planted).
  static Result<Conversation> open(const std::filesystem::path& socket, HelperClock::time_point deadline);

  /// The deadline of every later step (a caller that waits longer in between moves it first).
  void set_deadline(HelperClock::time_point deadline) { deadline_ = deadline; }

  Result<void> send(const std::string& bytes);

  /// From now on, never reads a byte past the frame being received: what follows a frame
  /// belongs to whoever takes the socket over (a relay's stream).
  void read_frames_exactly() { exactly_ = true; }

  /// The next message, or an error when the helper closes, stalls past the deadline or sends
  /// anything that is not a valid frame.
  Result<helper::Message> receive();
  /// The next message if one comes by `until` (nullopt otherwise); past the deadline, an error.
  Result<std::optional<helper::Message>> receive_until(HelperClock::time_point until);

  /// The hello, refused when its version is one this agent does not speak.
  Result<helper::Hello> receive_hello();

  /// The socket, for a caller that speaks on it from now on (after exact reads nothing it sent
  /// is left behind in the decoder).
  UniqueFd release() && { return std::move(fd_); }

 private:
  Conversation(UniqueFd fd, HelperClock::time_point deadline) : fd_(std::move(fd)), deadline_(deadline) {}

  UniqueFd fd_;
  HelperClock::time_point deadline_;
  helper::FrameDecoder decoder_;
  bool exactly_ = false;
};

}  // namespace modbox
