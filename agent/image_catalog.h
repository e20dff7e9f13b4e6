#pragma once
// What the sandbox lifecycle needs from the images: resolving `image_id` (or the workspace default) to
// what Podman runs, the credentials to pull it with, and building a default image that is not built yet.
// Interfaces, so SandboxService can be tested with fakes and ImageService knows nothing of sandboxes.

#include <optional>
#include <string>

#include "agent/podman.h"
#include "common/image_models.h"
#include "common/result.h"

namespace modbox {

/// The settings an image gives a sandbox.
struct ResolvedImage {
  std::string reference;                    // what Podman runs: "localhost/modbox/sandbox-lite:latest"
  std::optional<std::string> image_id;
  std::optional<int> ttl_seconds;           // the sandbox's TTL when the request gives none
  std::optional<int> memory_mb;             // the container's memory limit, where cgroups can enforce it
  std::optional<std::string> registry_id;   // pull with this credential when the image is missing
  std::optional<int> readiness_port;        // the port the sandbox URL's web paths go to (proxied_port())
};

class ImageCatalog {
 public:
  virtual ~ImageCatalog() = default;
  /// The image `image_id` names in `workspace` (404 unknown, 409 disabled), or the workspace's default
  /// image when `image_id` is empty.
  virtual Result<ResolvedImage> resolve(const std::optional<std::string>& workspace,
                                        const std::optional<std::string>& image_id) = 0;
  /// How to pull with registry credential `registry_id` (404 when it was deleted). Holds the secret.
  virtual Result<PullOptions> pull_options(const std::string& registry_id) = 0;
  /// 409 when another image of `workspace` (of the global scope: nullopt) is called `name`: within a
  /// scope a name names one image.
  virtual Result<void> check_name_free(const std::optional<std::string>& workspace, const std::string& name) const = 0;
  /// Registers an image in `workspace` (global when nullopt), as `POST /sandbox-images` does.
  virtual Result<SandboxImage> create(const std::optional<std::string>& workspace,
                                      const ImageCreateRequest& request) = 0;
};

class ImageBuilder {
 public:
  virtual ~ImageBuilder() = default;
  /// The default image's name ("code-exec") when `reference` is one this builder can build.
  virtual std::optional<std::string> buildable(const std::string& reference) const = 0;
  /// Builds the default image `name` into Podman storage; blocks until done (minutes for large images).
  /// Concurrent calls for one name wait for the same build.
  virtual Result<void> build(const std::string& name) = 0;
};

}  // namespace modbox
