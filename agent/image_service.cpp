#include "agent/image_service.h"

#include <algorithm>

#include "agent/log.h"

namespace modbox {

const std::vector<BuiltinImage>& builtin_images() {
  // Fixed ids: a script or an SDK may keep an image_id of a default across agents and machines.
  static const std::vector<BuiltinImage> images = {
      {"46e5ebb3-953e-4ab0-97d9-d5df69c87a82", "sandbox-lite", "modbox/sandbox-lite",
       "Bash, coreutils, Python 3 and procps on Debian bookworm: a small general-purpose sandbox "
       "(exec and files, no desktop). The default for provisioning.",
       std::nullopt},
      {"6ad94770-100a-4342-b306-b852b2167ac8", "code-exec", "modbox/code-exec",
       "Python, Node.js, Go, Bash — for code execution (Debian bookworm packages: Python 3.11, Node.js 18, Go 1.19).",
       std::nullopt},
      {"8d0f3c9e-5b2a-4e47-9a61-2f4c7d1e0b53", "sandbox", "modbox/sandbox",
       "The full desktop sandbox (seed 001) on Debian bookworm rather than the seed's Ubuntu 22.04: Xvfb "
       "1920x1080 with openbox, Chromium with CDP at /cdp/ and /devtools/, noVNC at /vnc/, the browser MCP "
       "server (@playwright/mcp) at /mcp/cdp/, nginx on 8080, run by supervisord; plus Python, Node.js, git "
       "and curl.",
       8080},
      {"cae2749d-a22c-43d7-8d5c-b6a9d17812bc", "ubuntu", "modbox/ubuntu",
       "Bare Ubuntu 24.04 (noble) — for custom workloads. Bootstrapped from archive.ubuntu.com.", std::nullopt},
  };
  return images;
}

namespace {

std::string describe(const SandboxImage& image) { return "image '" + image.name + "' (" + image.id + ")"; }

bool visible_to(const std::optional<std::string>& owner, const ImageService::Workspace& workspace) {
  return !workspace || !owner || owner == workspace;
}

FieldError registry_error(const std::string& message) {
  return FieldError{{"body", "registry_id"}, "Value error, " + message, "value_error"};
}

}  // namespace

ImageService::ImageService(RecordStore images, RecordStore registries, std::function<TimePoint()> now)
    : image_store_(std::move(images)), registry_store_(std::move(registries)), now_(std::move(now)) {}

Result<void> ImageService::load() {
  auto image_records = image_store_.load_all([](const StoredRecord& record) {
    auto image = image_record_from_json(record.text);
    return image.has_value() && image->id == record.id;
  });
  auto registry_records = registry_store_.load_all([](const StoredRecord& record) {
    auto registry = registry_record_from_json(record.text);
    return registry.has_value() && registry->id == record.id;
  });
  std::lock_guard lock(mutex_);
  for (const auto& record : image_records) {
    auto image = image_record_from_json(record.text);
    images_[image->id] = std::move(*image);
  }
  for (const auto& record : registry_records) {
    auto registry = registry_record_from_json(record.text);
    registries_[registry->id] = std::move(*registry);
  }

  // The built-in images: created on first start, refreshed when this version describes them differently,
  // and dropped when this version no longer has them.
  std::map<std::string, const BuiltinImage*> wanted;
  for (const auto& builtin : builtin_images()) wanted[builtin.id] = &builtin;
  for (auto it = images_.begin(); it != images_.end();) {
    if (it->second.builtin && !wanted.contains(it->first)) {
      if (auto removed = image_store_.remove(it->first); !removed) return std::unexpected(removed.error());
      it = images_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& builtin : builtin_images()) {
    SandboxImage image;
    auto existing = images_.find(builtin.id);
    if (existing != images_.end()) image = existing->second;
    else image.created_at = image.updated_at = now_();
    SandboxImage before = image;
    image.id = builtin.id;
    image.name = builtin.display_name;
    image.image = "modbox/" + builtin.name;
    image.tag = "latest";
    image.description = builtin.description;
    image.enabled = true;
    image.is_default = true;
    image.readiness_port = builtin.readiness_port;
    image.workspace_id.reset();
    image.registry_id.reset();
    image.builtin = true;
    if (existing != images_.end() && image_record_to_json(image) == image_record_to_json(before)) continue;
    if (existing != images_.end()) image.updated_at = now_();
    if (auto stored = persist(image); !stored) return std::unexpected(stored.error());
    images_[image.id] = image;
  }
  log_info("loaded " + std::to_string(images_.size()) + " images (" + std::to_string(builtin_images().size()) +
           " built in) and " + std::to_string(registries_.size()) + " registry credentials");
  return {};
}

Result<void> ImageService::persist(const SandboxImage& image) {
  if (auto stored = image_store_.put(image.id, image_record_to_json(image)); !stored)
    return std::unexpected(with_context(stored.error(), "saving " + describe(image)));
  return {};
}

SandboxImage ImageService::with_registry_name(SandboxImage image) const {
  image.registry_name.reset();
  if (image.registry_id)
    if (auto it = registries_.find(*image.registry_id); it != registries_.end()) image.registry_name = it->second.name;
  return image;
}

const SandboxImage* ImageService::find_visible(const Workspace& workspace, const std::string& id) const {
  auto it = images_.find(id);
  if (it == images_.end() || !visible_to(it->second.workspace_id, workspace)) return nullptr;
  return &it->second;
}

Result<SandboxImage*> ImageService::find_writable(const Workspace& workspace, const std::string& id) {
  auto it = images_.find(id);
  if (it == images_.end() || !visible_to(it->second.workspace_id, workspace))
    return fail(ErrorKind::not_found, "no image with id '" + id + "'" + (workspace ? " in this workspace" : ""));
  SandboxImage& image = it->second;
  if (image.builtin)
    return fail(ErrorKind::forbidden, "'" + image.name + "' is a built-in default image: it cannot be changed or "
                                      "deleted; register your own image (POST /sandbox-images) instead");
  if (workspace && !image.workspace_id)
    return fail(ErrorKind::forbidden, describe(image) + " is global (workspace_id null): a workspace cannot change "
                                      "or delete it, only the agent's owner can (requests without X-Workspace-Id)");
  return &image;
}

Result<void> ImageService::check_registry_use(const SandboxImage& image) const {
  if (!image.registry_id) return {};
  auto it = registries_.find(*image.registry_id);
  if (it == registries_.end() || it->second.workspace_id != image.workspace_id)
    return fail_validation({registry_error("no registry credential with id '" + *image.registry_id + "' in " +
                                           (image.workspace_id ? "this workspace" : "the global scope"))});
  std::string host = registry_host_of(image.image);
  if (host != it->second.server)
    return fail_validation({registry_error("registry credential '" + it->second.name + "' is for " + it->second.server +
                                           ", but " + image.image + " is pulled from " + host +
                                           " (credentials are only sent to their own server)")});
  return {};
}

Result<SandboxImage> ImageService::create(const Workspace& workspace, const ImageCreateRequest& request) {
  SandboxImage image;
  image.id = new_uuid();
  image.name = request.name;
  image.image = request.image;
  image.tag = request.tag;
  image.description = request.description;
  image.enabled = request.enabled;
  image.is_default = request.is_default;
  image.memory_mb = request.memory_mb;
  image.readiness_port = request.readiness_port;
  image.ttl_seconds = request.ttl_seconds;
  image.workspace_id = workspace;
  image.registry_id = request.registry_id;
  image.created_at = image.updated_at = now_();
  std::lock_guard lock(mutex_);
  if (auto allowed = check_registry_use(image); !allowed) return std::unexpected(allowed.error());
  if (auto free = check_name_free_locked(workspace, image.name, ""); !free) return std::unexpected(free.error());
  if (auto stored = persist(image); !stored) return std::unexpected(stored.error());
  images_[image.id] = image;
  log_info("registered " + describe(image) + ": " + image_reference(image) +
           (workspace ? " in workspace " + *workspace : " (global)"));
  return with_registry_name(image);
}

Result<void> ImageService::check_name_free(const Workspace& workspace, const std::string& name) const {
  std::lock_guard lock(mutex_);
  return check_name_free_locked(workspace, name, "");
}

Result<void> ImageService::check_name_free_locked(const Workspace& workspace, const std::string& name,
                                                  const std::string& except) const {
  for (const auto& [id, image] : images_)
    if (id != except && image.name == name && image.workspace_id == workspace)
      return fail(ErrorKind::conflict, "an image called '" + name + "' exists already (" + image.id +
                                           (image.workspace_id ? " in this workspace" : ", global") +
                                           "); choose another name");
  return {};
}

std::vector<SandboxImage> ImageService::list(const Workspace& workspace, bool enabled_only) const {
  std::vector<SandboxImage> result;
  std::lock_guard lock(mutex_);
  for (const auto& [id, image] : images_)
    if (visible_to(image.workspace_id, workspace) && (!enabled_only || image.enabled))
      result.push_back(with_registry_name(image));
  // The built-in images first, in their table's order (sandbox-lite, the default, leads); then by age.
  auto rank = [](const SandboxImage& image) {
    const auto& builtins = builtin_images();
    for (std::size_t i = 0; i < builtins.size(); ++i)
      if (builtins[i].id == image.id) return i;
    return builtins.size();
  };
  std::stable_sort(result.begin(), result.end(), [&](const SandboxImage& a, const SandboxImage& b) {
    if (rank(a) != rank(b)) return rank(a) < rank(b);
    return a.created_at < b.created_at;
  });
  return result;
}

Result<SandboxImage> ImageService::get(const Workspace& workspace, const std::string& id) const {
  std::lock_guard lock(mutex_);
  if (const SandboxImage* image = find_visible(workspace, id)) return with_registry_name(*image);
  return fail(ErrorKind::not_found, "no image with id '" + id + "'" + (workspace ? " in this workspace" : ""));
}

Result<SandboxImage> ImageService::update(const Workspace& workspace, const std::string& id,
                                          const ImageUpdateRequest& request) {
  std::lock_guard lock(mutex_);
  auto found = find_writable(workspace, id);
  if (!found) return std::unexpected(found.error());
  SandboxImage updated = **found;
  if (request.name) updated.name = *request.name;
  if (request.image) updated.image = *request.image;
  if (request.tag) updated.tag = *request.tag;
  if (request.description) updated.description = *request.description;
  if (request.enabled) updated.enabled = *request.enabled;
  if (request.is_default) updated.is_default = *request.is_default;
  if (request.memory_mb) updated.memory_mb = *request.memory_mb;
  if (request.readiness_port) updated.readiness_port = *request.readiness_port;
  if (request.ttl_seconds) updated.ttl_seconds = *request.ttl_seconds;
  if (request.registry_id) updated.registry_id = *request.registry_id;
  if (auto allowed = check_registry_use(updated); !allowed) return std::unexpected(allowed.error());
  if (request.name)
    if (auto free = check_name_free_locked(updated.workspace_id, updated.name, updated.id); !free)
      return std::unexpected(free.error());
  if (image_record_to_json(updated) == image_record_to_json(**found)) return with_registry_name(updated);
  updated.updated_at = now_();
  if (auto stored = persist(updated); !stored) return std::unexpected(stored.error());
  **found = updated;
  log_info("updated " + describe(updated));
  return with_registry_name(updated);
}

Result<SandboxImage> ImageService::remove(const Workspace& workspace, const std::string& id) {
  std::lock_guard lock(mutex_);
  auto found = find_writable(workspace, id);
  if (!found) return std::unexpected(found.error());
  SandboxImage removed = with_registry_name(**found);
  if (auto deleted = image_store_.remove(id); !deleted) return std::unexpected(deleted.error());
  images_.erase(id);
  log_info("deleted " + describe(removed));
  return removed;
}

Result<Registry> ImageService::create_registry(const Workspace& workspace, const RegistryCreateRequest& request) {
  Registry registry;
  registry.id = new_uuid();
  registry.name = request.name;
  registry.server = request.server;
  registry.username = request.username;
  registry.password = request.password;
  registry.token = request.token;
  registry.insecure = request.insecure;
  registry.workspace_id = workspace;
  registry.created_at = registry.updated_at = now_();
  std::lock_guard lock(mutex_);
  if (auto stored = registry_store_.put(registry.id, registry_record_to_json(registry)); !stored)
    return std::unexpected(with_context(stored.error(), "saving registry credential '" + registry.name + "'"));
  registries_[registry.id] = registry;
  log_info("stored registry credential '" + registry.name + "' (" + registry.id + ") for " + registry.server);
  return registry;
}

std::vector<Registry> ImageService::list_registries(const Workspace& workspace) const {
  std::vector<Registry> result;
  std::lock_guard lock(mutex_);
  for (const auto& [id, registry] : registries_)
    if (!workspace || registry.workspace_id == workspace) result.push_back(registry);
  std::sort(result.begin(), result.end(), [](const Registry& a, const Registry& b) { return a.created_at < b.created_at; });
  return result;
}

Result<Registry> ImageService::get_registry(const Workspace& workspace, const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = registries_.find(id);
  if (it == registries_.end() || (workspace && it->second.workspace_id != workspace))
    return fail(ErrorKind::not_found, "no registry credential with id '" + id + "'");
  return it->second;
}

Result<Registry> ImageService::remove_registry(const Workspace& workspace, const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = registries_.find(id);
  if (it == registries_.end() || (workspace && it->second.workspace_id != workspace))
    return fail(ErrorKind::not_found, "no registry credential with id '" + id + "'");
  std::string users;
  for (const auto& [image_id, image] : images_)
    if (image.registry_id == id) users += (users.empty() ? "" : ", ") + describe(image);
  if (!users.empty())
    return fail(ErrorKind::conflict, "registry credential '" + it->second.name + "' is used by " + users +
                                         "; change their registry_id or delete them first");
  if (auto deleted = registry_store_.remove(id); !deleted) return std::unexpected(deleted.error());
  Registry removed = it->second;
  registries_.erase(it);
  log_info("deleted registry credential '" + removed.name + "' (" + removed.id + ")");
  return removed;
}

const SandboxImage* ImageService::default_for(const Workspace& workspace) const {
  // The workspace's own default, else a default the owner registered globally, else sandbox-lite.
  const SandboxImage* own = nullptr;
  const SandboxImage* global = nullptr;
  const SandboxImage* builtin = nullptr;
  for (const auto& [id, image] : images_) {
    if (!image.enabled || !image.is_default) continue;
    if (image.builtin) {
      if (image.image == std::string("modbox/") + default_builtin_image) builtin = &image;
    } else if (image.workspace_id && image.workspace_id == workspace) {
      if (!own || image.updated_at > own->updated_at) own = &image;
    } else if (!image.workspace_id) {
      if (!global || image.updated_at > global->updated_at) global = &image;
    }
  }
  return own ? own : global ? global : builtin;
}

Result<ResolvedImage> ImageService::resolve(const Workspace& workspace, const std::optional<std::string>& image_id) {
  std::lock_guard lock(mutex_);
  const SandboxImage* image = nullptr;
  if (image_id) {
    image = find_visible(workspace, *image_id);
    if (image == nullptr)
      return fail(ErrorKind::not_found, "no image with id '" + *image_id + "'" + (workspace ? " in this workspace" : "") +
                                            " (GET /sandbox-images lists them; omit image_id for the default)");
    if (!image->enabled)
      return fail(ErrorKind::conflict, describe(*image) + " is disabled, so it cannot be used to provision; enable it "
                                       "with PUT /sandbox-images/" + image->id + " {\"enabled\": true} or choose another image");
  } else {
    image = default_for(workspace);
    if (image == nullptr) return fail(ErrorKind::internal, "no default image is registered");
  }
  return ResolvedImage{.reference = image_reference(*image),
                       .image_id = image->id,
                       .ttl_seconds = image->ttl_seconds,
                       .memory_mb = image->memory_mb,
                       .registry_id = image->registry_id,
                       .readiness_port = image->readiness_port};
}

Result<PullOptions> ImageService::pull_options(const std::string& registry_id) {
  std::lock_guard lock(mutex_);
  auto it = registries_.find(registry_id);
  if (it == registries_.end())
    return fail(ErrorKind::not_found, "registry credential " + registry_id + " was deleted before the image was pulled");
  const Registry& registry = it->second;
  PullOptions options;
  // A token goes in the password field: that is how ghcr.io, GitLab and Docker Hub take access tokens.
  options.auth = RegistryAuth{registry.username.value_or(registry.token ? "token" : ""),
                              registry.password ? *registry.password : registry.token.value_or("")};
  options.tls_verify = !registry_skips_tls_verify(registry);
  return options;
}

}  // namespace modbox
