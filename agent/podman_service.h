#pragma once
// modboxd's own `podman system service`: started on a private socket with the agent's
// containers.conf, watched, and restarted when it dies.

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/result.h"

namespace modbox {

struct HostRuntime {
  std::string oci_runtime;     // "runc" or "crun"
  std::string cgroup_manager;  // "systemd" or "cgroupfs"
  std::string reason;          // why, for `agent status` and the log
};

/// Picks the OCI runtime and cgroup manager that work on this host's cgroup layout: crun refuses
/// cgroup v1 hybrid mode ("cgroups in hybrid mode not supported") where runc works; runc fails in
/// pure cgroup v1 nested setups where crun works. `override_runtime` wins when set.
HostRuntime probe_host_runtime(const std::string& override_runtime);

/// The containers.conf the service runs with: runtime, cgroup manager, and rlimits at or below
/// the host's hard limits (the defaults fail with "setrlimit: Operation not permitted").
std::string containers_conf_text(const HostRuntime& runtime);

struct PodmanServiceConfig {
  std::string socket_path;
  std::string containers_conf_path;
  std::string log_file;
  HostRuntime runtime;
};

class PodmanService {
 public:
  using Ping = std::function<bool()>;
  PodmanService(PodmanServiceConfig config, Ping ping);
  ~PodmanService();
  PodmanService(const PodmanService&) = delete;
  PodmanService& operator=(const PodmanService&) = delete;

  /// Writes the configuration and starts the supervisor; the service comes up in the background.
  Result<void> start();
  /// Stops the supervisor and the service process.
  void stop();
  /// True once the service answers, false if it did not within `timeout`.
  bool wait_ready(std::chrono::milliseconds timeout);

 private:
  void supervise();

  PodmanServiceConfig config_;
  Ping ping_;
  std::thread supervisor_;
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stopping_ = false;
  pid_t child_ = -1;
};

}  // namespace modbox
