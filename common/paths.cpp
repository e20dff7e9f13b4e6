#include "common/paths.h"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

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

std::optional<std::filesystem::path> find_images_dir(const std::string& configured) {
  std::vector<std::filesystem::path> candidates;
  if (!configured.empty()) candidates.emplace_back(configured);
  if (const char* from_environment = non_empty_env("MODBOX_IMAGES_DIR")) candidates.emplace_back(from_environment);
#ifdef MODBOX_SOURCE_IMAGES_DIR
  candidates.emplace_back(MODBOX_SOURCE_IMAGES_DIR);
#endif
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) candidates.push_back(self.parent_path().parent_path() / "share/modbox/images");
  for (const auto& candidate : candidates)
    if (::access((candidate / "build").c_str(), X_OK) == 0) return candidate;
  return std::nullopt;
}

}  // namespace modbox
