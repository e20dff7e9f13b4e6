#pragma once
// The seam between the sandbox lifecycle and what runs sandboxes (DESIGN.md "Backends"). The
// lifecycle (records, states, probes, deadlines, reaper) decides; a backend only does: make the image
// present, create and start an instance with the in-sandbox helper as its PID 1, remove it, list its
// own, say where the helper answers, and say what it can enforce. Podman is the backend on one host
// (agent/podman_backend.h); a Kubernetes backend fits the same interface.

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/models.h"
#include "common/result.h"

namespace modbox {

/// One sandbox's instance (a container, a pod) as the backend sees it.
struct BackendInstance {
  std::string sandbox_id;
  std::string instance_id;
  std::string name;
  bool running = false;
  bool stopped = false;  // it ran and has ended (not merely created)
  std::string state;     // the backend's own word for it ("running", "exited", ...), for messages
};

/// How a sandbox's main process (a provision's `command`) ended, once its instance stopped.
struct MainExit {
  int exit_code = 0;        // its exit status, 128+n for signal n
  bool oom_killed = false;  // the OOM killer ended it
  /// Set when the instance stopped because its helper could not start (not the command's doing): why.
  std::optional<std::string> helper_failure;
};

/// What a backend enforces on this host; the lifecycle records it on the sandbox, and messages say why not.
struct BackendCapabilities {
  bool memory_limits = false;
  std::string memory_limits_detail;  // why memory limits are not enforced, when they are not
};

/// How to launch one sandbox, decided by the lifecycle.
struct LaunchOptions {
  /// The backend kills the instance itself after this long, so a sandbox's lifetime holds while the agent
  /// is down (nullopt: no such backstop). Not the TTL: Podman cannot move it when an extend moves the TTL.
  std::optional<std::chrono::seconds> lifetime;
};

class SandboxBackend {
 public:
  using Progress = std::function<void(const std::string&)>;
  virtual ~SandboxBackend() = default;

  /// Whether the backend can take work now; a provision is refused while it cannot.
  virtual Result<void> ping() = 0;
  virtual BackendCapabilities capabilities() = 0;
  /// Makes the sandbox's image present (pulled with its registry credential, or built when it is a
  /// missing default); reports long steps through `progress`. The error is the sandbox's reason.
  virtual Result<void> prepare_image(const Sandbox& sandbox, const Progress& progress) = 0;
  /// Creates the sandbox's instance, not started, with the helper as its PID 1; returns its id.
  virtual Result<std::string> create(const Sandbox& sandbox, const LaunchOptions& options) = 0;
  virtual Result<void> start(const Sandbox& sandbox) = 0;
  /// Removes the sandbox's instance at once (an unknown one is not an error) and releases what the
  /// backend holds for it on this host.
  virtual Result<void> remove(const Sandbox& sandbox) = 0;
  /// Releases what the backend holds on this host for a sandbox whose instance is gone or never was.
  virtual void release(const std::string& sandbox_id) = 0;
  /// Releases what it holds for every sandbox not in `live` (left by a crash).
  virtual void release_all_but(const std::set<std::string>& live) = 0;
  /// This agent's instances, running or not.
  virtual Result<std::vector<BackendInstance>> list_own() = 0;
  /// Where the sandbox's helper answers.
  virtual std::filesystem::path helper_socket(const std::string& sandbox_id) const = 0;
  /// Why a started instance stopped before its helper answered; nullopt while it still runs (or
  /// when that cannot be told now).
  virtual std::optional<std::string> stopped_reason(const Sandbox& sandbox) = 0;
  /// Where a user looks for why a sandbox misbehaves: "`podman logs ID` may say why".
  virtual std::string diagnosis_hint(const Sandbox& sandbox) const = 0;

  // A provision's `command` runs as the helper's child, which exits with it (ending the instance).
  // A backend without these runs no commands to their end: its sandboxes with one never end by it.
  /// Whether the helper said that the sandbox's command exited; cheap (no call to a service), asked
  /// for every live sandbox with a command a few times a second.
  virtual bool main_exit_reported(const std::string& sandbox_id) const {
    (void)sandbox_id;
    return false;
  }
  /// How the sandbox's command ended, from the backend (never from the sandbox's own word alone);
  /// nullopt while its instance still runs. not_found when the instance is gone.
  virtual Result<std::optional<MainExit>> main_exit(const Sandbox& sandbox) {
    (void)sandbox;
    return std::optional<MainExit>{};
  }
  /// Where the helper keeps the main process's output (common/main_log.h) while the sandbox lives;
  /// empty when the backend keeps none.
  virtual std::filesystem::path main_log(const std::string& sandbox_id) const {
    (void)sandbox_id;
    return {};
  }

  /// What the sandbox's image runs as its main process: its entrypoint followed by its cmd (empty
  /// when it sets none, or when that cannot be told).
  virtual std::vector<std::string> image_command(const Sandbox& sandbox) = 0;
  /// Saves the running sandbox's files as the new image `repository:tag`, which create() starts later
  /// sandboxes from as it does the sandbox's own image (same entrypoint, cmd and user), holding no value
  /// of the sandbox's env_vars. A sandbox whose instance is gone is not_found.
  virtual Result<void> snapshot(const Sandbox& sandbox, const std::string& repository, const std::string& tag) = 0;
  /// Removes an image snapshot() made; one that is gone is not an error.
  virtual Result<void> remove_snapshot(const std::string& reference) = 0;
};

}  // namespace modbox
