#include "agent/e2b/control_plane.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/e2b/envd_front.h"
#include "agent/route_handler.h"
#include "common/json_support.h"
#include "common/system.h"

namespace modbox::e2b {

namespace {

using nlohmann::json;
using json_support::to_text;

std::unexpected<Error> invalid(std::string field, std::string message) {
  return fail_validation({{{"body", std::move(field)}, std::move(message), "value_error"}});
}

/// A string-to-string object field (metadata, envVars); absent or null gives an empty map.
Result<std::map<std::string, std::string>> string_map(const json& body, const char* name) {
  std::map<std::string, std::string> result;
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return result;
  if (!it->is_object()) return invalid(name, std::string(name) + " must be an object of strings");
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) return invalid(name, std::string(name) + "." + key + " must be a string");
    result[key] = value.get<std::string>();
  }
  return result;
}

Result<json> parse_object(std::string_view body, bool empty_is_object) {
  if (empty_is_object && body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object();
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded()) return invalid("", "the body is not valid JSON");
  if (!parsed.is_object()) return invalid("", "the body must be a JSON object");
  return parsed;
}

Result<int> timeout_field(const json& value) {
  if (!value.is_number_integer()) return invalid("timeout", "timeout must be an integer number of seconds");
  auto seconds = value.get<std::int64_t>();
  if (seconds < limits::ttl_seconds_min || seconds > limits::ttl_seconds_max)
    return fail(ErrorKind::bad_request, "timeout must be " + std::to_string(limits::ttl_seconds_min) + " to " +
                                            std::to_string(limits::ttl_seconds_max) +
                                            " seconds: modbox's TTL limits (kill the sandbox to " + "end it now)");
  return static_cast<int>(seconds);
}

/// The page token: the last sandbox's creation time (ms) and id, so a page starts after it however the
/// list changed meanwhile.
std::string page_token(const Sandbox& sandbox) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(sandbox.created_at.time_since_epoch()).count();
  return std::to_string(ms) + "." + sandbox.id;
}

std::pair<std::int64_t, std::string> sort_key(const Sandbox& sandbox) {
  return {std::chrono::duration_cast<std::chrono::milliseconds>(sandbox.created_at.time_since_epoch()).count(),
          sandbox.id};
}

json listed_json(const Sandbox& sandbox) {
  json metadata = json::object();
  for (const auto& [key, value] : sandbox.tags) metadata[key] = value;
  // A sandbox without a TTL lives until it is killed: the latest time JavaScript's Date can show.
  auto end = sandbox.expires_at();
  static const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  return json{{"templateID", template_of(sandbox)},
              {"sandboxID", sandbox.id},
              {"clientID", "modbox"},
              {"startedAt", format_timestamp(sandbox.created_at)},
              {"endAt", end ? format_timestamp(*end) : std::string("9999-12-31T23:59:59.000Z")},
              {"cpuCount", cpus},
              {"memoryMB", sandbox.memory_mb.value_or(0)},
              {"diskSizeMB", 0},
              {"state", "running"},
              {"envdVersion", envd_version()},
              {"metadata", metadata}};
}

void add_connection(json& object, const Sandbox& sandbox, const std::optional<std::string>& domain) {
  if (std::string token = EnvdFront::access_token(sandbox); !token.empty()) object["envdAccessToken"] = token;
  object["domain"] = domain ? json(*domain) : json(nullptr);
}

bool live_e2b(const Sandbox& sandbox) {
  return is_live(sandbox.status);
}

std::string not_found_message(const std::string& id) {
  return "sandbox '" + id + "' not found";
}

/// The live sandbox `id` (by id only, never by task_id): 404 with E2B's body otherwise.
Result<Sandbox> live_sandbox(SandboxService& sandboxes, const std::string& id) {
  auto sandbox = sandboxes.get(std::nullopt, id);
  if (!sandbox || sandbox->id != id || !live_e2b(*sandbox)) return fail(ErrorKind::not_found, not_found_message(id));
  return sandbox;
}

