#include "agent/sandbox_service.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "agent/log.h"
#include "common/system.h"

namespace modbox {

namespace {
std::string deadline_detail(const Deadline& deadline) {
  return deadline.reason == DestroyReason::idle ? "idle timeout reached" : "ttl expired";
}

/// Why a probed sandbox is still provisioning at a wait's end: the probe gave up (seed 004's
/// TimeoutError), or it has not passed yet; either way with the probe's last error.
std::string readiness_wait_message(const Sandbox& sandbox, const std::string& still_provisioning,
                                   std::chrono::milliseconds give_up) {
  const ReadinessState& readiness = sandbox.readiness;
  std::string probe = "the readiness probe (" + describe(*sandbox.readiness_probe) + ")";
  std::string last_error = readiness.last_error.value_or("none");
  if (readiness.attempts == 0) return still_provisioning + " (" + probe + " has not run yet)";
  if (readiness.phase == ReadinessState::Phase::timed_out)
    return "sandbox '" + sandbox.name + "' is not ready: " + probe + " did not pass within " +
           describe_duration(give_up) + ": " + last_error + " (the sandbox is left provisioning; destroy it)";
  return still_provisioning + ": " + probe + " has not passed yet (" + std::to_string(readiness.attempts) +
         " attempts; last error: " + last_error + ")";
}
}  // namespace

SandboxService::SandboxService(SandboxServiceConfig config, SandboxBackend& backend, RecordStore store,
                               SandboxEndpoints& endpoints)
    : config_(std::move(config)),
      backend_(backend),
      store_(std::move(store)),
      endpoints_(endpoints),
      timers_(config_.timers != nullptr ? std::make_unique<TtlTimerQueue>(*config_.timers) : nullptr),
      started_at_(config_.now()) {}

SandboxService::~SandboxService() {
  shutdown();
}

void SandboxService::load() {
  auto records = store_.load_all([](const StoredRecord& record) {
    auto sandbox = sandbox_record_from_json(record.text);
    return sandbox.has_value() && sandbox->id == record.id;
  });
  {
    std::lock_guard lock(mutex_);
    for (const auto& record : records) insert(std::move(*sandbox_record_from_json(record.text)));
    log_info("loaded " + std::to_string(sandboxes_.size()) + " sandbox records from " + store_.directory().string());
  }
  load_pools();
  prune_ended();
}

void SandboxService::insert(Sandbox sandbox) {
  // A pool's idle member has no task yet: its claim indexes it.
  if (!is_pool_member(sandbox)) by_task_[{sandbox.workspace_id, sandbox.name}].insert(sandbox.id);
  std::string id = sandbox.id;
  sandboxes_[id] = std::move(sandbox);
}

std::size_t SandboxService::prune_ended() {
  std::vector<std::string> ended;
  {
    std::lock_guard lock(mutex_);
    auto now = config_.now();
    for (const auto& [id, sandbox] : sandboxes_)
      if (sandbox.status == SandboxStatus::destroyed &&
          sandbox.destroyed_at.value_or(sandbox.created_at) + config_.retention <= now)
        ended.push_back(id);
  }
  if (ended.empty()) return 0;
  // Files first, without the lock: a record whose file stays is kept in memory too, and tried again.
  std::vector<std::string> removed;
  for (const auto& id : ended) {
    if (auto gone = store_.remove(id); !gone) {
      log_error("pruning sandbox record " + id + ": " + gone.error().message);
      continue;
    }
    removed.push_back(id);
    // The main process's output kept after the sandbox ended goes with its record.
    std::error_code error;
    std::filesystem::remove(saved_log_path(id), error);
    if (error) log_error("pruning the log of sandbox " + id + ": " + error.message());
  }
  std::lock_guard lock(mutex_);
  for (const auto& id : removed) {
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) continue;
    auto index = by_task_.find({it->second.workspace_id, it->second.name});
    if (index != by_task_.end()) {
      index->second.erase(id);
      if (index->second.empty()) by_task_.erase(index);
    }
    activity_.erase(id);
    sandboxes_.erase(it);
  }
  log_info("pruned " + std::to_string(removed.size()) + " records of sandboxes destroyed more than " +
           describe_duration(std::chrono::duration_cast<std::chrono::milliseconds>(config_.retention)) + " ago");
  return removed.size();
}

Result<void> SandboxService::persist(const Sandbox& sandbox) {
  if (auto stored = store_.put(sandbox.id, sandbox_record_to_json(sandbox)); !stored)
    return std::unexpected(with_context(stored.error(), "saving " + describe(sandbox)));
  return {};
}

