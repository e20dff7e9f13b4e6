#pragma once
// Warm pools (`/pools`): per image, how many sandboxes the agent keeps started and idle, so that a
// provision of that image claims one instead of waiting for Podman. The size is the user's setting and
// is stored; the members are sandbox records of their own (Sandbox::pool), never listed until claimed.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/system.h"

namespace modbox {

namespace limits {
/// A pool holds 0 (no pool) to this many idle sandboxes.
inline constexpr int pool_size_max = 20;
}  // namespace limits

/// The stored setting: the pool of `image_id` keeps `size` members.
struct PoolSetting {
  std::string image_id;
  int size = 0;
  /// The workspace the pool was set from (its image resolves there); nullopt: unscoped.
  std::optional<std::string> workspace_id;
  TimePoint updated_at{};
};

/// A pool as the API shows it.
struct PoolView {
  std::string image_id;
  std::string image;  // what Podman runs
  std::optional<std::string> workspace_id;
  int size = 0;
  int ready = 0;     // started, idle: what the next provisions claim
  int starting = 0;  // being started to refill it
  /// Why the last member that failed to start failed (the pool retries with a growing pause); cleared
  /// when a member starts.
  std::optional<std::string> last_error;
  TimePoint updated_at{};
};

struct PoolSizeRequest {
  int size = 0;
};

/// `{"size": N}`, N an integer 0–pool_size_max; anything else is 422 with FastAPI's detail.
Result<PoolSizeRequest> parse_pool_size_request(std::string_view body);
std::string pool_size_request_to_json(const PoolSizeRequest& request);

std::string pool_setting_to_json(const PoolSetting& setting);
Result<PoolSetting> pool_setting_from_json(std::string_view text);

std::string pool_to_json(const PoolView& pool);
std::string pools_to_json(const std::vector<PoolView>& pools);
Result<PoolView> pool_from_json(std::string_view text);
Result<std::vector<PoolView>> pools_from_json(std::string_view text);

}  // namespace modbox
