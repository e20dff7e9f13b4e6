#pragma once
// Registered images and registry credentials: the `/sandbox-images` and `/registries` resources, with
// workspace scoping, the built-in default images, and the resolution of `image_id` for provisioning.
//
// Scoping: a request with X-Workspace-Id W sees W's images and the global ones (`workspace_id` null) and
// may change only W's. A request without it is the agent's owner: it sees everything, and what it creates
// is global. The built-in defaults are global and read-only for everyone. Registry credentials are never
// shared: W sees only W's, and an image may only use a credential of its own workspace.

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/image_catalog.h"
#include "agent/store.h"
#include "common/image_models.h"
#include "common/registry_models.h"

namespace modbox {

/// One of modbox's default images, built locally from images/NAME.
struct BuiltinImage {
  std::string id;    // stable across agents and versions
  std::string name;  // "sandbox-lite": images/NAME, localhost/modbox/NAME:latest
  std::string display_name;
  std::string description;
  std::optional<int> readiness_port;
};

/// The defaults registered at start, sandbox-lite (the default for provisioning) first.
const std::vector<BuiltinImage>& builtin_images();
inline constexpr const char* default_builtin_image = "sandbox-lite";

class ImageService final : public ImageCatalog {
 public:
  using Workspace = std::optional<std::string>;

  ImageService(RecordStore images, RecordStore registries,
               std::function<TimePoint()> now = [] { return std::chrono::system_clock::now(); });

  /// Loads the records (unreadable ones are set aside) and registers or refreshes the built-in images.
  Result<void> load();

  /// 409 when the name is taken (check_name_free).
  Result<SandboxImage> create(const Workspace& workspace, const ImageCreateRequest& request) override;
  Result<void> check_name_free(const Workspace& workspace, const std::string& name) const override;
  /// Oldest first; the built-in images come first.
  std::vector<SandboxImage> list(const Workspace& workspace, bool enabled_only) const;
  Result<SandboxImage> get(const Workspace& workspace, const std::string& id) const;
  Result<SandboxImage> update(const Workspace& workspace, const std::string& id, const ImageUpdateRequest& request);
  /// Deletes and returns the image as it was.
  Result<SandboxImage> remove(const Workspace& workspace, const std::string& id);

  Result<Registry> create_registry(const Workspace& workspace, const RegistryCreateRequest& request);
  std::vector<Registry> list_registries(const Workspace& workspace) const;
  Result<Registry> get_registry(const Workspace& workspace, const std::string& id) const;
  /// 409 while an image uses it.
  Result<Registry> remove_registry(const Workspace& workspace, const std::string& id);

  Result<ResolvedImage> resolve(const Workspace& workspace, const std::optional<std::string>& image_id) override;
  Result<PullOptions> pull_options(const std::string& registry_id) override;

 private:
  /// check_name_free, with mutex_ held; `except` is the id of an image being renamed.
  Result<void> check_name_free_locked(const Workspace& workspace, const std::string& name,
                                      const std::string& except) const;
  const SandboxImage* find_visible(const Workspace& workspace, const std::string& id) const;
  Result<SandboxImage*> find_writable(const Workspace& workspace, const std::string& id);
  /// Checks that `image` may use its registry_id (same workspace, same server); a 422 on registry_id.
  Result<void> check_registry_use(const SandboxImage& image) const;
  SandboxImage with_registry_name(SandboxImage image) const;
  Result<void> persist(const SandboxImage& image);
  const SandboxImage* default_for(const Workspace& workspace) const;

  RecordStore image_store_;
  RecordStore registry_store_;
  std::function<TimePoint()> now_;
  mutable std::mutex mutex_;
  std::map<std::string, SandboxImage> images_;
  std::map<std::string, Registry> registries_;
};

}  // namespace modbox