const Sandbox* SandboxService::find_by_task(const Workspace& workspace, const std::string& task_id) const {
  // The live sandbox of that name wins; otherwise the most recent one, so a destroyed
  // sandbox can still be looked at.
  auto ids = by_task_.find({workspace, task_id});
  if (ids == by_task_.end()) return nullptr;
  const Sandbox* best = nullptr;
  for (const auto& id : ids->second) {
    const Sandbox& sandbox = sandboxes_.at(id);
    if (best == nullptr || (is_live(sandbox.status) && !is_live(best->status)) ||
        (is_live(sandbox.status) == is_live(best->status) && sandbox.created_at > best->created_at))
      best = &sandbox;
  }
  return best;
}

Result<Sandbox> SandboxService::provision(const Workspace& workspace, const ProvisionRequest& request) {
  if (request.image_id && request.image)
    return fail_validation({{{"body", "image"}, "Value error, give image_id or image, not both", "value_error"}});
  ResolvedImage resolved{.reference = config_.default_image};
  if (request.image) {
    resolved.reference = *request.image;
  } else if (config_.images) {
    auto found = config_.images->resolve(workspace, request.image_id);
    if (!found) return std::unexpected(found.error());
    resolved = std::move(*found);
  } else if (request.image_id) {
    return fail(ErrorKind::not_found, "no image with id '" + *request.image_id + "'");
  }
  // A warm pool of the image answers at once; without a ready member the provision goes on as usual.
  if (auto claimed = claim(workspace, request, resolved)) return std::move(*claimed);
  // Refuse while the backend is down instead of recording a sandbox that cannot start.
  if (auto ping = backend_.ping(); !ping) return std::unexpected(ping.error());
  Sandbox sandbox;
  sandbox.id = new_uuid();
  sandbox.name = request.task_id;
  sandbox.workspace_id = workspace;
  sandbox.status = SandboxStatus::provisioning;
  sandbox.image = resolved.reference;
  sandbox.image_id = resolved.image_id;
  sandbox.registry_id = resolved.registry_id;
  sandbox.created_by = config_.created_by;
  sandbox.created_at = config_.now();
  sandbox.ttl_seconds = request.ttl_seconds ? request.ttl_seconds : resolved.ttl_seconds;
  sandbox.env_vars = request.env_vars;
  sandbox.ports = request.ports;
  sandbox.command = request.command;
  sandbox.readiness_port = resolved.readiness_port;
  sandbox.idle_timeout_seconds = request.idle_timeout_seconds;
  sandbox.tags = request.tags;
  sandbox.network = request.network;
  // A provision's own probe wins over the image's HTTP probe (seed 000: GET :{readiness_port}/).
  if (request.readiness_probe)
    sandbox.readiness_probe = request.readiness_probe;
  else if (resolved.readiness_port)
    sandbox.readiness_probe = ReadinessProbe{.kind = ReadinessProbe::Kind::http, .port = *resolved.readiness_port};
  if (resolved.memory_mb) {
    BackendCapabilities capabilities = backend_.capabilities();
    sandbox.memory_mb = resolved.memory_mb;
    sandbox.memory_limit_enforced = capabilities.memory_limits;
    if (!capabilities.memory_limits) sandbox.memory_limit_detail = capabilities.memory_limits_detail;
  }

  std::unique_lock lock(mutex_);
  if (stopping_) return fail(ErrorKind::unavailable, "the agent is shutting down");
  if (const Sandbox* existing = find_by_task(workspace, request.task_id); existing && is_live(existing->status))
    return fail(ErrorKind::conflict, "task_id '" + request.task_id + "' is already " +
                                         std::string(to_string(existing->status)) + " in this workspace (sandbox " +
                                         existing->id + "); destroy it first or choose another task_id");
  auto port = endpoints_.open(sandbox.id, 0, 0);
  if (!port) return std::unexpected(with_context(port.error(), "opening the sandbox URL"));
  sandbox.gateway_port = *port;
  sandbox.sandbox_url = "http://127.0.0.1:" + std::to_string(*port);
  if (auto stored = persist(sandbox); !stored) {
    endpoints_.close(sandbox.id);
    return std::unexpected(stored.error());
  }
  insert(sandbox);
  lock.unlock();
  if (auto expires = sandbox.expires_at(); expires && timers_) timers_->arm(sandbox.id, *expires);
  log_info("provisioning " + describe(sandbox) + " from " + sandbox.image);
  provision_in_background(sandbox.id);
  return sandbox;
}

void SandboxService::provision_in_background(std::string id) {
  {
    // One worker per sandbox: reconcile may try to resume a provision that is already running.
    std::lock_guard lock(mutex_);
    if (!provisioning_now_.insert(id).second) return;
    ++workers_;
  }
  std::thread([this, id = std::move(id)] {
    run_provision(id);
    std::lock_guard lock(mutex_);
    provisioning_now_.erase(id);
    --workers_;
    changed_.notify_all();
  }).detach();
}

