// The ways a TTL holds on these hosts (no systemd as PID 1; tests/systemd covers the timers): the
// agent's reaper, its reconcile at start, and Podman's container timeout as the lifetime's backstop;
// and extend, which moves the expiry.

#include <catch2/catch.hpp>

#include "common/system.h"
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

TEST_CASE("Podman's timeout is armed at the sandbox's lifetime end, which extend cannot pass", "[ttl]") {
  TestAgent agent;
  agent.start();
  json sandbox = agent.provision_running(unique_name("armed"), {{"ttl_seconds", 30}});
  const std::string id = sandbox["id"];
  auto inspected = agent.podman({"ps", "-aq", "--filter", "label=io.modbox.sandbox=" + id});
  std::string container = inspected.out.substr(0, inspected.out.find('\n'));
  auto timeout = agent.podman({"inspect", "--format", "{{.Config.Timeout}}", container});
  INFO(timeout.err);
  REQUIRE(timeout.exit_code == 0);
  // 24 h after creation, less the second or two the provision took.
  int seconds = std::stoi(timeout.out);
  CHECK(seconds <= 86400);
  CHECK(seconds > 86400 - 30);
}

TEST_CASE("a sandbox that expired while the agent was down is destroyed by the next start's reconcile", "[ttl]") {
  TestAgent agent;
  agent.start();
  json sandbox = agent.provision_running(unique_name("away"), {{"ttl_seconds", 2}});
  const std::string id = sandbox["id"];
  auto expires = modbox::parse_timestamp(sandbox["expires_at"].get<std::string>());
  REQUIRE(expires.has_value());
  agent.kill9();
  // Podman's layer does not fire before 24 h: the container outlives its TTL until an agent comes.
  REQUIRE(eventually([&] { return std::chrono::system_clock::now() > *expires + 500ms; }, 10s));
  CHECK(agent.container_states(id) == std::vector<std::string>{"running"});
  agent.start();
  auto detail = agent.api("GET", "/sandboxes/detail/" + id).json_body();
  CHECK(detail["status"] == "destroyed");
  CHECK(detail["destroy_reason"] == "ttl");
  CHECK(agent.container_states(id).empty());
}

TEST_CASE("extend moves the expiry from now: the sandbox outlives its first TTL", "[ttl][extend]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("extend");
  json sandbox = agent.provision_running(task, {{"ttl_seconds", 3}});
  const std::string id = sandbox["id"];
  auto first_expiry = modbox::parse_timestamp(sandbox["expires_at"].get<std::string>());
  REQUIRE(first_expiry.has_value());
  auto extended = agent.cli({"extend", task, "--ttl", "60", "--json"});
  INFO(extended.err);
  REQUIRE(extended.exit_code == 0);
  json answer = json::parse(extended.out);
  CHECK(answer["ttl_seconds"] == 60);
  CHECK(answer["ttl_extended_at"].is_string());
  auto new_expiry = modbox::parse_timestamp(answer["expires_at"].get<std::string>());
  REQUIRE(new_expiry.has_value());
  CHECK(*new_expiry > *first_expiry + 50s);

  // Past the first expiry (and a reaper round) the sandbox still runs, and exec works.
  REQUIRE(eventually([&] { return std::chrono::system_clock::now() > *first_expiry + 1500ms; }, 10s));
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "running");
  CHECK(agent.container_states(id) == std::vector<std::string>{"running"});
  CHECK(agent.cli({"exec", task, "--", "true"}).exit_code == 0);

  // Shortened again, it goes at the new expiry, for its TTL.
  REQUIRE(agent.api("POST", "/sandboxes/extend", json{{"task_id", task}, {"ttl_seconds", 1}}.dump()).status == 200);
  CHECK(eventually([&] { return agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "destroyed"; },
                   15s));
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["destroy_reason"] == "ttl");
  CHECK(agent.container_states(id).empty());

  {  // a destroyed sandbox cannot be extended; an unknown one is 404; a bad body 422 with loc
    auto gone = agent.api("POST", "/sandboxes/extend", json{{"task_id", task}, {"ttl_seconds", 60}}.dump());
    CHECK(gone.status == 409);
    CHECK(gone.json_body()["detail"].get<std::string>().find("destroyed") != std::string::npos);
    CHECK(agent.api("POST", "/sandboxes/extend", json{{"task_id", "nobody"}, {"ttl_seconds", 60}}.dump()).status ==
          404);
    auto bad = agent.api("POST", "/sandboxes/extend", json{{"task_id", task}, {"ttl_seconds", 0}}.dump());
    CHECK(bad.status == 422);
    CHECK(bad.json_body()["detail"][0]["loc"] == json::array({"body", "ttl_seconds"}));
    auto cli = agent.cli({"extend", "nobody", "--ttl", "5"});
    CHECK(cli.exit_code != 0);
    CHECK(cli.err.find("nobody") != std::string::npos);
  }
}

TEST_CASE("agent status names the TTL layers of this host and why one is missing", "[ttl]") {
  TestAgent agent;
  agent.start();
  auto status = agent.cli({"agent", "status", "--json"});
  REQUIRE(status.exit_code == 0);
  json layers = json::parse(status.out)["ttl_layers"];
  REQUIRE(layers.size() == 3);
  CHECK(layers[0]["name"] == "systemd_timer");
  CHECK(layers[1]["name"] == "podman_timeout");
  CHECK(layers[1]["active"] == true);
  CHECK(layers[2]["name"] == "agent_reaper");
  CHECK(layers[2]["active"] == true);
  // These hosts have no systemd as PID 1 (the systemd layer is tested in a systemd container: tests/systemd).
  if (!std::filesystem::exists("/run/systemd/system")) {
    CHECK(layers[0]["active"] == false);
    CHECK(layers[0]["detail"] == "no systemd user manager: systemctl --user is unreachable (no systemd as PID 1)");
  }
  auto text = agent.cli({"agent", "status"});
  CHECK(text.out.find("ttl layers:") != std::string::npos);
  bool told = text.out.find("systemd timer   MISSING") != std::string::npos;
  CHECK((told || std::filesystem::exists("/run/systemd/system")));
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
