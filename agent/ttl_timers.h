#pragma once
// The systemd layer of a sandbox's TTL (DESIGN.md "TTL"): a transient timer of the user's systemd
// manager per sandbox with a TTL, which wakes modbox at expiry even while modboxd is down. The timer
// runs `modbox agent reap`, which starts the agent when none runs (its reconcile destroys what expired)
// and has it destroy whatever is due: the agent's records and sandbox_deadline stay the one rule.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/models.h"
#include "common/result.h"

namespace modbox {

/// Arms and removes the per-sandbox timers. Abstract so the lifecycle can be tested with a fake.
class TtlTimers {
 public:
  virtual ~TtlTimers() = default;
  /// Whether timers can be armed on this host: what they do, or why they cannot.
  virtual TtlLayer layer() const = 0;
  /// Arms the sandbox's timer to fire at `at`, replacing one it had (this is how extend moves it).
  virtual Result<void> arm(const std::string& sandbox_id, TimePoint at) = 0;
  /// Removes the sandbox's timer; a sandbox without one is not an error.
  virtual Result<void> disarm(const std::string& sandbox_id) = 0;
};

/// The timer unit of a sandbox: modbox-ttl-<sandbox id>.timer (and its .service).
std::string ttl_timer_unit(const std::string& sandbox_id);

/// `at` as a systemd calendar event in UTC ("2025-05-01 12:00:07 UTC"), rounded up to the second, so
/// the timer never fires before the expiry.
std::string systemd_calendar_time(TimePoint at);

struct SystemdTimersConfig {
  /// The modbox CLI the timer runs (`modbox agent reap`): an absolute path.
  std::string cli_binary;
  /// Environment the timer's command runs with: where this agent's state is (MODBOX_STATE_DIR,
  /// MODBOX_RUNTIME_DIR), and the agent's PATH and XDG_RUNTIME_DIR, so an agent it starts sees the same
  /// Podman runtime state as this one.
  std::map<std::string, std::string> command_env;
  /// The user manager's runtime directory (/run/user/UID): its bus is there, whatever XDG_RUNTIME_DIR the
  /// agent was given.
  std::filesystem::path manager_runtime_dir;
  /// Present when systemd is PID 1.
  std::filesystem::path systemd_booted_marker = "/run/systemd/system";
  std::string user;
  /// Bound on each systemctl / systemd-run call.
  std::chrono::milliseconds call_timeout{10000};
};

/// The systemd-run command line that arms `sandbox_id`'s timer at `at` (pure, for tests).
std::vector<std::string> systemd_run_argv(const SystemdTimersConfig& config, const std::string& sandbox_id,
                                          TimePoint at);

/// Timers of the user's systemd manager, through systemd-run and systemctl (children with fds 0-2 only).
class SystemdTtlTimers : public TtlTimers {
 public:
  /// Probes the user manager once (bounded by config.call_timeout): layer() says whether it answered and
  /// why not; arm and disarm do nothing but fail when it did not.
  static std::unique_ptr<SystemdTtlTimers> create(SystemdTimersConfig config);
  TtlLayer layer() const override { return layer_; }
  Result<void> arm(const std::string& sandbox_id, TimePoint at) override;
  Result<void> disarm(const std::string& sandbox_id) override;

 private:
  SystemdTtlTimers(SystemdTimersConfig config, TtlLayer layer) : config_(std::move(config)), layer_(std::move(layer)) {}
  /// Runs systemctl or systemd-run against the user manager; its output is the error's detail.
  Result<void> run(const std::vector<std::string>& argv) const;
  SystemdTimersConfig config_;
  TtlLayer layer_;
};

/// Probes `config`'s user manager: the layer as create() sets it.
TtlLayer probe_systemd_user_manager(const SystemdTimersConfig& config);

/// Runs TtlTimers calls on a thread of its own, so that provision, extend and destroy never wait for
/// systemd: operations are queued per sandbox, and only the latest one of a sandbox is carried out.
class TtlTimerQueue {
 public:
  explicit TtlTimerQueue(TtlTimers& timers);
  ~TtlTimerQueue();
  TtlTimerQueue(const TtlTimerQueue&) = delete;
  TtlTimerQueue& operator=(const TtlTimerQueue&) = delete;

  void arm(const std::string& sandbox_id, TimePoint at);
  void disarm(const std::string& sandbox_id);
  /// Waits until every queued operation was carried out, up to `timeout`; whether they were.
  bool settle(std::chrono::milliseconds timeout);
  /// The layer as the timers report it, with the last failure of an operation when there was one.
  TtlLayer layer() const;

 private:
  void run();
  TtlTimers& timers_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::optional<TimePoint>> pending_;  // sandbox id → arm at, or nullopt: disarm
  std::deque<std::string> order_;
  bool busy_ = false;
  bool stopping_ = false;
  std::optional<std::string> last_failure_;
  std::thread worker_;
};

}  // namespace modbox
