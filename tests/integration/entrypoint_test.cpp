// A provision's `command` (seed 004's entrypoint) against the real agent and real Podman: it runs as the
// sandbox's main process under the helper, the sandbox ends when it exits (destroyed, `exited`, with its
// exit code; 137 and oom_killed when the host enforces memory), wait answers 409 at once when it exits
// before the sandbox is ready, and its output is readable (and followed) through the logs route and
// `modbox logs`, also after the sandbox has ended.

#include <catch2/catch.hpp>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// Destroys a sandbox whatever happens in the test.
struct SandboxGuard {
  const TestAgent& agent;
  std::string task;
  ~SandboxGuard() { agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()); }
};

/// Deletes a registered image, after the sandboxes using it (declare it before them).
struct RegisteredImage {
  const TestAgent& agent;
  std::string id;
  ~RegisteredImage() { agent.api("DELETE", "/sandbox-images/" + id); }
};

json provision(const TestAgent& agent, const json& body) {
  auto reply = agent.api("POST", "/sandboxes/provision", body.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  return reply.json_body();
}

json detail(const TestAgent& agent, const std::string& task) {
  return agent.api("GET", "/sandboxes/detail/" + task).json_body();
}

/// Waits until the sandbox is destroyed; its detail then.
json wait_destroyed(const TestAgent& agent, const std::string& task, std::chrono::milliseconds timeout = 20s) {
  json sandbox;
  bool destroyed = eventually(
      [&] {
        sandbox = detail(agent, task);
        return sandbox.value("status", "") == "destroyed";
      },
      timeout);
  INFO(sandbox.dump());
  REQUIRE(destroyed);
  return sandbox;
}

std::string logs(const TestAgent& agent, const std::string& task, const std::string& query = "") {
  auto reply = agent.api("GET", "/sandboxes/" + task + "/logs" + query);
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  return reply.body;
}

}  // namespace

TEST_CASE("entrypoint: the command runs under the helper, and its exit ends the sandbox with its exit code",
          "[entrypoint]") {
  TestAgent agent;
  agent.start();
  SandboxGuard box{agent, unique_name("entry")};
  // Runs until told to stop through exec, so exec is shown to work while it runs.
  json command = {
      "sh", "-c",
      "echo started; echo to-stderr >&2; while [ ! -f /tmp/stop ]; do sleep 0.1; done; echo stopping; exit 3"};
  json provisioned = provision(agent, {{"task_id", box.task}, {"ttl_seconds", 600}, {"command", command}});
  CHECK(provisioned["command"] == command);
  auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", box.task}, {"timeout", 60}}.dump());
  INFO(waited.body);
  REQUIRE(waited.status == 200);
  json sandbox = waited.json_body();
  CHECK(sandbox["status"] == "running");
  CHECK(sandbox["exit_code"].is_null());
  const std::string id = sandbox["id"];

  // The helper is still PID 1, and the command is its child.
  auto processes = agent.api("POST", "/sandboxes/exec",
                             json{{"task_id", box.task}, {"command", "tr '\\0' ' ' < /proc/1/cmdline; echo"}}.dump());
  REQUIRE(processes.status == 200);
  CHECK(processes.json_body()["stdout"].get<std::string>().find("/.modbox/helper") == 0);
  CHECK(eventually([&] { return logs(agent, box.task) == "started\nto-stderr\n"; }, 5s));

  auto stop_asked = std::chrono::system_clock::now();
  auto stop = agent.api("POST", "/sandboxes/exec", json{{"task_id", box.task}, {"command", "touch /tmp/stop"}}.dump());
  REQUIRE(stop.status == 200);
  sandbox = wait_destroyed(agent, box.task);
  CHECK(sandbox["destroy_reason"] == "exited");
  CHECK(sandbox["exit_code"] == 3);
  CHECK(sandbox["oom_killed"] == false);
  CHECK(sandbox["error"].is_null());
  // The watcher reacts within about a second (a poll every 250 ms, then Podman's inspect and removal).
  auto destroyed_at = *modbox::parse_timestamp(sandbox["destroyed_at"].get<std::string>());
  CHECK(destroyed_at - stop_asked < 3s);
  CHECK(agent.container_states(id).empty());

  // Its output stays readable, through the API and the CLI.
  CHECK(logs(agent, box.task) == "started\nto-stderr\nstopping\n");
  CHECK(logs(agent, id, "?tail=1") == "stopping\n");
  CHECK(logs(agent, box.task, "?follow=true") == "started\nto-stderr\nstopping\n");  // ended: answered at once
  CHECK(std::filesystem::exists(agent.paths().sandboxes_dir() / (id + ".log")));
  auto cli_logs = agent.cli({"logs", "--tail", "2", box.task});
  CHECK(cli_logs.exit_code == 0);
  CHECK(cli_logs.out == "to-stderr\nstopping\n");
  auto shown = agent.cli({"get", box.task});
  CHECK(shown.out.find("destroy_reason: exited") != std::string::npos);
  CHECK(shown.out.find("exit_code:    3") != std::string::npos);
  // wait on an exited sandbox answers with how it ended.
  auto late = agent.api("POST", "/sandboxes/wait", json{{"task_id", box.task}, {"timeout", 5}}.dump());
  CHECK(late.status == 409);
  CHECK(late.json_body()["detail"].get<std::string>().find("exit code 3") != std::string::npos);
}

