// The sandbox lifecycle's part of the in-sandbox helper: waiting for it to answer once the backend
// started the sandbox, and releasing what the backend holds for sandboxes that ended.

#include <thread>

#include "agent/log.h"
#include "agent/sandbox_service.h"

namespace modbox {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

Result<SandboxService::HelperStart> SandboxService::wait_for_helper(const Sandbox& sandbox) {
  auto started = Clock::now();
  auto deadline = started + config_.helper_ready_timeout;
  auto next_state_check = started + std::chrono::milliseconds(500);
  auto pause = std::chrono::milliseconds(1);
  auto socket = backend_.helper_socket(sandbox.id);
  for (;;) {
    auto hello = config_.helpers->ping(socket, std::chrono::seconds(1));
    if (hello) {
      if (hello->shell.find("bash") == std::string::npos)
        log_info(describe(sandbox) + ": the image has no bash; exec runs commands with " +
                 (hello->shell.empty() ? std::string("no shell at all") : hello->shell));
      return HelperStart::answering;
    }
    // A command that fails at once can end the sandbox before its helper is ever reached.
    if (!sandbox.command.empty() && backend_.main_exit_reported(sandbox.id)) return HelperStart::main_exited;
    {
      std::lock_guard lock(mutex_);
      auto it = sandboxes_.find(sandbox.id);
      if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning)
        return HelperStart::answering;  // destroyed meanwhile: the caller sees it
    }
    auto now = Clock::now();
    if (now >= deadline)
      return fail(ErrorKind::unavailable, "the sandbox's helper did not answer within " +
                                              std::to_string(config_.helper_ready_timeout.count()) + " ms (" +
                                              hello.error().message + "); " + backend_.diagnosis_hint(sandbox));
    if (now >= next_state_check) {
      // A sandbox that stopped will never answer: fail now rather than at the deadline.
      next_state_check = now + std::chrono::milliseconds(500);
      if (!sandbox.command.empty()) {
        // Stopped with no word from its helper about itself: the command ended it.
        auto ended = backend_.main_exit(sandbox);
        if (ended && *ended && !(*ended)->helper_failure) return HelperStart::main_exited;
      }
      if (auto stopped = backend_.stopped_reason(sandbox)) return fail(ErrorKind::unavailable, *stopped);
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void SandboxService::release_ended() {
  std::set<std::string> live;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_)
      if (is_live(sandbox.status)) live.insert(id);
  }
  backend_.release_all_but(live);
}

}  // namespace modbox
