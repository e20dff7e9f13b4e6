// The three ways a TTL holds here: the agent's reaper, Podman's container timeout while the
// agent is down, and the agent's reconcile at start.

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"

using namespace modbox::test;

TEST_CASE("the agent destroys a sandbox when its TTL expires", "[ttl]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("ttl");
  json sandbox = agent.provision_running(task, {{"ttl_seconds", 3}});
  const std::string id = sandbox["id"];
  CHECK(sandbox["expires_at"].is_string());
  CHECK(eventually([&] { return agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "destroyed"; }, 20s));
  CHECK(agent.container_states(id).empty());
}

TEST_CASE("Podman's timeout kills an expired sandbox while the agent is down; reconcile records it", "[ttl]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("backstop");
  json sandbox = agent.provision_running(task, {{"ttl_seconds", 4}});
  const std::string id = sandbox["id"];
  agent.kill9();
  // conmon enforces the container's timeout with no agent around.
  CHECK(eventually([&] {
    auto states = agent.container_states(id);
    return !states.empty() && states[0] != "running";
  }, 30s, 200ms));
  agent.start();
  auto detail = agent.api("GET", "/sandboxes/detail/" + id).json_body();
  CHECK(detail["status"] == "destroyed");
  CHECK(agent.container_states(id).empty());
}

TEST_CASE("reconcile at start fixes what changed while the agent was down", "[ttl][reconcile]") {
  TestAgent agent;
  agent.start();
  json vanished = agent.provision_running(unique_name("vanish"));
  json kept = agent.provision_running(unique_name("kept"));
  const std::string vanished_id = vanished["id"], kept_id = kept["id"];
  agent.stop();

  // A container removed behind the agent's back, and a labelled container no record owns.
  agent.podman({"rm", "-f", "-t", "0", "modbox-" + vanished["name"].get<std::string>() + "-" + vanished_id.substr(0, 8)});
  const std::string orphan = unique_name("orphan");
  auto created = agent.podman({"run", "-d", "--name", orphan, "--label", "io.modbox.agent=" + agent.agent_id(), "--label",
                               "io.modbox.sandbox=not-a-record", "localhost/modbox/sandbox-lite:latest"});
  REQUIRE(created.exit_code == 0);

  agent.start();
  CHECK(eventually([&] { return agent.podman({"container", "exists", orphan}).exit_code == 1; }, 20s));
  CHECK(agent.api("GET", "/sandboxes/detail/" + vanished_id).json_body()["status"] == "destroyed");
  auto kept_detail = agent.api("GET", "/sandboxes/detail/" + kept_id).json_body();
  CHECK(kept_detail["status"] == "running");
  // The kept sandbox keeps its URL across the restart, and it works.
  CHECK(kept_detail["sandbox_url"] == kept["sandbox_url"]);
  CHECK(agent.cli({"exec", kept["name"], "--", "true"}).exit_code == 0);
}
