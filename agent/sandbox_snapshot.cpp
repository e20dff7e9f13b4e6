// Snapshots: a running sandbox's filesystem committed to a new image (libpod commit) and registered
// through the images API, so that a later provision by its image_id starts from those files.
//
// The commit copies the container's writable layer, and its config as Podman derives it from the
// container: the helper as entrypoint, root as user, the sandbox's env_vars, this agent's labels.
// `changes` put back what the image itself said (entrypoint, cmd, user, the values of the env vars
// the sandbox overrode) and blank the rest, so the new image runs like the old one under the next
// sandbox's helper and carries no secret of this one. The helper and /run/modbox are bind mounts:
// their contents are never in the layer (only the empty mount points are).

#include "agent/log.h"
#include "agent/sandbox_service.h"

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

std::string snapshot_repository(const std::string& name) {
  // An OCI path component: lower-case letters and digits, runs of anything else as one '-'.
  std::string slug;
  for (char c : name) {
    char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if ((lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9'))
      slug += lower;
    else if (!slug.empty() && slug.back() != '-')
      slug += '-';
    if (slug.size() >= 64) break;
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  return "localhost/modbox-snapshot/" + (slug.empty() ? std::string("snapshot") : slug);
}

std::vector<std::string> snapshot_changes(const ImageConfig& image,
                                          const std::map<std::string, std::string>& env_vars) {
  std::vector<std::string> changes = {"ENTRYPOINT " + json_array(image.entrypoint), "CMD " + json_array(image.command)};
  if (!image.user.empty()) changes.push_back("USER " + image.user);
  // Podman's changes can set a variable but not remove one: a variable of the sandbox's own keeps its
  // name with an empty value, one the sandbox overrode gets the image's value back.
  for (const auto& [name, value] : env_vars) {
    std::string original;
    for (const auto& entry : image.env)
      if (entry.starts_with(name + "=")) original = entry.substr(name.size() + 1);
    changes.push_back("ENV " + name + "=" + original);
  }
  // A container of the new image started outside modbox must not look like one of this agent's sandboxes.
  for (const char* label :
       {sandbox_labels::agent, sandbox_labels::sandbox, sandbox_labels::task, sandbox_labels::workspace})
    changes.push_back(std::string("LABEL ") + label + "=");
  return changes;
}

Result<SandboxImage> SandboxService::snapshot(const Workspace& workspace, const SnapshotRequest& request) {
  if (config_.images == nullptr)
    return fail(ErrorKind::unavailable, "snapshots need the images API, and this agent runs without one");
  Sandbox sandbox;
  {
    std::lock_guard lock(mutex_);
    const Sandbox* found = find_by_task(workspace, request.task_id);
    if (found == nullptr) return fail(ErrorKind::not_found, "no sandbox with task_id '" + request.task_id + "'");
    if (found->status != SandboxStatus::running || found->container_id.empty())
      return fail(ErrorKind::conflict, "sandbox '" + found->name + "' is " + std::string(to_string(found->status)) +
                                           ": only a running sandbox can be snapshotted");
    sandbox = *found;
  }
  // Before the copy, which can take a minute: a name that is taken would only be refused after it.
  if (auto free = config_.images->check_name_free(sandbox.workspace_id, request.name); !free)
    return std::unexpected(free.error());
  auto image = podman_.image_config(sandbox.image);
  if (!image)
    return fail(image.error().kind == ErrorKind::unavailable ? ErrorKind::unavailable : ErrorKind::conflict,
                "cannot snapshot sandbox '" + sandbox.name + "': reading its image " + sandbox.image + " failed (" +
                    image.error().message + ")");
  CommitOptions options{.repository = snapshot_repository(request.name),
                        .tag = new_uuid(),
                        .changes = snapshot_changes(*image, sandbox.env_vars)};
  std::string reference = options.repository + ":" + options.tag;
  // Not paused: rootless containers on cgroup v1 cannot be, and the sandbox keeps serving meanwhile.
  log_info("snapshotting sandbox " + sandbox.name + " (" + sandbox.id + ") to " + reference);
  auto started = std::chrono::steady_clock::now();
  auto committed = podman_.commit_container(sandbox.container_id, options);
  if (!committed) {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(sandbox.id);
    if (it == sandboxes_.end() || it->second.status != SandboxStatus::running)
      return fail(ErrorKind::conflict, "sandbox '" + sandbox.name + "' was destroyed while its snapshot was taken");
    return fail(committed.error().kind == ErrorKind::unavailable ? ErrorKind::unavailable : ErrorKind::conflict,
                "cannot snapshot sandbox '" + sandbox.name + "': " + committed.error().message);
  }
  auto seconds = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  ImageCreateRequest create{.name = request.name,
                            .image = options.repository,
                            .tag = options.tag,
                            .description = "Snapshot of sandbox " + sandbox.name + " (" + sandbox.id + "), from " +
                                           sandbox.image + ", taken " + format_timestamp(config_.now()),
                            .memory_mb = sandbox.memory_mb.value_or(limits::image_memory_mb_default),
                            .readiness_port = sandbox.readiness_port};
  auto registered = config_.images->create(sandbox.workspace_id, create);
  if (!registered) {
    // The name was taken while the copy ran: nothing refers to the copy, so it goes.
    if (auto removed = podman_.remove_image(reference); !removed) log_error(removed.error().message);
    return std::unexpected(registered.error());
  }
  log_info("snapshot of sandbox " + sandbox.name + " is image '" + registered->name + "' (" + registered->id + ", " +
           reference + ", podman image " + committed->substr(0, 12) + "), copied in " + describe_duration(seconds));
  return registered;
}

}  // namespace modbox
