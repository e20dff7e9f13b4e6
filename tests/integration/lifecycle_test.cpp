// provision → wait → exec → destroy against the real agent and real Podman.

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"

using namespace modbox::test;

TEST_CASE("a sandbox goes from provisioning to running, runs commands and is destroyed", "[lifecycle]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("life");
  const std::string key = unique_name("key");

  auto provisioned = agent.api("POST", "/sandboxes/provision",
                               json{{"task_id", task}, {"ttl_seconds", 600}, {"env_vars", {{"SANDBOX_API_KEY", key}, {"GREETING", "hi there"}}}}.dump());
  REQUIRE(provisioned.status == 200);
  json sandbox = provisioned.json_body();
  CHECK(sandbox["status"] == "provisioning");
  CHECK(sandbox["name"] == task);
  CHECK(sandbox["sandbox_url"].is_null());
  for (const char* field : {"id", "name", "status", "sandbox_url", "image", "created_by", "created_at", "destroyed_at"})
    CHECK(sandbox.contains(field));
  CHECK(provisioned.body.find(key) == std::string::npos);  // the key is never echoed

  auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 60}}.dump());
  REQUIRE(waited.status == 200);
  sandbox = waited.json_body();
  REQUIRE(sandbox["status"] == "running");
  const std::string url = sandbox["sandbox_url"];
  CHECK(url.starts_with("http://127.0.0.1:"));
  const std::string id = sandbox["id"];
  CHECK(agent.container_states(id) == std::vector<std::string>{"running"});

  SECTION("exec through the sandbox URL with the sandbox's key") {
    auto reply = http_request(url, "POST", "/modbox/api/exec", json{{"command", "echo hello; echo oops >&2; exit 3"}}.dump(),
                              {{"Authorization", "Bearer " + key}});
    REQUIRE(reply.status == 200);
    json result = reply.json_body();
    CHECK(result["exitCode"] == 3);
    CHECK(result["stdout"] == "hello\n");
    CHECK(result["stderr"] == "oops\n");
    CHECK(result["killed"] == false);
    CHECK(result["signal"].is_null());
    CHECK(result["truncated"] == false);
    CHECK(result["durationMs"].is_number_integer());

    auto env = http_request(url, "POST", "/modbox/api/exec", json{{"command", "echo \"$GREETING\""}, {"cwd", "/tmp"}}.dump(),
                            {{"Authorization", "Bearer " + key}});
    CHECK(env.json_body()["stdout"] == "hi there\n");
    auto cwd = http_request(url, "POST", "/modbox/api/exec", json{{"command", "pwd"}, {"cwd", "/tmp"}}.dump(),
                            {{"Authorization", "Bearer " + key}});
    CHECK(cwd.json_body()["stdout"] == "/tmp\n");
    auto missing = http_request(url, "POST", "/modbox/api/exec", json{{"command", "pwd"}, {"cwd", "/no/such/dir"}}.dump(),
                                {{"Authorization", "Bearer " + key}});
    REQUIRE(missing.status == 200);
    CHECK(missing.json_body()["exitCode"] != 0);
    CHECK(missing.json_body()["stderr"].get<std::string>().find("/no/such/dir") != std::string::npos);
    auto not_found = http_request(url, "POST", "/modbox/api/exec", json{{"command", "no-such-command-xyz"}}.dump(),
                                  {{"Authorization", "Bearer " + key}});
    CHECK(not_found.json_body()["exitCode"] == 127);
  }

  SECTION("exec refuses a missing, wrong or prefix-only key") {
    for (const std::string& authorization : {std::string(), std::string("Bearer wrong"), "Bearer " + key.substr(0, 4),
                                             "Bearer " + key + "x", key}) {
      std::map<std::string, std::string> headers;
      if (!authorization.empty()) headers["Authorization"] = authorization;
      auto reply = http_request(url, "POST", "/modbox/api/exec", json{{"command", "touch /tmp/pwned"}}.dump(), headers);
      CHECK(reply.status == 401);
    }
    auto check = agent.cli({"exec", task, "--", "test", "-e", "/tmp/pwned"});
    CHECK(check.exit_code == 1);
  }

  SECTION("exec with a timeout kills the command and says so") {
    auto reply = http_request(url, "POST", "/modbox/api/exec", json{{"command", "sleep 30"}, {"timeout", 1000}}.dump(),
                              {{"Authorization", "Bearer " + key}});
    REQUIRE(reply.status == 200);
    CHECK(reply.json_body()["killed"] == true);
    CHECK(reply.json_body()["signal"] == "SIGKILL");
    CHECK(reply.json_body()["durationMs"].get<int>() < 5000);
  }

  SECTION("the CLI's exec passes the command's exit status and output") {
    auto ok = agent.cli({"exec", task, "--", "python3", "-c", "print(1)"});
    CHECK(ok.exit_code == 0);
    CHECK(ok.out == "1\n");
    auto failed = agent.cli({"exec", task, "--", "sh", "-c", "echo err >&2; exit 42"});
    CHECK(failed.exit_code == 42);
    CHECK(failed.err.find("err") != std::string::npos);
    auto quoted = agent.cli({"exec", task, "--", "echo", "it's", "a b"});
    CHECK(quoted.out == "it's a b\n");
  }

  SECTION("detail, list and get show the running sandbox") {
    auto detail = agent.api("GET", "/sandboxes/detail/" + id);
    REQUIRE(detail.status == 200);
    CHECK(detail.json_body()["sandbox_url"] == url);
    auto running = agent.api("GET", "/sandboxes?status=running");
    REQUIRE(running.status == 200);
    bool listed = false;
    for (const auto& item : running.json_body()) listed = listed || item["id"] == id;
    CHECK(listed);
    auto got = agent.cli({"--json", "get", task});
    CHECK(got.exit_code == 0);
    CHECK(json::parse(got.out)["id"] == id);
  }

  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump());
  REQUIRE(destroyed.status == 200);
  CHECK(destroyed.json_body()["status"] == "destroyed");
  CHECK(destroyed.json_body()["destroyed_at"].is_string());
  CHECK(agent.container_states(id).empty());
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "destroyed");
  // The URL is gone with the sandbox.
  CHECK(eventually([&] { return http_request(url, "POST", "/modbox/api/exec", "{}", {}, 2s).status == 0; }, 10s));
  // Exec on a destroyed sandbox is refused, not attempted.
  auto exec_after = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "true"}}.dump());
  CHECK((exec_after.status == 404 || exec_after.status == 409));
  // Destroy is idempotent; the task_id can be used again.
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
  auto again = agent.provision_running(task);
  CHECK(again["id"] != id);
}