void SandboxService::mark_failed(const std::string& id, const std::string& reason) {
  save_log(id);
  backend_.release(id);
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning) return;
  it->second.status = SandboxStatus::failed;
  it->second.error = reason;
  activity_.erase(id);
  if (auto stored = persist(it->second); !stored) log_error(stored.error().message);
  endpoints_.close(id);
  changed_.notify_all();
  log_error(describe(it->second) + " failed: " + reason);
}

void SandboxService::run_provision(const std::string& id) {
  Sandbox sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning) return;
    sandbox = it->second;
  }
  {
    // Pulls and builds take seconds to minutes: say so in the sandbox's detail until they end.
    auto ready = backend_.prepare_image(sandbox, [&](const std::string& step) { set_progress(id, step); });
    set_progress(id, std::nullopt);
    if (!ready) return mark_failed(id, ready.error().message);
  }
  if (sandbox.container_id.empty()) {
    LaunchOptions options;
    // The backstop that holds while the agent is down. Podman 4.3 cannot change it after creation, so it
    // is armed at the latest an extend can move the expiry to, never before it.
    if (sandbox.expires_at())
      options.lifetime = std::chrono::ceil<std::chrono::seconds>(sandbox.lifetime_end() - config_.now());
    auto created = backend_.create(sandbox, options);
    if (!created) {
      backend_.release(id);
      return mark_failed(id, created.error().message);
    }
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    it->second.container_id = *created;
    sandbox.container_id = *created;
    if (auto stored = persist(it->second); !stored) log_error(stored.error().message);
  }
  if (auto started = backend_.start(sandbox); !started) {
    (void)backend_.remove(sandbox);
    return mark_failed(id, started.error().message);
  }
  // Running means exec works: the helper answers on its socket.
  if (config_.helpers != nullptr) {
    auto ready = wait_for_helper(sandbox);
    if (!ready) {
      save_log(id);  // what the image's entrypoint said may be why
      (void)backend_.remove(sandbox);
      return mark_failed(id, ready.error().message);
    }
    // A command that ended at once ends the sandbox (the watcher retries if the backend lags behind).
    if (*ready == HelperStart::main_exited) return (void)finish_exited(id);
  }
  // Without a probe of its own or its image's port, an image with supervisord is ready once it runs
  // (seed 000); a provision's own command replaces the image's supervisord.
  if (config_.helpers != nullptr && !sandbox.readiness_probe && sandbox.command.empty())
    sandbox.readiness_probe = process_probe(sandbox);
  // Ready means the probe passed too; one that gives up leaves the sandbox provisioning for its caller.
  if (config_.helpers != nullptr && sandbox.readiness_probe)
    if (!wait_until_ready(sandbox, *sandbox.readiness_probe)) return;
  if (!sandbox.command.empty() && backend_.main_exit_reported(id)) return (void)finish_exited(id);
  std::unique_lock lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it->second.status != SandboxStatus::provisioning) {
    // Destroyed while we were starting it: the destroy could not see the instance yet.
    lock.unlock();
    (void)backend_.remove(sandbox);
    return;
  }
  if (auto opened = open_port_urls(it->second); !opened) {
    it->second.port_gateways.clear();
    lock.unlock();
    (void)backend_.remove(sandbox);
    return mark_failed(id, opened.error().message);
  }
  it->second.status = SandboxStatus::running;
  it->second.ready_at = config_.now();
  // In the milliseconds the API shows, so that created_at + startup_ms is ready_at exactly.
  auto shown_ms = [](TimePoint time) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
  };
  it->second.startup_ms = shown_ms(*it->second.ready_at) - shown_ms(it->second.created_at);
  if (auto stored = persist(it->second); !stored) log_error(stored.error().message);
  changed_.notify_all();
  log_info(describe(it->second) + " is running at " + it->second.sandbox_url.value_or("") + " (ready after " +
           std::to_string(*it->second.startup_ms) + " ms)");
}

Result<void> SandboxService::open_port_urls(Sandbox& sandbox) {
  std::string failures;
  for (int port : sandbox.ports) {
    auto recorded = sandbox.port_gateways.find(port);
    int preferred = recorded == sandbox.port_gateways.end() ? 0 : recorded->second;
    auto host_port = endpoints_.open(sandbox.id, port, preferred);
    if (!host_port) {
      failures += (failures.empty() ? "" : "; ") + ("port " + std::to_string(port) + ": " + host_port.error().message);
      sandbox.port_gateways.erase(port);  // port_urls shows only what is served
      continue;
    }
    if (preferred != 0 && *host_port != preferred)
      log_error("host port " + std::to_string(preferred) + " of port " + std::to_string(port) + " of " +
                describe(sandbox) + " is taken; its URL moved to host port " + std::to_string(*host_port));
    sandbox.port_gateways[port] = *host_port;
  }
  if (!failures.empty()) return fail(ErrorKind::internal, "cannot serve the sandbox's ports (" + failures + ")");
  return {};
}