/// The image a template names: "base" is the default image (nullopt), otherwise an image id or name.
Result<std::optional<std::string>> resolve_template(ImageService& images, const std::string& template_id) {
  if (template_id == "base") return std::optional<std::string>{};
  auto all = images.list(std::nullopt, false);
  for (const auto& image : all)
    if (image.id == template_id) return std::optional<std::string>{image.id};
  for (const auto& image : all)
    if (image.name == template_id) return std::optional<std::string>{image.id};
  return fail(ErrorKind::not_found, "template '" + template_id +
                                        "' not found: a template is a modbox image, by id or name (`modbox images "
                                        "list`), and 'base' is the default image");
}

/// 501 "<feature> is not supported by modbox[: why]".
HttpResponse refuse(const std::string& feature, const std::string& why = "") {
  return api_error(501, feature + " is not supported by modbox" + (why.empty() ? "" : ": " + why));
}

}  // namespace

bool is_e2b_path(std::string_view path) {
  return path == api_prefix ||
         (path.starts_with(api_prefix) && path.size() > api_prefix.size() && path[api_prefix.size()] == '/');
}

HttpResponse api_error(int status, std::string_view message) {
  return json_response(status, to_text(json{{"code", status}, {"message", message}}));
}

HttpResponse api_error(const Error& error) {
  HttpResponse response = error_response(error);
  std::string message = error.message;
  if (error.kind == ErrorKind::validation && !error.fields.empty()) {
    message.clear();
    for (const auto& field : error.fields) {
      std::string where;
      for (const auto& part : field.loc)
        if (part != "body" && !part.empty()) where += (where.empty() ? "" : ".") + part;
      message += (message.empty() ? "" : "; ") + (where.empty() ? field.msg : where + ": " + field.msg);
    }
  }
  return api_error(response.status, message);
}

std::string_view envd_version() {
  return e2b::envd_version_advertised;
}

std::string template_of(const Sandbox& sandbox) {
  return sandbox.image_id.value_or(sandbox.image);
}

Result<CreateRequest> parse_create_request(std::string_view body, int default_timeout) {
  auto parsed = parse_object(body, false);
  if (!parsed) return std::unexpected(parsed.error());
  const json& object = *parsed;
  CreateRequest request;
  request.timeout_seconds = default_timeout;
  if (auto it = object.find("templateID"); it != object.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty())
      return invalid("templateID", "templateID must be a non-empty string");
    request.template_id = it->get<std::string>();
  }
  if (auto it = object.find("timeout"); it != object.end() && !it->is_null()) {
    auto timeout = timeout_field(*it);
    if (!timeout) return std::unexpected(timeout.error());
    request.timeout_seconds = *timeout;
  }
  auto metadata = string_map(object, "metadata");
  if (!metadata) return std::unexpected(metadata.error());
  if (metadata->size() > limits::tags_max_count)
    return fail(ErrorKind::bad_request, "metadata has " + std::to_string(metadata->size()) +
                                            " pairs: modbox keeps at most " + std::to_string(limits::tags_max_count));
  for (const auto& [key, value] : *metadata)
    if (key.empty() || key.size() > limits::tag_max_bytes || value.size() > limits::tag_max_bytes)
      return fail(ErrorKind::bad_request, "metadata keys are 1 to " + std::to_string(limits::tag_max_bytes) +
                                              " bytes and values at most " + std::to_string(limits::tag_max_bytes) +
                                              " bytes in modbox");
  request.metadata = std::move(*metadata);
  auto env = string_map(object, "envVars");
  if (!env) return std::unexpected(env.error());
  if (env->size() > limits::env_vars_max_count)
    return fail(ErrorKind::bad_request,
                "envVars has more than " + std::to_string(limits::env_vars_max_count) + " variables");
  for (const auto& [key, value] : *env)
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos ||
        value.size() > limits::env_value_max_bytes)
      return fail(ErrorKind::bad_request, "envVars." + key + ": names are non-empty without '=', values at most " +
                                              std::to_string(limits::env_value_max_bytes) + " bytes");
  request.env_vars = std::move(*env);
  if (auto it = object.find("secure"); it != object.end() && !it->is_null() && !it->is_boolean())
    return invalid("secure", "secure must be a boolean");
  // What modbox cannot do is refused, never ignored.
  if (auto it = object.find("allow_internet_access"); it != object.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("allow_internet_access", "allow_internet_access must be a boolean");
    if (!it->get<bool>())
      request.unsupported =
          "allow_internet_access=false through E2B's API (modbox's own provision takes "
          "network: \"none\")";
  }
  for (const char* field : {"network", "volumeMounts", "mcp", "iam", "autoPause", "autoResume", "autoPauseMemory"})
    if (auto it = object.find(field); it != object.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>()))
      request.unsupported = field;
  return request;
}

