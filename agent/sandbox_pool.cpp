// Warm pools (README.md "Warm pools"): sandboxes started ahead per image, as records of their own marked
// with their pool (Sandbox::pool), and claimed by provisions of that image. The sizes are stored as
// records of their own; the pool thread keeps each pool at its size.

#include <algorithm>

#include "agent/log.h"
#include "agent/sandbox_service.h"

namespace modbox {

namespace {
using Steady = std::chrono::steady_clock;

/// How long after a claim its pool waits before it refills: a provision's first commands run while
/// Podman is quiet rather than next to the start of its successor (claims come in bursts, too).
constexpr std::chrono::milliseconds refill_delay{250};

/// The task name of idle members (their containers are called modbox-warm-pool-ID).
constexpr std::string_view member_name = "warm-pool";

std::string describe_pool(const std::string& image_id) {
  return "the warm pool of image " + image_id;
}
}  // namespace

void SandboxService::load_pools() {
  if (config_.pool_directory.empty()) return;
  auto store = RecordStore::open(config_.pool_directory);
  if (!store) {
    log_error("warm pools are not kept: " + store.error().message);
    return;
  }
  pool_store_ = std::move(*store);
  auto records = pool_store_->load_all([](const StoredRecord& record) {
    auto setting = pool_setting_from_json(record.text);
    return setting.has_value() && setting->image_id == record.id;
  });
  std::lock_guard lock(mutex_);
  for (const auto& record : records) {
    auto setting = *pool_setting_from_json(record.text);
    pools_[setting.image_id] = Pool{.setting = setting};
  }
  if (!pools_.empty()) log_info("loaded " + std::to_string(pools_.size()) + " warm pools");
}

PoolView SandboxService::pool_view(const std::string& image_id) const {
  PoolView view{.image_id = image_id};
  if (auto pool = pools_.find(image_id); pool != pools_.end()) {
    view.image = pool->second.image;
    view.workspace_id = pool->second.setting.workspace_id;
    view.size = pool->second.setting.size;
    view.last_error = pool->second.last_error;
    view.updated_at = pool->second.setting.updated_at;
  }
  for (const auto& [id, sandbox] : sandboxes_) {
    if (sandbox.pool != image_id || retiring_.contains(id) || destroying_.contains(id)) continue;
    if (sandbox.status == SandboxStatus::running) ++view.ready;
    if (sandbox.status == SandboxStatus::provisioning) ++view.starting;
    if (view.image.empty()) view.image = sandbox.image;
  }
  return view;
}

Result<PoolView> SandboxService::set_pool(const Workspace& workspace, const std::string& image_id, int size) {
  if (size < 0 || size > limits::pool_size_max)
    return fail_validation({{{"body", "size"},
                             "Input should be between 0 and " + std::to_string(limits::pool_size_max),
                             size < 0 ? "greater_than_equal" : "less_than_equal"}});
  bool known = false;
  {
    std::lock_guard lock(mutex_);
    known = pools_.contains(image_id);
  }
  std::string reference;
  // A pool is emptied even when its image is gone since; it is set only for an image the caller sees.
  if (size > 0 || !known) {
    if (config_.images == nullptr) return fail(ErrorKind::not_found, "no image with id '" + image_id + "'");
    auto resolved = config_.images->resolve(workspace, image_id);
    if (!resolved) return std::unexpected(resolved.error());
    reference = resolved->reference;
  }
  if (!is_record_id(image_id)) return fail(ErrorKind::not_found, "no image with id '" + image_id + "'");
  PoolSetting setting{.image_id = image_id, .size = size, .workspace_id = workspace, .updated_at = config_.now()};
  std::lock_guard lock(mutex_);
  if (stopping_) return fail(ErrorKind::unavailable, "the agent is shutting down");
  if (size == 0) {
    if (pool_store_)
      if (auto removed = pool_store_->remove(image_id); !removed)
        return std::unexpected(with_context(removed.error(), "deleting " + describe_pool(image_id)));
    pools_.erase(image_id);
  } else {
    if (pool_store_)
      if (auto stored = pool_store_->put(image_id, pool_setting_to_json(setting)); !stored)
        return std::unexpected(with_context(stored.error(), "saving " + describe_pool(image_id)));
    Pool& pool = pools_[image_id];
    pool.setting = setting;
    pool.image = reference;
    // A new setting is tried at once, whatever failed before.
    pool.failures = 0;
    pool.retry_at = {};
  }
  pool_wake_ = true;
  changed_.notify_all();
  log_info(describe_pool(image_id) + (size == 0 ? " is deleted" : " keeps " + std::to_string(size) + " sandboxes"));
  PoolView view = pool_view(image_id);
  view.size = size;
  if (view.image.empty()) view.image = reference;
  return view;
}

std::vector<PoolView> SandboxService::pools(const Workspace& workspace) const {
  std::vector<PoolView> views;
  std::lock_guard lock(mutex_);
  for (const auto& [image_id, pool] : pools_)
    if (!workspace || pool.setting.workspace_id == workspace) views.push_back(pool_view(image_id));
  return views;
}

bool SandboxService::settle_pools(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [this] {
    for (const auto& [image_id, pool] : pools_)
      if (pool_view(image_id).ready < pool.setting.size) return false;
    return true;
  });
}

