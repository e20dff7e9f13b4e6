// The Podman side of snapshots: a sandbox's container committed (libpod commit) to a new image that
// runs like the sandbox's own image under the next sandbox's helper.
//
// Podman derives the commit's config from the container's: the helper as entrypoint, root as user,
// the sandbox's env_vars, this agent's labels. The `changes` put back what the image itself said and
// blank the rest. The helper and /run/modbox are bind mounts: their contents are never in the layer
// (only their empty mount points are).

#include "agent/log.h"
#include "agent/podman_backend.h"

namespace modbox {

namespace {

/// `text` as a JSON string.
std::string json_string(const std::string& text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string quoted = "\"";
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (byte < 0x20) {
      quoted += "\\u00";
      quoted += hex[byte >> 4];
      quoted += hex[byte & 15];
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

std::string json_array(const std::vector<std::string>& items) {
  std::string array = "[";
  for (const auto& item : items) array += (array.size() > 1 ? ", " : "") + json_string(item);
  return array + "]";
}

}  // namespace

std::vector<std::string> snapshot_changes(const ImageConfig& image,
                                          const std::map<std::string, std::string>& env_vars) {
  std::vector<std::string> changes = {"ENTRYPOINT " + json_array(image.entrypoint), "CMD " + json_array(image.command)};
  if (!image.user.empty()) changes.push_back("USER " + image.user);
  for (const auto& [name, value] : env_vars) {
    std::string original;
    for (const auto& entry : image.env)
      if (entry.starts_with(name + "=")) original = entry.substr(name.size() + 1);
    changes.push_back("ENV " + name + "=" + original);
  }
  for (const char* label :
       {sandbox_labels::agent, sandbox_labels::sandbox, sandbox_labels::task, sandbox_labels::workspace})
    changes.push_back(std::string("LABEL ") + label + "=");
  return changes;
}

std::vector<std::string> PodmanBackend::image_command(const Sandbox& sandbox) {
  auto image = podman_.image_config(sandbox.image);
  if (!image) {
    log_error("cannot read the entrypoint of " + sandbox.image + ": " + image.error().message);
    return {};
  }
  std::vector<std::string> command = image->entrypoint;
  command.insert(command.end(), image->command.begin(), image->command.end());
  return command;
}

Result<void> PodmanBackend::snapshot(const Sandbox& sandbox, const std::string& repository, const std::string& tag) {
  auto image = podman_.image_config(sandbox.image);
  if (!image)
    return std::unexpected(with_context(image.error(), "reading the configuration of image " + sandbox.image));
  CommitOptions options{.repository = repository, .tag = tag, .changes = snapshot_changes(*image, sandbox.env_vars)};
  auto committed = podman_.commit_container(sandbox.container_id, options);
  if (!committed) return std::unexpected(committed.error());
  log_info("committed container " + sandbox.container_id.substr(0, 12) + " of sandbox " + sandbox.name + " to " +
           repository + ":" + tag + " (podman image " + committed->substr(0, 12) + ")");
  return {};
}

}  // namespace modbox
