// Route tables of /sandbox-images (seeds/000, seeds/003) and /registries.

#include "agent/route_handler.h"
#include "agent/routes.h"
#include "common/image_models.h"
#include "common/registry_models.h"

namespace modbox {

namespace {

/// A path id that is not a UUID is a 422 on the path, as FastAPI answers for a `UUID` parameter.
Result<std::string> path_uuid(const HttpRequest& request, const char* name) {
  const std::string& id = request.path_params.at(name);
  if (auto problem = check_uuid(id, {"path", name})) return fail_validation({*problem});
  return id;
}

}  // namespace

void register_image_routes(Router& router, ImageService& images) {
  // Registers an image in the caller's workspace (global without X-Workspace-Id): 201 SandboxImageDetail.
  router.add("POST", "/sandbox-images", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_image_create_request(r.body); },
        [&](const ImageService::Workspace& workspace, const ImageCreateRequest& body) {
          return images.create(workspace, body);
        },
        image_to_json, 201);
  });
  // The workspace's images and the global ones (every image without X-Workspace-Id); ?enabled_only=true.
  router.add("GET", "/sandbox-images", [&images](HttpRequest& request) {
    return handle(
        request,
        [](HttpRequest& r) -> Result<bool> {
          const std::string* value = r.query_value("enabled_only");
          if (value == nullptr) return false;
          return parse_enabled_only_query(*value);
        },
        [&](const ImageService::Workspace& workspace, bool enabled_only) -> Result<std::vector<SandboxImage>> {
          return images.list(workspace, enabled_only);
        },
        images_to_json);
  });
  // One image the caller can see.
  router.add("GET", "/sandbox-images/{image_id}", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return path_uuid(r, "image_id"); },
        [&](const ImageService::Workspace& workspace, const std::string& id) { return images.get(workspace, id); },
        image_to_json);
  });
  // Partial update; 403 for the built-in defaults and, from a workspace, for global images.
  router.add("PUT", "/sandbox-images/{image_id}", [&images](HttpRequest& request) {
    return handle(
        request,
        [](HttpRequest& r) -> Result<std::pair<std::string, ImageUpdateRequest>> {
          auto id = path_uuid(r, "image_id");
          if (!id) return std::unexpected(id.error());
          auto body = parse_image_update_request(r.body);
          if (!body) return std::unexpected(body.error());
          return std::pair{*id, *body};
        },
        [&](const ImageService::Workspace& workspace, const std::pair<std::string, ImageUpdateRequest>& body) {
          return images.update(workspace, body.first, body.second);
        },
        image_to_json);
  });
  // Deletes the registration (not the image in Podman storage); answers the image as it was.
  router.add("DELETE", "/sandbox-images/{image_id}", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return path_uuid(r, "image_id"); },
        [&](const ImageService::Workspace& workspace, const std::string& id) { return images.remove(workspace, id); },
        image_to_json);
  });
}

void register_registry_routes(Router& router, ImageService& images) {
  // Stores a credential (0600); the answer and every later one leave the password or token out.
  router.add("POST", "/registries", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_registry_create_request(r.body); },
        [&](const ImageService::Workspace& workspace, const RegistryCreateRequest& body) {
          return images.create_registry(workspace, body);
        },
        registry_to_json, 201);
  });
  // The workspace's credentials (every credential without X-Workspace-Id).
  router.add("GET", "/registries", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest&) -> Result<bool> { return true; },
        [&](const ImageService::Workspace& workspace, bool) -> Result<std::vector<Registry>> {
          return images.list_registries(workspace);
        },
        registries_to_json);
  });
  router.add("GET", "/registries/{registry_id}", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return path_uuid(r, "registry_id"); },
        [&](const ImageService::Workspace& workspace, const std::string& id) {
          return images.get_registry(workspace, id);
        },
        registry_to_json);
  });
  // 409 while an image uses it.
  router.add("DELETE", "/registries/{registry_id}", [&images](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return path_uuid(r, "registry_id"); },
        [&](const ImageService::Workspace& workspace, const std::string& id) {
          return images.remove_registry(workspace, id);
        },
        registry_to_json);
  });
}

}  // namespace modbox