TEST_CASE("entrypoint: wait answers 409 at once when the command exits before the sandbox is ready", "[entrypoint]") {
  TestAgent agent;
  agent.start();
  SandboxGuard fails{agent, unique_name("fails")}, probed{agent, unique_name("probed")};
  provision(agent,
            {{"task_id", fails.task}, {"command", {"sh", "-c", "echo booting; echo 'no config file' >&2; exit 7"}}});
  // A readiness probe that never passes: the command's exit ends the wait, not the probe's 5 minutes.
  provision(agent, {{"task_id", probed.task},
                    {"command", {"sh", "-c", "echo warming up; sleep 1; exit 4"}},
                    {"readiness_probe", {{"tcp", {{"port", 9}}}}}});

  // A command that exits at once may still be seen running for a moment: wait asked after its exit
  // answers 409 at once. The probed one cannot become ready, so its wait is asked before the exit.
  wait_destroyed(agent, fails.task);
  for (const auto& [task, code, line] : {std::tuple{fails.task, 7, std::string("no config file")},
                                         std::tuple{probed.task, 4, std::string("warming up")}}) {
    auto started = std::chrono::steady_clock::now();
    auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 120}}.dump());
    auto took = std::chrono::steady_clock::now() - started;
    INFO(task << ": " << waited.body);
    CHECK(waited.status == 409);
    CHECK(took < 10s);
    std::string message = waited.json_body().value("detail", "");
    CHECK(message.find("exit code " + std::to_string(code)) != std::string::npos);
    CHECK(message.find(line) != std::string::npos);
    json sandbox = detail(agent, task);
    CHECK(sandbox["status"] == "destroyed");
    CHECK(sandbox["destroy_reason"] == "exited");
    CHECK(sandbox["exit_code"] == code);
  }
  // The CLI's wait says so too, and exits non-zero.
  SandboxGuard cli_box{agent, unique_name("clifail")};
  auto provisioned = agent.cli({"provision", cli_box.task, "--", "sh", "-c", "echo bye; exit 5"});
  INFO(provisioned.err);
  REQUIRE(provisioned.exit_code == 0);
  wait_destroyed(agent, cli_box.task);
  auto cli = agent.cli({"wait", cli_box.task});
  CHECK(cli.exit_code != 0);
  CHECK(cli.err.find("exit code 5") != std::string::npos);
  CHECK(cli.err.find("bye") != std::string::npos);
}

TEST_CASE("entrypoint: logs follow the command's output as it writes it and end when the sandbox ends",
          "[entrypoint]") {
  TestAgent agent;
  agent.start();
  SandboxGuard box{agent, unique_name("follow")};
  // Each line waits for the test to ask for it, so the lines cannot arrive before the follower reads.
  provision(agent, {{"task_id", box.task},
                    {"command",
                     {"sh", "-c",
                      "for i in 1 2 3; do while [ ! -f /tmp/go$i ]; do sleep 0.05; done; echo line $i; done; "
                      "exit 0"}}});
  auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", box.task}, {"timeout", 60}}.dump());
  INFO(waited.body);
  REQUIRE(waited.status == 200);

  BackgroundProcess follower({bin_dir() + "/modbox", "logs", "-f", box.task}, agent.cli_env());
  for (int i = 1; i <= 3; ++i) {
    auto go = agent.api("POST", "/sandboxes/exec",
                        json{{"task_id", box.task}, {"command", "touch /tmp/go" + std::to_string(i)}}.dump());
    REQUIRE(go.status == 200);
    auto line = follower.next_line(10s);
    INFO(follower.errors());
    REQUIRE(line.has_value());
    CHECK(line->text == "line " + std::to_string(i));
  }
  // The command exits after the third line: the follow ends with the sandbox.
  CHECK_FALSE(follower.next_line(10s).has_value());
  CHECK(follower.output_ended());
  CHECK(follower.wait_exit(10s) == 0);
  json sandbox = wait_destroyed(agent, box.task, 5s);
  CHECK(sandbox["destroy_reason"] == "exited");
  CHECK(sandbox["exit_code"] == 0);
}

