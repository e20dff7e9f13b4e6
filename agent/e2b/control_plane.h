#pragma once
// E2B's control plane (the API the e2b SDKs call to create, list, connect to and kill sandboxes) on
// the agent's TCP control API, under /e2b: E2B_API_URL is "<api_url>/e2b" (`modbox agent env --e2b`),
// and the SDKs keep that prefix on every call. A prefix rather than shared paths: modbox already
// serves GET /sandboxes and POST /sandboxes/{verb}, which E2B's GET /sandboxes/{id} and friends would
// shadow. Under /e2b the credential is E2B's `X-API-Key: <agent token>` (and only there; modbox's own
// routes keep `Authorization: Bearer`), and every error is E2B's `{"code": status, "message"}`.
//
//   POST   /e2b/v2/sandboxes, /e2b/sandboxes   create: provision, wait until running, 201 Sandbox
//   GET    /e2b/v2/sandboxes, /e2b/sandboxes   list live sandboxes (state, metadata, template,
//                                              startedAfter, order, limit, nextToken → X-Next-Token)
//   GET    /e2b/sandboxes/{id}                 detail
//   DELETE /e2b/sandboxes/{id}                 kill: 204
//   POST   /e2b/sandboxes/{id}/timeout         {timeout}: the TTL is now that many seconds: 204
//   POST   /e2b/v2/sandboxes/{id}/connect, /e2b/sandboxes/{id}/connect
//                                              {timeout?}: the TTL is only extended: 200 Sandbox
// Every other E2B call (pause, resume, fork, metrics, network, snapshots, templates, volumes, secrets)
// answers 501 naming what modbox lacks. A template is a modbox image (by id or name; "base" is the
// default image), metadata are tags, timeout is the TTL, envdAccessToken the sandbox's SANDBOX_API_KEY.
// The same sandboxes show in both APIs.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/http.h"
#include "agent/image_service.h"
#include "agent/router.h"
#include "agent/sandbox_service.h"

namespace modbox::e2b {

inline constexpr std::string_view api_prefix = "/e2b";
/// Whether a control API path is one of E2B's (under api_prefix).
bool is_e2b_path(std::string_view path);

/// E2B's error body, `{"code": status, "message": message}`, with that status.
HttpResponse api_error(int status, std::string_view message);
/// An Error as E2B's error body, with the status modbox gives its kind.
HttpResponse api_error(const Error& error);

/// The body of create (NewSandboxV2, or NewSandbox of the older POST /sandboxes).
struct CreateRequest {
  std::string template_id = "base";
  int timeout_seconds = 300;
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env_vars;
  /// What the body asks that modbox cannot do (network, volumeMounts, ...): create answers 501 with it.
  std::optional<std::string> unsupported;
};
/// 422 for a body that is not an object or a field of the wrong type, 400 for a timeout outside modbox's
/// TTL limits or metadata beyond its tag limits. `default_timeout`: 300 for v2, 15 for the old route.
/// Fields modbox cannot honour (network, volumeMounts, autoPause, mcp, ...) are named in `unsupported`.
Result<CreateRequest> parse_create_request(std::string_view body, int default_timeout);

/// `{"timeout": N}` of POST /sandboxes/{id}/timeout: 1 to 86400 (400 otherwise, 0 included: kill it).
Result<int> parse_timeout_request(std::string_view body);
/// `{"timeout"?: N}` of connect: nullopt when absent (the TTL then goes to at least 300 s from now).
Result<std::optional<int>> parse_connect_request(std::string_view body);

/// The `metadata` query parameter of list, already query-decoded once: form-urlencoded `k=v&k2=v2`
/// whose keys and values are percent-encoded once more (the SDK encodes each, then the whole). 400
/// for a pair without '='.
Result<std::map<std::string, std::string>> parse_metadata_query(std::string_view value);

struct ListQuery {
  std::map<std::string, std::string> metadata;  // every pair must be a tag of the sandbox
  bool running = true;                          // state=running (provisioning and running sandboxes)
  bool paused = true;                           // state=paused (modbox has none)
  std::optional<std::string> template_id;
  std::optional<TimePoint> started_after;
  bool ascending = false;
  int limit = 100;
  std::optional<std::string> next_token;
};
/// The query of GET /v2/sandboxes; 400 for an unknown state, a bad limit (1-100), order or token.
Result<ListQuery> parse_list_query(const std::multimap<std::string, std::string>& query);

struct Page {
  std::vector<Sandbox> sandboxes;
  std::optional<std::string> next_token;  // X-Next-Token when another page follows
  std::size_t total = 0;                  // X-Total-Running: the matches before pagination
};
/// Keeps the live sandboxes that match, in order, one page of them. `template_of` names a sandbox's
/// template (as templateID shows it).
Result<Page> select_page(std::vector<Sandbox> sandboxes, const ListQuery& query);

/// What a sandbox's templateID is: its image id, else its image reference.
std::string template_of(const Sandbox& sandbox);
/// The envd version modbox's envd (agent/e2b/envd_front.h) speaks, as create and list report it.
std::string_view envd_version();

/// The `Sandbox` answer of create and connect; `domain`: "localhost:PORT" of the envd listener.
std::string sandbox_to_json(const Sandbox& sandbox, const std::optional<std::string>& domain);
/// `SandboxDetail` of GET /sandboxes/{id}.
std::string sandbox_detail_to_json(const Sandbox& sandbox, const std::optional<std::string>& domain);
/// `ListedSandbox[]` of list.
std::string listed_sandboxes_to_json(const std::vector<Sandbox>& sandboxes);

/// The provision a create becomes: a fresh task_id, the template's image (nullopt: the default image),
/// metadata as tags, the timeout as TTL, and SANDBOX_API_KEY (the envd access token) unless envVars
/// gives one.
ProvisionRequest to_provision_request(const CreateRequest& request, std::optional<std::string> image_id);

struct ControlPlaneContext {
  SandboxService& sandboxes;
  ImageService& images;
  /// The envd listener's domain, "localhost:PORT"; nullopt when it is off (--no-e2b).
  std::function<std::optional<std::string>()> domain;
};
/// E2B's routes, under api_prefix.
void register_e2b_routes(Router& router, ControlPlaneContext context);
/// Serves an /e2b request: checks X-API-Key against `token` over TCP (401 otherwise), dispatches, and
/// answers unknown paths and methods with E2B's error body.
HttpResponse serve(const Router& router, const std::string& token, HttpRequest& request);
/// The E2B calls that wait (create waits until the sandbox runs; connect until a provisioning one does).
bool is_long_call(const HttpRequest& request);

}  // namespace modbox::e2b