Result<int> parse_timeout_request(std::string_view body) {
  auto parsed = parse_object(body, false);
  if (!parsed) return std::unexpected(parsed.error());
  auto it = parsed->find("timeout");
  if (it == parsed->end() || it->is_null()) return invalid("timeout", "timeout is required");
  return timeout_field(*it);
}

Result<std::optional<int>> parse_connect_request(std::string_view body) {
  auto parsed = parse_object(body, true);
  if (!parsed) return std::unexpected(parsed.error());
  if (auto memory = parsed->find("memory"); memory != parsed->end() && !memory->is_null() && !memory->is_boolean())
    return invalid("memory", "memory must be a boolean");
  auto it = parsed->find("timeout");
  if (it == parsed->end() || it->is_null()) return std::optional<int>{};
  auto timeout = timeout_field(*it);
  if (!timeout) return std::unexpected(timeout.error());
  return std::optional<int>{*timeout};
}

Result<std::map<std::string, std::string>> parse_metadata_query(std::string_view value) {
  std::map<std::string, std::string> result;
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t end = value.find('&', start);
    if (end == std::string_view::npos) end = value.size();
    std::string_view pair = value.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    std::size_t equals = pair.find('=');
    if (equals == std::string_view::npos)
      return fail(ErrorKind::bad_request, "metadata is key=value pairs joined by '&' (each part percent-encoded)");
    // Form decoding, then the SDK's own encodeURIComponent of each key and value.
    std::string key = url_decode(url_decode(pair.substr(0, equals), true), false);
    std::string item = url_decode(url_decode(pair.substr(equals + 1), true), false);
    if (key.empty()) return fail(ErrorKind::bad_request, "metadata has an empty key");
    result[key] = item;
  }
  return result;
}

Result<ListQuery> parse_list_query(const std::multimap<std::string, std::string>& query) {
  ListQuery result;
  for (const auto& [name, value] : query) {
    if (name == "metadata") {
      auto pairs = parse_metadata_query(value);
      if (!pairs) return std::unexpected(pairs.error());
      for (auto& [key, item] : *pairs) result.metadata[key] = item;
    } else if (name == "state") {
      result.running = result.paused = false;
      std::size_t start = 0;
      while (start <= value.size()) {
        std::size_t end = value.find(',', start);
        if (end == std::string::npos) end = value.size();
        std::string state = value.substr(start, end - start);
        start = end + 1;
        if (state == "running")
          result.running = true;
        else if (state == "paused")
          result.paused = true;
        else
          return fail(ErrorKind::bad_request, "state is running or paused (comma-separated), not '" + state + "'");
      }
    } else if (name == "template") {
      result.template_id = value;
    } else if (name == "startedAfter") {
      auto time = parse_timestamp(value);
      if (!time) return fail(ErrorKind::bad_request, "startedAfter must be an RFC 3339 time (2026-01-02T03:04:05Z)");
      result.started_after = *time;
    } else if (name == "order") {
      if (value != "asc" && value != "desc") return fail(ErrorKind::bad_request, "order is asc or desc");
      result.ascending = value == "asc";
    } else if (name == "limit") {
      int limit = 0;
      auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), limit);
      if (error != std::errc() || end != value.data() + value.size() || limit < 1 || limit > 100)
        return fail(ErrorKind::bad_request, "limit is an integer from 1 to 100");
      result.limit = limit;
    } else if (name == "nextToken") {
      if (!value.empty()) result.next_token = value;
    }
  }
  if (result.next_token) {
    std::size_t dot = result.next_token->find('.');
    std::int64_t ms = 0;
    const std::string& token = *result.next_token;
    auto [end, error] = std::from_chars(token.data(), token.data() + (dot == std::string::npos ? 0 : dot), ms);
    if (dot == std::string::npos || dot == 0 || error != std::errc() || end != token.data() + dot)
      return fail(ErrorKind::bad_request, "nextToken is not one this API answered (X-Next-Token)");
  }
  return result;
}