void SandboxService::set_progress(const std::string& id, std::optional<std::string> progress) {
  std::lock_guard lock(mutex_);
  if (auto it = sandboxes_.find(id); it != sandboxes_.end()) it->second.progress = std::move(progress);
}

Result<Sandbox> SandboxService::wait(const Workspace& workspace, const WaitRequest& request) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(request.timeout_seconds);
  std::unique_lock lock(mutex_);
  const Sandbox* found = find_by_task(workspace, request.task_id);
  if (found == nullptr) return fail(ErrorKind::not_found, "no sandbox with task_id '" + request.task_id + "'");
  std::string id = found->id;
  changed_.wait_until(lock, deadline, [&] {
    const Sandbox& sandbox = sandboxes_.at(id);
    return stopping_ || sandbox.status != SandboxStatus::provisioning ||
           sandbox.readiness.phase == ReadinessState::Phase::timed_out;
  });
  const Sandbox& sandbox = sandboxes_.at(id);
  switch (sandbox.status) {
    case SandboxStatus::running:
      return sandbox;
    case SandboxStatus::provisioning: {
      std::string message = "sandbox '" + sandbox.name + "' is still provisioning after " +
                            std::to_string(request.timeout_seconds) + " s";
      if (sandbox.readiness_probe && !stopping_)
        message = readiness_wait_message(sandbox, message, config_.readiness_give_up);
      return fail(stopping_ ? ErrorKind::unavailable : ErrorKind::timeout, message);
    }
    case SandboxStatus::failed:
      return fail(ErrorKind::conflict,
                  "sandbox '" + sandbox.name + "' failed: " + sandbox.error.value_or("unknown reason"));
    case SandboxStatus::destroyed:
      if (sandbox.destroy_reason == DestroyReason::exited) {
        Sandbox ended = sandbox;
        lock.unlock();  // the message reads its log from disk
        return fail(ErrorKind::conflict, exited_message(ended));
      }
      return fail(ErrorKind::conflict,
                  "sandbox '" + sandbox.name + "' was destroyed" + (sandbox.error ? " (" + *sandbox.error + ")" : ""));
  }
  return sandbox;
}

Result<Sandbox> SandboxService::get(const Workspace& workspace, const std::string& id_or_task) const {
  std::lock_guard lock(mutex_);
  if (auto it = sandboxes_.find(id_or_task);
      it != sandboxes_.end() && !is_pool_member(it->second) && (!workspace || it->second.workspace_id == workspace))
    return it->second;
  if (const Sandbox* sandbox = find_by_task(workspace, id_or_task)) return *sandbox;
  return fail(ErrorKind::not_found, "no sandbox with id or task_id '" + id_or_task + "'");
}

std::vector<Sandbox> SandboxService::list(const Workspace& workspace, const SandboxFilter& filter) const {
  std::vector<Sandbox> result;
  std::lock_guard lock(mutex_);
  for (const auto& [id, sandbox] : sandboxes_)
    if (!is_pool_member(sandbox) && (!workspace || sandbox.workspace_id == workspace) && matches(sandbox, filter))
      result.push_back(sandbox);
  std::sort(result.begin(), result.end(),
            [](const Sandbox& a, const Sandbox& b) { return a.created_at < b.created_at; });
  return result;
}

std::size_t SandboxService::live_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count_if(sandboxes_.begin(), sandboxes_.end(), [](const auto& item) {
    return is_live(item.second.status) && !is_pool_member(item.second);
  }));
}

Result<Sandbox> SandboxService::destroy(const Workspace& workspace, const std::string& task_id) {
  std::string id;
  {
    std::lock_guard lock(mutex_);
    const Sandbox* sandbox = find_by_task(workspace, task_id);
    if (sandbox == nullptr) return fail(ErrorKind::not_found, "no sandbox with task_id '" + task_id + "'");
    if (sandbox->status == SandboxStatus::destroyed) return *sandbox;
    id = sandbox->id;
  }
  return destroy_by_id(id, DestroyReason::requested, "");
}