TEST_CASE("entrypoint: a sandbox destroyed on request keeps its output; one without a command runs as before",
          "[entrypoint]") {
  TestAgent agent;
  agent.start();
  SandboxGuard box{agent, unique_name("kept")};
  provision(agent, {{"task_id", box.task}, {"command", {"sh", "-c", "echo kept; exec sleep 600"}}});
  REQUIRE(agent.api("POST", "/sandboxes/wait", json{{"task_id", box.task}, {"timeout", 60}}.dump()).status == 200);
  CHECK(eventually([&] { return logs(agent, box.task) == "kept\n"; }, 5s));
  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump());
  REQUIRE(destroyed.status == 200);
  CHECK(destroyed.json_body()["destroy_reason"] == "requested");
  CHECK(destroyed.json_body()["exit_code"].is_null());
  CHECK(logs(agent, box.task) == "kept\n");
  CHECK(logs(agent, box.task, "?tail=0").empty());

  // Without a command the image's own entrypoint runs, and the sandbox outlives it as it always did.
  SandboxGuard plain{agent, unique_name("plain")};
  json sandbox = agent.provision_running(plain.task);
  CHECK(sandbox["command"].is_null());
  auto exec = agent.api("POST", "/sandboxes/exec",
                        json{{"task_id", plain.task},
                             {"command",
                              "for p in $(cat /proc/1/task/1/children); do "
                              "grep -q 'while' /proc/$p/cmdline && kill -9 $p; done; echo done"}}
                            .dump());
  REQUIRE(exec.status == 200);
  CHECK(exec.json_body()["stdout"] == "done\n");
  auto again = agent.api("POST", "/sandboxes/exec", json{{"task_id", plain.task}, {"command", "echo alive"}}.dump());
  CHECK(again.json_body()["stdout"] == "alive\n");
  CHECK(detail(agent, plain.task)["status"] == "running");

  auto bad = agent.api("POST", "/sandboxes/provision",
                       json{{"task_id", unique_name("bad")}, {"command", json::array()}}.dump());
  CHECK(bad.status == 422);
  CHECK(bad.json_body()["detail"][0]["loc"] == json{"body", "command"});
  auto unknown = agent.api("GET", "/sandboxes/no-such-sandbox/logs");
  CHECK(unknown.status == 404);
}

TEST_CASE("entrypoint: a command that runs out of memory ends with 137 and oom_killed where memory is enforced",
          "[entrypoint][oom]") {
  TestAgent agent;
  agent.start();
  auto registered = agent.api(
      "POST", "/sandbox-images",
      json{{"name", unique_name("small")}, {"image", "localhost/modbox/sandbox-lite"}, {"memory_mb", 256}}.dump());
  INFO(registered.body);
  REQUIRE(registered.status == 201);
  RegisteredImage image{agent, registered.json_body().value("id", "")};
  SandboxGuard box{agent, unique_name("oom")};
  // 1 GiB, touched page by page: four times the limit.
  json provisioned =
      provision(agent, {{"task_id", box.task},
                        {"image_id", image.id},
                        {"command", {"python3", "-c", "b = bytearray(1 << 30); print('survived', len(b))"}}});
  json sandbox = wait_destroyed(agent, box.task, 60s);
  INFO(sandbox.dump());
  CHECK(sandbox["destroy_reason"] == "exited");
  if (provisioned["memory_limit_enforced"] == true) {
    CHECK(sandbox["exit_code"] == 137);
    CHECK(sandbox["oom_killed"] == true);
    auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", box.task}}.dump());
    CHECK(waited.json_body().value("detail", "").find("out of memory") != std::string::npos);
  } else {
    // Rootless on cgroup v1 (the development machines): no limit, so the command finishes.
    CHECK(provisioned["memory_limit_detail"].is_string());
    CHECK(sandbox["exit_code"] == 0);
    CHECK(logs(agent, box.task).find("survived") != std::string::npos);
  }
}

TEST_CASE("entrypoint: an image's memory_mb is the container's cgroup limit where memory is enforced",
          "[entrypoint][oom]") {
  TestAgent agent;
  agent.start();
  auto registered = agent.api(
      "POST", "/sandbox-images",
      json{{"name", unique_name("limited")}, {"image", "localhost/modbox/sandbox-lite"}, {"memory_mb", 256}}.dump());
  INFO(registered.body);
  REQUIRE(registered.status == 201);
  RegisteredImage image{agent, registered.json_body().value("id", "")};
  SandboxGuard box{agent, unique_name("limited")};
  json sandbox = agent.provision_running(box.task, {{"image_id", image.id}});
  INFO(sandbox.dump());
  std::string id = sandbox["id"];
  auto container = agent.podman({"ps", "-a", "--filter", "label=io.modbox.sandbox=" + id, "--format", "{{.ID}}"});
  std::string container_id = container.out.substr(0, container.out.find('\n'));
  REQUIRE_FALSE(container_id.empty());
  // What the kernel enforces, read inside the sandbox from its own cgroup (v2, else v1).
  auto limit = agent.api("POST", "/sandboxes/exec",
                         json{{"task_id", box.task},
                              {"command",
                               "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"}}
                             .dump());
  INFO(limit.body);
  REQUIRE(limit.status == 200);
  if (sandbox["memory_limit_enforced"] == true) {
    auto configured = agent.podman({"inspect", "--format", "{{.HostConfig.Memory}}", container_id});
    CHECK(configured.out == std::to_string(256u << 20) + "\n");
    CHECK(limit.json_body()["stdout"] == std::to_string(256u << 20) + "\n");
  } else {
    // Rootless on cgroup v1: Podman cannot set it, and the sandbox says so.
    CHECK(sandbox["memory_limit_detail"].is_string());
    CHECK(limit.json_body()["stdout"] != std::to_string(256u << 20) + "\n");
  }
}
