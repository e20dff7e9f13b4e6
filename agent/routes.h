#pragma once
// Route tables of the control API, one per resource.

#include <functional>

#include "agent/router.h"
#include "agent/sandbox_service.h"

namespace modbox {

/// /sandboxes/*: provision, wait, detail, list, destroy, and the owner's exec.
void register_sandbox_routes(Router& router, SandboxService& sandboxes);

/// /agent/status.
void register_agent_routes(Router& router, std::function<AgentStatus()> status);

}  // namespace modbox
