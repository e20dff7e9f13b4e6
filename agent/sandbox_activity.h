#pragma once
// How recently a sandbox was used, for its idle timeout (seed 004): the last exec, file call,
// connection through its URLs or background process, and how many of those are under way. Updated without locks by the
// front (once per connection, never per byte) and the sandbox API; read by the reaper.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "common/system.h"

namespace modbox {

class SandboxActivity : public std::enable_shared_from_this<SandboxActivity> {
 public:
  using Clock = std::function<TimePoint()>;

  /// Counts as activity for as long as it lives, and as the last activity when it ends. Move-only.
  class Hold {
   public:
    Hold() = default;
    explicit Hold(std::shared_ptr<SandboxActivity> activity);
    Hold(Hold&& other) noexcept = default;
    Hold& operator=(Hold&& other) noexcept;
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { release(); }
    void release();
    bool active() const { return activity_ != nullptr; }

   private:
    std::shared_ptr<SandboxActivity> activity_;
  };

  explicit SandboxActivity(Clock now) : now_(std::move(now)) {}

  /// Something happened now.
  void touch();
  /// Something happened at `when` (the last activity moves there unless it is later already).
  void touch_at(TimePoint when);
  /// Something is under way until the hold ends (an exec, a transfer, an open connection).
  Hold hold();
  /// The last activity, nullopt when there was none.
  std::optional<TimePoint> last() const;
  /// How many holds are alive: while any is, the sandbox is not idle.
  std::size_t under_way() const { return under_way_.load(std::memory_order_acquire); }

 private:
  Clock now_;
  std::atomic<std::int64_t> last_ns_{0};  // since the epoch; 0: none
  std::atomic<std::size_t> under_way_{0};
};

}  // namespace modbox
