// The sandbox lifecycle's readiness probes: a provisioning sandbox whose helper answers is probed
// (agent/readiness_probe.h) every interval until the probe passes or gives up. The probe runs on the
// sandbox's provisioning worker, never under the lifecycle's lock.

#include "agent/log.h"
#include "agent/readiness_probe.h"
#include "agent/sandbox_service.h"

namespace modbox {

bool SandboxService::record_probe_attempt(const std::string& id, const Result<void>& attempt) {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning) return false;
  ReadinessState& readiness = it->second.readiness;
  ++readiness.attempts;
  readiness.last_passed = attempt.has_value();
  // last_error is the last attempt's: none once one passed.
  readiness.last_error = attempt ? std::nullopt : std::optional<std::string>(attempt.error().message);
  if (attempt) readiness.phase = ReadinessState::Phase::passed;
  return true;
}

std::optional<ReadinessProbe> SandboxService::process_probe(const Sandbox& sandbox) {
  auto probe = process_probe_for(backend_.image_command(sandbox), [&] {
    auto found = config_.helpers->exec(backend_.helper_socket(sandbox.id),
                                       {.command = supervisord_binary_check, .timeout_ms = 5000, .cwd = "/"});
    return found && found->exit_code == 0 && !found->killed;
  });
  if (!probe) return std::nullopt;
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(sandbox.id);
  if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning) return std::nullopt;
  it->second.readiness_probe = probe;
  if (auto stored = persist(it->second); !stored) log_error(stored.error().message);
  return probe;
}

bool SandboxService::wait_until_ready(const Sandbox& sandbox, const ReadinessProbe& probe) {
  using Clock = std::chrono::steady_clock;
  {
    // An agent that restarted probes afresh: how the last one went is not stored.
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(sandbox.id);
    if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning) return false;
    it->second.readiness = ReadinessState{};
    it->second.progress = "waiting for its readiness probe (" + describe(probe) + ")";
  }
  log_info("sandbox " + sandbox.name + " (" + sandbox.id + "): waiting for its readiness probe, " + describe(probe));
  auto give_up = Clock::now() + config_.readiness_give_up;
  auto socket = backend_.helper_socket(sandbox.id);
  for (;;) {
    auto attempt = probe_once(*config_.helpers, socket, probe);
    if (!record_probe_attempt(sandbox.id, attempt)) return false;
    if (attempt) return true;
    std::unique_lock lock(mutex_);
    auto left_provisioning = [&] {
      auto it = sandboxes_.find(sandbox.id);
      return stopping_ || it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning;
    };
    if (Clock::now() >= give_up) {
      if (left_provisioning()) return false;
      Sandbox& current = sandboxes_.at(sandbox.id);
      current.readiness.phase = ReadinessState::Phase::timed_out;
      changed_.notify_all();
      log_error("sandbox " + sandbox.name + " (" + sandbox.id + "): the readiness probe (" + describe(probe) +
                ") did not pass within " + describe_duration(config_.readiness_give_up) + ": " +
                current.readiness.last_error.value_or("") + "; the sandbox stays provisioning until destroyed");
      return false;
    }
    // Sleep one interval (never past the give-up time), waking at once for a destroy or a shutdown.
    auto wake = std::min(Clock::now() + std::chrono::milliseconds(probe.interval_ms), give_up);
    if (changed_.wait_until(lock, wake, left_provisioning)) return false;
  }
}

}  // namespace modbox
