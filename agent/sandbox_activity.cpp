#include "agent/sandbox_activity.h"

namespace modbox {

SandboxActivity::Hold::Hold(std::shared_ptr<SandboxActivity> activity) : activity_(std::move(activity)) {
  if (activity_) {
    activity_->under_way_.fetch_add(1, std::memory_order_acq_rel);
    activity_->touch();
  }
}

SandboxActivity::Hold& SandboxActivity::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    release();
    activity_ = std::move(other.activity_);
  }
  return *this;
}

void SandboxActivity::Hold::release() {
  if (!activity_) return;
  // Touched before the count drops, so the reaper never sees nothing under way with an old time.
  activity_->touch();
  activity_->under_way_.fetch_sub(1, std::memory_order_acq_rel);
  activity_.reset();
}

void SandboxActivity::touch() {
  touch_at(now_());
}

void SandboxActivity::touch_at(TimePoint when) {
  std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  std::int64_t seen = last_ns_.load(std::memory_order_relaxed);
  while (seen < now && !last_ns_.compare_exchange_weak(seen, now, std::memory_order_acq_rel)) {
  }
}

SandboxActivity::Hold SandboxActivity::hold() {
  return Hold(shared_from_this());
}

std::optional<TimePoint> SandboxActivity::last() const {
  std::int64_t ns = last_ns_.load(std::memory_order_acquire);
  if (ns == 0) return std::nullopt;
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace modbox
