// E2B compatibility, control plane: E2B's own JS SDK (tests/integration/clients/e2b-control.mjs) against
// the real agent and rootless Podman, configured only by `modbox agent env --e2b`; and raw requests for
// what the SDK does not show: the same sandbox in modbox's own API with its tags, the access token as
// the sandbox's SANDBOX_API_KEY, E2B's error bodies for bad bodies and unknown ids, and X-API-Key taken on
// E2B's routes only.

#include <catch2/catch.hpp>
#include <set>
#include <sstream>

#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;

namespace {

/// `modbox agent env --e2b` as a map.
std::map<std::string, std::string> e2b_env(const TestAgent& agent) {
  auto printed = agent.cli({"agent", "env", "--e2b"});
  INFO(printed.out << printed.err);
  REQUIRE(printed.exit_code == 0);
  std::map<std::string, std::string> env;
  std::istringstream lines(printed.out);
  for (std::string line; std::getline(lines, line);)
    if (auto equals = line.find('='); equals != std::string::npos && line.starts_with("E2B_"))
      env[line.substr(0, equals)] = line.substr(equals + 1);
  REQUIRE(env.size() == 4);
  return env;
}

/// The control API's URL (E2B_API_URL without its /e2b).
std::string api_origin(const std::map<std::string, std::string>& env) {
  const std::string& url = env.at("E2B_API_URL");
  REQUIRE(url.ends_with("/e2b"));
  return url.substr(0, url.size() - 4);
}

/// An E2B error reply: that status, and a body whose `code` is it with a message.
void check_e2b_error(const HttpReply& reply, int status) {
  INFO(reply.status << " " << reply.body);
  CHECK(reply.status == status);
  json body = reply.json_body();
  REQUIRE(body.is_object());
  CHECK(body["code"] == status);
  CHECK(body["message"].is_string());
  CHECK(!body["message"].get<std::string>().empty());
}

}  // namespace

TEST_CASE("e2b: the e2b SDK creates, lists, times, connects to and kills sandboxes", "[e2b]") {
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "e2b"));
  TestAgent agent;
  agent.start();
  auto env = e2b_env(agent);
  std::string tag = unique_name("e2b");

  auto run = run_client("e2b-control.mjs", {"--tag", tag}, 300s, env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const json& result = run.result;
  REQUIRE(result["sandbox_ids"].size() == 2);
  CHECK(result["info"]["metadata"]["note"] == "a b & c=d%20");
  CHECK(result["info"]["state"] == "running");
  CHECK(result["info"]["envdVersion"].get<std::string>() >= "0.5.2");
  // The TTL asked at create (600 s).
  CHECK(result["info"]["seconds_left"].get<int>() > 500);
  CHECK(result["info"]["seconds_left"].get<int>() <= 600);
  // Paged one by one, both sandboxes and nothing else; then a near miss of a filter matches nothing.
  CHECK(result["listed_pages"] == 2);
  std::set<std::string> listed(result["listed_ids"].begin(), result["listed_ids"].end());
  std::set<std::string> created(result["sandbox_ids"].begin(), result["sandbox_ids"].end());
  CHECK(listed == created);
  CHECK(result["mismatch_count"] == 0);
  // setTimeout(120 s) sets the TTL; connect asking for 30 s does not shorten it.
  CHECK(result["end_after_timeout_s"].get<int>() > 100);
  CHECK(result["end_after_timeout_s"].get<int>() <= 120);
  CHECK(result["end_after_connect_s"].get<int>() > 90);
  CHECK(result["connected_id"] == result["sandbox_ids"][0]);
  CHECK(result["pause_error"].get<std::string>().find("501: pause is not supported by modbox") != std::string::npos);
  CHECK(result["unknown_template_error"].get<std::string>().find("not found") != std::string::npos);
  CHECK(result["kill_first"] == true);
  CHECK(result["kill_second"] == false);
  CHECK(result["info_after_kill_error"].get<std::string>().starts_with("SandboxNotFoundError"));

  // modbox's own API saw them: the first destroyed by the kill, with its tags; none left running.
  auto sandboxes = agent.api("GET", "/sandboxes?tag=suite=" + tag).json_body();
  REQUIRE(sandboxes.size() == 2);
  for (const auto& sandbox : sandboxes) CHECK(sandbox["status"] == "destroyed");
}

