#include "agent/podman_service.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "agent/log.h"
#include "agent/process.h"
#include "common/host_runtime.h"
#include "common/system.h"

namespace modbox {

namespace {
bool systemd_user_manager_reachable() {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  return std::filesystem::exists("/run/systemd/system") && runtime != nullptr &&
         std::filesystem::exists(std::filesystem::path(runtime) / "systemd/private");
}
}  // namespace

HostRuntime probe_host_runtime(const std::string& override_runtime) {
  HostRuntime result;
  bool has_crun = find_in_path("crun").has_value();
  bool has_runc = find_in_path("runc").has_value() || std::filesystem::exists("/usr/sbin/runc");
  if (!override_runtime.empty()) {
    result.oci_runtime = override_runtime;
    result.reason = "runtime set by --runtime / MODBOX_RUNTIME";
  } else {
    auto choice = choose_oci_runtime(detect_cgroup_layout(), has_crun, has_runc);
    result.oci_runtime = choice.runtime;
    result.reason = choice.reason;
  }
  result.cgroup_manager = systemd_user_manager_reachable() || (::geteuid() == 0 && std::filesystem::exists("/run/systemd/system"))
                              ? "systemd"
                              : "cgroupfs";  // reported only; podman detects it the same way
  return result;
}

std::string containers_conf_text(const HostRuntime& runtime) {
  // With CONTAINERS_CONF set podman reads only this file and its built-in defaults, so the
  // distribution's hardening (capabilities, ping range) is repeated here. cgroup manager and events
  // logger are left to podman's own detection; forcing them breaks one host or another.
  return "# Written by modboxd at start; edits are overwritten. Keep in step with images/containers.conf.\n"
         "[containers]\n"
         "default_capabilities = [\"CHOWN\", \"DAC_OVERRIDE\", \"FOWNER\", \"FSETID\", \"KILL\", "
         "\"NET_BIND_SERVICE\", \"SETFCAP\", \"SETGID\", \"SETPCAP\", \"SETUID\", \"SYS_CHROOT\"]\n"
         "default_sysctls = [\"net.ipv4.ping_group_range=0 0\"]\n"
         // A session keyring per container counts against the kernel's 200 keys per user
         // (kernel.keys.maxkeys): a user's 193rd container failed to start ("disk quota exceeded").
         "keyring = false\n"
         + std::string(::geteuid() == 0
                           // Rootful podman asks for more than the host's hard limits ("setrlimit:
                           // Operation not permitted"). Rootless copies the caller's limits, which
                           // work; a fixed nproc there would be shared by all of the user's processes.
                           ? "default_ulimits = [\"nofile=1024:1024\", \"nproc=1000:1000\"]\n"
                           : "") +
         "\n[engine]\n"
         "runtime = \"" + runtime.oci_runtime + "\"\n";
}

PodmanService::PodmanService(PodmanServiceConfig config, Ping ping)
    : config_(std::move(config)), ping_(std::move(ping)) {}

PodmanService::~PodmanService() { stop(); }

Result<void> PodmanService::start() {
  if (auto written = write_file_atomic(config_.containers_conf_path, containers_conf_text(config_.runtime), 0600);
      !written)
    return std::unexpected(written.error());
  if (!find_in_path("podman")) return fail(ErrorKind::unavailable, "podman is not installed (not found in PATH)");
  supervisor_ = std::thread([this] { supervise(); });
  return {};
}

void PodmanService::supervise() {
  auto backoff = std::chrono::milliseconds(250);
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (stopping_) return;
    }
    ::unlink(config_.socket_path.c_str());
    auto pid = spawn_process({.argv = {"podman", "--runtime", config_.runtime.oci_runtime, "system", "service",
                                       "--time=0", "unix://" + config_.socket_path},
                              .extra_env = {{"CONTAINERS_CONF", config_.containers_conf_path}},
                              .output_file = config_.log_file,
                              // A crashed agent must not leave its service behind: the next
                              // agent starts its own on the same socket.
                              .die_with_parent = true});
    if (!pid) {
      log_error("cannot start podman service: " + pid.error().message);
    } else {
      {
        std::lock_guard lock(mutex_);
        child_ = *pid;
      }
      log_info("podman service started (pid " + std::to_string(*pid) + ", runtime " + config_.runtime.oci_runtime +
               ", socket " + config_.socket_path + ")");
      auto started = std::chrono::steady_clock::now();
      int status = wait_process(*pid).value_or(-1);
      {
        std::lock_guard lock(mutex_);
        child_ = -1;
        if (stopping_) return;
      }
      log_error("podman service " + describe_wait_status(status) + "; see " + config_.log_file + "; restarting");
      if (std::chrono::steady_clock::now() - started > std::chrono::seconds(30)) backoff = std::chrono::milliseconds(250);
    }
    std::unique_lock lock(mutex_);
    if (stopped_.wait_for(lock, backoff, [this] { return stopping_; })) return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

bool PodmanService::wait_ready(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ping_()) return true;
    std::unique_lock lock(mutex_);
    if (stopped_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping_; })) return false;
  }
  return false;
}

void PodmanService::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (child_ > 0) ::kill(child_, SIGTERM);
  }
  stopped_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
}

}  // namespace modbox
