#include "agent/e2b/envd_front.h"

#include <nlohmann/json.hpp>

namespace modbox::e2b {

HttpResponse connect_error(int http_status, std::string_view code, std::string_view message) {
  constexpr auto replace = nlohmann::json::error_handler_t::replace;
  return json_response(http_status, nlohmann::json{{"code", code}, {"message", message}}.dump(-1, ' ', false, replace));
}

std::string EnvdFront::access_token(const Sandbox& sandbox) {
  auto key = sandbox.env_vars.find("SANDBOX_API_KEY");
  return key == sandbox.env_vars.end() ? std::string() : key->second;
}

Result<Sandbox> EnvdFront::authorize(const HttpRequest& request) const {
  const std::string* id = request.header("e2b-sandbox-id");
  if (id == nullptr || id->empty())
    return fail(ErrorKind::bad_request,
                "E2b-Sandbox-Id is missing: E2B_SANDBOX_URL serves every sandbox by that header");
  const std::string* token = request.header("x-access-token");
  std::string authorization = token == nullptr ? std::string() : "Bearer " + *token;
  return sandboxes_.authorize(*id, token == nullptr ? nullptr : &authorization, owner_token_);
}

HttpResponse EnvdFront::serve(HttpRequest& request) {
  return connect_error(501, "unimplemented",
                       "modbox does not serve " + request.method + " " + request.path + " of E2B's envd yet");
}

}  // namespace modbox::e2b
