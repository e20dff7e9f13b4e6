#include "agent/image_build.h"

#include <chrono>

#include "agent/log.h"
#include "common/image_models.h"
#include "common/system.h"
#include "common/tar_archive.h"

namespace modbox {

namespace {
/// How many lines of a failed step's output its error carries.
constexpr std::size_t failure_lines_max = 20;
}  // namespace

std::string build_repository(const std::string& name) {
  std::string slug = repository_component(name);
  return "localhost/modbox-build/" + (slug.empty() ? std::string("image") : slug);
}

void BuildFailure::add_line(std::string_view line) {
  if (line.starts_with("STEP ")) {
    step_ = std::string(line);
    step_output_.clear();
    return;
  }
  if (step_.empty() || line.empty()) return;
  step_output_.emplace_back(line);
  if (step_output_.size() > failure_lines_max) step_output_.erase(step_output_.begin());
}

std::string BuildFailure::describe(const std::string& reason) const {
  std::string sentence =
      step_.empty() ? "the build failed: " + reason : "the build failed at " + step_ + " (" + reason + ")";
  if (reason.find("image not known") != std::string::npos)
    sentence +=
        "; FROM must name an image in this host's Podman storage (modbox images list, podman images): "
        "builds pull nothing";
  if (!step_output_.empty()) {
    sentence += "; its last output:";
    for (const auto& line : step_output_) sentence += "\n" + line;
  }
  return sentence;
}

Result<SandboxImage> ImageBuildService::build(const std::optional<std::string>& workspace,
                                              const ImageBuildRequest& request,
                                              const std::function<bool(std::string_view line)>& on_output) {
  // Before the build, which can take minutes: a name that is taken would only be refused after it.
  if (auto free = images_.check_name_free(workspace, request.image.name); !free) return std::unexpected(free.error());
  BuildOptions options{.context_file = request.context_file,
                       .containerfile = request.file,
                       .reference = build_repository(request.image.name) + ":" + new_uuid()};
  if (request.containerfile) {
    // An entry in front of the uploaded tar: a reader of the concatenation sees it, then the context.
    options.context_prefix = tar_file_entry(build_containerfile_entry, *request.containerfile);
    options.containerfile = build_containerfile_entry;
  }
  if (request.context_file.empty()) options.context_prefix += tar_end();
  log_info("building " + options.reference + " for image '" + request.image.name + "'");
  auto started = std::chrono::steady_clock::now();
  BuildFailure failure;
  auto built = podman_.build_image(options, [&](std::string_view line) {
    failure.add_line(line);
    return on_output(line);
  });
  if (!built) {
    // Nothing should be left (one working container, removed), but a tag must never outlive a failure.
    if (auto removed = podman_.remove_image(options.reference); !removed) log_error(removed.error().message);
    if (built.error().kind != ErrorKind::bad_request) return std::unexpected(built.error());
    log_info("the build of " + options.reference + " failed: " + built.error().message);
    return fail(ErrorKind::bad_request, failure.describe(built.error().message));
  }
  auto seconds = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  ImageCreateRequest create = request.image;
  std::size_t colon = options.reference.rfind(':');
  create.image = options.reference.substr(0, colon);
  create.tag = options.reference.substr(colon + 1);
  create.registry_id.reset();
  auto registered = images_.create(workspace, create);
  if (!registered) {
    // The name was taken while the build ran: nothing refers to the image, so it goes.
    if (auto removed = podman_.remove_image(options.reference); !removed) log_error(removed.error().message);
    return std::unexpected(registered.error());
  }
  log_info("built image '" + registered->name + "' (" + registered->id + ", " + options.reference + ") in " +
           describe_duration(seconds));
  return registered;
}

}  // namespace modbox