Result<Page> select_page(std::vector<Sandbox> sandboxes, const ListQuery& query) {
  std::erase_if(sandboxes, [&](const Sandbox& sandbox) {
    if (!live_e2b(sandbox) || !query.running) return true;  // modbox never pauses a sandbox
    for (const auto& [key, value] : query.metadata)
      if (auto tag = sandbox.tags.find(key); tag == sandbox.tags.end() || tag->second != value) return true;
    if (query.template_id && *query.template_id != template_of(sandbox) && *query.template_id != sandbox.image)
      return true;
    if (query.started_after && sandbox.created_at <= *query.started_after) return true;
    return false;
  });
  std::sort(sandboxes.begin(), sandboxes.end(), [&](const Sandbox& a, const Sandbox& b) {
    return query.ascending ? sort_key(a) < sort_key(b) : sort_key(b) < sort_key(a);
  });
  Page page;
  page.total = sandboxes.size();
  auto first = sandboxes.begin();
  if (query.next_token) {
    const std::string& token = *query.next_token;
    std::size_t dot = token.find('.');
    std::pair<std::int64_t, std::string> after{std::stoll(token.substr(0, dot)), token.substr(dot + 1)};
    first = std::find_if(sandboxes.begin(), sandboxes.end(), [&](const Sandbox& sandbox) {
      return query.ascending ? sort_key(sandbox) > after : sort_key(sandbox) < after;
    });
  }
  auto available = static_cast<std::size_t>(sandboxes.end() - first);
  std::size_t count = std::min<std::size_t>(available, static_cast<std::size_t>(query.limit));
  page.sandboxes.assign(first, first + static_cast<std::ptrdiff_t>(count));
  if (count < available) page.next_token = page_token(page.sandboxes.back());
  return page;
}

std::string sandbox_to_json(const Sandbox& sandbox, const std::optional<std::string>& domain) {
  json object{{"templateID", template_of(sandbox)},
              {"sandboxID", sandbox.id},
              {"clientID", "modbox"},
              {"envdVersion", envd_version()}};
  add_connection(object, sandbox, domain);
  return to_text(object);
}

std::string sandbox_detail_to_json(const Sandbox& sandbox, const std::optional<std::string>& domain) {
  json object = listed_json(sandbox);
  add_connection(object, sandbox, domain);
  object["allowInternetAccess"] = sandbox.network != std::optional<std::string>("none");
  object["lifecycle"] = json{{"onTimeout", "kill"}, {"autoResume", false}};
  return to_text(object);
}

std::string listed_sandboxes_to_json(const std::vector<Sandbox>& sandboxes) {
  json array = json::array();
  for (const auto& sandbox : sandboxes) array.push_back(listed_json(sandbox));
  return to_text(array);
}

ProvisionRequest to_provision_request(const CreateRequest& request, std::optional<std::string> image_id) {
  ProvisionRequest provision;
  provision.task_id = "e2b-" + random_hex(8);
  provision.image_id = std::move(image_id);
  provision.ttl_seconds = request.timeout_seconds;
  provision.env_vars = request.env_vars;
  if (provision.env_vars["SANDBOX_API_KEY"].empty()) provision.env_vars["SANDBOX_API_KEY"] = random_hex(32);
  provision.tags = request.metadata;
  return provision;
}

