#pragma once
// Where an agent keeps its state and its sockets; the CLI finds the agent the same way.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace modbox {

struct AgentPaths {
  std::filesystem::path state_dir;    // durable: records, token
  std::filesystem::path runtime_dir;  // volatile: sockets, pid, lock, log

  /// $MODBOX_STATE_DIR or $XDG_DATA_HOME/modbox or ~/.local/share/modbox; $MODBOX_RUNTIME_DIR or
  /// $XDG_RUNTIME_DIR/modbox or /tmp/modbox-<uid>.
  static AgentPaths from_environment();
  /// The same rule over other variables: `variable(name)` is a variable's value, nullopt when unset.
  static AgentPaths from_variables(const std::function<std::optional<std::string>(const char*)>& variable);

  std::filesystem::path sandboxes_dir() const { return state_dir / "sandboxes"; }
  std::filesystem::path images_dir() const { return state_dir / "images"; }
  std::filesystem::path registries_dir() const { return state_dir / "registries"; }  // 0600 records with secrets
  std::filesystem::path pools_dir() const { return state_dir / "pools"; }  // warm pool sizes, a record per image
  std::filesystem::path build_contexts_dir() const { return state_dir / "build-contexts"; }  // uploads being built
  std::filesystem::path token_file() const { return state_dir / "token"; }
  std::filesystem::path agent_id_file() const { return state_dir / "agent-id"; }
  std::filesystem::path agent_socket() const { return runtime_dir / "agent.sock"; }
  std::filesystem::path podman_socket() const { return runtime_dir / "podman.sock"; }
  std::filesystem::path containers_conf() const { return runtime_dir / "containers.conf"; }
  // In the state directory: one agent per state, whatever runtime directory it is given.
  std::filesystem::path lock_file() const { return state_dir / "agent.lock"; }
  std::filesystem::path pid_file() const { return runtime_dir / "agent.pid"; }
  std::filesystem::path log_file() const { return runtime_dir / "agent.log"; }
  std::filesystem::path podman_log_file() const { return runtime_dir / "podman.log"; }
  /// One directory per sandbox, mounted at /run/modbox inside it: the helper's socket.
  std::filesystem::path sandbox_runtime_dirs() const { return runtime_dir / "sandboxes"; }
};

/// Where the default images' sources (images/build and a directory per image) are: `configured` when
/// set, else $MODBOX_IMAGES_DIR, else PREFIX/share/modbox/images beside the installed binary, else the
/// source tree the binary was built from. Nothing when none has an executable `build`.
std::optional<std::filesystem::path> find_images_dir(const std::string& configured = "");

}  // namespace modbox
