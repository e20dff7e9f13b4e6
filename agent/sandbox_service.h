#pragma once
// The sandbox lifecycle: provision → running → destroyed (or failed), TTL expiry, and reconciling
// the records with what Podman really runs. Every state change is persisted before it is visible.

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
#include "agent/podman.h"
#include "agent/store.h"
#include "common/models.h"

namespace modbox {

/// The labels on every sandbox container.
namespace sandbox_labels {
inline constexpr const char* agent = "io.modbox.agent";  // the agent's id: which containers are its own
inline constexpr const char* sandbox = "io.modbox.sandbox";
inline constexpr const char* task = "io.modbox.task";
inline constexpr const char* workspace = "io.modbox.workspace";
}  // namespace sandbox_labels

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
  std::string agent_id;  // label value that marks this agent's containers
  std::string default_image = "localhost/modbox/sandbox-lite:latest";
  std::string created_by;
  std::function<TimePoint()> now = [] { return std::chrono::system_clock::now(); };
  /// Resolves image_id and the workspace default; without it only `default_image` and the `image`
  /// extension can be provisioned.
  ImageCatalog* images = nullptr;
  /// Builds a missing default image on first provision; without it a missing image fails the sandbox.
  ImageBuilder* builder = nullptr;
  /// The in-sandbox helper (DESIGN.md): `helper_binary` is mounted read-only into every container
  /// and runs as its PID 1, serving on a socket in `sandbox_runtime_root`/<id>/ (mounted at
  /// /run/modbox); `helpers` talks to it. Without `helpers`, containers run the image's own
  /// entrypoint, exec is unavailable and readiness probes are not run (unit tests that do not care).
  SandboxHelpers* helpers = nullptr;
  std::string helper_binary;
  std::filesystem::path sandbox_runtime_root;
  /// How long a started container has to answer on its helper socket before the sandbox fails.
  std::chrono::milliseconds helper_ready_timeout{20000};
  /// How long a readiness probe is tried before it gives up (leaving the sandbox provisioning).
  std::chrono::milliseconds readiness_give_up = limits::readiness_give_up;
};

using Workspace = std::optional<std::string>;

/// Where a snapshot called `name` is committed: `localhost/modbox-snapshot/SLUG` (its tag is unique).
std::string snapshot_repository(const std::string& name);
/// The commit `changes` that give a snapshot of a sandbox of `image` the image's own entrypoint, cmd,
/// user and env (the sandbox's `env_vars` blanked, or back to the image's values) and none of the
/// sandbox's labels.
std::vector<std::string> snapshot_changes(const ImageConfig& image, const std::map<std::string, std::string>& env_vars);

class SandboxService {
 public:
  SandboxService(SandboxServiceConfig config, Podman& podman, RecordStore store, SandboxEndpoints& endpoints);
  ~SandboxService();
  SandboxService(const SandboxService&) = delete;
  SandboxService& operator=(const SandboxService&) = delete;

  /// Loads the records (unreadable ones are set aside). Call once before serving.
  void load();
  /// Brings records and containers into agreement: expired or vanished sandboxes become
  /// destroyed, interrupted provisions resume, this agent's containers without a record are
  /// removed, and live sandboxes get their URL back (running ones their port URLs too), on the
  /// host ports they had when those are free.
  Result<void> reconcile();
  /// Starts the TTL reaper thread.
  void start_reaper();
  /// Stops the reaper and waits for provisioning work; containers keep running.
  void shutdown();

  Result<Sandbox> provision(const Workspace& workspace, const ProvisionRequest& request);
  Result<Sandbox> wait(const Workspace& workspace, const WaitRequest& request);
  /// By sandbox id, or by task_id within the workspace.
  Result<Sandbox> get(const Workspace& workspace, const std::string& id_or_task) const;
  std::vector<Sandbox> list(const Workspace& workspace, std::optional<SandboxStatus> status) const;
  Result<Sandbox> destroy(const Workspace& workspace, const std::string& task_id);
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
  /// Runs a command in a running sandbox.
  Result<ExecResult> run_exec(const Sandbox& sandbox, const ExecRequest& request);
  std::size_t live_count() const;

 private:
  const Sandbox* find_by_task(const Workspace& workspace, const std::string& task_id) const;
  Result<void> persist(const Sandbox& sandbox);
  void provision_in_background(std::string id);
  void run_provision(const std::string& id);
  /// Makes the sandbox's image present: pulled with its registry credential, built when it is a missing
  /// default, pulled anonymously when it names a remote registry. The error is the sandbox's reason.
  Result<void> ensure_image(const Sandbox& sandbox);
  /// Shows what a provisioning sandbox is doing (its `progress`); not persisted.
  void set_progress(const std::string& id, std::optional<std::string> progress);
  /// The host directory mounted at /run/modbox in the sandbox, and the helper's socket in it.
  std::filesystem::path helper_directory(const std::string& sandbox_id) const;
  std::filesystem::path helper_socket(const std::string& sandbox_id) const;
  /// Makes the container start the helper as PID 1 with the image's entrypoint + cmd as its child.
  Result<void> add_helper(const Sandbox& sandbox, ContainerSpec& spec);
  /// Waits (bounded) until the helper answers on its socket; fails early if the container stops.
  Result<void> wait_for_helper(const Sandbox& sandbox);
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
  void remove_helper_directory(const std::string& sandbox_id);
  /// Removes per-sandbox directories that no live sandbox owns.
  void remove_stale_helper_directories();
  /// Whether a memory limit is enforced on this host, and if not why (asks Podman once).
  std::pair<bool, std::string> memory_limit_support();
  void mark_failed(const std::string& id, const std::string& reason);
  /// Serves each of the sandbox's `ports`, on the host port it had before when that is free, and
  /// records them in `port_gateways` (a port that cannot be served is left out, and is the error);
  /// logs a port that moved. Needs mutex_.
  Result<void> open_port_urls(Sandbox& sandbox);
  /// Removes the container and records the sandbox destroyed for `reason`; `detail` (when not empty)
  /// is added to its error, for reasons other than a request.
  Result<Sandbox> destroy_by_id(const std::string& id, DestroyReason reason, const std::string& detail);
  void reap_loop();

  SandboxServiceConfig config_;
  Podman& podman_;
  RecordStore store_;
  SandboxEndpoints& endpoints_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Sandbox> sandboxes_;
  bool stopping_ = false;
  int workers_ = 0;
  std::set<std::string> provisioning_now_;  // ids with a provisioning worker
  std::optional<std::pair<bool, std::string>> memory_limit_support_;  // cached answer
  std::thread reaper_;
  TimePoint started_at_;  // idle time counts from here for sandboxes that were running before the agent started
};

}  // namespace modbox
