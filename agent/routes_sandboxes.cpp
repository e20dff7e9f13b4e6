#include "agent/route_handler.h"
#include "agent/routes.h"

namespace modbox {

void register_sandbox_routes(Router& router, SandboxService& sandboxes) {
  // Starts a sandbox; answers at once with status "provisioning".
  router.add("POST", "/sandboxes/provision", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_provision_request(r.body); },
        [&](const Workspace& workspace, const ProvisionRequest& body) { return sandboxes.provision(workspace, body); },
        sandbox_to_json);
  });
  // Blocks until the sandbox is running (200), failed or destroyed (409), or `timeout` s pass (408).
  router.add("POST", "/sandboxes/wait", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_wait_request(r.body); },
        [&](const Workspace& workspace, const WaitRequest& body) { return sandboxes.wait(workspace, body); },
        sandbox_to_json);
  });
  // One sandbox by id (or by task_id, for convenience).
  router.add("GET", "/sandboxes/detail/{sandbox_id}", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) -> Result<std::string> { return r.path_params.at("sandbox_id"); },
        [&](const Workspace& workspace, const std::string& id) { return sandboxes.get(workspace, id); },
        sandbox_to_json);
  });
  // The output of the sandbox's main process (by id or task_id) as plain text: its stdout and stderr
  // interleaved as written, the last 1 MiB of it (`tail`: the last N lines). With `follow`, what it
  // writes next streams on (chunked) until the sandbox ends; a long call then.
  router.add("GET", "/sandboxes/{sandbox_id}/logs", [&sandboxes](HttpRequest& request) {
    auto workspace = workspace_of(request);
    if (!workspace) return error_response(workspace.error());
    auto query = parse_logs_query(request.query);
    if (!query) return error_response(query.error());
    const std::string& id = request.path_params.at("sandbox_id");
    if (!query->follow) {
      auto text = sandboxes.logs(*workspace, id, query->tail);
      if (!text) return error_response(text.error());
      return HttpResponse{.status = 200, .content_type = "text/plain; charset=utf-8", .body = std::move(*text)};
    }
    auto sandbox = sandboxes.get(*workspace, id);
    if (!sandbox) return error_response(sandbox.error());
    HttpResponse response{.status = 200, .content_type = "text/plain; charset=utf-8"};
    response.stream_chunked = true;
    response.stream = [&sandboxes, id = sandbox->id, tail = query->tail](std::uint64_t, std::uint64_t,
                                                                         const BodyWriter& write) {
      return sandboxes.follow_logs(id, tail, write);
    };
    return response;
  });
  // Every sandbox of the workspace (all workspaces without X-Workspace-Id), oldest first;
  // ?status=S, and ?tag=key=value (repeatable: a sandbox must have every tag given).
  router.add("GET", "/sandboxes", [&sandboxes](HttpRequest& request) {
    return handle(
        request,
        [](HttpRequest& r) -> Result<SandboxFilter> {
          SandboxFilter filter;
          if (const std::string* status = r.query_value("status"); status != nullptr && !status->empty()) {
            auto parsed = parse_status_query(*status);
            if (!parsed) return std::unexpected(parsed.error());
            filter.status = *parsed;
          }
          auto tags = parse_tag_queries(r.query_values("tag"));
          if (!tags) return std::unexpected(tags.error());
          filter.tags = std::move(*tags);
          return filter;
        },
        [&](const Workspace& workspace, const SandboxFilter& filter) -> Result<std::vector<Sandbox>> {
          return sandboxes.list(workspace, filter);
        },
        sandboxes_to_json);
  });
  // Deletes the sandbox's container at once; the record stays, with status "destroyed".
  router.add("POST", "/sandboxes/destroy", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_destroy_request(r.body); },
        [&](const Workspace& workspace, const DestroyRequest& body) { return sandboxes.destroy(workspace, body.task_id); },
        sandbox_to_json);
  });
  // modbox extension (E2B's set_timeout): the sandbox now expires ttl_seconds from now.
  router.add("POST", "/sandboxes/extend", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_extend_request(r.body); },
        [&](const Workspace& workspace, const ExtendRequest& body) { return sandboxes.extend(workspace, body); },
        sandbox_to_json);
  });
  // modbox extension: destroys at once every sandbox whose TTL or idle timeout has run out, and answers
  // them (what the systemd TTL timers run, through `modbox agent reap`). Every workspace's: it only
  // carries out what the deadlines already decided.
  router.add("POST", "/sandboxes/reap", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest&) -> Result<bool> { return true; },
        [&](const Workspace&, bool) -> Result<std::vector<Sandbox>> { return sandboxes.reap_due(); },
        sandboxes_to_json);
  });
  // The running sandbox's filesystem as a new image of its workspace (201, SandboxImageDetail).
  router.add("POST", "/sandboxes/snapshot", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_snapshot_request(r.body); },
        [&](const Workspace& workspace, const SnapshotRequest& body) { return sandboxes.snapshot(workspace, body); },
        image_to_json, 201);
  });
  // modbox extension: the agent's owner runs a command by task_id without the sandbox's key.
  router.add("POST", "/sandboxes/exec", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_sandbox_exec_request(r.body); },
        [&](const Workspace& workspace, const SandboxExecRequest& body) {
          return sandboxes.exec(workspace, body.task_id, body.exec);
        },
        exec_result_to_json);
  });
}

void register_pool_routes(Router& router, SandboxService& sandboxes) {
  // modbox extension: keeps `size` sandboxes of the image started, for provisions to claim (0 deletes).
  router.add("PUT", "/pools/{image_id}", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest& r) { return parse_pool_size_request(r.body); },
        [&](const Workspace& workspace, const PoolSizeRequest& body) {
          return sandboxes.set_pool(workspace, request.path_params.at("image_id"), body.size);
        },
        pool_to_json);
  });
  // The warm pools of the workspace (all without X-Workspace-Id): size, ready and starting members.
  router.add("GET", "/pools", [&sandboxes](HttpRequest& request) {
    return handle(
        request, [](HttpRequest&) -> Result<bool> { return true; },
        [&](const Workspace& workspace, bool) -> Result<std::vector<PoolView>> { return sandboxes.pools(workspace); },
        pools_to_json);
  });
}

void register_agent_routes(Router& router, std::function<AgentStatus()> status) {
  // The agent's health, version and where it listens.
  router.add("GET", "/agent/status", [status = std::move(status)](HttpRequest&) {
    return json_response(200, agent_status_to_json(status()));
  });
}

}  // namespace modbox