std::optional<Result<Sandbox>> SandboxService::claim(const Workspace& workspace, const ProvisionRequest& request,
                                                     const ResolvedImage& image) {
  // Members run the image's own entrypoint with its own probe, on the default network, with no ports
  // served: a provision that asks otherwise starts a sandbox of its own.
  if (request.image || !image.image_id || !request.command.empty() || request.readiness_probe || request.network ||
      !request.ports.empty())
    return std::nullopt;
  Sandbox claimed;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return std::nullopt;
    auto pool = pools_.find(*image.image_id);
    if (pool == pools_.end()) return std::nullopt;
    if (const Sandbox* existing = find_by_task(workspace, request.task_id); existing && is_live(existing->status))
      return fail(ErrorKind::conflict, "task_id '" + request.task_id + "' is already " +
                                           std::string(to_string(existing->status)) + " in this workspace (sandbox " +
                                           existing->id + "); destroy it first or choose another task_id");
    // The member that has waited longest.
    Sandbox* member = nullptr;
    for (auto& [id, sandbox] : sandboxes_)
      if (sandbox.pool == *image.image_id && sandbox.status == SandboxStatus::running && !retiring_.contains(id) &&
          !destroying_.contains(id) && (member == nullptr || sandbox.created_at < member->created_at))
        member = &sandbox;
    if (member == nullptr) return std::nullopt;
    pool->second.retry_at = std::max(pool->second.retry_at, Steady::now() + refill_delay);
    TimePoint now = config_.now();
    claimed = *member;
    claimed.pool.reset();
    claimed.from_pool = true;
    claimed.name = request.task_id;
    claimed.workspace_id = workspace;
    claimed.created_by = config_.created_by;
    // The sandbox is the provision's from now: its TTL and idle time count from the claim.
    claimed.created_at = now;
    claimed.ready_at = now;
    claimed.startup_ms = 0;
    claimed.ttl_seconds = request.ttl_seconds ? request.ttl_seconds : image.ttl_seconds;
    claimed.ttl_extended_at.reset();
    claimed.env_vars = request.env_vars;
    claimed.tags = request.tags;
    claimed.idle_timeout_seconds = request.idle_timeout_seconds;
    // Recorded before the helper hears of it: a restart gives the environment again (reconcile).
    if (auto stored = persist(claimed); !stored) {
      log_error("claiming a member of " + describe_pool(*image.image_id) + ": " + stored.error().message);
      return std::nullopt;
    }
    *member = claimed;
    by_task_[{claimed.workspace_id, claimed.name}].insert(claimed.id);
    activity_.erase(claimed.id);
    pool_wake_ = true;
    changed_.notify_all();
  }
  if (auto expires = claimed.expires_at(); expires && timers_) timers_->arm(claimed.id, *expires);
  if (auto given = give_claim_environment(claimed); !given) {
    // Claimed but without its environment: no good to anyone. The provision starts a sandbox of its own.
    log_error("sandbox " + claimed.id + " of " + describe_pool(*image.image_id) +
              " could not take its environment: " + given.error().message);
    (void)destroy_by_id(claimed.id, DestroyReason::lost, "it could not take its environment at its claim");
    return std::nullopt;
  }
  log_info("provisioned sandbox " + claimed.name + " (" + claimed.id + ") from " + describe_pool(*image.image_id));
  return claimed;
}

