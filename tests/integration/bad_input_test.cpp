// Bad input gets a clear 4xx and changes nothing.

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {
std::size_t record_files(const TestAgent& agent) {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(agent.paths().sandboxes_dir())) {
    (void)entry;
    ++count;
  }
  return count;
}
}  // namespace

TEST_CASE("invalid provision bodies answer 422 with FastAPI details and create nothing", "[bad-input]") {
  TestAgent agent;
  agent.start();
  struct Case {
    std::string body;
    std::vector<std::string> loc;
  };
  const std::vector<Case> cases = {
      {"not json", {"body"}},
      {"[1,2]", {"body"}},
      {"{}", {"body", "task_id"}},
      {R"({"task_id": ""})", {"body", "task_id"}},
      {R"({"task_id": "has space"})", {"body", "task_id"}},
      {R"({"task_id": "../escape"})", {"body", "task_id"}},
      {R"({"task_id": ")" + std::string(64, 'x') + R"("})", {"body", "task_id"}},
      {R"({"task_id": 5})", {"body", "task_id"}},
      {R"({"task_id": "ok", "ttl_seconds": 0})", {"body", "ttl_seconds"}},
      {R"({"task_id": "ok", "ttl_seconds": 86401})", {"body", "ttl_seconds"}},
      {R"({"task_id": "ok", "ttl_seconds": "60"})", {"body", "ttl_seconds"}},
      {R"({"task_id": "ok", "env_vars": ["A=1"]})", {"body", "env_vars"}},
      {R"({"task_id": "ok", "env_vars": {"A": 1}})", {"body", "env_vars", "A"}},
      {R"({"task_id": "ok", "env_vars": {"1BAD": "x"}})", {"body", "env_vars", "1BAD"}},
  };
  for (const auto& item : cases) {
    INFO("body: " << item.body);
    auto reply = agent.api("POST", "/sandboxes/provision", item.body);
    CHECK(reply.status == 422);
    json detail = reply.json_body()["detail"];
    REQUIRE(detail.is_array());
    REQUIRE(!detail.empty());
    CHECK(detail[0]["loc"].get<std::vector<std::string>>() == item.loc);
    CHECK(detail[0]["msg"].is_string());
    CHECK(detail[0]["type"].is_string());
  }
  CHECK(agent.api("GET", "/sandboxes").json_body().empty());
  CHECK(record_files(agent) == 0);
}

TEST_CASE("other bad requests answer a sentence and change nothing", "[bad-input]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("dup");
  agent.provision_running(task);
  auto before = agent.api("GET", "/sandboxes").body;

  auto duplicate = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}}.dump());
  CHECK(duplicate.status == 409);
  CHECK(duplicate.json_body()["detail"].get<std::string>().find(task) != std::string::npos);

  CHECK(agent.api("GET", "/sandboxes/detail/no-such-sandbox").status == 404);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", "no-such-sandbox"}}.dump()).status == 404);
  CHECK(agent.api("POST", "/sandboxes/wait", json{{"task_id", "no-such-sandbox"}}.dump()).status == 404);
  CHECK(agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", -1}}.dump()).status == 422);
  CHECK(agent.api("GET", "/sandboxes?status=sleeping").status == 422);
  CHECK(agent.api("GET", "/no/such/route").status == 404);
  CHECK(agent.api("DELETE", "/sandboxes/provision").status == 405);
  auto image = agent.api("POST", "/sandboxes/provision",
                         json{{"task_id", unique_name("img")}, {"image_id", "00000000-0000-0000-0000-000000000000"}}.dump());
  CHECK(image.status == 404);

  CHECK(agent.api("GET", "/sandboxes").body == before);
}

TEST_CASE("an image that is not in storage ends the sandbox failed, and wait says why", "[bad-input]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("noimg");
  auto provisioned = agent.api("POST", "/sandboxes/provision",
                               json{{"task_id", task}, {"image", "localhost/modbox/does-not-exist:latest"}}.dump());
  REQUIRE(provisioned.status == 200);
  auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 30}}.dump());
  CHECK(waited.status == 409);
  CHECK(waited.json_body()["detail"].get<std::string>().find("does-not-exist") != std::string::npos);
  auto detail = agent.api("GET", "/sandboxes/detail/" + task).json_body();
  CHECK(detail["status"] == "failed");
  CHECK(detail["error"].is_string());
  auto cli = agent.cli({"wait", task, "--timeout", "5"});
  CHECK(cli.exit_code == 1);
  CHECK(cli.err.find("does-not-exist") != std::string::npos);
  // A failed sandbox does not hold its task_id: the same name provisions again, as a new sandbox.
  auto again = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}}.dump());
  INFO(again.body);
  REQUIRE(again.status == 200);
  CHECK(again.json_body()["id"] != detail["id"]);
  auto running = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 60}}.dump());
  CHECK(running.status == 200);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
}
