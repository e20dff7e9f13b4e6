#pragma once
// Between the sandbox lifecycle and the front: opens and closes the sandboxes' ports on the front
// (SandboxEndpoints), and tells the front what those ports serve (SandboxSite): the sandbox's API
// through SandboxApi, and relays to its web ports through its helper.

#include <atomic>

#include "agent/front/front.h"
#include "agent/sandbox_api.h"
#include "agent/sandbox_service.h"

namespace modbox {

class Gateway final : public SandboxEndpoints, public SandboxSite {
 public:
  Gateway() = default;
  /// Wires the parts, which are built after the gateway (the lifecycle needs it as its endpoints);
  /// before this, ports cannot be opened.
  void connect(Front& front, SandboxService& sandboxes, SandboxApi& api, SandboxHelpers& helpers);

  // SandboxEndpoints
  Result<int> open(const std::string& sandbox_id, int sandbox_port, int preferred_port) override;
  void close(const std::string& sandbox_id) override;

  // SandboxSite
  HttpResponse serve_api(const std::string& sandbox_id, HttpRequest& request) override;
  std::optional<HttpResponse> precheck_api(const std::string& sandbox_id, const HttpRequest& request) override;
  HttpResponse serve_web(const std::string& sandbox_id, HttpRequest& request) override;
  Result<ProxyTarget> proxy_target(const std::string& sandbox_id, int sandbox_port) override;
  Result<UniqueFd> open_relay(const ProxyTarget& target) override;
  Result<SessionConnection> open_session(const ProxyTarget& target, const helper::SessionOpen& request) override;

 private:
  std::atomic<Front*> front_ = nullptr;
  SandboxService* sandboxes_ = nullptr;
  SandboxApi* api_ = nullptr;
  SandboxHelpers* helpers_ = nullptr;
};

}  // namespace modbox
