// The /sandbox-images API against the real agent, every answer checked against the schemas of the
// OpenAPI document in seeds/003; workspace scoping; provisioning from a registered image; the CLI.

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"
#include "tests/integration/openapi_schema.h"

using namespace modbox::test;

namespace {

const OpenApiSchemas& schemas() {
  static const OpenApiSchemas loaded = OpenApiSchemas::from_seed(seed_file("003_"));
  return loaded;
}

// Workspace ids are UUIDs in the hosted API (SandboxImageDetail.workspace_id has format uuid).
const std::string team_a = "0c5a6e0e-6f55-4c43-9d0e-000000000a0a";
const std::string team_b = "0c5a6e0e-6f55-4c43-9d0e-000000000b0b";
const std::string sandbox_lite_id = "46e5ebb3-953e-4ab0-97d9-d5df69c87a82";

/// Checks one answer: its status, and its body against SandboxImageDetail (or a list of them).
json expect_images_answer(const HttpReply& reply, int status, bool list = false) {
  INFO("HTTP " << reply.status << ": " << reply.body);
  REQUIRE(reply.status == status);
  json body = reply.json_body();
  if (list) {
    REQUIRE(body.is_array());
    for (const auto& item : body) CHECK(schemas().check(item, "SandboxImageDetail") == std::vector<std::string>{});
  } else {
    CHECK(schemas().check(body, "SandboxImageDetail") == std::vector<std::string>{});
  }
  return body;
}

/// Checks a 422: HTTPValidationError with a non-empty detail whose first loc is `loc`.
void expect_validation_error(const HttpReply& reply, const std::vector<std::string>& loc) {
  INFO("HTTP " << reply.status << ": " << reply.body);
  REQUIRE(reply.status == 422);
  json body = reply.json_body();
  CHECK(schemas().check(body, "HTTPValidationError") == std::vector<std::string>{});
  REQUIRE(body["detail"].is_array());
  REQUIRE_FALSE(body["detail"].empty());
  CHECK(body["detail"][0]["loc"] == json(loc));
}

std::vector<std::string> ids_of(const json& images) {
  std::vector<std::string> ids;
  for (const auto& image : images) ids.push_back(image["id"]);
  return ids;
}

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

}  // namespace

TEST_CASE("the seed's OpenAPI document is found and has the image schemas", "[images-api]") {
  CHECK(schemas().required("SandboxImageDetail") ==
        std::vector<std::string>{"created_at", "description", "enabled", "id", "image", "is_default", "memory_mb",
                                 "name", "tag", "updated_at"});
  CHECK(schemas().required("SandboxImageCreate") == std::vector<std::string>{"image", "name"});
}

TEST_CASE("the OpenAPI checker rejects what the schema forbids", "[images-api]") {
  // A valid detail, then one fault at a time: a checker that accepted everything would pass every other
  // test of this file.
  const json valid = {{"id", sandbox_lite_id},
                      {"name", "sandbox-lite"},
                      {"image", "modbox/sandbox-lite"},
                      {"tag", "latest"},
                      {"description", "a sandbox"},
                      {"enabled", true},
                      {"is_default", true},
                      {"memory_mb", 1024},
                      {"readiness_port", nullptr},
                      {"ttl_seconds", nullptr},
                      {"workspace_id", nullptr},
                      {"registry_id", nullptr},
                      {"created_at", "2026-05-22T10:00:00.000Z"},
                      {"updated_at", "2026-05-22T10:00:00.000Z"}};
  REQUIRE(schemas().check(valid, "SandboxImageDetail") == std::vector<std::string>{});
  json missing = valid;
  missing.erase("name");
  CHECK_FALSE(schemas().check(missing, "SandboxImageDetail").empty());
  json wrong_type = valid;
  wrong_type["memory_mb"] = "1024";
  CHECK_FALSE(schemas().check(wrong_type, "SandboxImageDetail").empty());
  json not_null = valid;
  not_null["enabled"] = nullptr;
  CHECK_FALSE(schemas().check(not_null, "SandboxImageDetail").empty());
  json bad_uuid = valid;
  bad_uuid["id"] = "not-a-uuid";
  CHECK_FALSE(schemas().check(bad_uuid, "SandboxImageDetail").empty());
  json bad_time = valid;
  bad_time["created_at"] = "yesterday";
  CHECK_FALSE(schemas().check(bad_time, "SandboxImageDetail").empty());
  CHECK_FALSE(schemas().check(json::array(), "SandboxImageDetail").empty());
  CHECK_FALSE(schemas().check(json{{"detail", "not a list"}}, "HTTPValidationError").empty());
}

