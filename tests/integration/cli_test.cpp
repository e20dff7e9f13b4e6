// The modbox CLI as a user types it: auto-start, agent start/stop/status/env, provision --wait,
// list, destroy, --json everywhere, and the control API's authentication.

#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

TEST_CASE("the CLI starts the agent on demand and drives a sandbox's whole life", "[cli]") {
  TestAgent agent;  // not started: the CLI must start it
  auto status = agent.cli({"agent", "status"});
  CHECK(status.exit_code == 3);
  const std::string task = unique_name("cli");
  auto provisioned = agent.cli({"provision", task, "--ttl", "300", "--env", "SANDBOX_API_KEY=k-" + task, "--wait"});
  INFO(provisioned.err);
  REQUIRE(provisioned.exit_code == 0);
  CHECK(provisioned.out.starts_with("http://127.0.0.1:"));
  CHECK(agent.cli({"agent", "status"}).exit_code == 0);

  auto listed = agent.cli({"list", "--status", "running", "--json"});
  REQUIRE(listed.exit_code == 0);
  json sandboxes = json::parse(listed.out);
  REQUIRE(sandboxes.size() == 1);
  CHECK(sandboxes[0]["name"] == task);
  CHECK(agent.cli({"list", "-q"}).out == task + "\n");
  CHECK(agent.cli({"wait", task}).out == provisioned.out);
  CHECK(agent.cli({"exec", task, "--", "python3", "-c", "print(1)"}).out == "1\n");
  auto exec_json = agent.cli({"exec", "--json", task, "--", "sh", "-c", "exit 5"});
  CHECK(exec_json.exit_code == 5);
  CHECK(json::parse(exec_json.out)["exitCode"] == 5);

  auto destroyed = agent.cli({"destroy", task, "--json"});
  CHECK(destroyed.exit_code == 0);
  CHECK(json::parse(destroyed.out)["status"] == "destroyed");
  // `list` shows the live sandboxes only, as `docker ps`; -a the ended ones too, newest first.
  CHECK(agent.cli({"list", "-q"}).out.empty());
  CHECK(agent.cli({"list", "--json"}).out == "[]\n");
  CHECK(agent.cli({"list", "-a", "-q"}).out == task + "\n");
  json all = json::parse(agent.cli({"list", "--all", "--json"}).out);
  REQUIRE(all.size() == 1);
  CHECK(all[0]["name"] == task);
  CHECK(all[0]["status"] == "destroyed");
  CHECK(all[0]["destroy_reason"] == "requested");
  auto table = agent.cli({"ls", "-a"});
  CHECK(table.out.starts_with("NAME"));
  CHECK(table.out.find(task) != std::string::npos);
  CHECK(table.out.find("destroyed (requested)") != std::string::npos);
  INFO(table.out);
  // Times are relative: "N seconds ago", or "just now" within the first second.
  CHECK((table.out.find(" ago") != std::string::npos || table.out.find("just now") != std::string::npos));
  auto missing = agent.cli({"destroy", "never-existed"});
  CHECK(missing.exit_code == 4);
  CHECK(missing.err.find("never-existed") != std::string::npos);
  CHECK(agent.cli({"get", "never-existed"}).exit_code == 4);
  CHECK(agent.cli({"exec", "never-existed", "--", "true"}).exit_code == 4);

  auto bad = agent.cli({"provision", "bad name"});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("task_id") != std::string::npos);

  auto stopped = agent.cli({"agent", "stop"});
  CHECK(stopped.exit_code == 0);
  CHECK(agent.cli({"agent", "status"}).exit_code == 3);
}

