#pragma once
// E2B's envd for every sandbox, on one loopback listener of the front (`E2B_SANDBOX_URL`; modboxd
// --e2b-port, --no-e2b). E2B's SDKs talk to each sandbox's envd (port 49983 in E2B) for commands and
// files: Connect RPC (process.Process/*, filesystem.Filesystem/*), /files and /health. They send every
// such request to E2B_SANDBOX_URL with `E2b-Sandbox-Id: <id>` and `X-Access-Token: <envdAccessToken>`
// (the sandbox's SANDBOX_API_KEY), so one listener serves every sandbox, and routes by that header.
//
// Every request is a long call (it waits on the sandbox's helper, which code in the sandbox can slow
// down). Requests not served yet answer a Connect error: 501 {"code":"unimplemented","message"}.

#include <string>
#include <string_view>

#include "agent/e2b/envd_service.h"
#include "agent/http.h"
#include "agent/sandbox_api.h"
#include "agent/sandbox_service.h"

namespace modbox::e2b {

/// The envd version create, connect and list report (E2B's envdVersion). E2B's SDKs gate features on
/// it by themselves (CloseStdin needs 0.5.2, octet-stream uploads 0.5.7, file metadata 0.6.2): raise it
/// only with what the listener serves.
inline constexpr std::string_view envd_version_advertised = "0.5.2";

/// The listener's body limit: an upload through /files (modbox's 50 MiB) and its multipart framing.
inline constexpr std::uint64_t envd_body_max_bytes = limits::upload_request_max_bytes;

/// A Connect error answer: `{"code": code, "message": message}` with `http_status`
/// (https://connectrpc.com/docs/protocol/#error-codes: "unimplemented" is 501, "not_found" 404, ...).
HttpResponse connect_error(int http_status, std::string_view code, std::string_view message);

class EnvdFront {
 public:
  /// `api` is the sandbox URL's own API (exec, files, processes), `helpers` the helpers' client; the
  /// agent's `owner_token` opens every sandbox, as on the sandbox URLs.
  EnvdFront(SandboxService& sandboxes, SandboxApi& api, SandboxHelpers& helpers, std::string owner_token)
      : sandboxes_(sandboxes), api_(api), helpers_(helpers), owner_token_(std::move(owner_token)) {}

  /// One request of the listener (on a worker thread, as a long call).
  HttpResponse serve(HttpRequest& request);

  /// The sandbox a request is for (`E2b-Sandbox-Id`), checked against its key (`X-Access-Token`, or
  /// the owner token): 404 for an unknown id, 401/403 for a missing or wrong key.
  Result<Sandbox> authorize(const HttpRequest& request) const;
  /// Whether the sandbox is running (not provisioning, failed or destroyed).
  static bool running(const Sandbox& sandbox) { return sandbox.status == SandboxStatus::running; }
  /// The sandbox's SANDBOX_API_KEY (what create answers as envdAccessToken); empty when it has none.
  static std::string access_token(const Sandbox& sandbox);

  SandboxService& sandboxes() { return sandboxes_; }
  SandboxApi& api() { return api_; }
  SandboxHelpers& helpers() { return helpers_; }

  /// Where a request goes: the sandbox and the port inside it (49983: envd, served by the agent).
  struct Route {
    std::string sandbox_id;
    int port = envd_port;
  };
  static constexpr int envd_port = 49983;
  /// The route of a request: `E2b-Sandbox-Id` and `E2b-Sandbox-Port` (default 49983), or else a
  /// Host of the form `{port}-{sandboxId}.{domain}` (what the SDK's getHost(port) gives). An
  /// error (400) when neither names a sandbox, or the port is not 1–65535.
  static Result<Route> route_of(const HttpRequest& request);

 private:
  /// Relays the request to a TCP port inside the sandbox (HTTP/1.0, one request per connection,
  /// the answer streamed back as it comes).
  HttpResponse relay(const Sandbox& sandbox, int port, HttpRequest& request);

  SandboxService& sandboxes_;
  SandboxApi& api_;
  SandboxHelpers& helpers_;
  std::string owner_token_;
  EnvdService envd_{sandboxes_};
};

}  // namespace modbox::e2b