Result<Sandbox> SandboxService::destroy_by_id(const std::string& id, DestroyReason reason, const std::string& detail,
                                              std::optional<MainExit> exit) {
  Sandbox current;
  {
    std::unique_lock lock(mutex_);
    // One destroy at a time per sandbox, and the first one's reason stands: the command of a sandbox
    // destroyed on request dies with it, and that exit must not be recorded as the reason.
    changed_.wait(lock, [&] { return !destroying_.contains(id); });
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return fail(ErrorKind::not_found, "no sandbox with id '" + id + "'");
    if (it->second.status == SandboxStatus::destroyed) return it->second;
    current = it->second;
    destroying_.insert(id);
  }
  struct DestroyingScope {
    SandboxService& service;
    const std::string& id;
    ~DestroyingScope() {
      std::lock_guard lock(service.mutex_);
      service.destroying_.erase(id);
      service.changed_.notify_all();
    }
  } destroying_scope{*this, id};
  // The main process's output stays readable after the sandbox ends: kept before the backend
  // releases it (what a running sandbox writes in the moment of its removal is lost).
  save_log(id);
  // Remove first: if the backend is down the caller gets 503 and the record still tells the truth.
  if (auto removed = backend_.remove(current); !removed) return std::unexpected(removed.error());
  std::lock_guard lock(mutex_);
  Sandbox& sandbox = sandboxes_.at(id);
  if (sandbox.status == SandboxStatus::destroyed) return sandbox;
  Sandbox updated = sandbox;
  updated.status = SandboxStatus::destroyed;
  updated.destroyed_at = config_.now();
  updated.destroy_reason = reason;
  if (exit) {
    updated.exit_code = exit->exit_code;
    updated.oom_killed = exit->oom_killed;
  }
  if (!detail.empty()) updated.error = updated.error ? *updated.error + "; " + detail : detail;
  if (auto stored = persist(updated); !stored) return std::unexpected(stored.error());
  sandbox = std::move(updated);
  activity_.erase(id);
  endpoints_.close(id);
  if (sandbox.ttl_seconds && timers_) timers_->disarm(id);
  changed_.notify_all();
  log_info("destroyed " + describe(sandbox) + " (" + std::string(to_string(reason)) + ")" +
           (detail.empty() ? "" : ": " + detail) +
           (exit ? ": its command exited with status " + std::to_string(exit->exit_code) +
                       (exit->oom_killed ? " (out of memory)" : "")
                 : ""));
  return sandbox;
}

Result<Sandbox> SandboxService::extend(const Workspace& workspace, const ExtendRequest& request) {
  std::unique_lock lock(mutex_);
  const Sandbox* found = find_by_task(workspace, request.task_id);
  if (found == nullptr) return fail(ErrorKind::not_found, "no sandbox with task_id '" + request.task_id + "'");
  if (!is_live(found->status))
    return fail(ErrorKind::conflict, "sandbox '" + found->name + "' is " + std::string(to_string(found->status)) +
                                         ": only a provisioning or running sandbox can be extended");
  TimePoint now = config_.now();
  TimePoint expires = now + std::chrono::seconds(request.ttl_seconds);
  if (expires > found->lifetime_end()) {
    auto most = std::chrono::floor<std::chrono::seconds>(found->lifetime_end() - now).count();
    return fail(ErrorKind::conflict, "sandbox '" + found->name + "' can live until " +
                                         format_timestamp(found->lifetime_end()) + " at most (" +
                                         std::to_string(limits::sandbox_lifetime_max_seconds / 3600) +
                                         " h after its creation): extend it by at most " +
                                         std::to_string(std::max<long long>(most, 0)) + " s");
  }
  Sandbox updated = *found;
  updated.ttl_seconds = request.ttl_seconds;
  updated.ttl_extended_at = now;
  if (auto stored = persist(updated); !stored) return std::unexpected(stored.error());
  Sandbox& sandbox = sandboxes_.at(updated.id);
  sandbox = std::move(updated);
  changed_.notify_all();  // the reaper's next wake-up may be earlier now
  Sandbox answer = sandbox;
  lock.unlock();
  if (timers_) timers_->arm(answer.id, *answer.expires_at());
  log_info("extended " + describe(answer) + ": it expires at " + format_timestamp(*answer.expires_at()));
  return answer;
}

std::vector<SandboxService::Due> SandboxService::due_at(TimePoint now) const {
  std::vector<Due> due;
  for (const auto& [id, sandbox] : sandboxes_) {
    auto last = last_activity(id, now);
    if (auto deadline = sandbox_deadline(sandbox, last, started_at_); deadline && deadline->at <= now)
      due.push_back({id, *deadline, last});
  }
  return due;
}

std::optional<Result<Sandbox>> SandboxService::destroy_due(const Due& due) {
  if (due.deadline.reason == DestroyReason::idle) {
    std::lock_guard lock(mutex_);
    auto activity = activity_.find(due.id);
    if (activity != activity_.end() &&
        (activity->second->under_way() > 0 || activity->second->last() != due.last_activity))
      return std::nullopt;
  }
  if (due.deadline.reason == DestroyReason::idle && busy_with_processes(due)) return std::nullopt;
  auto destroyed = destroy_by_id(due.id, due.deadline.reason, deadline_detail(due.deadline));
  if (!destroyed)
    log_error("could not destroy sandbox " + due.id + " (" + deadline_detail(due.deadline) +
              "): " + destroyed.error().message);
  return destroyed;
}

