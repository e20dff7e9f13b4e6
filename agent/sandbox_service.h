#pragma once
// The sandbox lifecycle: provision → running → destroyed (or failed), TTL expiry, and reconciling
// the records with what the backend (agent/sandbox_backend.h) really runs. Every state change is persisted before it is
// visible.

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/deadlines.h"
#include "agent/helper_client.h"
#include "agent/image_catalog.h"
#include "agent/sandbox_activity.h"
#include "agent/sandbox_backend.h"
#include "agent/store.h"
#include "agent/ttl_timers.h"
#include "common/main_log.h"
#include "common/models.h"
#include "common/pool_models.h"

namespace modbox {

/// Opens and closes the loopback ports that serve a sandbox: its URL, and one per port it asked for.
class SandboxEndpoints {
 public:
  virtual ~SandboxEndpoints() = default;
  /// Serves `sandbox_port` of the sandbox (0: the sandbox URL itself) on `preferred_port` when free (0: any); returns
  /// the host port.
  virtual Result<int> open(const std::string& sandbox_id, int sandbox_port, int preferred_port) = 0;
  /// Stops serving every port of the sandbox and closes their connections.
  virtual void close(const std::string& sandbox_id) = 0;
};

struct SandboxServiceConfig {
  std::string default_image = "localhost/modbox/sandbox-lite:latest";
  std::string created_by;
  std::function<TimePoint()> now = [] { return std::chrono::system_clock::now(); };
  /// Resolves image_id and the workspace default; without it only `default_image` and the `image`
  /// extension can be provisioned.
  ImageCatalog* images = nullptr;
  /// The in-sandbox helper's client (DESIGN.md): the backend runs the helper as each sandbox's PID 1
  /// and says where it answers. Without it, exec is unavailable and readiness probes are not run
  /// (unit tests that do not care).
  SandboxHelpers* helpers = nullptr;
  /// How long a started sandbox has to answer on its helper socket before it fails.
  std::chrono::milliseconds helper_ready_timeout{20000};
  /// How long a readiness probe is tried before it gives up (leaving the sandbox provisioning).
  std::chrono::milliseconds readiness_give_up = limits::readiness_give_up;
  /// How long the records of destroyed sandboxes are kept (from destroyed_at) before they are pruned.
  std::chrono::seconds retention = std::chrono::hours(7 * 24);
  /// The systemd layer of the TTL: a timer per sandbox with a TTL, armed, moved and removed off the
  /// request's thread. Without it that layer is reported missing.
  TtlTimers* timers = nullptr;
  /// Where the warm pools' sizes are stored (a record per image); empty: pools are not kept across
  /// restarts (unit tests that do not care).
  std::filesystem::path pool_directory;
  /// How many members of one pool are started at once when it refills.
  int pool_starts_max = 3;
  /// The pause after a member failed to start before the pool tries again; it doubles with each failure
  /// in a row, up to pool_retry_max.
  std::chrono::milliseconds pool_retry{2000};
  std::chrono::milliseconds pool_retry_max{std::chrono::minutes(5)};
};

using Workspace = std::optional<std::string>;

/// Writes a piece of a streamed answer; false when the client is gone. Empty bytes only ask that.
using LogWriter = std::function<bool(std::string_view bytes)>;

/// How often the watcher of main processes looks for their ends (DESIGN.md: within about a second).
inline constexpr std::chrono::milliseconds main_exit_poll{250};
/// How often it also asks the backend which instances stopped: the backstop for a helper that could
/// not say so (killed by the OOM killer itself, say).
inline constexpr std::chrono::milliseconds main_exit_backend_poll{2000};
/// How many lines of its output a wait on a sandbox whose main process exited quotes.
inline constexpr std::size_t exit_log_lines = 20;
/// Where a snapshot called `name` is committed: `localhost/modbox-snapshot/SLUG` (its tag is unique).
std::string snapshot_repository(const std::string& name);

class SandboxService {
 public:
  SandboxService(SandboxServiceConfig config, SandboxBackend& backend, RecordStore store, SandboxEndpoints& endpoints);
  ~SandboxService();
  SandboxService(const SandboxService&) = delete;
  SandboxService& operator=(const SandboxService&) = delete;

