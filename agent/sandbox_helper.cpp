// The sandbox lifecycle's part of the in-sandbox helper: mounting it into the container as PID 1,
// waiting for it to answer, and the per-sandbox host directory that holds its socket.

#include <unistd.h>

#include <thread>

#include "agent/log.h"
#include "agent/sandbox_service.h"
#include "common/system.h"

namespace modbox {

namespace {
using Clock = std::chrono::steady_clock;
constexpr std::size_t unix_path_max = 107;  // sizeof(sockaddr_un::sun_path) - 1

/// Sandbox ids are UUIDs; anything else never names a directory to create or delete.
bool is_plain_name(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id.find('/') == std::string::npos;
}

std::string describe(const Sandbox& sandbox) {
  return "sandbox " + sandbox.name + " (" + sandbox.id + ")";
}

}  // namespace

std::optional<std::string> SandboxService::helper_startup_failure(const std::string& sandbox_id) const {
  // The helper's directory is the sandbox's to write in: bounded, printable text only.
  auto words = read_untrusted_file(helper_directory(sandbox_id) / helper::startup_failure_name, helper::message_max);
  if (!words || words->empty()) return std::nullopt;
  std::string reason;
  for (char c : *words) reason.push_back(c >= 0x20 && c < 0x7f ? c : ' ');
  while (!reason.empty() && reason.back() == ' ') reason.pop_back();
  return "the sandbox's helper could not start: " + reason;
}

std::filesystem::path SandboxService::helper_directory(const std::string& sandbox_id) const {
  return config_.sandbox_runtime_root / sandbox_id;
}

std::filesystem::path SandboxService::helper_socket(const std::string& sandbox_id) const {
  return helper_directory(sandbox_id) / helper::socket_name;
}

Result<void> SandboxService::add_helper(const Sandbox& sandbox, ContainerSpec& spec) {
  if (config_.helper_binary.empty() || ::access(config_.helper_binary.c_str(), X_OK) != 0)
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

Result<SandboxService::HelperStart> SandboxService::wait_for_helper(const Sandbox& sandbox) {
  auto started = Clock::now();
  auto deadline = started + config_.helper_ready_timeout;
  auto next_state_check = started + std::chrono::milliseconds(500);
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    auto hello = config_.helpers->ping(helper_socket(sandbox.id), std::chrono::seconds(1));
    if (hello) {
      if (hello->shell.find("bash") == std::string::npos)
        log_info(describe(sandbox) + ": the image has no bash; exec runs commands with " +
                 (hello->shell.empty() ? std::string("no shell at all") : hello->shell));
      return HelperStart::answering;
    }
    // A command that fails at once can end the container before the helper is ever reached.
    if (!sandbox.command.empty() && main_exit_bell_rang(sandbox.id)) return HelperStart::main_exited;
    {
      std::lock_guard lock(mutex_);
      auto it = sandboxes_.find(sandbox.id);
      if (it == sandboxes_.end() || it->second.status != SandboxStatus::provisioning)
        return HelperStart::answering;  // destroyed meanwhile: the caller sees it
    }
    auto now = Clock::now();
    if (now >= deadline)
      return fail(ErrorKind::unavailable,
                  "the sandbox's helper did not answer within " + std::to_string(config_.helper_ready_timeout.count()) +
                      " ms (" + hello.error().message + "); `podman logs " + sandbox.container_id + "` may say why");
    if (now >= next_state_check) {
      // A container that stopped will never answer: fail now rather than at the deadline.
      next_state_check = now + std::chrono::milliseconds(500);
      auto containers = podman_.list_containers(sandbox_labels::sandbox, sandbox.id);
      if (containers)
        for (const auto& container : *containers)
          if (container.id == sandbox.container_id &&
              (container.state == "exited" || container.state == "stopped" || container.state == "dead")) {
            // Why it stopped, in the helper's own words when it left them in its directory.
            if (auto reason = helper_startup_failure(sandbox.id)) return fail(ErrorKind::unavailable, *reason);
            // Stopped with no word from the helper: the command ended it (its bell may be lost).
            if (!sandbox.command.empty()) return HelperStart::main_exited;
            return fail(ErrorKind::unavailable, "the container stopped while starting (" + container.state +
                                                    "); `podman logs " + sandbox.container_id + "` may say why");
          }
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void SandboxService::remove_helper_directory(const std::string& sandbox_id) {
  if (config_.sandbox_runtime_root.empty() || !is_plain_name(sandbox_id)) return;
  // The main process's output stays readable after the sandbox ends.
  save_log(sandbox_id);
  std::error_code error;
  // remove_all deletes symlinks the sandbox may have left there; it does not follow them.
  std::filesystem::remove_all(helper_directory(sandbox_id), error);
  if (error) log_error("cannot remove " + helper_directory(sandbox_id).string() + ": " + error.message());
}

void SandboxService::remove_stale_helper_directories() {
  if (config_.sandbox_runtime_root.empty()) return;
  std::set<std::string> live;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_)
      if (is_live(sandbox.status)) live.insert(id);
  }
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(config_.sandbox_runtime_root, error)) {
    std::string name = entry.path().filename().string();
    if (!live.contains(name)) remove_helper_directory(name);
  }
}

}  // namespace modbox
