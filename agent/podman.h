#pragma once
// What the agent needs from Podman, behind an interface so the lifecycle can be tested with a fake;
// LibpodClient is the real implementation over the libpod REST API.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace modbox {

struct BindMount {
  std::string source;
  std::string destination;
  bool read_only = true;
};

struct ContainerSpec {
  std::string name;
  std::string image;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;
  std::vector<std::string> entrypoint;  // empty: the image's default
  std::vector<std::string> command;     // empty: the image's default (when entrypoint is empty too)
  std::string user;                     // empty: the image's USER
  std::optional<int> timeout_seconds;  // conmon kills the container after this long
  std::optional<std::int64_t> memory_bytes;
  std::vector<BindMount> mounts;
  bool no_network = false;  // a network namespace with loopback only (libpod's nsmode "none")
};

struct ContainerSummary {
  std::string id;
  std::string name;
  std::string state;  // "running", "exited", "created", ...
  std::map<std::string, std::string> labels;
};

/// How a container is, or how it ended (`State` of `GET /libpod/containers/{id}/json`).
struct ContainerState {
  std::string status;  // "running", "exited", "stopped", "created", ...
  bool running = false;
  int exit_code = 0;        // its PID 1's exit status once it has ended
  bool oom_killed = false;  // the kernel's OOM killer killed a process of it (conmon watched its cgroup)
};

/// Credentials for one pull; sent to Podman in the X-Registry-Auth header, never logged.
struct RegistryAuth {
  std::string username;
  std::string password;
};

struct PullOptions {
  std::optional<RegistryAuth> auth;
  bool tls_verify = true;                      // false: plain HTTP and unverified TLS are allowed
  std::chrono::seconds timeout{600};
};

/// What Podman reports about the host it runs containers on (`GET /libpod/info`).
struct PodmanHostInfo {
  bool rootless = true;
  std::string cgroup_version;                   // "v1" or "v2"
  std::vector<std::string> cgroup_controllers;  // those available to this user's containers
};

/// What an image runs by default (`Config.Entrypoint` and `Config.Cmd`; either may be empty), and
/// as whom (`Config.User`, Docker's form; empty when it sets none).
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> command;
  std::string user;
  std::vector<std::string> env;  // Config.Env, "NAME=value" each
  std::string working_dir;       // Config.WorkingDir; empty when it sets none
};

/// `POST /libpod/commit`: a container's filesystem (its writable layer on top of its image) as a new
/// image `repository:tag`. `changes` are Dockerfile instructions (`ENTRYPOINT [...]`, `ENV K=V`, ...)
/// applied to the config Podman derives from the container's own.
struct CommitOptions {
  std::string repository;
  std::string tag;
  std::vector<std::string> changes;
  bool pause = false;  // rootless containers on cgroup v1 cannot be paused
  std::chrono::seconds timeout{1800};
};

/// `POST /libpod/build`: an image built from a Containerfile in a context tar. The tar Podman gets is
/// `context_prefix` followed by the bytes of `context_file` (when set). Base images are never pulled:
/// FROM must name an image in local storage. Every step runs in one working container, committed once
/// at the end, so a failed build leaves no image behind.
struct BuildOptions {
  std::string context_prefix;
  std::filesystem::path context_file;
  std::string containerfile = "Containerfile";  // its path in the context
  std::string reference;                        // repository:tag of the result
  std::chrono::seconds timeout{3600};
};

class Podman {
 public:
  virtual ~Podman() = default;
  virtual Result<void> ping() = 0;
  virtual Result<bool> image_exists(const std::string& reference) = 0;
  /// Creates the container and returns its id.
  virtual Result<std::string> create_container(const ContainerSpec& spec) = 0;
  virtual Result<void> start_container(const std::string& id) = 0;
  /// Kills and removes at once (no stop grace period); an unknown container is not an error.
  virtual Result<void> remove_container(const std::string& id) = 0;
  /// The container's state; not_found when there is no such container.
  virtual Result<ContainerState> inspect_container(const std::string& id) = 0;
  /// Containers (running or not) that carry label `key=value`.
  virtual Result<std::vector<ContainerSummary>> list_containers(const std::string& label_key,
                                                                const std::string& label_value) = 0;
  /// The image's default entrypoint, command and user; not_found when the image is not in storage.
  virtual Result<ImageConfig> image_config(const std::string& reference) = 0;
  /// Pulls `reference` into storage. A registry's refusal (unauthorized, manifest unknown, unreachable)
  /// is an Error whose message is Podman's reason.
  virtual Result<void> pull_image(const std::string& reference, const PullOptions& options) = 0;
  virtual Result<PodmanHostInfo> host_info() = 0;
  /// Commits container `id` to a new image; returns the image's id. A container that is gone is not_found.
  virtual Result<std::string> commit_container(const std::string& id, const CommitOptions& options) = 0;
  /// Builds an image; `on_output` gets the build's output (its steps and what they print) line by line
  /// as it comes; it returns false to cancel the build (Podman stops it when its client hangs up),
  /// which is then `unavailable`. Returns the image's id. A build that fails (a step, a missing base image, no such
  /// Containerfile) is bad_request with Podman's reason; Podman not answering is unavailable.
  virtual Result<std::string> build_image(const BuildOptions& options,
                                          const std::function<bool(std::string_view line)>& on_output) = 0;
  /// Removes an image from storage; one that is not there is not an error.
  virtual Result<void> remove_image(const std::string& reference) = 0;
};

/// A client of `podman system service` on a unix socket.
std::unique_ptr<Podman> make_libpod_client(std::string socket_path);

}  // namespace modbox
