// Snapshots: a running sandbox's files saved by its backend as a new image (agent/podman_snapshot.cpp
// for Podman) and registered through the images API, so that a later provision by its image_id
// starts from those files.

#include "agent/log.h"
#include "agent/sandbox_service.h"
#include "common/image_models.h"
#include "common/system.h"

namespace modbox {

std::string snapshot_repository(const std::string& name) {
  std::string slug = repository_component(name);
  return "localhost/modbox-snapshot/" + (slug.empty() ? std::string("snapshot") : slug);
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
  std::string repository = snapshot_repository(request.name), tag = new_uuid();
  std::string reference = repository + ":" + tag;
  log_info("snapshotting sandbox " + sandbox.name + " (" + sandbox.id + ") to " + reference);
  auto started = std::chrono::steady_clock::now();
  if (auto saved = backend_.snapshot(sandbox, repository, tag); !saved) {
    std::lock_guard lock(mutex_);
    if (ended_or_ending(sandbox.id))
      return fail(ErrorKind::conflict, "sandbox '" + sandbox.name + "' was destroyed while its snapshot was taken");
    // Never a 500: what the backend could not do is a conflict with the sandbox's state, or it is down.
    return fail(saved.error().kind == ErrorKind::unavailable ? ErrorKind::unavailable : ErrorKind::conflict,
                "cannot snapshot sandbox '" + sandbox.name + "': " + saved.error().message);
  }
  auto seconds = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  ImageCreateRequest create{.name = request.name,
                            .image = repository,
                            .tag = tag,
                            .description = "Snapshot of sandbox " + sandbox.name + " (" + sandbox.id + "), from " +
                                           sandbox.image + ", taken " + format_timestamp(config_.now()),
                            .memory_mb = sandbox.memory_mb.value_or(limits::image_memory_mb_default),
                            .readiness_port = sandbox.readiness_port};
  auto registered = config_.images->create(sandbox.workspace_id, create);
  if (!registered) {
    // The name was taken while the copy ran: nothing refers to the copy, so it goes.
    if (auto removed = backend_.remove_snapshot(reference); !removed) log_error(removed.error().message);
    return std::unexpected(registered.error());
  }
  log_info("snapshot of sandbox " + sandbox.name + " is image '" + registered->name + "' (" + registered->id + ", " +
           reference + "), copied in " + describe_duration(seconds));
  return registered;
}

}  // namespace modbox