void register_e2b_routes(Router& router, ControlPlaneContext context) {
  auto shared = std::make_shared<ControlPlaneContext>(std::move(context));
  const std::string prefix(api_prefix);

  auto create = [shared](HttpRequest& request, int default_timeout) -> HttpResponse {
    auto body = parse_create_request(request.body, default_timeout);
    if (!body) return api_error(body.error());
    if (body->unsupported) return refuse(*body->unsupported);
    auto image_id = resolve_template(shared->images, body->template_id);
    if (!image_id) return api_error(image_id.error());
    ProvisionRequest provision = to_provision_request(*body, *image_id);
    auto sandbox = shared->sandboxes.provision(std::nullopt, provision);
    if (!sandbox) return api_error(sandbox.error());
    // E2B's create answers once envd works: nothing follows it in the SDK. A long call, so its own thread.
    auto running = shared->sandboxes.wait(std::nullopt, WaitRequest{provision.task_id, limits::wait_timeout_max});
    if (!running) {
      // Never leave behind a sandbox the caller was told failed.
      (void)shared->sandboxes.destroy(std::nullopt, provision.task_id);
      if (running.error().kind == ErrorKind::timeout)
        return api_error(504, "the sandbox did not become ready: " + running.error().message);
      return api_error(running.error());
    }
    return json_response(201, sandbox_to_json(*running, shared->domain()));
  };
  for (const char* path : {"/v2/sandboxes", "/sandboxes"}) {
    int default_timeout = std::string_view(path) == "/sandboxes" ? 15 : 300;
    router.add("POST", prefix + path,
               [create, default_timeout](HttpRequest& request) { return create(request, default_timeout); });
    router.add("GET", prefix + path, [shared](HttpRequest& request) {
      auto query = parse_list_query(request.query);
      if (!query) return api_error(query.error());
      auto page = select_page(shared->sandboxes.list(std::nullopt, SandboxFilter{}), *query);
      if (!page) return api_error(page.error());
      HttpResponse response = json_response(200, listed_sandboxes_to_json(page->sandboxes));
      if (page->next_token) response.headers["X-Next-Token"] = *page->next_token;
      response.headers["X-Total-Running"] = std::to_string(page->total);
      return response;
    });
  }
  router.add("GET", prefix + "/sandboxes/{id}", [shared](HttpRequest& request) {
    auto sandbox = live_sandbox(shared->sandboxes, request.path_params.at("id"));
    if (!sandbox) return api_error(sandbox.error());
    return json_response(200, sandbox_detail_to_json(*sandbox, shared->domain()));
  });
  router.add("DELETE", prefix + "/sandboxes/{id}", [shared](HttpRequest& request) {
    auto sandbox = live_sandbox(shared->sandboxes, request.path_params.at("id"));
    if (!sandbox) return api_error(sandbox.error());
    auto destroyed = shared->sandboxes.destroy(sandbox->workspace_id, sandbox->name);
    if (!destroyed) return api_error(destroyed.error());
    return HttpResponse{.status = 204, .content_type = ""};
  });
  router.add("POST", prefix + "/sandboxes/{id}/timeout", [shared](HttpRequest& request) {
    auto timeout = parse_timeout_request(request.body);
    if (!timeout) return api_error(timeout.error());
    auto sandbox = live_sandbox(shared->sandboxes, request.path_params.at("id"));
    if (!sandbox) return api_error(sandbox.error());
    auto extended = shared->sandboxes.extend(sandbox->workspace_id, ExtendRequest{sandbox->name, *timeout});
    if (!extended) {
      if (extended.error().kind == ErrorKind::conflict && live_sandbox(shared->sandboxes, sandbox->id))
        return api_error(400, extended.error().message);  // past the sandbox's lifetime limit
      return api_error(extended.error().kind == ErrorKind::conflict
                           ? Error{ErrorKind::not_found, not_found_message(sandbox->id), {}}
                           : extended.error());
    }
    return HttpResponse{.status = 204, .content_type = ""};
  });
  auto connect = [shared](HttpRequest& request) -> HttpResponse {
    auto timeout = parse_connect_request(request.body);
    if (!timeout) return api_error(timeout.error());
    auto sandbox = live_sandbox(shared->sandboxes, request.path_params.at("id"));
    if (!sandbox) return api_error(sandbox.error());
    if (sandbox->status == SandboxStatus::provisioning) {
      auto running =
          shared->sandboxes.wait(sandbox->workspace_id, WaitRequest{sandbox->name, limits::wait_timeout_max});
      if (!running) return api_error(running.error());
      sandbox = std::move(running);
    }
    // "TTL is only extended": a sandbox without a TTL keeps none, and a later expiry stays.
    int seconds = timeout->value_or(300);
    auto wanted = std::chrono::system_clock::now() + std::chrono::seconds(seconds);
    if (auto expires = sandbox->expires_at(); expires && *expires < wanted) {
      auto extended = shared->sandboxes.extend(sandbox->workspace_id, ExtendRequest{sandbox->name, seconds});
      if (!extended) {
        if (extended.error().kind == ErrorKind::conflict && live_sandbox(shared->sandboxes, sandbox->id))
          return api_error(400, extended.error().message);
        return api_error(404, not_found_message(sandbox->id));
      }
      sandbox = std::move(extended);
    }
    return json_response(200, sandbox_to_json(*sandbox, shared->domain()));
  };
  router.add("POST", prefix + "/v2/sandboxes/{id}/connect", connect);
  router.add("POST", prefix + "/sandboxes/{id}/connect", connect);

  // What modbox does not do: refused with a reason, never faked.
  auto refuse_with = [&router, &prefix](const char* method, const char* path, std::string why) {
    std::size_t colon = why.find(": ");
    router.add(method, prefix + path, [feature = why.substr(0, colon), reason = why.substr(colon + 2)](HttpRequest&) {
      return refuse(feature, reason);
    });
  };
  refuse_with("POST", "/sandboxes/{id}/pause",
              "pause: a modbox sandbox runs until it is killed or its TTL ends (no memory snapshots to resume from)");
  refuse_with("POST", "/sandboxes/{id}/resume", "resume: modbox never pauses a sandbox");
  refuse_with("POST", "/sandboxes/{id}/fork", "fork: modbox cannot clone a running sandbox");
  refuse_with("GET", "/sandboxes/{id}/metrics", "metrics: modbox records no CPU, memory or disk metrics per sandbox");
  refuse_with("GET", "/sandboxes/metrics", "metrics: modbox records no CPU, memory or disk metrics per sandbox");
  refuse_with("PUT", "/sandboxes/{id}/network",
              "network update: a modbox sandbox's network is fixed when it is provisioned");
  refuse_with("POST", "/sandboxes/{id}/snapshots",
              "snapshots through E2B's API: use modbox's POST /sandboxes/snapshot, which makes an image");
  refuse_with("GET", "/snapshots", "snapshots through E2B's API: modbox's snapshots are images (`modbox images list`)");
  refuse_with("POST", "/sandboxes/{id}/refreshes", "refresh: use setTimeout (POST /sandboxes/{id}/timeout)");
}