TEST_CASE("POST, GET, PUT and DELETE /sandbox-images answer as seeds/003 says", "[images-api]") {
  TestAgent agent;
  agent.start();

  // The defaults are there at start, global and is_default.
  json listed = expect_images_answer(agent.api("GET", "/sandbox-images", "", team_a), 200, true);
  REQUIRE(listed.size() >= 1);
  CHECK(listed[0]["id"] == sandbox_lite_id);
  CHECK(listed[0]["image"] == "modbox/sandbox-lite");
  CHECK(listed[0]["is_default"] == true);
  CHECK(listed[0]["workspace_id"].is_null());
  for (const auto& image : listed) CHECK(image["is_default"] == true);

  // The seed's minimal example: the defaults of the schema apply, nulls are explicit.
  json created = expect_images_answer(
      agent.api("POST", "/sandbox-images", json{{"image", "ghcr.io/org/app"}, {"name", "App"}}.dump(), team_a), 201);
  CHECK(created["enabled"] == true);
  CHECK(created["is_default"] == false);
  CHECK(created["memory_mb"] == 1024);
  CHECK(created["tag"] == "latest");
  for (const char* nullable : {"description", "readiness_port", "registry_id", "registry_name", "ttl_seconds"})
    CHECK(created[nullable].is_null());
  CHECK(created["workspace_id"] == team_a);
  CHECK(created["created_at"] == created["updated_at"]);
  const std::string id = created["id"];

  // The seed's bring-your-own example.
  json full = expect_images_answer(
      agent.api("POST", "/sandbox-images",
                json{{"name", "My Python Sandbox"}, {"image", "ghcr.io/your-org/your-image"}, {"tag", "latest"},
                     {"description", "Custom Python environment with our libraries"}, {"memory_mb", 1024},
                     {"ttl_seconds", 3600}, {"readiness_port", 8080}}
                    .dump(),
                team_a),
      201);
  CHECK(full["ttl_seconds"] == 3600);
  CHECK(full["readiness_port"] == 8080);

  expect_images_answer(agent.api("GET", "/sandbox-images/" + id, "", team_a), 200);
  // The seed's update example, then clearing a nullable field.
  json updated = expect_images_answer(
      agent.api("PUT", "/sandbox-images/" + id, json{{"tag", "v2.1.0"}, {"memory_mb", 2048}, {"enabled", true}}.dump(), team_a),
      200);
  CHECK(updated["tag"] == "v2.1.0");
  CHECK(updated["memory_mb"] == 2048);
  CHECK(updated["name"] == "App");
  json cleared = expect_images_answer(
      agent.api("PUT", "/sandbox-images/" + full["id"].get<std::string>(), json{{"ttl_seconds", nullptr}}.dump(), team_a), 200);
  CHECK(cleared["ttl_seconds"].is_null());
  CHECK(cleared["readiness_port"] == 8080);

  json disabled = expect_images_answer(
      agent.api("PUT", "/sandbox-images/" + id, json{{"enabled", false}}.dump(), team_a), 200);
  CHECK(disabled["enabled"] == false);
  auto all = ids_of(expect_images_answer(agent.api("GET", "/sandbox-images", "", team_a), 200, true));
  auto enabled = ids_of(expect_images_answer(agent.api("GET", "/sandbox-images?enabled_only=true", "", team_a), 200, true));
  CHECK(contains(all, id));
  CHECK_FALSE(contains(enabled, id));
  CHECK(contains(enabled, sandbox_lite_id));

  // Survives a restart of the agent.
  agent.stop();
  agent.start();
  json reloaded = expect_images_answer(agent.api("GET", "/sandbox-images/" + id, "", team_a), 200);
  CHECK(reloaded == disabled);

  json deleted = expect_images_answer(agent.api("DELETE", "/sandbox-images/" + id, "", team_a), 200);
  CHECK(deleted["id"] == id);
  CHECK(agent.api("GET", "/sandbox-images/" + id, "", team_a).status == 404);
  CHECK(agent.api("DELETE", "/sandbox-images/" + id, "", team_a).status == 404);
}

