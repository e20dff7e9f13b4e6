// E2B's control plane as modbox maps it (agent/e2b/control_plane.h): the doubly encoded metadata filter
// of list, create bodies and their limits, list queries and pages, the provision a create becomes, and
// the answers' shapes.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent/e2b/control_plane.h"

using namespace modbox;
using namespace modbox::e2b;
using nlohmann::json;

namespace {

/// What the SDK sends for `metadata` once the server has query-decoded it: each key and value
/// encodeURIComponent'ed, then the pairs through URLSearchParams (so '%' becomes %25, ' ' '+').
std::string sdk_metadata(const std::map<std::string, std::string>& metadata) {
  auto uri_component = [](const std::string& text) {
    std::string out;
    for (unsigned char c : text) {
      if (std::isalnum(c) || std::string_view("-_.!~*'()").find(static_cast<char>(c)) != std::string_view::npos)
        out += static_cast<char>(c);
      else {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", c);
        out += hex;
      }
    }
    return out;
  };
  auto form = [](const std::string& text) {  // URLSearchParams: '%' → %25, ' ' → '+'
    std::string out;
    for (char c : text) out += c == '%' ? std::string("%25") : std::string(1, c);
    return out;
  };
  std::string joined;
  for (const auto& [key, value] : metadata)
    joined += (joined.empty() ? "" : "&") + form(uri_component(key)) + "=" + form(uri_component(value));
  return joined;
}

Sandbox sandbox(std::string id, int created_second, std::map<std::string, std::string> tags = {},
                SandboxStatus status = SandboxStatus::running) {
  Sandbox result;
  result.id = std::move(id);
  result.name = "e2b-" + result.id;
  result.status = status;
  result.image = "localhost/modbox/sandbox-lite:latest";
  result.image_id = "img-lite";
  result.created_at = TimePoint{} + std::chrono::seconds(1'800'000'000 + created_second);
  result.ttl_seconds = 300;
  result.tags = std::move(tags);
  result.env_vars = {{"SANDBOX_API_KEY", "key-" + result.id}, {"OTHER", "x"}};
  return result;
}

std::vector<std::string> ids(const Page& page) {
  std::vector<std::string> result;
  for (const auto& item : page.sandboxes) result.push_back(item.id);
  return result;
}

}  // namespace

TEST_CASE("e2b: the metadata filter is decoded twice, as the SDK encodes it twice", "[e2b]") {
  std::map<std::string, std::string> metadata = {{"user", "a b"}, {"note", "x&y=z%20"}, {"ü key", "✓"}};
  auto decoded = parse_metadata_query(sdk_metadata(metadata));
  REQUIRE(decoded.has_value());
  CHECK(*decoded == metadata);
  // The notes' worked example: ?metadata=user%3Da%252520b arrives query-decoded as user=a%2520b.
  CHECK(*parse_metadata_query("user=a%2520b") == std::map<std::string, std::string>{{"user", "a b"}});
  // A '+' of the form layer is a space; an encoded '+' stays a plus.
  CHECK(*parse_metadata_query("k=a+b%252B") == std::map<std::string, std::string>{{"k", "a b+"}});
  CHECK(parse_metadata_query("")->empty());
  CHECK(parse_metadata_query("novalue").error().kind == ErrorKind::bad_request);
  CHECK(parse_metadata_query("=v").error().kind == ErrorKind::bad_request);
}

TEST_CASE("e2b: create bodies map onto modbox's limits", "[e2b]") {
  auto full = parse_create_request(
      R"({"templateID":"code-exec","timeout":600,"metadata":{"a":"1"},"envVars":{"X":"y"},"secure":true})", 300);
  REQUIRE(full.has_value());
  CHECK(full->template_id == "code-exec");
  CHECK(full->timeout_seconds == 600);
  CHECK(full->metadata == std::map<std::string, std::string>{{"a", "1"}});
  CHECK(full->env_vars == std::map<std::string, std::string>{{"X", "y"}});
  CHECK(!full->unsupported);
  // Defaults: base, 300 s for v2 and 15 s for the old route.
  CHECK(parse_create_request("{}", 300)->template_id == "base");
  CHECK(parse_create_request("{}", 300)->timeout_seconds == 300);
  CHECK(parse_create_request(R"({"templateID":"base"})", 15)->timeout_seconds == 15);
  // Wrong shapes are 422, modbox's limits 400.
  for (const char* body : {"", "[]", "not json", R"({"templateID":5})", R"({"templateID":""})", R"({"timeout":"60"})",
                           R"({"metadata":{"a":1}})", R"({"envVars":[]})", R"({"secure":"yes"})"}) {
    INFO(body);
    CHECK(parse_create_request(body, 300).error().kind == ErrorKind::validation);
  }
  for (const char* body :
       {R"({"timeout":0})", R"({"timeout":-1})", R"({"timeout":86401})", R"({"envVars":{"A=B":"1"}})"}) {
    INFO(body);
    auto refused = parse_create_request(body, 300);
    CHECK(refused.error().kind == ErrorKind::bad_request);
    CHECK(!refused.error().message.empty());
  }
  json many = json::object();
  for (int i = 0; i <= 64; ++i) many["k" + std::to_string(i)] = "v";
  CHECK(parse_create_request(json{{"metadata", many}}.dump(), 300).error().kind == ErrorKind::bad_request);
  CHECK(parse_create_request(json{{"metadata", {{"k", std::string(257, 'v')}}}}.dump(), 300).error().kind ==
        ErrorKind::bad_request);
  // Asked for and not done is never silently dropped.
  CHECK(parse_create_request(R"({"volumeMounts":[{"name":"v","path":"/v"}]})", 300)->unsupported == "volumeMounts");
  CHECK(parse_create_request(R"({"autoPause":true})", 300)->unsupported == "autoPause");
  CHECK(!parse_create_request(R"({"autoPause":false,"allow_internet_access":true})", 300)->unsupported);
  CHECK(parse_create_request(R"({"allow_internet_access":false})", 300)->unsupported.has_value());
}

TEST_CASE("e2b: timeout and connect bodies", "[e2b]") {
  CHECK(*parse_timeout_request(R"({"timeout":120})") == 120);
  CHECK(parse_timeout_request(R"({"timeout":0})").error().kind == ErrorKind::bad_request);
  CHECK(parse_timeout_request("{}").error().kind == ErrorKind::validation);
  CHECK(parse_timeout_request(R"({"timeout":1.5})").error().kind == ErrorKind::validation);
  CHECK(*parse_connect_request("") == std::nullopt);
  CHECK(*parse_connect_request("{}") == std::nullopt);
  CHECK(*parse_connect_request(R"({"timeout":60,"memory":false})") == std::optional<int>(60));
  CHECK(parse_connect_request(R"({"timeout":100000})").error().kind == ErrorKind::bad_request);
}

TEST_CASE("e2b: a create becomes a provision with tags, TTL and an access token", "[e2b]") {
  CreateRequest create{
      .template_id = "base", .timeout_seconds = 90, .metadata = {{"a", "1"}}, .env_vars = {{"X", "y"}}};
  auto provision = to_provision_request(create, std::nullopt);
  CHECK(provision.task_id.starts_with("e2b-"));
  CHECK(provision.ttl_seconds == 90);
  CHECK(provision.tags == create.metadata);
  CHECK(!provision.image_id);
  CHECK(provision.env_vars.at("X") == "y");
  CHECK(provision.env_vars.at("SANDBOX_API_KEY").size() == 64);
  CHECK(to_provision_request(create, std::nullopt).task_id != provision.task_id);
  create.env_vars["SANDBOX_API_KEY"] = "mine";
  CHECK(to_provision_request(create, std::string("img")).env_vars.at("SANDBOX_API_KEY") == "mine");
  CHECK(to_provision_request(create, std::string("img")).image_id == "img");
}

TEST_CASE("e2b: list queries, filters and pages", "[e2b]") {
  auto query = [](std::multimap<std::string, std::string> q) { return parse_list_query(q); };
  CHECK(query({{"state", "frozen"}}).error().kind == ErrorKind::bad_request);
  CHECK(query({{"limit", "0"}}).error().kind == ErrorKind::bad_request);
  CHECK(query({{"limit", "101"}}).error().kind == ErrorKind::bad_request);
  CHECK(query({{"limit", "5x"}}).error().kind == ErrorKind::bad_request);
  CHECK(query({{"order", "up"}}).error().kind == ErrorKind::bad_request);
  CHECK(query({{"nextToken", "garbage"}}).error().kind == ErrorKind::bad_request);
  CHECK(query({{"startedAfter", "yesterday"}}).error().kind == ErrorKind::bad_request);

  std::vector<Sandbox> all = {sandbox("a", 1, {{"team", "x y"}}),
                              sandbox("b", 2, {{"team", "x y"}, {"k", "v"}}),
                              sandbox("c", 3, {{"team", "x y"}}),
                              sandbox("d", 4, {{"team", "other"}}),
                              sandbox("e", 5, {{"team", "x y"}}, SandboxStatus::destroyed),
                              sandbox("f", 6, {{"team", "x y"}}, SandboxStatus::provisioning)};
  // Newest first by default; dead sandboxes never; provisioning ones as running.
  auto team = query({{"metadata", "team=x%2520y"}});
  REQUIRE(team.has_value());
  CHECK(ids(*select_page(all, *team)) == std::vector<std::string>{"f", "c", "b", "a"});
  CHECK(ids(*select_page(all, *query({{"metadata", "team=x%2520y&k=v"}}))) == std::vector<std::string>{"b"});
  CHECK(ids(*select_page(all, *query({{"state", "paused"}}))).empty());
  CHECK(ids(*select_page(all, *query({{"state", "running,paused"}, {"order", "asc"}}))) ==
        std::vector<std::string>{"a", "b", "c", "d", "f"});

  // Pages of two, carried on by the token until none is answered.
  std::vector<std::string> seen;
  std::optional<std::string> token;
  int pages = 0;
  do {
    std::multimap<std::string, std::string> q = {{"metadata", "team=x%2520y"}, {"limit", "2"}};
    if (token) q.emplace("nextToken", *token);
    auto page = select_page(all, *query(q));
    REQUIRE(page.has_value());
    CHECK(page->total == 4);
    for (auto& id : ids(*page)) seen.push_back(id);
    token = page->next_token;
    REQUIRE(++pages <= 3);
  } while (token);
  CHECK(pages == 2);
  CHECK(seen == std::vector<std::string>{"f", "c", "b", "a"});
}

TEST_CASE("e2b: answers carry what the SDK reads", "[e2b]") {
  Sandbox box = sandbox("sb1", 0, {{"k", "v"}});
  json created = json::parse(sandbox_to_json(box, "localhost:4000"));
  CHECK(created["sandboxID"] == "sb1");
  CHECK(created["templateID"] == "img-lite");
  CHECK(created["envdAccessToken"] == "key-sb1");
  CHECK(created["domain"] == "localhost:4000");
  CHECK(created["envdVersion"] == std::string(envd_version()));
  CHECK(created["clientID"].is_string());

  json listed = json::parse(listed_sandboxes_to_json({box}));
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["state"] == "running");
  CHECK(listed[0]["metadata"] == json{{"k", "v"}});
  CHECK(listed[0]["startedAt"] == "2027-01-15T08:00:00.000Z");
  CHECK(listed[0]["endAt"] == "2027-01-15T08:05:00.000Z");
  CHECK(!listed[0].contains("envdAccessToken"));  // a listing gives out no keys
  for (const char* field : {"cpuCount", "memoryMB", "diskSizeMB"}) CHECK(listed[0][field].is_number_integer());

  json detail = json::parse(sandbox_detail_to_json(box, std::nullopt));
  CHECK(detail["domain"].is_null());
  CHECK(detail["envdAccessToken"] == "key-sb1");
  CHECK(detail["lifecycle"]["onTimeout"] == "kill");

  HttpResponse error = api_error(404, "sandbox 'x' not found");
  CHECK(error.status == 404);
  CHECK(json::parse(error.body) == json{{"code", 404}, {"message", "sandbox 'x' not found"}});
  HttpResponse invalid = api_error(parse_create_request(R"({"timeout":"1"})", 300).error());
  CHECK(invalid.status == 422);
  json body = json::parse(invalid.body);
  CHECK(body["code"] == 422);
  CHECK(body["message"].get<std::string>().starts_with("timeout: "));
}