TEST_CASE("the control API is private: a 0600 socket and a token on TCP", "[cli]") {
  TestAgent agent;
  agent.start();
  struct stat info {};
  REQUIRE(::stat(agent.paths().agent_socket().c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);

  auto env = agent.cli({"agent", "env"});
  REQUIRE(env.exit_code == 0);
  std::string url, token;
  std::size_t start = 0;
  while (start < env.out.size()) {
    std::size_t end = env.out.find('\n', start);
    std::string line = env.out.substr(start, end - start);
    if (line.starts_with("MODBOX_API_URL=")) url = line.substr(15);
    if (line.starts_with("MODBOX_API_TOKEN=")) token = line.substr(17);
    start = end + 1;
  }
  REQUIRE(url.starts_with("http://127.0.0.1:"));
  REQUIRE(token.size() >= 32);
  CHECK(http_request(url, "GET", "/sandboxes").status == 401);
  CHECK(http_request(url, "GET", "/sandboxes", "", {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(http_request(url, "GET", "/sandboxes", "", {{"Authorization", "Bearer " + token}}).status == 200);
  auto token_file = agent.paths().token_file();
  REQUIRE(::stat(token_file.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);

  // The CLI can use the TCP endpoint too.
  auto env_vars = agent.cli_env();
  env_vars["MODBOX_API_URL"] = url;
  env_vars["MODBOX_API_TOKEN"] = token;
  env_vars["MODBOX_RUNTIME_DIR"] = "/nonexistent";
  auto listed = run_command({bin_dir() + "/modbox", "list", "--json"}, env_vars);
  CHECK(listed.exit_code == 0);
}

TEST_CASE("a second agent on the same state refuses to start", "[cli]") {
  TestAgent agent;
  agent.start();
  auto second = run_command({bin_dir() + "/modboxd", "--state-dir=" + agent.paths().state_dir.string(),
                             "--runtime-dir=" + agent.paths().runtime_dir.string()},
                            {}, 30s);
  CHECK(second.exit_code == 1);
  CHECK(second.err.find("already running") != std::string::npos);
}

TEST_CASE("long calls in flight never hold up a short one, and the CLI never starts a second agent", "[cli]") {
  // The report that started the front: with 20 execs of `sleep 8` in flight, `modbox list` waited
  // 7 s and the CLI, taking the agent for dead, tried to start another.
  TestAgent agent;
  agent.start();
  std::string task = unique_name("busy");
  agent.provision_running(task, {{"ttl_seconds", 600}});
  constexpr int in_flight = 40;
  std::atomic<int> answered = 0;
  std::vector<std::thread> execs;
  for (int i = 0; i < in_flight; ++i)
    execs.emplace_back([&] {
      agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "sleep 15"}, {"timeout", 30000}}.dump(),
                std::nullopt, 60s);
      ++answered;
    });
  // Every one of them is running in the sandbox (so every one holds the agent's attention)...
  bool all_running = eventually(
      [&] {
        auto reply = agent.api("POST", "/sandboxes/exec",
                               json{{"task_id", task}, {"command", "ps -eo args | grep -c '^sleep 15$'"}}.dump());
        if (reply.status != 200) return false;
        return std::stoi("0" + reply.json_body()["stdout"].get<std::string>()) >= in_flight;
      },
      60s, 200ms);
  CHECK(all_running);
  // ...and a short call is answered while they all still are, by the one agent there is.
  auto listed = agent.cli({"list", "--json"}, 30s);
  CHECK(listed.exit_code == 0);
  CHECK(answered == 0);
  CHECK(listed.err.find("starting modboxd") == std::string::npos);
  auto status = agent.api("GET", "/agent/status");
  CHECK(status.status == 200);
  CHECK(status.json_body()["pid"] == agent.pid());
  CHECK(answered == 0);
  for (auto& exec : execs) exec.join();
  CHECK(answered == in_flight);
  agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump());
}

TEST_CASE("the CLI's exit statuses tell usage, an unavailable agent, not found and a timeout apart", "[cli]") {
  TestAgent agent;  // not started: the usage errors must not need one

  SECTION("an unknown command names the nearest one; usage errors exit 2") {
    auto typo = agent.cli({"provison", "demo"});
    CHECK(typo.exit_code == 2);
    CHECK(typo.err == "modbox: unknown command \"provison\"; did you mean \"provision\"?\n");
    CHECK(typo.out.empty());
    auto nested = agent.cli({"--json", "agent", "stats"});
    CHECK(nested.exit_code == 2);
    CHECK(nested.err.find("did you mean \"agent status\"?") != std::string::npos);
    CHECK(agent.cli({"list", "--no-such-option"}).exit_code == 2);
    CHECK(agent.cli({"wait"}).exit_code == 2);
    auto help = agent.cli({"--help"});
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("Exit status:") != std::string::npos);
    // None of them started an agent.
    CHECK(agent.cli({"agent", "status"}).exit_code == 3);
  }

  SECTION("an agent that cannot be reached exits 3") {
    auto env = agent.cli_env();
    env["MODBOX_API_URL"] = "http://127.0.0.1:1";
    env["MODBOX_API_TOKEN"] = "none";
    auto listed = run_command({bin_dir() + "/modbox", "list"}, env);
    CHECK(listed.exit_code == 3);
    CHECK(listed.err.find("MODBOX_API_URL") != std::string::npos);
  }

  SECTION("a wait that runs out exits 5, one for a sandbox that does not exist 4") {
    agent.start();
    std::string task = unique_name("never-ready");
    auto provisioned = agent.api(
        "POST", "/sandboxes/provision",
        json{{"task_id", task},
             {"ttl_seconds", 300},
             {"readiness_probe", {{"exec", {{"command", {"test", "-f", "/nonexistent"}}}}, {"interval_ms", 200}}}}
            .dump());
    REQUIRE(provisioned.status == 200);
    auto waited = agent.cli({"wait", task, "--timeout", "2"});
    INFO(waited.err);
    CHECK(waited.exit_code == 5);
    CHECK(agent.cli({"wait", "never-existed", "--timeout", "2"}).exit_code == 4);
    agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump());
  }
}
