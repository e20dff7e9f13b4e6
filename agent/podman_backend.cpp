#include "agent/podman_backend.h"

#include <unistd.h>

#include <algorithm>

#include "agent/log.h"
#include "common/helper_protocol.h"
#include "common/system.h"

namespace modbox {

namespace {
constexpr std::size_t unix_path_max = 107;  // sizeof(sockaddr_un::sun_path) - 1

/// Sandbox ids are UUIDs; anything else never names a directory to create or delete.
bool is_plain_name(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id.find('/') == std::string::npos;
}

bool is_stopped(const std::string& state) {
  return state == "exited" || state == "stopped" || state == "dead";
}
}  // namespace

std::string PodmanBackend::container_name(const Sandbox& sandbox) {
  return "modbox-" + sandbox.name + "-" + sandbox.id.substr(0, 8);
}

BackendCapabilities PodmanBackend::capabilities() {
  {
    std::lock_guard lock(mutex_);
    if (capabilities_) return *capabilities_;
  }
  auto info = podman_.host_info();
  if (!info)  // not cached: Podman may be back next time
    return {false, "not enforced: could not ask Podman about the host's cgroups (" + info.error().message + ")"};
  BackendCapabilities answer{.memory_limits = true};
  bool has_memory = std::find(info->cgroup_controllers.begin(), info->cgroup_controllers.end(), "memory") !=
                    info->cgroup_controllers.end();
  if (info->rootless && info->cgroup_version != "v2")
    answer = {false,
              "not enforced: rootless Podman cannot apply memory limits on a cgroup v1 host (it ignores "
              "them); run modboxd as root, or on a cgroup v2 host that delegates the memory controller"};
  else if (info->rootless && !has_memory)
    answer = {false,
              "not enforced: the memory cgroup controller is not delegated to this user (cgroup v2 "
              "without delegation, see systemd's Delegate= for user@.service)"};
  std::lock_guard lock(mutex_);
  capabilities_ = answer;
  return answer;
}

Result<void> PodmanBackend::prepare_image(const Sandbox& sandbox, const Progress& progress) {
  auto exists = podman_.image_exists(sandbox.image);
  if (!exists) return std::unexpected(exists.error());
  if (*exists) return {};
  if (sandbox.registry_id) {
    if (config_.images == nullptr) return fail(ErrorKind::internal, "no registry credentials are available");
    auto options = config_.images->pull_options(*sandbox.registry_id);
    if (!options) return std::unexpected(options.error());
    log_info("pulling " + sandbox.image + " for " + describe(sandbox) + " with registry credential " +
             *sandbox.registry_id);
    progress("pulling " + sandbox.image);
    if (auto pulled = podman_.pull_image(sandbox.image, *options); !pulled)
      return std::unexpected(with_context(
          pulled.error(), "the image could not be pulled with registry credential " + *sandbox.registry_id));
    return {};
  }
  if (auto name = config_.builder ? config_.builder->buildable(sandbox.image) : std::nullopt) {
    log_info("building the default image " + sandbox.image + " for " + describe(sandbox) + " (first use)");
    progress("building " + sandbox.image + " (first use of this default image; minutes)");
    if (auto built = config_.builder->build(*name); !built)
      return std::unexpected(with_context(built.error(), "building default image " + sandbox.image));
    return {};
  }
  if (sandbox.image.starts_with("localhost/"))
    return fail(ErrorKind::not_found, "image " + sandbox.image + " is not in Podman storage" +
                                          (sandbox.image.starts_with("localhost/modbox/")
                                               ? " (modbox's default images are built with `modbox images build NAME`)"
                                               : ""));
  log_info("pulling " + sandbox.image + " for " + describe(sandbox));
  progress("pulling " + sandbox.image);
  if (auto pulled = podman_.pull_image(sandbox.image, PullOptions{}); !pulled)
    return std::unexpected(
        with_context(pulled.error(), "image " + sandbox.image + " is not in Podman storage and could not be pulled"));
  return {};
}

Result<std::string> PodmanBackend::create(const Sandbox& sandbox, const LaunchOptions& options) {
  ContainerSpec spec;
  spec.name = container_name(sandbox);
  spec.image = sandbox.image;
  spec.labels = {{sandbox_labels::agent, config_.agent_id},
                 {sandbox_labels::sandbox, sandbox.id},
                 {sandbox_labels::task, sandbox.name},
                 {sandbox_labels::workspace, sandbox.workspace_id.value_or("")}};
  spec.env = sandbox.env_vars;
  spec.no_network = sandbox.network == "none";
  if (sandbox.memory_mb && sandbox.memory_limit_enforced.value_or(false))
    spec.memory_bytes = std::int64_t{*sandbox.memory_mb} << 20;
  if (options.lifetime) spec.timeout_seconds = static_cast<int>(std::max<long long>(options.lifetime->count(), 1));
  if (!config_.helper_binary.empty()) {
    if (auto added = add_helper(sandbox, spec); !added) return std::unexpected(added.error());
  } else if (!sandbox.command.empty()) {
    spec.entrypoint = sandbox.command;
  }
  return podman_.create_container(spec);
}

Result<void> PodmanBackend::start(const Sandbox& sandbox) {
  return podman_.start_container(sandbox.container_id);
}

Result<void> PodmanBackend::remove(const Sandbox& sandbox) {
  if (!sandbox.container_id.empty())
    if (auto removed = podman_.remove_container(sandbox.container_id); !removed)
      return std::unexpected(with_context(removed.error(), "removing the sandbox's container"));
  release(sandbox.id);
  return {};
}

Result<std::vector<BackendInstance>> PodmanBackend::list_own() {
  auto containers = podman_.list_containers(sandbox_labels::agent, config_.agent_id);
  if (!containers) return std::unexpected(containers.error());
  std::vector<BackendInstance> instances;
  for (auto& container : *containers)
    instances.push_back({.sandbox_id = container.labels[sandbox_labels::sandbox],
                         .instance_id = container.id,
                         .name = container.name,
                         .running = container.state == "running",
                         .stopped = is_stopped(container.state),
                         .state = container.state});
  return instances;
}

std::filesystem::path PodmanBackend::helper_directory(const std::string& sandbox_id) const {
  return config_.sandbox_runtime_root / sandbox_id;
}

std::filesystem::path PodmanBackend::helper_socket(const std::string& sandbox_id) const {
  return helper_directory(sandbox_id) / helper::socket_name;
}

Result<void> PodmanBackend::add_helper(const Sandbox& sandbox, ContainerSpec& spec) {
  if (::access(config_.helper_binary.c_str(), X_OK) != 0)
    return fail(ErrorKind::internal, "the in-sandbox helper '" + config_.helper_binary +
                                         "' is missing or not executable: install modbox-helper next to modboxd "
                                         "or start modboxd with --helper PATH");
  if (!is_plain_name(sandbox.id) || config_.sandbox_runtime_root.empty())
    return fail(ErrorKind::internal, "no directory for the helper of sandbox '" + sandbox.id + "'");
  std::filesystem::path socket = helper_socket(sandbox.id);
  if (socket.string().size() > unix_path_max)
    return fail(ErrorKind::internal, "the helper socket path " + socket.string() +
                                         " is too long for a unix socket; start modboxd with a shorter --runtime-dir");
  auto image = podman_.image_config(sandbox.image);
  if (!image) return std::unexpected(with_context(image.error(), "reading the image's entrypoint"));
  if (auto made = make_directories(helper_directory(sandbox.id), 0700); !made) return std::unexpected(made.error());

  std::string socket_inside = std::string(helper::socket_directory) + "/" + std::string(helper::socket_name);
  spec.mounts.push_back({config_.helper_binary, std::string(helper::binary_path_in_container), true});
  spec.mounts.push_back({helper_directory(sandbox.id).string(), std::string(helper::socket_directory), false});
  spec.entrypoint = {std::string(helper::binary_path_in_container), "--socket", socket_inside};
  if (!helper::runs_as_root(image->user)) {
    // As the image's user the helper could not create its socket in the host directory (owned by
    // the host user, root in the container): it starts as root and runs the entrypoint and every
    // command as that user, which it resolves in the container (unknown: it stops and says so).
    spec.user = "0:0";
    spec.entrypoint.insert(spec.entrypoint.end(), {"--user", image->user});
  }
  if (!sandbox.command.empty()) {
    // The provision's command is the child instead, and the sandbox ends with it (Modal's entrypoint).
    spec.entrypoint.insert(spec.entrypoint.end(), {"--exit-with-child", "--"});
    spec.command = sandbox.command;
    return {};
  }
  spec.entrypoint.push_back("--");
  // The image's own entrypoint + cmd become the helper's child, as Podman would have run them.
  // An entrypoint of [""] means none, as Docker and Podman read it.
  spec.command.clear();
  if (!(image->entrypoint.size() == 1 && image->entrypoint[0].empty())) spec.command = image->entrypoint;
  spec.command.insert(spec.command.end(), image->command.begin(), image->command.end());
  return {};
}

std::optional<std::string> PodmanBackend::helper_startup_failure(const std::string& sandbox_id) const {
  // In the helper's own words when it left them in its directory (which the sandbox can write:
  // bounded, printable text only).
  auto words = read_untrusted_file(helper_directory(sandbox_id) / helper::startup_failure_name, helper::message_max);
  if (!words || words->empty()) return std::nullopt;
  std::string reason;
  for (char c : *words) reason.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  while (!reason.empty() && reason.back() == ' ') reason.pop_back();
  return "the sandbox's helper could not start: " + reason;
}

std::optional<std::string> PodmanBackend::stopped_reason(const Sandbox& sandbox) {
  auto containers = podman_.list_containers(sandbox_labels::sandbox, sandbox.id);
  if (!containers) return std::nullopt;
  for (const auto& container : *containers) {
    if (container.id != sandbox.container_id || !is_stopped(container.state)) continue;
    if (auto reason = helper_startup_failure(sandbox.id)) return reason;
    return "the container stopped while starting (" + container.state + "); " + diagnosis_hint(sandbox);
  }
  return std::nullopt;
}

bool PodmanBackend::main_exit_reported(const std::string& sandbox_id) const {
  if (config_.sandbox_runtime_root.empty() || !is_plain_name(sandbox_id)) return false;
  std::error_code error;
  return std::filesystem::exists(
      std::filesystem::symlink_status(helper_directory(sandbox_id) / helper::main_exit_name, error));
}

Result<std::optional<MainExit>> PodmanBackend::main_exit(const Sandbox& sandbox) {
  if (sandbox.container_id.empty()) return std::optional<MainExit>{};
  auto state = podman_.inspect_container(sandbox.container_id);
  if (!state) return std::unexpected(state.error());
  if (state->running || !is_stopped(state->status)) return std::optional<MainExit>{};
  MainExit exit{.exit_code = state->exit_code, .oom_killed = state->oom_killed};
  if (auto failure = helper_startup_failure(sandbox.id)) exit.helper_failure = std::move(failure);
  // Podman 4.3 with runc on cgroup v1 never reports OOMKilled; the helper's word (the cgroup's own
  // count) is believed together with Podman's 137.
  if (!exit.oom_killed && exit.exit_code == 137) {
    auto bell = read_untrusted_file(helper_directory(sandbox.id) / helper::main_exit_name, 64);
    exit.oom_killed = bell && bell->find(helper::main_exit_oom_mark) != std::string::npos;
  }
  return std::optional<MainExit>{exit};
}

std::filesystem::path PodmanBackend::main_log(const std::string& sandbox_id) const {
  if (config_.sandbox_runtime_root.empty() || !is_plain_name(sandbox_id)) return {};
  return helper_directory(sandbox_id) / helper::main_log_name;
}

void PodmanBackend::release(const std::string& sandbox_id) {
  if (config_.sandbox_runtime_root.empty() || !is_plain_name(sandbox_id)) return;
  std::error_code error;
  // remove_all deletes symlinks the sandbox may have left there; it does not follow them.
  std::filesystem::remove_all(helper_directory(sandbox_id), error);
  if (error) log_error("cannot remove " + helper_directory(sandbox_id).string() + ": " + error.message());
}

void PodmanBackend::release_all_but(const std::set<std::string>& live) {
  if (config_.sandbox_runtime_root.empty()) return;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(config_.sandbox_runtime_root, error)) {
    std::string name = entry.path().filename().string();
    if (!live.contains(name)) release(name);
  }
}

}  // namespace modbox
