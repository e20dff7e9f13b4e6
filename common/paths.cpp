#include "common/paths.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace modbox {

namespace {
const char* non_empty_env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}
}  // namespace

AgentPaths AgentPaths::from_environment() {
  AgentPaths paths;
  if (const char* state = non_empty_env("MODBOX_STATE_DIR")) {
    paths.state_dir = state;
  } else if (const char* data_home = non_empty_env("XDG_DATA_HOME")) {
    paths.state_dir = std::filesystem::path(data_home) / "modbox";
  } else {
    const char* home = non_empty_env("HOME");
    paths.state_dir = std::filesystem::path(home != nullptr ? home : "/") / ".local/share/modbox";
  }
  if (const char* runtime = non_empty_env("MODBOX_RUNTIME_DIR")) {
    paths.runtime_dir = runtime;
  } else if (const char* xdg_runtime = non_empty_env("XDG_RUNTIME_DIR")) {
    paths.runtime_dir = std::filesystem::path(xdg_runtime) / "modbox";
  } else {
    paths.runtime_dir = "/tmp/modbox-" + std::to_string(::geteuid());
  }
  return paths;
}

}  // namespace modbox
