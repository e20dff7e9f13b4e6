#include "agent/deadlines.h"

#include <algorithm>

namespace modbox {

std::optional<Deadline> sandbox_deadline(const Sandbox& sandbox, std::optional<TimePoint> last_activity,
                                         TimePoint agent_started) {
  if (!is_live(sandbox.status) && sandbox.status != SandboxStatus::failed) return std::nullopt;
  std::optional<Deadline> deadline;
  if (auto expires = sandbox.expires_at()) deadline = Deadline{*expires, DestroyReason::ttl};
  // Idle counts only while the sandbox is running: a long provision (an image build) is not idleness.
  if (sandbox.idle_timeout_seconds && sandbox.status == SandboxStatus::running) {
    TimePoint since =
        std::max({sandbox.ready_at.value_or(sandbox.created_at), agent_started, last_activity.value_or(TimePoint{})});
    TimePoint idle_at = since + std::chrono::seconds(*sandbox.idle_timeout_seconds);
    if (!deadline || idle_at < deadline->at) deadline = Deadline{idle_at, DestroyReason::idle};
  }
  return deadline;
}

}  // namespace modbox
