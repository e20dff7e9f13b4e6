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
  return from_variables([](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
  });
}

AgentPaths AgentPaths::from_variables(const std::function<std::optional<std::string>(const char*)>& variable) {
  auto non_empty = [&variable](const char* name) {
    auto value = variable(name);
    return value && !value->empty() ? value : std::nullopt;
  };
  AgentPaths paths;
  if (auto state = non_empty("MODBOX_STATE_DIR")) {
    paths.state_dir = *state;
  } else if (auto data_home = non_empty("XDG_DATA_HOME")) {
    paths.state_dir = std::filesystem::path(*data_home) / "modbox";
  } else {
    paths.state_dir = std::filesystem::path(non_empty("HOME").value_or("/")) / ".local/share/modbox";
  }
  if (auto runtime = non_empty("MODBOX_RUNTIME_DIR")) {
    paths.runtime_dir = *runtime;
  } else if (auto xdg_runtime = non_empty("XDG_RUNTIME_DIR")) {
    paths.runtime_dir = std::filesystem::path(*xdg_runtime) / "modbox";
  } else {
    paths.runtime_dir = "/tmp/modbox-" + std::to_string(::geteuid());
  }
  return paths;
}

std::optional<std::filesystem::path> find_images_dir(const std::string& configured) {
  std::vector<std::filesystem::path> candidates;
  if (!configured.empty()) candidates.emplace_back(configured);
  if (const char* from_environment = non_empty_env("MODBOX_IMAGES_DIR")) candidates.emplace_back(from_environment);
  // An installed binary takes the images installed with it, even when the tree it was built from is still
  // around; a binary in build/bin finds no share/ beside it and takes its source tree's.
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) candidates.push_back(self.parent_path().parent_path() / "share/modbox/images");
#ifdef MODBOX_SOURCE_IMAGES_DIR
  candidates.emplace_back(MODBOX_SOURCE_IMAGES_DIR);
#endif
  for (const auto& candidate : candidates)
    if (::access((candidate / "build").c_str(), X_OK) == 0) return candidate;
  return std::nullopt;
}

}  // namespace modbox
