// Snapshots against real Podman: a running sandbox's files committed to a new image that a later
// sandbox starts from (helper as PID 1 again, exec working), with none of the first sandbox's secrets,
// labels or helper mounts in it; and the refusals (404, 409, 422).

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// Provisions from `image_id` and waits until running.
json provision_from(TestAgent& agent, const std::string& task, const std::string& image_id) {
  return agent.provision_running(task, json{{"image_id", image_id}});
}

std::string exec_stdout(TestAgent& agent, const std::string& task, const std::string& command) {
  auto reply = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", command}}.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  CHECK(reply.json_body()["exitCode"] == 0);
  return reply.json_body()["stdout"].get<std::string>();
}

}  // namespace

TEST_CASE("snapshot: a sandbox's files become an image that a new sandbox starts from", "[snapshot]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("snap");
  agent.provision_running(task, json{{"env_vars", {{"SANDBOX_API_KEY", "first-secret"}, {"NOTE", "from env"}}}});
  exec_stdout(agent, task,
              "mkdir -p /workspace/data && echo kept > /workspace/data/note && echo root > /etc/snap-mark");

  const std::string name = unique_name("Snapshot of demo");
  auto reply =
      agent.api("POST", "/sandboxes/snapshot", json{{"task_id", task}, {"name", name}}.dump(), std::nullopt, 600s);
  INFO(reply.body);
  REQUIRE(reply.status == 201);
  json image = reply.json_body();
  const std::string reference = image["image"].get<std::string>() + ":" + image["tag"].get<std::string>();
  ImageGuard guard{agent, reference};
  CHECK(image["name"] == name);
  CHECK(image["image"].get<std::string>().starts_with("localhost/modbox-snapshot/"));
  CHECK(image["workspace_id"].is_null());
  CHECK(image["enabled"] == true);
  CHECK(agent.api("GET", "/sandbox-images/" + image["id"].get<std::string>()).status == 200);

  // The image runs like its source: the image's own cmd, no secret, no label of this agent, and the
  // helper's mounts left nothing but their empty mount points.
  auto inspected = agent.podman({"image", "inspect", reference, "--format", "{{json .Config}}"});
  INFO(inspected.err);
  REQUIRE(inspected.exit_code == 0);
  CHECK(inspected.out.find("first-secret") == std::string::npos);
  CHECK(inspected.out.find("/.modbox/helper") == std::string::npos);
  json config = json::parse(inspected.out);
  CHECK(config.value("Entrypoint", json()).is_null());
  CHECK(config["Labels"].value("io.modbox.agent", "missing") == "");
  auto contents = agent.podman({"run", "--rm", "--entrypoint", "/bin/sh", reference, "-c",
                                "ls -A /run/modbox; test ! -s /.modbox/helper && cat /workspace/data/note"});
  INFO(contents.err);
  CHECK(contents.exit_code == 0);
  CHECK(contents.out == "kept\n");

  const std::string restored = unique_name("restored");
  json sandbox = provision_from(agent, restored, image["id"]);
  CHECK(sandbox["image_id"] == image["id"]);
  CHECK(exec_stdout(agent, restored, "cat /workspace/data/note /etc/snap-mark") == "kept\nroot\n");
  // The helper is PID 1 again, and the first sandbox's env values are gone.
  CHECK(exec_stdout(agent, restored, "cat /proc/1/comm; echo \"[$SANDBOX_API_KEY][$NOTE]\"") == "helper\n[][]\n");

  SECTION("the CLI snapshots too, and a taken name is 409") {
    auto again = agent.api("POST", "/sandboxes/snapshot", json{{"task_id", task}, {"name", name}}.dump());
    CHECK(again.status == 409);
    const std::string second = unique_name("cli snapshot");
    auto cli = agent.cli({"snapshot", restored, second, "--json"}, 600s);
    INFO(cli.err);
    REQUIRE(cli.exit_code == 0);
    json made = json::parse(cli.out);
    ImageGuard second_guard{agent, made["image"].get<std::string>() + ":" + made["tag"].get<std::string>()};
    CHECK(made["name"] == second);
  }
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", restored}}.dump()).status == 200);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
}

TEST_CASE("snapshot: refused for a destroyed, provisioning or unknown sandbox and a bad body", "[snapshot]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("gone");
  agent.provision_running(task);
  REQUIRE(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
  auto destroyed = agent.api("POST", "/sandboxes/snapshot", json{{"task_id", task}, {"name", "x"}}.dump());
  CHECK(destroyed.status == 409);
  CHECK(destroyed.json_body()["detail"].get<std::string>().find("destroyed") != std::string::npos);

  // A probe that never passes keeps a sandbox provisioning.
  const std::string waiting = unique_name("waiting");
  REQUIRE(agent
              .api("POST", "/sandboxes/provision",
                   json{{"task_id", waiting}, {"readiness_probe", {{"exec", {{"command", {"false"}}}}}}}.dump())
              .status == 200);
  CHECK(agent.api("POST", "/sandboxes/snapshot", json{{"task_id", waiting}, {"name", "x"}}.dump()).status == 409);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", waiting}}.dump()).status == 200);

  CHECK(
      agent.api("POST", "/sandboxes/snapshot", json{{"task_id", unique_name("never")}, {"name", "x"}}.dump()).status ==
      404);
  auto bad = agent.api("POST", "/sandboxes/snapshot", json{{"task_id", task}}.dump());
  CHECK(bad.status == 422);
  CHECK(bad.json_body()["detail"][0]["loc"] == json{"body", "name"});
  auto cli = agent.cli({"snapshot", task, "x"});
  CHECK(cli.exit_code != 0);
  CHECK(cli.err.find("destroyed") != std::string::npos);
}