Result<void> SandboxService::give_claim_environment(const Sandbox& sandbox) {
  if (config_.helpers == nullptr || sandbox.env_vars.empty()) return {};
  helper::EnvironmentSet set;
  for (const auto& [name, value] : sandbox.env_vars) set.env.push_back(name + "=" + value);
  return config_.helpers->set_environment(backend_.helper_socket(sandbox.id), set);
}

void SandboxService::pool_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (refill_pools(lock)) continue;
    // Look again at a claim or a new size at once, when a pause ends, and every second (a member that
    // started or failed).
    auto wake = Steady::now() + std::chrono::seconds(1);
    for (const auto& [image_id, pool] : pools_)
      if (pool.retry_at > Steady::now()) wake = std::min(wake, pool.retry_at);
    changed_.wait_until(lock, wake, [this] { return stopping_ || pool_wake_; });
  }
}

bool SandboxService::refill_pools(std::unique_lock<std::mutex>& lock) {
  pool_wake_ = false;
  bool changed = false;
  auto steady_now = Steady::now();
  auto note_failure = [&](const std::string& image_id, const std::string& reason) {
    auto pool = pools_.find(image_id);
    if (pool == pools_.end()) return;
    Pool& state = pool->second;
    ++state.failures;
    state.last_error = reason;
    auto pause = config_.pool_retry * (1LL << std::min(state.failures - 1, 16));
    state.retry_at = Steady::now() + std::min<std::chrono::milliseconds>(pause, config_.pool_retry_max);
    log_error("a sandbox of " + describe_pool(image_id) + " could not start: " + reason);
  };

  // Members that ended (failed, destroyed, lost) leave no record: they were never anyone's sandbox.
  std::vector<std::string> ended;
  std::vector<std::string> stuck;  // provisioning members whose readiness probe gave up
  for (const auto& [id, sandbox] : sandboxes_) {
    if (!is_pool_member(sandbox) || destroying_.contains(id) || retiring_.contains(id)) continue;
    if (!is_live(sandbox.status))
      ended.push_back(id);
    else if (sandbox.status == SandboxStatus::provisioning &&
             sandbox.readiness.phase == ReadinessState::Phase::timed_out)
      stuck.push_back(id);
  }
  for (const auto& id : ended) {
    Sandbox& sandbox = sandboxes_.at(id);
    if (sandbox.status == SandboxStatus::failed) note_failure(*sandbox.pool, sandbox.error.value_or("unknown reason"));
    if (auto removed = store_.remove(id); !removed) {
      log_error("dropping the record of a warm pool's sandbox: " + removed.error().message);
      continue;
    }
    std::error_code error;
    std::filesystem::remove(saved_log_path(id), error);
    activity_.erase(id);
    sandboxes_.erase(id);
    changed = true;
  }

  // How many live members each pool has, newest last.
  std::map<std::string, std::vector<std::string>> members;
  std::map<std::string, int> starting;
  std::vector<std::pair<TimePoint, std::string>> by_age;
  for (const auto& [id, sandbox] : sandboxes_)
    if (is_pool_member(sandbox) && is_live(sandbox.status) && !retiring_.contains(id) && !destroying_.contains(id))
      by_age.emplace_back(sandbox.created_at, id);
  std::sort(by_age.begin(), by_age.end());
  for (const auto& [created, id] : by_age) {
    const Sandbox& sandbox = sandboxes_.at(id);
    members[*sandbox.pool].push_back(id);
    if (sandbox.status == SandboxStatus::provisioning)
      ++starting[*sandbox.pool];
    else if (auto pool = pools_.find(*sandbox.pool); pool != pools_.end()) {
      pool->second.failures = 0;  // one started: the image works
      pool->second.last_error.reset();
    }
  }

  std::vector<std::pair<std::string, std::string>> retire(stuck.size());  // id, why
  std::transform(stuck.begin(), stuck.end(), retire.begin(), [](const std::string& id) {
    return std::pair<std::string, std::string>{id, "its readiness probe did not pass"};
  });
  for (const auto& id : stuck) note_failure(*sandboxes_.at(id).pool, "its readiness probe did not pass");
  struct Wanted {
    PoolSetting setting;
    int count = 0;
  };
  std::vector<Wanted> wanted;
  for (auto& [image_id, ids] : members) {
    auto pool = pools_.find(image_id);
    std::size_t keep = pool == pools_.end() ? 0 : static_cast<std::size_t>(pool->second.setting.size);
    // The newest go first: those still starting before those that wait.
    while (ids.size() > keep) {
      if (std::find(stuck.begin(), stuck.end(), ids.back()) == stuck.end())
        retire.emplace_back(ids.back(), "its warm pool shrank");
      ids.pop_back();
    }
  }
  for (const auto& [image_id, pool] : pools_) {
    int have = static_cast<int>(members[image_id].size());
    int room = config_.pool_starts_max - starting[image_id];
    int count = std::min(pool.setting.size - have, room);
    if (count > 0 && steady_now >= pool.retry_at) wanted.push_back({pool.setting, count});
  }
  if (retire.empty() && wanted.empty()) return changed;

  for (const auto& [id, why] : retire) retiring_.insert(id);
  lock.unlock();
  for (const auto& [id, why] : retire) {
    if (auto destroyed = destroy_by_id(id, DestroyReason::requested, why); !destroyed) {
      log_error("could not destroy sandbox " + id + " of a warm pool: " + destroyed.error().message);
      continue;
    }
    changed = true;
  }
  // New members, resolved and checked without the lock (the image catalog and the backend are slow).
  std::vector<Sandbox> fresh;
  std::vector<std::pair<std::string, std::string>> failures;  // image id, why
  std::map<std::string, std::string> references;
  for (const auto& want : wanted) {
    const std::string& image_id = want.setting.image_id;
    auto resolved = config_.images != nullptr
                        ? config_.images->resolve(want.setting.workspace_id, image_id)
                        : Result<ResolvedImage>(fail(ErrorKind::not_found, "no image with id '" + image_id + "'"));
    if (!resolved) {
      failures.emplace_back(image_id, resolved.error().message);
      continue;
    }
    if (auto ping = backend_.ping(); !ping) {
      failures.emplace_back(image_id, ping.error().message);
      continue;
    }
    references[image_id] = resolved->reference;
    for (int i = 0; i < want.count; ++i) {
      Sandbox sandbox;
      sandbox.id = new_uuid();
      sandbox.name = std::string(member_name);
      sandbox.workspace_id = want.setting.workspace_id;
      sandbox.status = SandboxStatus::provisioning;
      sandbox.image = resolved->reference;
      sandbox.image_id = resolved->image_id;
      sandbox.registry_id = resolved->registry_id;
      sandbox.created_by = config_.created_by;
      sandbox.created_at = config_.now();
      sandbox.readiness_port = resolved->readiness_port;
      if (resolved->readiness_port)
        sandbox.readiness_probe = ReadinessProbe{.kind = ReadinessProbe::Kind::http, .port = *resolved->readiness_port};
      if (resolved->memory_mb) {
        BackendCapabilities capabilities = backend_.capabilities();
        sandbox.memory_mb = resolved->memory_mb;
        sandbox.memory_limit_enforced = capabilities.memory_limits;
        if (!capabilities.memory_limits) sandbox.memory_limit_detail = capabilities.memory_limits_detail;
      }
      sandbox.pool = image_id;
      fresh.push_back(std::move(sandbox));
    }
  }
  lock.lock();
  for (const auto& [id, why] : retire) retiring_.erase(id);
  for (const auto& [image_id, why] : failures) note_failure(image_id, why);
  for (const auto& [image_id, reference] : references)
    if (auto pool = pools_.find(image_id); pool != pools_.end()) pool->second.image = reference;
  std::vector<std::string> started;
  for (auto& sandbox : fresh) {
    // The pool may have been deleted meanwhile, or the agent be stopping.
    if (stopping_ || !pools_.contains(*sandbox.pool)) continue;
    auto port = endpoints_.open(sandbox.id, 0, 0);
    if (!port) {
      note_failure(*sandbox.pool, "opening its URL: " + port.error().message);
      continue;
    }
    sandbox.gateway_port = *port;
    sandbox.sandbox_url = "http://127.0.0.1:" + std::to_string(*port);
    if (auto stored = persist(sandbox); !stored) {
      endpoints_.close(sandbox.id);
      note_failure(*sandbox.pool, stored.error().message);
      continue;
    }
    started.push_back(sandbox.id);
    insert(std::move(sandbox));
  }
  if (stopping_ || started.empty()) return changed;  // a destroy that failed (Podman restarting) waits a round
  lock.unlock();
  for (auto& id : started) provision_in_background(id);
  lock.lock();
  return true;
}

}  // namespace modbox