  /// Loads the records (unreadable ones are set aside) and prunes those past retention. Call once
  /// before serving.
  void load();
  /// Brings records and the backend's instances into agreement: expired or vanished sandboxes become
  /// destroyed, interrupted provisions resume, this agent's instances without a record are
  /// removed, and live sandboxes get their URL back (running ones their port URLs too), on the
  /// host ports they had when those are free.
  Result<void> reconcile();
  /// Starts the reaper thread (TTL and idle deadlines, and pruning past retention) and the watcher of
  /// main processes (sandboxes provisioned with a `command` end when it exits: destroyed as `exited`,
  /// with its exit code).
  void start_reaper();
  /// Removes the records (file and memory) of sandboxes destroyed longer than `retention` ago;
  /// returns how many. The reaper calls it every minute.
  std::size_t prune_ended();
  /// Stops the reaper and the watcher and waits for provisioning work; sandboxes keep running.
  void shutdown();

  Result<Sandbox> provision(const Workspace& workspace, const ProvisionRequest& request);
  Result<Sandbox> wait(const Workspace& workspace, const WaitRequest& request);
  /// By sandbox id, or by task_id within the workspace.
  Result<Sandbox> get(const Workspace& workspace, const std::string& id_or_task) const;
  std::vector<Sandbox> list(const Workspace& workspace, const SandboxFilter& filter) const;
  std::vector<Sandbox> list(const Workspace& workspace, std::optional<SandboxStatus> status) const {
    return list(workspace, SandboxFilter{.status = status, .tags = {}});
  }
  Result<Sandbox> destroy(const Workspace& workspace, const std::string& task_id);
  /// Sets a live sandbox's TTL to `ttl_seconds` from now (E2B's set_timeout), moving its systemd timer;
  /// 409 for a failed or destroyed sandbox, or when that is past its lifetime_end().
  Result<Sandbox> extend(const Workspace& workspace, const ExtendRequest& request);
  /// Destroys every sandbox whose deadline has passed (what the reaper does, at once); returns them.
  std::vector<Sandbox> reap_due();
  /// The layers that hold a TTL on this host (DESIGN.md "TTL"), for `modbox agent status`.
  std::vector<TtlLayer> ttl_layers() const;
  /// Waits (up to `timeout`) until the queued systemd timer operations are done; whether they are.
  bool settle_ttl_timers(std::chrono::milliseconds timeout);
  /// The output of the sandbox's main process (by id, or task_id): what the log keeps (the last
  /// 1 MiB), or only its last `tail` lines. Readable while the sandbox lives and after it ended.
  Result<std::string> logs(const Workspace& workspace, const std::string& id_or_task, std::optional<std::size_t> tail);
  /// Writes the log as logs() does, then what the main process writes next as it comes, until the
  /// sandbox ends (true), the agent stops (true), or the client goes away (false). Blocks: a long call.
  bool follow_logs(const std::string& sandbox_id, std::optional<std::size_t> tail, const LogWriter& write);
  /// Commits the running sandbox `task_id`'s filesystem to a new image and registers it in the
  /// sandbox's workspace as `name` (the images API's rules: 409 for a taken name). 404 for an unknown
  /// task_id, 409 when the sandbox is not running. Blocks while Podman copies (seconds to minutes).
  Result<SandboxImage> snapshot(const Workspace& workspace, const SnapshotRequest& request);
  /// The owner's exec (control API) by task_id.
  Result<ExecResult> exec(const Workspace& workspace, const std::string& task_id, const ExecRequest& request);
  /// Checks `authorization` ("Bearer <key>") against the sandbox's SANDBOX_API_KEY in constant
  /// time: 401 when missing or wrong, 403 when the sandbox has no key, 404 when it is gone.
  /// `owner_token` (the agent's own API token) is accepted too: its holder can already do anything
  /// through the control API.
  Result<Sandbox> authorize(const std::string& sandbox_id, const std::string* authorization,
                            std::string_view owner_token = {}) const;
  /// The helper of a running sandbox, for the sandbox API's routes.
  struct HelperAccess {
    SandboxHelpers& client;
    std::filesystem::path socket;
  };
  Result<HelperAccess> helper_access(const Sandbox& sandbox) const;
  /// Whether sandbox `id` is gone, no longer running, or being destroyed: a call into it that failed
  /// then failed because of the destroy (a 409), not because its helper did. Under mutex_.
  bool ended_or_ending(const std::string& id) const;
  /// Runs a command in a running sandbox.
  /// `still_wanted`: see SandboxHelpers::exec (a caller that hung up kills the command).
  Result<ExecResult> run_exec(const Sandbox& sandbox, const ExecRequest& request,
                              const std::function<bool()>& still_wanted = {});
  /// The activity meter of a live sandbox, for its idle timeout (nullptr when it is not live): its
  /// holders update it without taking the lifecycle's lock.
  std::shared_ptr<SandboxActivity> activity(const std::string& sandbox_id);
  /// Counts as activity of the sandbox while it lives (nothing when the sandbox is not live).
  SandboxActivity::Hold hold_activity(const std::string& sandbox_id);
  /// Live sandboxes, warm pools' idle members left out.
  std::size_t live_count() const;