bool SandboxService::busy_with_processes(const Due& due) {
  if (config_.helpers == nullptr) return false;
  std::chrono::seconds idle_timeout{0};
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(due.id);
    if (it == sandboxes_.end() || it->second.status != SandboxStatus::running || !it->second.idle_timeout_seconds)
      return false;
    idle_timeout = std::chrono::seconds(*it->second.idle_timeout_seconds);
  }
  auto listed = config_.helpers->list_processes(backend_.helper_socket(due.id));
  if (!listed) return false;
  TimePoint now = config_.now();
  TimePoint idle_since = due.deadline.at - idle_timeout;
  std::optional<TimePoint> busy_at;
  for (const auto& process : *listed) {
    // The sandbox's clock, which it could set ahead: never later than now.
    TimePoint ended = std::min(now, TimePoint(std::chrono::milliseconds(process.ended_ms)));
    TimePoint at = process.state == helper::ProcessState::running ? now : ended;
    if (at > idle_since && (!busy_at || at > *busy_at)) busy_at = at;
  }
  if (!busy_at) return false;
  auto meter = activity(due.id);
  if (!meter) return false;
  meter->touch_at(*busy_at);
  return true;
}

std::vector<Sandbox> SandboxService::reap_due() {
  std::vector<Due> due;
  {
    std::lock_guard lock(mutex_);
    due = due_at(config_.now());
  }
  std::vector<Sandbox> destroyed;
  for (const auto& one : due)
    if (auto done = destroy_due(one); done && *done) destroyed.push_back(std::move(**done));
  return destroyed;
}

std::vector<TtlLayer> SandboxService::ttl_layers() const {
  std::vector<TtlLayer> layers;
  layers.push_back(timers_
                       ? timers_->layer()
                       : TtlLayer{"systemd_timer", false, "no systemd timers: this agent was started without them"});
  layers.push_back(TtlLayer{
      "podman_timeout", true,
      "conmon kills a sandbox with a TTL " + std::to_string(limits::sandbox_lifetime_max_seconds / 3600) +
          " h after its creation at the latest, agent or not (libpod 4.3 cannot move a container's timeout, so it "
          "is armed at the latest an extend can reach)"});
  layers.push_back(TtlLayer{"agent_reaper", true,
                            "modboxd destroys a sandbox at its expiry while it runs, and at its start those that "
                            "expired while it was down"});
  return layers;
}

bool SandboxService::settle_ttl_timers(std::chrono::milliseconds timeout) {
  return timers_ ? timers_->settle(timeout) : true;
}

Result<ExecResult> SandboxService::exec(const Workspace& workspace, const std::string& task_id,
                                        const ExecRequest& request) {
  Sandbox sandbox;
  {
    std::lock_guard lock(mutex_);
    const Sandbox* found = find_by_task(workspace, task_id);
    if (found == nullptr) return fail(ErrorKind::not_found, "no sandbox with task_id '" + task_id + "'");
    sandbox = *found;
  }
  return run_exec(sandbox, request);
}

Result<Sandbox> SandboxService::authorize(const std::string& sandbox_id, const std::string* authorization,
                                          std::string_view owner_token) const {
  Sandbox sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(sandbox_id);
    if (it == sandboxes_.end() || is_pool_member(it->second))
      return fail(ErrorKind::not_found, "this sandbox no longer exists");
    sandbox = it->second;
  }
  static constexpr std::string_view prefix = "Bearer ";
  if (!owner_token.empty() && authorization != nullptr && authorization->starts_with(prefix) &&
      constant_time_equals(std::string_view(*authorization).substr(prefix.size()), owner_token))
    return sandbox;
  auto key = sandbox.env_vars.find("SANDBOX_API_KEY");
  if (key == sandbox.env_vars.end() || key->second.empty())
    return fail(ErrorKind::forbidden,
                "this sandbox was provisioned without SANDBOX_API_KEY in env_vars, so its API is disabled");
  if (authorization == nullptr || !authorization->starts_with(prefix) ||
      !constant_time_equals(std::string_view(*authorization).substr(prefix.size()), key->second))
    return fail(ErrorKind::unauthorized, "missing or wrong Authorization: Bearer <SANDBOX_API_KEY>");
  return sandbox;
}

