#include "agent/gateway.h"

namespace modbox {

void Gateway::connect(Front& front, SandboxService& sandboxes, SandboxApi& api, SandboxHelpers& helpers) {
  sandboxes_ = &sandboxes;
  api_ = &api;
  helpers_ = &helpers;
  front_ = &front;
}

Result<int> Gateway::open(const std::string& sandbox_id, int sandbox_port, int preferred_port) {
  Front* front = front_;
  if (front == nullptr) return fail(ErrorKind::unavailable, "the agent is not serving sandbox URLs yet");
  return front->open_sandbox_port(sandbox_id, sandbox_port, preferred_port);
}

void Gateway::close(const std::string& sandbox_id) {
  if (Front* front = front_) front->close_sandbox(sandbox_id);
  if (api_ != nullptr) api_->close_sandbox(sandbox_id);
}

HttpResponse Gateway::serve_api(const std::string& sandbox_id, HttpRequest& request) {
  return api_->serve(sandbox_id, request);
}

std::optional<HttpResponse> Gateway::precheck_api(const std::string& sandbox_id, const HttpRequest& request) {
  return api_->precheck(sandbox_id, request);
}

HttpResponse Gateway::serve_web(const std::string& sandbox_id, HttpRequest& request) {
  return api_->serve_web(sandbox_id, request);
}

Result<ProxyTarget> Gateway::proxy_target(const std::string& sandbox_id, int sandbox_port) {
  auto sandbox = sandboxes_->get(std::nullopt, sandbox_id);
  if (!sandbox || sandbox->id != sandbox_id) return fail(ErrorKind::not_found, "this sandbox no longer exists");
  auto helper = sandboxes_->helper_access(*sandbox);
  if (!helper) return std::unexpected(helper.error());
  ProxyTarget target;
  target.helper_socket = helper->socket;
  target.port = sandbox_port != 0 ? sandbox_port : proxied_port(*sandbox);
  if (auto key = sandbox->env_vars.find("SANDBOX_API_KEY"); key != sandbox->env_vars.end() && !key->second.empty())
    target.api_key = key->second;
  target.activity = sandboxes_->activity(sandbox_id);
  return target;
}

Result<UniqueFd> Gateway::open_relay(const ProxyTarget& target) {
  return helpers_->open_relay(target.helper_socket, static_cast<std::uint16_t>(target.port));
}

Result<SessionConnection> Gateway::open_session(const ProxyTarget& target, const helper::SessionOpen& request) {
  auto session = helpers_->open_session(target.helper_socket, request);
  if (!session) return std::unexpected(session.error());
  return SessionConnection{std::move(session->connection), session->pid};
}

}  // namespace modbox
