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

#include "agent/podman.h"
#include "agent/store.h"
#include "common/models.h"

namespace modbox {

/// Opens and closes the per-sandbox gateway port that serves the sandbox URL.
class SandboxEndpoints {
 public:
  virtual ~SandboxEndpoints() = default;
  /// Serves the sandbox on `preferred_port` when free (0: any); returns the port.
  virtual Result<int> open(const std::string& sandbox_id, int preferred_port) = 0;
  virtual void close(const std::string& sandbox_id) = 0;
};

struct SandboxServiceConfig {
  std::string agent_id;  // label value that marks this agent's containers
  std::string default_image = "localhost/modbox/sandbox-lite:latest";
  std::string created_by;
  std::function<TimePoint()> now = [] { return std::chrono::system_clock::now(); };
};

using Workspace = std::optional<std::string>;

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
  /// removed, and running sandboxes get their gateway port back.
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
  /// The owner's exec (control API) by task_id.
  Result<ExecResult> exec(const Workspace& workspace, const std::string& task_id, const ExecRequest& request);
  /// Checks `authorization` ("Bearer <key>") against the sandbox's SANDBOX_API_KEY in constant
  /// time: 401 when missing or wrong, 403 when the sandbox has no key, 404 when it is gone.
  Result<Sandbox> authorize(const std::string& sandbox_id, const std::string* authorization) const;
  /// Runs a command in a running sandbox.
  Result<ExecResult> run_exec(const Sandbox& sandbox, const ExecRequest& request);
  std::size_t live_count() const;

 private:
  const Sandbox* find_by_task(const Workspace& workspace, const std::string& task_id) const;
  Result<void> persist(const Sandbox& sandbox);
  void provision_in_background(std::string id);
  void run_provision(const std::string& id);
  void mark_failed(const std::string& id, const std::string& reason);
  Result<Sandbox> destroy_by_id(const std::string& id, const std::string& reason);
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
  std::thread reaper_;
};

}  // namespace modbox