TEST_CASE("invalid image bodies answer 422 in FastAPI's shape and change nothing", "[images-api]") {
  TestAgent agent;
  agent.start();
  std::string before = agent.api("GET", "/sandbox-images").body;
  struct Case {
    json body;
    std::vector<std::string> loc;
  };
  const std::vector<Case> cases = {
      {json::object(), {"body", "name"}},
      {json{{"name", "x"}}, {"body", "image"}},
      {json{{"image", "x"}}, {"body", "name"}},
      {json{{"name", "x"}, {"image", "x"}, {"memory_mb", 255}}, {"body", "memory_mb"}},
      {json{{"name", "x"}, {"image", "x"}, {"memory_mb", 8193}}, {"body", "memory_mb"}},
      {json{{"name", "x"}, {"image", "x"}, {"ttl_seconds", 59}}, {"body", "ttl_seconds"}},
      {json{{"name", "x"}, {"image", "x"}, {"ttl_seconds", 86401}}, {"body", "ttl_seconds"}},
      {json{{"name", "x"}, {"image", "x"}, {"readiness_port", 0}}, {"body", "readiness_port"}},
      {json{{"name", "x"}, {"image", "x"}, {"readiness_port", 65536}}, {"body", "readiness_port"}},
      {json{{"name", "x"}, {"image", "Not/Valid"}}, {"body", "image"}},
      {json{{"name", "x"}, {"image", "ghcr.io/org/app:tag"}}, {"body", "image"}},
      {json{{"name", "x"}, {"image", "x"}, {"tag", "bad tag"}}, {"body", "tag"}},
      {json{{"name", "x"}, {"image", "x"}, {"registry_id", "nope"}}, {"body", "registry_id"}},
      {json{{"name", "x"}, {"image", "x"}, {"registry_id", "00000000-0000-4000-8000-000000000000"}}, {"body", "registry_id"}},
  };
  for (const auto& item : cases) {
    INFO("body: " << item.body.dump());
    expect_validation_error(agent.api("POST", "/sandbox-images", item.body.dump(), team_a), item.loc);
  }
  expect_validation_error(agent.api("POST", "/sandbox-images", "not json", team_a), {"body"});
  expect_validation_error(agent.api("GET", "/sandbox-images?enabled_only=maybe", "", team_a), {"query", "enabled_only"});
  expect_validation_error(agent.api("GET", "/sandbox-images/not-a-uuid", "", team_a), {"path", "image_id"});
  json created = expect_images_answer(
      agent.api("POST", "/sandbox-images", json{{"name", "x"}, {"image", "x"}}.dump(), team_a), 201);
  expect_validation_error(agent.api("PUT", "/sandbox-images/" + created["id"].get<std::string>(),
                                    json{{"memory_mb", 100}}.dump(), team_a),
                          {"body", "memory_mb"});
  expect_images_answer(agent.api("DELETE", "/sandbox-images/" + created["id"].get<std::string>(), "", team_a), 200);
  CHECK(agent.api("GET", "/sandbox-images").body == before);
}

TEST_CASE("X-Workspace-Id scopes images; globals are read-only for workspaces", "[images-api]") {
  TestAgent agent;
  agent.start();
  auto create = [&](const std::optional<std::string>& workspace) {
    return expect_images_answer(
        agent.api("POST", "/sandbox-images", json{{"name", "scoped"}, {"image", "localhost/scoped"}}.dump(), workspace), 201);
  };
  json mine = create(team_a);
  json theirs = create(team_b);
  json global = create(std::nullopt);
  CHECK(global["workspace_id"].is_null());

  auto visible = ids_of(expect_images_answer(agent.api("GET", "/sandbox-images", "", team_a), 200, true));
  CHECK(contains(visible, mine["id"]));
  CHECK(contains(visible, global["id"]));
  CHECK_FALSE(contains(visible, theirs["id"]));
  CHECK(agent.api("GET", "/sandbox-images/" + theirs["id"].get<std::string>(), "", team_a).status == 404);
  CHECK(agent.api("PUT", "/sandbox-images/" + theirs["id"].get<std::string>(), json{{"tag", "x"}}.dump(), team_a).status == 404);

  for (const std::string& id : {global["id"].get<std::string>(), sandbox_lite_id}) {
    auto changed = agent.api("PUT", "/sandbox-images/" + id, json{{"memory_mb", 2048}}.dump(), team_a);
    CHECK(changed.status == 403);
    CHECK(changed.json_body()["detail"].is_string());
    CHECK(agent.api("DELETE", "/sandbox-images/" + id, "", team_a).status == 403);
  }
  auto builtin = agent.api("DELETE", "/sandbox-images/" + sandbox_lite_id);
  CHECK(builtin.status == 403);
  CHECK(builtin.json_body()["detail"].get<std::string>().find("built-in") != std::string::npos);
  expect_images_answer(agent.api("DELETE", "/sandbox-images/" + global["id"].get<std::string>()), 200);
}

