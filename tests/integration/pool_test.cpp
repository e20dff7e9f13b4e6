// Warm pools against real Podman: members started ahead and never listed, claims that answer running
// with the provision's env_vars (SANDBOX_API_KEY included) in every exec, its tags and a TTL counted
// from the claim, refills, size 0 leaving no container, agent restarts (SIGKILL too), and the CLI.

#include <catch2/catch.hpp>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// Registers sandbox-lite in `workspace` under a unique name; its image id.
std::string register_image(const TestAgent& agent, const std::string& workspace) {
  auto created =
      agent.api("POST", "/sandbox-images",
                json{{"image", "localhost/modbox/sandbox-lite"}, {"name", unique_name("pool-img")}}.dump(), workspace);
  INFO(created.body);
  REQUIRE(created.status == 201);
  return created.json_body()["id"];
}

json pool_of(const TestAgent& agent, const std::string& image_id) {
  json pools = agent.api("GET", "/pools").json_body();
  if (!pools.is_array()) throw std::runtime_error("GET /pools answered no list");
  for (const auto& pool : pools)
    if (pool["image_id"] == image_id) return pool;
  return nullptr;
}

bool pool_ready(const TestAgent& agent, const std::string& image_id, int ready) {
  return eventually(
      [&] {
        json pool = pool_of(agent, image_id);
        return pool.is_object() && pool["ready"] == ready && pool["starting"] == 0;
      },
      90s, 100ms);
}

/// The ids of this agent's containers (members and sandboxes alike), running or not.
std::vector<std::string> agent_containers(const TestAgent& agent) {
  auto listed = agent.podman({"ps", "-a", "--filter", "label=io.modbox.agent=" + agent.agent_id(), "--format", "json"});
  json containers = json::parse(listed.out, nullptr, false);
  if (!containers.is_array()) throw std::runtime_error("podman ps failed: " + listed.err);
  std::vector<std::string> ids;
  for (const auto& container : containers) ids.push_back(container.value("Id", "?"));
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

TEST_CASE("a provision claims a started sandbox of the pool: env, key, tags and TTL from the claim", "[pool]") {
  TestAgent agent;
  agent.start();
  const std::string workspace = unique_name("ws");
  const std::string image_id = register_image(agent, workspace);
  auto set = agent.api("PUT", "/pools/" + image_id, json{{"size", 2}}.dump(), workspace);
  INFO(set.body);
  REQUIRE(set.status == 200);
  CHECK(set.json_body()["size"] == 2);
  REQUIRE(pool_ready(agent, image_id, 2));
  // Members are containers, but never sandboxes of anyone's.
  CHECK(agent_containers(agent).size() == 2);
  CHECK(agent.api("GET", "/sandboxes").json_body() == json::array());
  CHECK(agent.api("GET", "/sandboxes", "", workspace).json_body() == json::array());

  const std::string task = unique_name("claim");
  const std::string key = "key-" + task;
  auto before = std::chrono::system_clock::now();
  auto provisioned = agent.api("POST", "/sandboxes/provision",
                               json{{"task_id", task},
                                    {"image_id", image_id},
                                    {"ttl_seconds", 300},
                                    {"env_vars", {{"SANDBOX_API_KEY", key}, {"POOL_PROBE", "claimed-" + task}}},
                                    {"tags", {{"suite", "pool"}}}}
                                   .dump(),
                               workspace);
  auto answered = std::chrono::system_clock::now();
  INFO(provisioned.body);
  REQUIRE(provisioned.status == 200);
  json sandbox = provisioned.json_body();
  // Running in the provision's own answer: no wait for Podman.
  CHECK(sandbox["status"] == "running");
  CHECK(sandbox["from_pool"] == true);
  CHECK(answered - before < 2s);
  CHECK(sandbox["tags"] == json{{"suite", "pool"}});
  CHECK(sandbox["api_key_set"] == true);
  auto created = modbox::parse_timestamp(sandbox["created_at"].get<std::string>());
  auto expires = modbox::parse_timestamp(sandbox["expires_at"].get<std::string>());
  REQUIRE(created.has_value());
  REQUIRE(expires.has_value());
  CHECK(*created >= before - 1s);
  CHECK(*expires - *created == 300s);
  const std::string id = sandbox["id"];

  // Every later command has the claim's environment, though the container started before it.
  auto env = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "env"}}.dump(), workspace);
  INFO(env.body);
  REQUIRE(env.status == 200);
  std::string output = env.json_body()["stdout"];
  CHECK(output.find("SANDBOX_API_KEY=" + key + "\n") != std::string::npos);
  CHECK(output.find("POOL_PROBE=claimed-" + task + "\n") != std::string::npos);
  // The sandbox URL takes the claim's key, and nothing else.
  const std::string url = sandbox["sandbox_url"];
  auto keyed = http_request(url, "POST", "/modbox/api/exec", json{{"command", "echo $POOL_PROBE"}}.dump(),
                            {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}});
  INFO(keyed.body);
  CHECK(keyed.status == 200);
  CHECK(keyed.body.find("claimed-" + task) != std::string::npos);
  CHECK(http_request(url, "POST", "/modbox/api/exec", json{{"command", "true"}}.dump(),
                     {{"Authorization", "Bearer wrong"}, {"Content-Type", "application/json"}})
            .status == 401);

  // Listed now, with its tags; the pool refills behind it.
  json listed = agent.api("GET", "/sandboxes?tag=suite=pool", "", workspace).json_body();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["id"] == id);
  REQUIRE(pool_ready(agent, image_id, 2));
  CHECK(agent_containers(agent).size() == 3);

  // Destroyed like any sandbox: the pool is not touched.
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), workspace).status == 200);
  CHECK(agent.container_states(id).empty());
  CHECK(pool_of(agent, image_id)["ready"] == 2);
}

