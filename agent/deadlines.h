#pragma once
// When a live sandbox must end, as one pure function of its record and its last activity, so the
// reaper, the reconcile at start and the systemd timers all agree, and the rule is unit-tested alone.

#include <optional>

#include "common/models.h"

namespace modbox {

struct Deadline {
  TimePoint at;
  DestroyReason reason;  // ttl or idle
  bool operator==(const Deadline&) const = default;
};

/// The earliest moment the sandbox must be destroyed, and why; nullopt when nothing ends it. Only
/// live and failed sandboxes have one (a failed sandbox keeps its TTL so its record does not linger
/// as live work). `last_activity` is the last exec, file call or open connection through its URLs
/// (nullopt: none since the agent started, which counts from `agent_started`).
std::optional<Deadline> sandbox_deadline(const Sandbox& sandbox, std::optional<TimePoint> last_activity,
                                         TimePoint agent_started);

}  // namespace modbox
