#pragma once
// Builds modbox's default images by running images/build, the same script `modbox images build` and the
// test suite run. Builds are the one place the agent runs a program for Podman work: a default image
// starts from a Debian rootfs that mmdebstrap bootstraps on the host (with the host's CA bundle and
// proxy), which the libpod API has no equivalent for.

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/image_catalog.h"

namespace modbox {

class ScriptImageBuilder final : public ImageBuilder {
 public:
  /// `images_dir` holds `build` and one directory per image; each build's output goes to
  /// `log_dir`/build-NAME.log.
  ScriptImageBuilder(std::filesystem::path images_dir, std::filesystem::path log_dir, std::vector<std::string> names);

  std::optional<std::string> buildable(const std::string& reference) const override;
  Result<void> build(const std::string& name) override;

 private:
  std::filesystem::path images_dir_;
  std::filesystem::path log_dir_;
  std::vector<std::string> names_;
  std::mutex build_mutex_;  // one build at a time: they compete for the same CPU, network and layers
};

}  // namespace modbox