  // Warm pools (README.md "Warm pools"): per image, sandboxes started ahead and claimed by provisions.
  /// Sets the pool of `image_id` (resolved in `workspace`: 404 unknown, 409 disabled) to `size` idle
  /// members (422 outside 0–limits::pool_size_max); 0 deletes the pool. The setting is stored before it
  /// is answered; members are started or destroyed in the background.
  Result<PoolView> set_pool(const Workspace& workspace, const std::string& image_id, int size);
  /// The pools set from `workspace` (every pool without one), by image id.
  std::vector<PoolView> pools(const Workspace& workspace) const;
  /// Waits (up to `timeout`) until every pool holds its size in ready members; whether they do.
  bool settle_pools(std::chrono::milliseconds timeout);

 private:
  const Sandbox* find_by_task(const Workspace& workspace, const std::string& task_id) const;
  /// Adds a record to sandboxes_ and the task index. Needs mutex_.
  void insert(Sandbox sandbox);
  /// When the sandbox's idle time counts from, given its activity: now while something is under way.
  /// Needs mutex_.
  std::optional<TimePoint> last_activity(const std::string& id, TimePoint now) const;
  Result<void> persist(const Sandbox& sandbox);
  void provision_in_background(std::string id);
  void run_provision(const std::string& id);
  /// Shows what a provisioning sandbox is doing (its `progress`); not persisted.
  void set_progress(const std::string& id, std::optional<std::string> progress);
  enum class HelperStart { answering, main_exited };
  /// Waits (bounded) until the helper answers on its socket; fails early if the sandbox stops.
  /// `main_exited` when the sandbox's `command` ended first (which ends its instance).
  Result<HelperStart> wait_for_helper(const Sandbox& sandbox);
  /// The sandbox's `command` ended (the helper said so, or its instance stopped): takes how from the
  /// backend and destroys the sandbox as `exited` (as `ttl` when its TTL was due). False while the
  /// instance still runs (a word from the sandbox itself) or the backend fails.
  bool finish_exited(const std::string& id);
  /// The watcher's loop: every main_exit_poll, the live sandboxes with a `command`.
  void watch_main_processes();
  /// The main log while the sandbox lives, its saved copy after it ended.
  std::filesystem::path saved_log_path(const std::string& sandbox_id) const;
  /// The log from stream position `from`: the live one, else the saved copy; empty when neither exists.
  main_log::Chunk read_log(const std::string& sandbox_id, std::uint64_t from) const;
  /// Copies the live log next to the record, before the backend releases the sandbox.
  void save_log(const std::string& sandbox_id);
  /// Why wait answers 409 for a sandbox whose main process exited: its exit code and last lines.
  std::string exited_message(const Sandbox& sandbox) const;
  /// Runs the sandbox's readiness probe (which needs the helper) every interval until it passes:
  /// true then. False when it gave up after readiness_give_up (the sandbox stays provisioning, its
  /// readiness `timed_out`, which wait answers with 408), or the sandbox left provisioning, or the
  /// agent stops. Never holds mutex_ while it talks to the helper.
  bool wait_until_ready(const Sandbox& sandbox, const ReadinessProbe& probe);
  /// Seed 000's process probe for a sandbox without a probe whose helper answers: `supervisord`
  /// running, when its image has supervisord (recorded in the sandbox); nullopt otherwise.
  std::optional<ReadinessProbe> process_probe(const Sandbox& sandbox);
  /// Records one attempt's outcome in the sandbox's `readiness`; false when it is no longer provisioning.
  bool record_probe_attempt(const std::string& id, const Result<void>& attempt);
  /// Releases what the backend holds for sandboxes that are not live.
  void release_ended();
  void mark_failed(const std::string& id, const std::string& reason);
  /// Serves each of the sandbox's `ports`, on the host port it had before when that is free, and
  /// records them in `port_gateways` (a port that cannot be served is left out, and is the error);
  /// logs a port that moved. Needs mutex_.
  Result<void> open_port_urls(Sandbox& sandbox);
  /// Removes the sandbox's instance and records the sandbox destroyed for `reason`; `detail` (when not empty)
  /// is added to its error, for reasons other than a request.
  Result<Sandbox> destroy_by_id(const std::string& id, DestroyReason reason, const std::string& detail,
                                std::optional<MainExit> exit = std::nullopt);
  void reap_loop();
  /// Loads the stored pool sizes (unreadable records are set aside). Needs no lock: called by load().
  void load_pools();
  /// Hands an idle member of the pool of `image` to `request`: its task, workspace, env_vars (given to
  /// the helper), tags, ports and TTL (counted from now). nullopt when the pool has no ready member or
  /// the member could not take the request (then the provision starts a sandbox as without a pool); an
  /// error only for what would fail a provision anyway (a task_id in use).
  std::optional<Result<Sandbox>> claim(const Workspace& workspace, const ProvisionRequest& request,
                                       const ResolvedImage& image);
  /// Gives the helper of a claimed sandbox its environment; a reconcile does it again for every running
  /// claimed sandbox, in case the agent stopped between recording a claim and giving it.
  Result<void> give_claim_environment(const Sandbox& sandbox);
  /// The pool thread: drops the records of ended members, starts members where pools are short and
  /// destroys those beyond their pool's size. Podman calls happen in provisioning workers, or on this
  /// thread without mutex_; never on a request's.
  void pool_loop();
  /// One round of pool_loop; whether it changed anything. Called with `lock` held; may unlock it.
  bool refill_pools(std::unique_lock<std::mutex>& lock);
  /// A pool's view. Needs mutex_.
  PoolView pool_view(const std::string& image_id) const;
  /// A sandbox that is an idle member of a pool (or was, when ended): never listed or found. Needs mutex_.
  static bool is_pool_member(const Sandbox& sandbox) { return sandbox.pool.has_value(); }
  /// A sandbox whose deadline has passed, and the last activity it was judged on.
  struct Due {
    std::string id;
    Deadline deadline;
    std::optional<TimePoint> last_activity;
  };
  /// The sandboxes whose deadline is at or before `now`, with it. Needs mutex_.
  std::vector<Due> due_at(TimePoint now) const;
  /// Destroys a due sandbox, unless it was judged idle and has been used since (an exec or a
  /// connection that just began, a background process): nullopt then.
  std::optional<Result<Sandbox>> destroy_due(const Due& due);
  /// Whether background processes kept a sandbox judged idle busy: one runs, or one ended after the
  /// idle time began. That counts as activity, at its time (so the idle time starts again from it).
  /// Asks the sandbox's helper, never under mutex_; a helper that does not answer, or predates
  /// background processes, keeps nothing alive.
  bool busy_with_processes(const Due& due);