Result<SandboxService::HelperAccess> SandboxService::helper_access(const Sandbox& sandbox) const {
  if (sandbox.status != SandboxStatus::running)
    return fail(sandbox.status == SandboxStatus::provisioning ? ErrorKind::conflict : ErrorKind::not_found,
                "sandbox '" + sandbox.name + "' is " + std::string(to_string(sandbox.status)) + ", not running");
  if (config_.helpers == nullptr)
    return fail(ErrorKind::unavailable, "the sandbox API needs the in-sandbox helper, and this agent runs without one");
  return HelperAccess{*config_.helpers, backend_.helper_socket(sandbox.id)};
}

bool SandboxService::ended_or_ending(const std::string& id) const {
  auto it = sandboxes_.find(id);
  return it == sandboxes_.end() || it->second.status != SandboxStatus::running || destroying_.contains(id);
}

Result<ExecResult> SandboxService::run_exec(const Sandbox& sandbox, const ExecRequest& request,
                                            const std::function<bool()>& still_wanted) {
  auto helper = helper_access(sandbox);
  if (!helper) return std::unexpected(helper.error());
  // A command that runs is activity for as long as it runs (seed 004).
  auto busy = hold_activity(sandbox.id);
  auto result = helper->client.exec(helper->socket, request, still_wanted);
  if (result) return result;
  {
    // A destroy that raced the command took the helper with it (it removes the container before the
    // record says destroyed): say that, not that the helper failed.
    std::lock_guard lock(mutex_);
    if (ended_or_ending(sandbox.id))
      return fail(ErrorKind::conflict, "sandbox '" + sandbox.name + "' was destroyed while the command ran");
  }
  return std::unexpected(with_context(result.error(), "exec in sandbox '" + sandbox.name + "'"));
}

std::shared_ptr<SandboxActivity> SandboxService::activity(const std::string& sandbox_id) {
  std::lock_guard lock(mutex_);
  auto sandbox = sandboxes_.find(sandbox_id);
  if (sandbox == sandboxes_.end() || !is_live(sandbox->second.status)) return nullptr;
  auto& activity = activity_[sandbox_id];
  if (!activity) activity = std::make_shared<SandboxActivity>(config_.now);
  return activity;
}

SandboxActivity::Hold SandboxService::hold_activity(const std::string& sandbox_id) {
  auto meter = activity(sandbox_id);
  return meter ? meter->hold() : SandboxActivity::Hold();
}

std::optional<TimePoint> SandboxService::last_activity(const std::string& id, TimePoint now) const {
  auto activity = activity_.find(id);
  if (activity == activity_.end()) return std::nullopt;
  if (activity->second->under_way() > 0) return now;  // an open connection or a running command: not idle
  return activity->second->last();
}

void SandboxService::start_reaper() {
  reaper_ = std::thread([this] { reap_loop(); });
  exit_watcher_ = std::thread([this] { watch_main_processes(); });
  pool_thread_ = std::thread([this] { pool_loop(); });
}

void SandboxService::reap_loop() {
  constexpr auto prune_interval = std::chrono::minutes(1);
  auto last_prune = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (std::chrono::steady_clock::now() - last_prune >= prune_interval) {
      lock.unlock();
      prune_ended();
      last_prune = std::chrono::steady_clock::now();
      lock.lock();
      continue;
    }
    auto now = config_.now();
    auto due = due_at(now);
    std::optional<TimePoint> next;
    for (const auto& [id, sandbox] : sandboxes_)
      if (auto deadline = sandbox_deadline(sandbox, last_activity(id, now), started_at_);
          deadline && deadline->at > now)
        if (!next || deadline->at < *next) next = deadline->at;
    if (!due.empty()) {
      lock.unlock();
      for (const auto& one : due) destroy_due(one);
      lock.lock();
      // A failed removal (the backend restarting) is retried after a pause rather than in a busy loop.
      changed_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stopping_; });
      continue;
    }
    // Wake at the next deadline, and at least every second so new sandboxes are noticed.
    auto wake = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    if (next)
      wake = std::min(wake, std::chrono::steady_clock::now() +
                                std::chrono::duration_cast<std::chrono::steady_clock::duration>(*next - now));
    changed_.wait_until(lock, wake, [this] { return stopping_; });
  }
}

