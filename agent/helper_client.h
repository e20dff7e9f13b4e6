#pragma once
// The agent's side of the in-sandbox helper protocol (common/helper_protocol.h): a connection per
// request over the sandbox's unix socket, with deadlines, treating every byte from the helper as
// untrusted. Behind an interface so the lifecycle can be tested without containers.

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "common/helper_protocol.h"
#include "common/models.h"

namespace modbox {

class SandboxHelpers {
 public:
  virtual ~SandboxHelpers() = default;
  /// Connects to the helper at `socket` and reads its hello within `timeout`: the readiness probe.
  virtual Result<helper::Hello> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout) = 0;
  /// Runs `request` through the helper. Gives up (closing the connection, which makes the helper
  /// kill the command) at the request's timeout plus a grace period. A helper that is gone, slow
  /// or not speaking the protocol is an `unavailable` error that says so.
  virtual Result<ExecResult> exec(const std::filesystem::path& socket, const ExecRequest& request) = 0;
};

/// The real client over unix sockets.
std::unique_ptr<SandboxHelpers> make_helper_client();

/// How long after the command's own timeout the agent still waits for the helper's answer.
inline constexpr std::chrono::milliseconds helper_answer_grace{2000};

}  // namespace modbox