TEST_CASE("a sandbox provisioned without SANDBOX_API_KEY has its API refused", "[lifecycle]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("nokey");
  json sandbox = agent.provision_running(task);
  CHECK(sandbox["api_key_set"] == false);
  auto reply = http_request(sandbox["sandbox_url"], "POST", "/modbox/api/exec", json{{"command", "true"}}.dump(),
                            {{"Authorization", "Bearer anything"}});
  CHECK(reply.status == 403);
  CHECK(reply.json_body()["detail"].get<std::string>().find("SANDBOX_API_KEY") != std::string::npos);
}

TEST_CASE("one sandbox's key does not open another sandbox", "[lifecycle]") {
  TestAgent agent;
  agent.start();
  json first = agent.provision_running(unique_name("a"), {{"env_vars", {{"SANDBOX_API_KEY", "key-a"}}}});
  json second = agent.provision_running(unique_name("b"), {{"env_vars", {{"SANDBOX_API_KEY", "key-b"}}}});
  auto reply = http_request(second["sandbox_url"], "POST", "/modbox/api/exec", json{{"command", "true"}}.dump(),
                            {{"Authorization", "Bearer key-a"}});
  CHECK(reply.status == 401);
  auto own = http_request(first["sandbox_url"], "POST", "/modbox/api/exec", json{{"command", "true"}}.dump(),
                          {{"Authorization", "Bearer key-a"}});
  CHECK(own.status == 200);
}

TEST_CASE("workspaces scope task_ids and lookups", "[lifecycle]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("ws");
  auto in_a = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}}.dump(), "team-a");
  auto in_b = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}}.dump(), "team-b");
  REQUIRE(in_a.status == 200);
  REQUIRE(in_b.status == 200);
  CHECK(in_a.json_body()["workspace_id"] == "team-a");
  auto list_a = agent.api("GET", "/sandboxes", "", "team-a").json_body();
  REQUIRE(list_a.size() == 1);
  CHECK(list_a[0]["id"] == in_a.json_body()["id"]);
  // Another workspace cannot see or destroy it.
  CHECK(agent.api("GET", "/sandboxes/detail/" + in_a.json_body()["id"].get<std::string>(), "", "team-b").status == 404);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), "team-c").status == 404);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), "team-a").status == 200);
  // team-b's sandbox of the same name is still there (a 404's body has no status either).
  auto still_b = agent.api("GET", "/sandboxes/detail/" + in_b.json_body()["id"].get<std::string>(), "", "team-b");
  REQUIRE(still_b.status == 200);
  std::string status_b = still_b.json_body()["status"];
  CHECK((status_b == "provisioning" || status_b == "running"));
}
