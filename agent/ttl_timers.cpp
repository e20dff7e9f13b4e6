#include "agent/ttl_timers.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <ctime>

#include "agent/log.h"
#include "agent/process.h"
#include "common/system.h"

namespace modbox {

namespace {

/// The last lines of a command's output, for an error message.
std::string tail_of(const std::string& output) {
  std::string text = output;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 400) text = "..." + text.substr(text.size() - 400);
  return text;
}

/// Runs argv with `env` added, bounded by `timeout` (killed after it); its combined output, or why it failed.
Result<std::string> run_bounded(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                                std::chrono::milliseconds timeout) {
  char pattern[] = "/tmp/modbox-systemctl-XXXXXX";
  int fd = ::mkstemp(pattern);
  if (fd < 0) return std::unexpected(system_error("mkstemp", pattern, errno));
  ::close(fd);
  std::string output_file = pattern;
  struct Remove {
    std::string path;
    ~Remove() { ::unlink(path.c_str()); }
  } remove{output_file};
  auto pid = spawn_process({.argv = argv, .extra_env = env, .output_file = output_file});
  if (!pid) return std::unexpected(pid.error());
  auto status = wait_process(*pid, timeout);
  std::string output = read_file(output_file, 64 << 10).value_or("");
  if (!status) {
    ::kill(*pid, SIGKILL);
    wait_process(*pid);
    return fail(ErrorKind::unavailable, argv[0] + " did not answer within " + describe_duration(timeout));
  }
  if (*status != 0)
    return fail(ErrorKind::unavailable,
                argv[0] + " " + describe_wait_status(*status) + (output.empty() ? "" : ": " + tail_of(output)));
  return output;
}

/// What systemctl and systemd-run need to reach the user manager whatever the agent's own environment.
std::map<std::string, std::string> manager_env(const SystemdTimersConfig& config) {
  return {{"XDG_RUNTIME_DIR", config.manager_runtime_dir.string()},
          {"DBUS_SESSION_BUS_ADDRESS", "unix:path=" + (config.manager_runtime_dir / "bus").string()}};
}

}  // namespace

std::string ttl_timer_unit(const std::string& sandbox_id) {
  return "modbox-ttl-" + sandbox_id;
}

