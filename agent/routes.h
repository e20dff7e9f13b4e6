#pragma once
// Route tables of the control API, one per resource.

#include <functional>

#include "agent/image_service.h"
#include "agent/router.h"
#include "agent/sandbox_service.h"

namespace modbox {

/// /sandboxes/*: provision, wait, detail, list, destroy, extend, reap, snapshot, and the owner's exec.
void register_sandbox_routes(Router& router, SandboxService& sandboxes);

/// /sandbox-images/*: register, list, show, update and delete images (seeds/003).
void register_image_routes(Router& router, ImageService& images);

/// /registries/*: credentials for private image pulls; secrets are never answered.
void register_registry_routes(Router& router, ImageService& images);

/// /agent/status.
void register_agent_routes(Router& router, std::function<AgentStatus()> status);

}  // namespace modbox