  SandboxServiceConfig config_;
  SandboxBackend& backend_;
  RecordStore store_;
  SandboxEndpoints& endpoints_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Sandbox> sandboxes_;
  /// (workspace, task_id) → the ids of every sandbox recorded under it, so lookups by task_id never
  /// scan all records.
  std::map<std::pair<Workspace, std::string>, std::set<std::string>> by_task_;
  /// Live sandboxes' activity, made on first use; dropped when they end.
  std::map<std::string, std::shared_ptr<SandboxActivity>> activity_;
  bool stopping_ = false;
  int workers_ = 0;
  std::set<std::string> destroying_;        // ids whose destroy_by_id is under way
  std::set<std::string> provisioning_now_;  // ids with a provisioning worker
  std::thread reaper_;
  std::thread exit_watcher_;
  std::unique_ptr<TtlTimerQueue> timers_;  // when config_.timers is set
  struct Pool {
    PoolSetting setting;
    std::string image;  // the reference the last resolve gave
    int failures = 0;   // members that failed to start in a row
    std::chrono::steady_clock::time_point retry_at{};
    std::optional<std::string> last_error;
  };
  std::optional<RecordStore> pool_store_;
  std::map<std::string, Pool> pools_;  // image id → its pool
  std::set<std::string> retiring_;     // ids of members the pool thread is destroying: never claimed
  bool pool_wake_ = false;             // a claim or a new size: the pool thread looks again at once
  std::thread pool_thread_;
  TimePoint started_at_;  // idle time counts from here for sandboxes that were running before the agent started
};

}  // namespace modbox
