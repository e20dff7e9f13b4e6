#pragma once
// The one shape of every control API handler: read the workspace, decode, act, encode. Shared by
// the route tables so that scoping and error mapping are written once.

#include <optional>
#include <string>

#include "agent/http.h"

namespace modbox {

/// X-Workspace-Id scopes sandboxes, images and registries; absent or empty means unscoped (the
/// agent's owner).
inline Result<std::optional<std::string>> workspace_of(const HttpRequest& request) {
  const std::string* header = request.header("x-workspace-id");
  if (header == nullptr || header->empty()) return std::optional<std::string>{};
  if (header->size() > 128)
    return fail_validation({{{"header", "x-workspace-id"}, "String should have at most 128 characters", "string_too_long"}});
  return std::optional<std::string>{*header};
}

/// Decode, act, encode; any Error becomes its status and `{"detail": ...}` body.
template <class Parse, class Act, class Encode>
HttpResponse handle(HttpRequest& request, Parse parse, Act act, Encode encode, int status = 200) {
  auto workspace = workspace_of(request);
  if (!workspace) return error_response(workspace.error());
  auto parsed = parse(request);
  if (!parsed) return error_response(parsed.error());
  auto result = act(*workspace, *parsed);
  if (!result) return error_response(result.error());
  return json_response(status, encode(*result));
}

}  // namespace modbox
