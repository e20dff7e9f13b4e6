#pragma once
// Sandboxes as rootless Podman containers (libpod REST API): labelled so the agent finds its own,
// the helper bind-mounted read-only and run as PID 1 with the image's entrypoint as its child, its
// socket in a per-sandbox host directory, and Podman's container timeout as a TTL backstop.

#include <mutex>

#include "agent/image_catalog.h"
#include "agent/podman.h"
#include "agent/sandbox_backend.h"

namespace modbox {

/// The labels on every sandbox container.
namespace sandbox_labels {
inline constexpr const char* agent = "io.modbox.agent";  // the agent's id: which containers are its own
inline constexpr const char* sandbox = "io.modbox.sandbox";
inline constexpr const char* task = "io.modbox.task";
inline constexpr const char* workspace = "io.modbox.workspace";
}  // namespace sandbox_labels

/// The commit `changes` that give a snapshot of a container of `image` the image's own entrypoint, cmd
/// and user back (the container ran the helper, as root), blank the sandbox's `env_vars` (or give
/// back the image's values of those it overrode: Podman keeps the container's env and cannot drop a
/// variable), and blank this agent's labels (a container of the new image started outside modbox
/// must not look like one of its sandboxes).
std::vector<std::string> snapshot_changes(const ImageConfig& image, const std::map<std::string, std::string>& env_vars);

struct PodmanBackendConfig {
  std::string agent_id;  // label value that marks this agent's containers
  /// Registry credentials for pulls; without it an image with a registry_id cannot be pulled.
  ImageCatalog* images = nullptr;
  /// Builds a missing default image on first provision; without it a missing image fails the sandbox.
  ImageBuilder* builder = nullptr;
  /// The in-sandbox helper, mounted read-only into every container and run as its PID 1, serving on
  /// a socket in `sandbox_runtime_root`/<id>/ (mounted at /run/modbox). Empty: containers run the
  /// image's own entrypoint (unit tests that do not care).
  std::string helper_binary;
  std::filesystem::path sandbox_runtime_root;
};

class PodmanBackend final : public SandboxBackend {
 public:
  PodmanBackend(PodmanBackendConfig config, Podman& podman) : config_(std::move(config)), podman_(podman) {}

  Result<void> ping() override { return podman_.ping(); }
  BackendCapabilities capabilities() override;
  Result<void> prepare_image(const Sandbox& sandbox, const Progress& progress) override;
  Result<std::string> create(const Sandbox& sandbox, const LaunchOptions& options) override;
  Result<void> start(const Sandbox& sandbox) override;
  Result<void> remove(const Sandbox& sandbox) override;
  void release(const std::string& sandbox_id) override;
  void release_all_but(const std::set<std::string>& live) override;
  Result<std::vector<BackendInstance>> list_own() override;
  std::filesystem::path helper_socket(const std::string& sandbox_id) const override;
  std::optional<std::string> stopped_reason(const Sandbox& sandbox) override;
  std::string diagnosis_hint(const Sandbox& sandbox) const override {
    return "`podman logs " + sandbox.container_id + "` may say why";
  }
  bool main_exit_reported(const std::string& sandbox_id) const override;
  Result<std::optional<MainExit>> main_exit(const Sandbox& sandbox) override;
  std::filesystem::path main_log(const std::string& sandbox_id) const override;

  std::vector<std::string> image_command(const Sandbox& sandbox) override;
  /// `POST /libpod/commit` of the container, not paused (rootless Podman on cgroup v1 cannot pause),
  /// with snapshot_changes().
  Result<void> snapshot(const Sandbox& sandbox, const std::string& repository, const std::string& tag) override;
  Result<void> remove_snapshot(const std::string& reference) override { return podman_.remove_image(reference); }

  /// The container name of a sandbox: "modbox-<task>-<first 8 of its id>".
  static std::string container_name(const Sandbox& sandbox);

 private:
  std::filesystem::path helper_directory(const std::string& sandbox_id) const;
  /// Makes the container start the helper as PID 1 with the image's entrypoint + cmd as its child
  /// (the sandbox's `command` instead, when it has one, and then the helper exits with it).
  Result<void> add_helper(const Sandbox& sandbox, ContainerSpec& spec);
  /// Why the helper could not start, when it left that in its directory before it exited.
  std::optional<std::string> helper_startup_failure(const std::string& sandbox_id) const;

  PodmanBackendConfig config_;
  Podman& podman_;
  std::mutex mutex_;
  std::optional<BackendCapabilities> capabilities_;  // asked of Podman once
};

}  // namespace modbox