TEST_CASE("e2b: an E2B sandbox is a modbox sandbox; refusals are E2B errors", "[e2b]") {
  TestAgent agent;
  agent.start();
  auto env = e2b_env(agent);
  std::string origin = api_origin(env);
  std::map<std::string, std::string> key = {{"X-API-Key", env.at("E2B_API_KEY")}, {"Content-Type", "application/json"}};
  CHECK(env.at("E2B_SANDBOX_URL").starts_with("http://127.0.0.1:"));
  CHECK(env.at("E2B_DOMAIN") == "localhost:" + env.at("E2B_SANDBOX_URL").substr(17));

  // The credential: X-API-Key on E2B's routes, never modbox's Bearer there, nor X-API-Key on modbox's.
  check_e2b_error(http_request(origin, "GET", "/e2b/v2/sandboxes"), 401);
  check_e2b_error(http_request(origin, "GET", "/e2b/v2/sandboxes", "", {{"X-API-Key", "wrong"}}), 401);
  check_e2b_error(
      http_request(origin, "GET", "/e2b/v2/sandboxes", "", {{"Authorization", "Bearer " + env.at("E2B_API_KEY")}}),
      401);
  CHECK(http_request(origin, "GET", "/sandboxes", "", {{"X-API-Key", env.at("E2B_API_KEY")}}).status == 401);
  CHECK(http_request(origin, "GET", "/e2b/v2/sandboxes", "", key).status == 200);

  // Bad bodies and queries.
  check_e2b_error(http_request(origin, "POST", "/e2b/v2/sandboxes", "not json", key), 422);
  check_e2b_error(http_request(origin, "POST", "/e2b/v2/sandboxes", R"({"templateID": 5})", key), 422);
  check_e2b_error(http_request(origin, "POST", "/e2b/v2/sandboxes", R"({"metadata": {"a": 1}})", key), 422);
  check_e2b_error(http_request(origin, "POST", "/e2b/v2/sandboxes", R"({"timeout": 0})", key), 400);
  check_e2b_error(http_request(origin, "POST", "/e2b/v2/sandboxes", R"({"timeout": 90000})", key), 400);
  check_e2b_error(http_request(origin, "POST", "/e2b/v2/sandboxes", R"({"volumeMounts": [{"name": "v"}]})", key), 501);
  check_e2b_error(http_request(origin, "GET", "/e2b/v2/sandboxes?state=frozen", "", key), 400);
  check_e2b_error(http_request(origin, "GET", "/e2b/v2/sandboxes?limit=0", "", key), 400);
  check_e2b_error(http_request(origin, "GET", "/e2b/v2/sandboxes?nextToken=garbage", "", key), 400);
  // Unknown ids: 404 whose body code is 404 (what the SDK tests), on every route that takes one.
  for (auto [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/e2b/sandboxes/nope"},
                                                        {"DELETE", "/e2b/sandboxes/nope"},
                                                        {"POST", "/e2b/v2/sandboxes/nope/connect"}})
    check_e2b_error(http_request(origin, method, path, "{}", key), 404);
  check_e2b_error(http_request(origin, "POST", "/e2b/sandboxes/nope/timeout", R"({"timeout": 60})", key), 404);
  check_e2b_error(http_request(origin, "GET", "/e2b/no/such/route", "", key), 404);
  // What modbox cannot do is 501 with a reason.
  check_e2b_error(http_request(origin, "POST", "/e2b/sandboxes/nope/pause", "{}", key), 501);
  check_e2b_error(http_request(origin, "GET", "/e2b/templates", "", key), 501);
  check_e2b_error(http_request(origin, "GET", "/e2b/sandboxes/nope/metrics", "", key), 501);

  // A create answers once the sandbox runs, with its SANDBOX_API_KEY as the envd token.
  std::string who = unique_name("e2b who");
  json create = {{"templateID", "base"},
                 {"timeout", 600},
                 {"metadata", {{"who", who}}},
                 {"envVars", {{"E2B_TEST_VALUE", "from e2b"}}}};
  auto created = http_request(origin, "POST", "/e2b/v2/sandboxes", create.dump(), key, 300s);
  INFO(created.body);
  REQUIRE(created.status == 201);
  json sandbox = created.json_body();
  std::string id = sandbox["sandboxID"];
  struct Kill {
    std::string origin, id;
    std::map<std::string, std::string> key;
    ~Kill() { http_request(origin, "DELETE", "/e2b/sandboxes/" + id, "", key); }
  } kill{origin, id, key};
  CHECK(sandbox["domain"] == env.at("E2B_DOMAIN"));
  CHECK(sandbox["envdVersion"].is_string());
  CHECK(sandbox["clientID"].is_string());
  std::string token = sandbox["envdAccessToken"];
  CHECK(token.size() >= 32);

  // modbox's own API shows it, running, with its tags and TTL; its URL takes the token as its key.
  auto listed = agent.api("GET", "/sandboxes?tag=who=" + who).json_body();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["id"] == id);
  CHECK(listed[0]["status"] == "running");
  CHECK(listed[0]["ttl_seconds"] == 600);
  auto exec = http_request(listed[0]["sandbox_url"], "POST", "/modbox/api/exec",
                           R"({"command": "printf %s \"$E2B_TEST_VALUE\""})",
                           {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
  INFO(exec.body);
  REQUIRE(exec.status == 200);
  CHECK(exec.json_body()["stdout"] == "from e2b");

  // Detail, and the list filtered by that metadata (encoded as the SDK encodes it).
  auto detail = http_request(origin, "GET", "/e2b/sandboxes/" + id, "", key);
  REQUIRE(detail.status == 200);
  CHECK(detail.json_body()["metadata"]["who"] == who);
  CHECK(detail.json_body()["envdAccessToken"] == token);

  // Timeouts beyond modbox's limits are 400; within them 204 and the TTL moves.
  check_e2b_error(http_request(origin, "POST", "/e2b/sandboxes/" + id + "/timeout", R"({"timeout": 86401})", key), 400);
  check_e2b_error(http_request(origin, "POST", "/e2b/sandboxes/" + id + "/timeout", R"({"seconds": 5})", key), 422);
  CHECK(http_request(origin, "POST", "/e2b/sandboxes/" + id + "/timeout", R"({"timeout": 120})", key).status == 204);
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["ttl_seconds"] == 120);

  // Killed: 204, destroyed in modbox's API, and gone for E2B (404 with code 404).
  auto killed = http_request(origin, "DELETE", "/e2b/sandboxes/" + id, "", key);
  CHECK(killed.status == 204);
  CHECK(killed.body.empty());
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "destroyed");
  check_e2b_error(http_request(origin, "DELETE", "/e2b/sandboxes/" + id, "", key), 404);
  check_e2b_error(http_request(origin, "GET", "/e2b/sandboxes/" + id, "", key), 404);
}

TEST_CASE("e2b: the README's E2B example runs as written with `modbox agent env --e2b`", "[e2b][readme]") {
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "e2b"));
  TestAgent agent;
  agent.start();
  auto env = e2b_env(agent);
  // From the clients' directory, where `e2b` resolves (an -e module resolves from the working directory).
  auto run = run_command(
      {"env", "-C", test_clients_dir().string(), "node", "--input-type=module", "-e", readme_example("e2b-control")},
      env, 300s);
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.out == "true\ntrue false\n");
  // Nothing left running.
  for (const auto& sandbox : agent.api("GET", "/sandboxes?tag=owner=readme").json_body())
    CHECK(sandbox["status"] == "destroyed");
}