TEST_CASE("a registered image provisions with its TTL; a disabled one is refused", "[images-api]") {
  TestAgent agent;
  agent.start();
  json image = expect_images_answer(
      agent.api("POST", "/sandbox-images",
                json{{"name", "lite again"}, {"image", "localhost/modbox/sandbox-lite"}, {"ttl_seconds", 600},
                     {"memory_mb", 512}}
                    .dump(),
                team_a),
      201);
  const std::string id = image["id"];
  const std::string task = unique_name("img");
  auto provisioned = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"image_id", id}}.dump(), team_a);
  REQUIRE(provisioned.status == 200);
  json sandbox = provisioned.json_body();
  CHECK(sandbox["image_id"] == id);
  CHECK(sandbox["image"] == "localhost/modbox/sandbox-lite:latest");
  CHECK(sandbox["ttl_seconds"] == 600);
  CHECK(sandbox["memory_mb"] == 512);
  // Whether the limit holds depends on the host; when it does not, the sandbox says why.
  REQUIRE(sandbox["memory_limit_enforced"].is_boolean());
  CHECK(sandbox["memory_limit_detail"].is_null() == sandbox["memory_limit_enforced"].get<bool>());
  auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 60}}.dump(), team_a);
  REQUIRE(waited.status == 200);
  CHECK(waited.json_body()["status"] == "running");

  // Without image_id: the default image, sandbox-lite, by its id.
  const std::string plain = unique_name("dflt");
  auto by_default = agent.api("POST", "/sandboxes/provision", json{{"task_id", plain}}.dump(), team_a);
  REQUIRE(by_default.status == 200);
  CHECK(by_default.json_body()["image_id"] == sandbox_lite_id);
  CHECK(by_default.json_body()["memory_mb"] == 1024);

  expect_images_answer(agent.api("PUT", "/sandbox-images/" + id, json{{"enabled", false}}.dump(), team_a), 200);
  auto refused = agent.api("POST", "/sandboxes/provision", json{{"task_id", unique_name("off")}, {"image_id", id}}.dump(), team_a);
  CHECK(refused.status == 409);
  CHECK(refused.json_body()["detail"].get<std::string>().find("disabled") != std::string::npos);
  CHECK(agent.api("POST", "/sandboxes/provision", json{{"task_id", unique_name("other")}, {"image_id", id}}.dump(), team_b)
            .status == 404);
  for (const std::string& name : {task, plain})
    CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", name}}.dump(), team_a).status == 200);
}

TEST_CASE("modbox images and registries commands", "[images-api]") {
  TestAgent agent;
  agent.start();
  auto created = agent.cli({"images", "create", "--name", "cli image", "--image", "localhost/cli-image", "--tag", "v1",
                            "--ttl", "120", "--json", "--workspace", team_a});
  REQUIRE(created.exit_code == 0);
  json image = json::parse(created.out);
  CHECK(schemas().check(image, "SandboxImageDetail") == std::vector<std::string>{});
  CHECK(image["ttl_seconds"] == 120);
  const std::string id = image["id"];

  auto listed = agent.cli({"images", "list", "-q", "--workspace", team_a});
  CHECK(listed.exit_code == 0);
  CHECK(listed.out.find(id) != std::string::npos);
  CHECK(listed.out.find(sandbox_lite_id) != std::string::npos);

  auto updated = agent.cli({"images", "update", "cli image", "--disable", "--no-ttl", "--json", "--workspace", team_a});
  REQUIRE(updated.exit_code == 0);
  CHECK(json::parse(updated.out)["enabled"] == false);
  CHECK(json::parse(updated.out)["ttl_seconds"].is_null());
  auto table = agent.cli({"images", "get", id, "--workspace", team_a});
  CHECK(table.exit_code == 0);
  CHECK(table.out.find("localhost/cli-image:v1") != std::string::npos);

  auto invalid = agent.cli({"images", "create", "--name", "x", "--image", "x", "--memory-mb", "9000"});
  CHECK(invalid.exit_code == 1);
  CHECK(invalid.err.find("memory_mb") != std::string::npos);
  auto builtin = agent.cli({"images", "delete", "modbox/sandbox-lite"});
  CHECK(builtin.exit_code == 1);
  CHECK(builtin.err.find("built-in") != std::string::npos);

  auto registry = agent.cli({"registries", "create", "cli-registry", "--server", "127.0.0.1:5999", "-u", "someone",
                             "--password", "cli-secret-value", "--workspace", team_a});
  REQUIRE(registry.exit_code == 0);
  auto registries = agent.cli({"registries", "list", "--json", "--workspace", team_a});
  CHECK(registries.exit_code == 0);
  CHECK(registries.out.find("cli-registry") != std::string::npos);
  CHECK(registries.out.find("cli-secret-value") == std::string::npos);
  CHECK(agent.cli({"registries", "delete", "cli-registry", "--workspace", team_a}).exit_code == 0);
  CHECK(agent.cli({"images", "delete", id, "--workspace", team_a}).exit_code == 0);
}
