#pragma once
// Route tables of the control API, one per resource.

#include <filesystem>
#include <functional>

#include "agent/image_build.h"
#include "agent/image_service.h"
#include "agent/router.h"
#include "agent/sandbox_service.h"

namespace modbox {

/// /sandboxes/*: provision, wait, detail, list, destroy, extend, reap, snapshot, and the owner's exec.
void register_sandbox_routes(Router& router, SandboxService& sandboxes);

/// /pools: warm pools (PUT /pools/{image_id} {"size": N}, GET /pools).
void register_pool_routes(Router& router, SandboxService& sandboxes);

/// /sandbox-images/*: register, list, show, update and delete images (seeds/003).
void register_image_routes(Router& router, ImageService& images);

/// POST /sandbox-images/build: an image from a Containerfile and an uploaded context, registered; the
/// context is spooled to `spool_dir` while it is built, and is 413 beyond `context_max_bytes`.
void register_image_build_route(Router& router, ImageBuildService& builds, std::filesystem::path spool_dir,
                                std::uint64_t context_max_bytes = build_context_max_bytes);

/// /registries/*: credentials for private image pulls; secrets are never answered.
void register_registry_routes(Router& router, ImageService& images);

/// /agent/status.
void register_agent_routes(Router& router, std::function<AgentStatus()> status);

}  // namespace modbox
