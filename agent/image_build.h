#pragma once
// Your own image from a Containerfile (`POST /sandbox-images/build`, `modbox images create --file`):
// Podman builds it from a context tar on top of any image this host has (no registry is pulled
// from), then it is registered like `POST /sandbox-images`. A failed build registers nothing and
// leaves no image.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "agent/image_catalog.h"
#include "agent/podman.h"
#include "common/image_models.h"

namespace modbox {

/// Where a Containerfile sent as a part of its own is put in the context Podman gets.
inline constexpr const char* build_containerfile_entry = ".modbox-Containerfile";

struct ImageBuildRequest {
  /// The registration's fields; `image` and `tag` are the build's (build_repository, a new uuid).
  ImageCreateRequest image;
  /// The Containerfile's text when sent apart from the context; else `file` is read from the context.
  std::optional<std::string> containerfile;
  std::string file = "Containerfile";
  /// The context tar as uploaded (plain or gzip-compressed); empty: none.
  std::filesystem::path context_file;
};

/// `localhost/modbox-build/SLUG`: SLUG from the image's name, as a repository path component.
std::string build_repository(const std::string& name);

/// The sentence of a failed build: the step that failed, Podman's reason and the step's last lines
/// of output. Fed the build's output line by line.
class BuildFailure {
 public:
  void add_line(std::string_view line);
  std::string describe(const std::string& reason) const;

 private:
  std::string step_;
  std::vector<std::string> step_output_;  // the last lines since step_
};

class ImageBuildService {
 public:
  ImageBuildService(ImageCatalog& images, Podman& podman) : images_(images), podman_(podman) {}

  /// Builds and registers the image in `workspace`: its SandboxImageDetail. Each line of the build's
  /// output goes to `on_output` as it comes (false cancels the build). A name that is taken is 409
  /// before anything is built; a failed build is bad_request (400) naming the step and its output.
  Result<SandboxImage> build(const std::optional<std::string>& workspace, const ImageBuildRequest& request,
                             const std::function<bool(std::string_view line)>& on_output);

 private:
  ImageCatalog& images_;
  Podman& podman_;
};

}  // namespace modbox