Result<void> SandboxService::reconcile() {
  auto instances = backend_.list_own();
  if (!instances) return std::unexpected(with_context(instances.error(), "reconciling with the backend"));
  std::map<std::string, BackendInstance> by_sandbox;
  for (auto& instance : *instances) by_sandbox[instance.sandbox_id] = instance;

  std::vector<std::string> to_destroy, to_resume, ended;
  std::vector<std::pair<std::string, std::string>> vanished;  // id, reason
  {
    std::lock_guard lock(mutex_);
    auto now = config_.now();
    for (auto& [id, sandbox] : sandboxes_) {
      auto container = by_sandbox.find(id);
      bool exists = container != by_sandbox.end();
      if (exists && sandbox.container_id.empty()) sandbox.container_id = container->second.instance_id;
      if (!is_live(sandbox.status)) continue;
      if (auto deadline = sandbox_deadline(sandbox, std::nullopt, started_at_);
          deadline && deadline->reason == DestroyReason::ttl && deadline->at <= now) {
        to_destroy.push_back(id);
      } else if (!sandbox.command.empty() && exists && container->second.stopped) {
        ended.push_back(id);  // its command exited while the agent was away
      } else if (sandbox.status == SandboxStatus::provisioning) {
        to_resume.push_back(id);
      } else if (!exists || !container->second.running) {
        vanished.emplace_back(
            id, exists ? "its container stopped (" + container->second.state + ") while the agent was away"
                       : "its container disappeared while the agent was away");
      }
    }
  }
  for (const auto& id : to_destroy)
    if (auto destroyed = destroy_by_id(id, DestroyReason::ttl, "ttl expired while the agent was away"); !destroyed)
      return std::unexpected(destroyed.error());
  for (const auto& [id, reason] : vanished)
    if (auto destroyed = destroy_by_id(id, DestroyReason::lost, reason); !destroyed)
      return std::unexpected(destroyed.error());
  for (const auto& id : ended)
    if (!finish_exited(id))
      return fail(ErrorKind::unavailable, "could not record how the command of sandbox " + id + " ended");

  // Instances of this agent that no record owns (a crash between create and save, or a
  // record set aside as unreadable) would run forever: remove them.
  std::set<std::string> known;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_)
      if (sandbox.status != SandboxStatus::destroyed) known.insert(id);
  }
  for (const auto& [sandbox_id, instance] : by_sandbox) {
    if (known.contains(sandbox_id)) continue;
    log_info("removing " + instance.name + ", which no live sandbox record owns");
    Sandbox orphan;
    orphan.id = sandbox_id;
    orphan.container_id = instance.instance_id;
    if (auto removed = backend_.remove(orphan); !removed) log_error(removed.error().message);
  }

  // Live sandboxes get their URL back, running ones their port URLs too (provisioning ones open
  // those when they become running).
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, sandbox] : sandboxes_) {
      if (!is_live(sandbox.status)) continue;
      auto port = endpoints_.open(id, 0, sandbox.gateway_port);
      if (!port) {
        log_error("cannot reopen the URL of " + describe(sandbox) + ": " + port.error().message);
        continue;
      }
      bool moved = *port != sandbox.gateway_port;
      if (moved) {
        log_error("port " + std::to_string(sandbox.gateway_port) + " of " + describe(sandbox) +
                  " is taken; its URL moved to port " + std::to_string(*port));
        sandbox.gateway_port = *port;
        sandbox.sandbox_url = "http://127.0.0.1:" + std::to_string(*port);
      }
      if (sandbox.status == SandboxStatus::running) {
        auto recorded = sandbox.port_gateways;
        if (auto opened = open_port_urls(sandbox); !opened)
          log_error(describe(sandbox) + ": " + opened.error().message);
        moved = moved || sandbox.port_gateways != recorded;
      }
      if (moved)
        if (auto stored = persist(sandbox); !stored) log_error(stored.error().message);
    }
  }
  // Timers are re-armed for every live sandbox with a TTL: the user manager may have restarted (they are
  // transient), or an arm may have failed while the agent was away.
  if (timers_) {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_)
      if (auto expires = sandbox.expires_at(); expires && is_live(sandbox.status)) timers_->arm(id, *expires);
  }
  for (const auto& id : to_resume) {
    log_info("resuming the interrupted provisioning of sandbox " + id);
    provision_in_background(id);
  }
  // A claim is recorded before its environment reaches the helper: give it again, in case the agent
  // stopped in between (setting it twice changes nothing).
  std::vector<Sandbox> claimed;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_)
      if (sandbox.from_pool && sandbox.status == SandboxStatus::running) claimed.push_back(sandbox);
  }
  for (const auto& sandbox : claimed)
    if (auto given = give_claim_environment(sandbox); !given)
      log_error("could not give " + describe(sandbox) + " its environment again: " + given.error().message);
  release_ended();
  return {};
}

void SandboxService::shutdown() {
  std::unique_lock lock(mutex_);
  stopping_ = true;
  changed_.notify_all();
  lock.unlock();
  // The pool thread starts provisioning workers: it ends first, so that none starts after the wait.
  if (pool_thread_.joinable()) pool_thread_.join();
  lock.lock();
  changed_.wait(lock, [this] { return workers_ == 0; });
  lock.unlock();
  if (reaper_.joinable()) reaper_.join();
  if (exit_watcher_.joinable()) exit_watcher_.join();
}

}  // namespace modbox