TEST_CASE("size 0 deletes the pool and leaves no container; bad sizes and images are refused", "[pool]") {
  TestAgent agent;
  agent.start();
  const std::string workspace = unique_name("ws");
  const std::string image_id = register_image(agent, workspace);

  auto too_big = agent.api("PUT", "/pools/" + image_id, json{{"size", 21}}.dump(), workspace);
  CHECK(too_big.status == 422);
  CHECK(too_big.json_body()["detail"][0]["loc"] == json{"body", "size"});
  CHECK(agent.api("PUT", "/pools/" + image_id, "{\"size\": \"two\"}", workspace).status == 422);
  CHECK(agent.api("PUT", "/pools/" + image_id, "not json", workspace).status == 422);
  auto unknown = agent.api("PUT", "/pools/00000000-0000-4000-8000-000000000000", json{{"size", 1}}.dump(), workspace);
  CHECK(unknown.status == 404);
  CHECK(unknown.json_body()["detail"].is_string());
  // Another workspace's image is unknown there.
  CHECK(agent.api("PUT", "/pools/" + image_id, json{{"size", 1}}.dump(), unique_name("other")).status == 404);
  CHECK(agent.api("GET", "/pools").json_body() == json::array());

  REQUIRE(agent.api("PUT", "/pools/" + image_id, json{{"size", 2}}.dump(), workspace).status == 200);
  REQUIRE(pool_ready(agent, image_id, 2));
  REQUIRE(agent_containers(agent).size() == 2);
  auto emptied = agent.api("PUT", "/pools/" + image_id, json{{"size", 0}}.dump(), workspace);
  CHECK(emptied.status == 200);
  CHECK(emptied.json_body()["size"] == 0);
  CHECK(pool_of(agent, image_id).is_null());
  CHECK(eventually([&] { return agent_containers(agent).empty(); }, 30s));
  CHECK(agent.api("GET", "/sandboxes").json_body() == json::array());
  // With no pool, a provision of the image starts cold.
  json cold = agent.provision_running(unique_name("cold"), {{"image_id", image_id}});
  CHECK(cold["from_pool"] == false);
}

TEST_CASE("a pool and its members outlive an agent restart and a SIGKILL", "[pool]") {
  TestAgent agent;
  agent.start();
  const std::string workspace = unique_name("ws");
  const std::string image_id = register_image(agent, workspace);
  REQUIRE(agent.api("PUT", "/pools/" + image_id, json{{"size", 2}}.dump(), workspace).status == 200);
  REQUIRE(pool_ready(agent, image_id, 2));
  auto members = agent_containers(agent);
  REQUIRE(members.size() == 2);

  agent.stop();
  agent.start();
  CHECK(pool_of(agent, image_id)["size"] == 2);
  REQUIRE(pool_ready(agent, image_id, 2));
  CHECK(agent_containers(agent) == members);  // the same members: none lost, none leaked
  CHECK(agent.api("GET", "/sandboxes").json_body() == json::array());

  // A claim, then a crash: the claimed sandbox keeps its environment, the pool refills once.
  const std::string task = unique_name("after");
  json claimed = agent.provision_running(
      task, {{"image_id", image_id}, {"env_vars", {{"SANDBOX_API_KEY", "k"}, {"AFTER_CRASH", "yes"}}}});
  CHECK(claimed["from_pool"] == true);
  REQUIRE(pool_ready(agent, image_id, 2));
  agent.kill9();
  agent.start();
  REQUIRE(pool_ready(agent, image_id, 2));
  CHECK(agent_containers(agent).size() == 3);
  json listed = agent.api("GET", "/sandboxes").json_body();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["name"] == task);
  auto env = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "echo $AFTER_CRASH"}}.dump());
  CHECK(env.json_body()["stdout"] == "yes\n");
}

TEST_CASE("modbox pool set and ls", "[pool][cli]") {
  TestAgent agent;
  agent.start();
  const std::string name = unique_name("cli-pool");
  auto created =
      agent.api("POST", "/sandbox-images", json{{"image", "localhost/modbox/sandbox-lite"}, {"name", name}}.dump());
  REQUIRE(created.status == 201);
  const std::string image_id = created.json_body()["id"];
  auto set = agent.cli({"pool", "set", name, "--size", "1"});
  INFO(set.err);
  REQUIRE(set.exit_code == 0);
  CHECK(set.out.find("localhost/modbox/sandbox-lite") != std::string::npos);
  REQUIRE(pool_ready(agent, image_id, 1));
  auto table = agent.cli({"pool", "ls"});
  REQUIRE(table.exit_code == 0);
  CHECK(table.out.starts_with("IMAGE ID"));
  CHECK(table.out.find(image_id) != std::string::npos);
  json listed = json::parse(agent.cli({"pool", "ls", "--json"}).out);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["size"] == 1);
  CHECK(listed[0]["ready"] == 1);
  CHECK(agent.cli({"pool", "ls", "-q"}).out == image_id + "\n");
  auto bad = agent.cli({"pool", "set", name, "--size", "99"});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("size") != std::string::npos);
  CHECK(agent.cli({"pool", "set", "no-such-image", "--size", "1"}).exit_code == 4);
  REQUIRE(agent.cli({"pool", "set", name, "--size", "0"}).exit_code == 0);
  CHECK(agent.cli({"pool", "ls", "-q"}).out.empty());
  CHECK(eventually([&] { return agent_containers(agent).empty(); }, 30s));
}