HttpResponse serve(const Router& router, const std::string& token, HttpRequest& request) {
  if (request.over_tcp) {
    const std::string* key = request.header("x-api-key");
    if (key == nullptr || !constant_time_equals(*key, token))
      return api_error(401,
                       "E2B's API needs X-API-Key: <the agent's token> (E2B_API_KEY from `modbox agent env --e2b`)");
  }
  HttpResponse response = router.dispatch(request);
  // The router's own refusals (unknown path, wrong method) in E2B's shape; templates, volumes and
  // secrets among them.
  if (response.status == 404 && response.body.starts_with("{\"detail\"")) {
    std::string_view path = std::string_view(request.path).substr(api_prefix.size());
    for (std::string_view feature : {"/templates", "/volumes", "/secrets", "/v2/templates", "/v3/templates", "/teams",
                                     "/access-tokens", "/api-keys", "/nodes"})
      if (path == feature || path.starts_with(std::string(feature) + "/"))
        return refuse("E2B's " + std::string(feature) + " API",
                      "modbox's images (its templates) are managed with `modbox images` and its control API");
    return api_error(404, "no such E2B endpoint: " + request.method + " " + request.path);
  }
  if (response.status == 405 && response.body.starts_with("{\"detail\""))
    return api_error(405, "method " + request.method + " is not allowed on " + request.path);
  return response;
}

bool is_long_call(const HttpRequest& request) {
  if (request.method != "POST" || !is_e2b_path(request.path)) return false;
  std::string_view path = std::string_view(request.path).substr(api_prefix.size());
  return path == "/v2/sandboxes" || path == "/sandboxes" || path.ends_with("/connect");
}

}  // namespace modbox::e2b