std::string systemd_calendar_time(TimePoint at) {
  auto seconds = std::chrono::ceil<std::chrono::seconds>(at.time_since_epoch()).count();
  std::time_t time = static_cast<std::time_t>(seconds);
  std::tm utc{};
  ::gmtime_r(&time, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

std::vector<std::string> systemd_run_argv(const SystemdTimersConfig& config, const std::string& sandbox_id,
                                          TimePoint at) {
  std::string unit = ttl_timer_unit(sandbox_id);
  std::vector<std::string> argv = {
      "systemd-run", "--user", "--quiet",
      // Unloaded once it ran, even when it failed, so the unit name is free for the next arm.
      "--collect", "--unit=" + unit, "--description=modbox TTL of sandbox " + sandbox_id,
      // The wall clock, not the monotonic one: right after a suspend too. The default accuracy is a minute.
      "--on-calendar=" + systemd_calendar_time(at), "--timer-property=AccuracySec=1s",
      // An agent that `modbox agent reap` starts must outlive the unit, which ends when reap returns.
      "--property=KillMode=process"};
  for (const auto& [name, value] : config.command_env) argv.push_back("--setenv=" + name + "=" + value);
  argv.insert(argv.end(), {config.cli_binary, "agent", "reap"});
  return argv;
}

TtlLayer probe_systemd_user_manager(const SystemdTimersConfig& config) {
  TtlLayer layer{.name = "systemd_timer", .active = false, .detail = ""};
  std::error_code error;
  if (!std::filesystem::exists(config.systemd_booted_marker, error)) {
    layer.detail = "no systemd user manager: systemctl --user is unreachable (no systemd as PID 1)";
    return layer;
  }
  for (const char* tool : {"systemd-run", "systemctl"})
    if (!find_in_path(tool)) {
      layer.detail = std::string("no systemd timers: ") + tool + " is not installed";
      return layer;
    }
  if (::access(config.cli_binary.c_str(), X_OK) != 0) {
    layer.detail = "no systemd timers: the modbox CLI they run is not at " + config.cli_binary + " (beside modboxd)";
    return layer;
  }
  if (!std::filesystem::exists(config.manager_runtime_dir / "bus", error) &&
      !std::filesystem::exists(config.manager_runtime_dir / "systemd/private", error)) {
    layer.detail = "no systemd user manager for " + config.user + ": " + (config.manager_runtime_dir / "bus").string() +
                   " is missing (log in, or let it run without a login: loginctl enable-linger " + config.user + ")";
    return layer;
  }
  auto answered =
      run_bounded({"systemctl", "--user", "show", "--property=Version"}, manager_env(config), config.call_timeout);
  if (!answered) {
    layer.detail = "no systemd user manager: systemctl --user is unreachable (" + answered.error().message + ")";
    return layer;
  }
  layer.active = true;
  layer.detail = "a transient timer of " + config.user +
                 "'s user manager per sandbox with a TTL (modbox-ttl-<id>.timer) runs `modbox agent reap` at "
                 "expiry, which destroys the sandbox even while modboxd is down";
  return layer;
}

std::unique_ptr<SystemdTtlTimers> SystemdTtlTimers::create(SystemdTimersConfig config) {
  TtlLayer layer = probe_systemd_user_manager(config);
  return std::unique_ptr<SystemdTtlTimers>(new SystemdTtlTimers(std::move(config), std::move(layer)));
}

Result<void> SystemdTtlTimers::run(const std::vector<std::string>& argv) const {
  auto ran = run_bounded(argv, manager_env(config_), config_.call_timeout);
  if (!ran) return std::unexpected(ran.error());
  return {};
}

Result<void> SystemdTtlTimers::arm(const std::string& sandbox_id, TimePoint at) {
  if (!layer_.active) return fail(ErrorKind::unavailable, layer_.detail);
  // A transient unit cannot be changed: the old one (if any) goes, and one of the same name is made.
  (void)disarm(sandbox_id);
  if (auto made = run(systemd_run_argv(config_, sandbox_id, at)); !made)
    return std::unexpected(with_context(made.error(), "arming " + ttl_timer_unit(sandbox_id) + ".timer"));
  return {};
}

Result<void> SystemdTtlTimers::disarm(const std::string& sandbox_id) {
  if (!layer_.active) return fail(ErrorKind::unavailable, layer_.detail);
  std::string unit = ttl_timer_unit(sandbox_id);
  // Stopping a unit that is not loaded succeeds; a failed one is forgotten by reset-failed. The service is
  // left alone: when it runs, it is the reap that is destroying this very sandbox, and it ends by itself.
  if (auto stopped = run({"systemctl", "--user", "stop", unit + ".timer"});
      !stopped && stopped.error().message.find("not loaded") == std::string::npos)  // it fired and was collected
    return std::unexpected(with_context(stopped.error(), "removing " + unit + ".timer"));
  (void)run({"systemctl", "--user", "reset-failed", unit + ".timer", unit + ".service"});
  return {};
}

TtlTimerQueue::TtlTimerQueue(TtlTimers& timers) : timers_(timers), worker_([this] { run(); }) {}

TtlTimerQueue::~TtlTimerQueue() {
  // What is still queued is done first (bounded by each call's timeout): a timer left armed for a
  // destroyed sandbox would only start an agent for nothing, one missing is re-armed by the next reconcile.
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void TtlTimerQueue::arm(const std::string& sandbox_id, TimePoint at) {
  if (!timers_.layer().active) return;
  std::lock_guard lock(mutex_);
  if (!pending_.contains(sandbox_id)) order_.push_back(sandbox_id);
  pending_[sandbox_id] = at;
  changed_.notify_all();
}

void TtlTimerQueue::disarm(const std::string& sandbox_id) {
  if (!timers_.layer().active) return;
  std::lock_guard lock(mutex_);
  if (!pending_.contains(sandbox_id)) order_.push_back(sandbox_id);
  pending_[sandbox_id] = std::nullopt;
  changed_.notify_all();
}

bool TtlTimerQueue::settle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [this] { return order_.empty() && !busy_; });
}

TtlLayer TtlTimerQueue::layer() const {
  TtlLayer layer = timers_.layer();
  std::lock_guard lock(mutex_);
  if (layer.active && last_failure_) layer.detail += "; the last timer operation failed: " + *last_failure_;
  return layer;
}

void TtlTimerQueue::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || !order_.empty(); });
    if (order_.empty()) return;  // stopping, and nothing left to do
    std::string sandbox_id = order_.front();
    order_.pop_front();
    std::optional<TimePoint> at = pending_.at(sandbox_id);
    pending_.erase(sandbox_id);
    busy_ = true;
    lock.unlock();
    Result<void> done = at ? timers_.arm(sandbox_id, *at) : timers_.disarm(sandbox_id);
    if (done)
      log_info((at ? "armed " : "removed ") + ttl_timer_unit(sandbox_id) + ".timer" +
               (at ? " for " + format_timestamp(*at) : ""));
    else if (timers_.layer().active)
      log_error(done.error().message);
    lock.lock();
    busy_ = false;
    if (!done && timers_.layer().active) last_failure_ = done.error().message;
    if (done) last_failure_.reset();
    changed_.notify_all();
  }
}

}  // namespace modbox
