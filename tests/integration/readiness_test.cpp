// Readiness probes against real sandboxes: the image's HTTP probe (readiness_port) and a provision's
// tcp and exec probes hold a sandbox `provisioning` until what they check is there, made from inside
// the sandbox through its helper; a probe that does not pass makes wait answer 408 with its last error.

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

HttpReply provision(const TestAgent& agent, const json& body) {
  auto reply = agent.api("POST", "/sandboxes/provision", body.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  CHECK(reply.json_body()["status"] == "provisioning");
  return reply;
}

HttpReply wait_for(const TestAgent& agent, const std::string& task, int timeout_seconds) {
  return agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", timeout_seconds}}.dump(), std::nullopt,
                   std::chrono::seconds(timeout_seconds + 30));
}

json detail(const TestAgent& agent, const std::string& task) {
  return agent.api("GET", "/sandboxes/detail/" + task).json_body();
}

/// Runs `command` in the sandbox through the control API; its stdout.
std::string run(const TestAgent& agent, const std::string& task, const std::string& command) {
  auto reply = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", command}}.dump());
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  return reply.json_body().value("stdout", "");
}

/// The sandbox answered wait only once its server was up: it became ready no earlier than the image's
/// command started the server (which it notes in /tmp/started, epoch ms), after the command's delay.
void check_ready_after_server(const TestAgent& agent, const std::string& task, const HttpReply& waited,
                              const json& probe) {
  INFO(task << ": " << waited.body);
  REQUIRE(waited.status == 200);
  json sandbox = waited.json_body();
  CHECK(sandbox["status"] == "running");
  CHECK(sandbox["readiness_probe"] == probe);
  CHECK(agent.cli({"get", task}).out.find("ready_at:     " + sandbox.value("ready_at", "")) != std::string::npos);
  CHECK(sandbox["readiness"]["state"] == "passed");
  CHECK(sandbox["readiness"]["last_result"] == "passed");
  CHECK(sandbox["readiness"]["attempts"].get<int>() > 1);
  REQUIRE(sandbox["ready_at"].is_string());
  REQUIRE(sandbox["startup_ms"].is_number_integer());
  CHECK(sandbox["startup_ms"].get<long long>() >= 3000);  // the image's command waits 4 s before serving
  auto started = std::stoll(run(agent, task, "cat /tmp/started"));
  auto created = *modbox::parse_timestamp(sandbox["created_at"].get<std::string>());
  auto ready_ms = std::chrono::duration_cast<std::chrono::milliseconds>(created.time_since_epoch()).count() +
                  sandbox["startup_ms"].get<long long>();
  CHECK(ready_ms >= started);
  CHECK(*modbox::parse_timestamp(sandbox["ready_at"].get<std::string>()) ==
        created + std::chrono::milliseconds(sandbox["startup_ms"].get<long long>()));
}

}  // namespace

TEST_CASE("readiness: the image's HTTP probe and a provision's tcp and exec probes wait for the server",
          "[ready]") {
  TestAgent agent;
  agent.start();
  // An image whose own command serves on port 8000 only after 4 s, as a web app that takes a while to start.
  std::string repository = "localhost/modbox-test/late-server";
  std::string reference = repository + ":" + unique_name("t");
  ImageGuard built{agent, reference};
  build_image(agent, reference,
              "FROM localhost/modbox/sandbox-lite:latest\n"
              "CMD [\"sh\", \"-c\", \"sleep 4; date +%s%3N > /tmp/started; touch /tmp/ready; "
              "exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp\"]\n");
  auto registered = agent.api("POST", "/sandbox-images",
                              json{{"name", unique_name("late")},
                                   {"image", repository},
                                   {"tag", reference.substr(repository.size() + 1)},
                                   {"readiness_port", 8000}}
                                  .dump());
  INFO(registered.body);
  REQUIRE(registered.status == 201);
  RegisteredImage image{agent, registered.json_body().value("id", "")};

  // Three sandboxes of it at once: the image's HTTP probe, a tcp probe, an exec probe.
  SandboxGuard http{agent, unique_name("http")}, tcp{agent, unique_name("tcp")}, exec{agent, unique_name("exec")};
  json tcp_probe = {{"tcp", {{"port", 8000}}}, {"interval_ms", 50}};
  json exec_probe = {{"exec", {{"command", {"test", "-f", "/tmp/ready"}}}}, {"interval_ms", 100}};
  provision(agent, {{"task_id", http.task}, {"image_id", image.id}});
  provision(agent, {{"task_id", tcp.task}, {"image", reference}, {"readiness_probe", tcp_probe}});
  provision(agent, {{"task_id", exec.task}, {"image", reference}, {"readiness_probe", exec_probe}});

  // While the server is not up, the sandbox stays provisioning and its detail says how the probe goes.
  bool seen_failing = eventually(
      [&] {
        json sandbox = detail(agent, tcp.task);
        return sandbox["status"] == "provisioning" && sandbox["readiness"].is_object() &&
               sandbox["readiness"]["last_result"] == "failed";
      },
      4000ms);
  CHECK(seen_failing);
  json probing = detail(agent, tcp.task);
  INFO(probing.dump());
  if (probing["status"] == "provisioning") {
    CHECK(probing["readiness_probe"] == tcp_probe);
    CHECK(probing["readiness"]["last_error"].get<std::string>().find("8000") != std::string::npos);
    CHECK(probing["ready_at"].is_null());
    CHECK(probing["sandbox_url"].is_null());
  }

  check_ready_after_server(agent, http.task, wait_for(agent, http.task, 60),
                           json{{"http", {{"port", 8000}}}, {"interval_ms", 100}});
  check_ready_after_server(agent, tcp.task, wait_for(agent, tcp.task, 60), tcp_probe);
  check_ready_after_server(agent, exec.task, wait_for(agent, exec.task, 60), exec_probe);
}

TEST_CASE("readiness: a probe that does not pass makes wait answer 408 with its last error, and the sandbox waits",
          "[ready]") {
  TestAgent agent;
  agent.start();
  SandboxGuard box{agent, unique_name("never")};
  provision(agent, {{"task_id", box.task}, {"readiness_probe", {{"tcp", {{"port", 9}}}, {"interval_ms", 50}}}});

  auto waited = wait_for(agent, box.task, 2);
  INFO(waited.body);
  CHECK(waited.status == 408);
  std::string reason = waited.json_body().value("detail", "");
  CHECK(reason.find("still provisioning after 2 s") != std::string::npos);
  CHECK(reason.find("the readiness probe (tcp port 9) has not passed yet") != std::string::npos);
  CHECK(reason.find("last error:") != std::string::npos);
  CHECK(reason.find("port 9") != std::string::npos);

  // Not destroyed: it is the caller's to destroy, as with Modal.
  json sandbox = detail(agent, box.task);
  CHECK(sandbox["status"] == "provisioning");
  CHECK(sandbox["readiness"]["state"] == "probing");
  CHECK(sandbox["readiness"]["last_result"] == "failed");
  CHECK(sandbox["readiness"]["attempts"].get<int>() >= 2);
  CHECK(agent.container_states(sandbox["id"]) == std::vector<std::string>{"running"});
  auto shown = agent.cli({"get", box.task});
  INFO(shown.out << shown.err);
  CHECK(shown.out.find("readiness:    tcp port 9, probing (") != std::string::npos);
  CHECK(shown.out.find("; last error: ") != std::string::npos);

  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump());
  CHECK(destroyed.status == 200);
  CHECK(destroyed.json_body()["status"] == "destroyed");
  CHECK(eventually([&] { return agent.container_states(sandbox["id"]).empty(); }, 10000ms));
}

TEST_CASE("readiness: a bad probe is a 422 naming where it is wrong", "[ready]") {
  TestAgent agent;
  agent.start();
  struct Case {
    json probe;
    json loc;
  };
  std::vector<Case> cases = {
      {{{"grpc", {{"port", 1}}}}, {"body", "readiness_probe", "grpc"}},
      {{{"tcp", {{"port", 1}}}, {"exec", {{"command", json::array({"true"})}}}}, {"body", "readiness_probe"}},
      {{{"tcp", {{"port", 70000}}}}, {"body", "readiness_probe", "tcp", "port"}},
      {{{"tcp", {{"port", 80}}}, {"interval_ms", 5}}, {"body", "readiness_probe", "interval_ms"}},
      {{{"exec", {{"command", json::array()}}}}, {"body", "readiness_probe", "exec", "command"}},
  };
  for (const auto& [probe, loc] : cases) {
    auto reply = agent.api("POST", "/sandboxes/provision",
                           json{{"task_id", unique_name("bad")}, {"readiness_probe", probe}}.dump());
    INFO(probe.dump() << " → " << reply.body);
    CHECK(reply.status == 422);
    CHECK(reply.json_body()["detail"][0]["loc"] == loc);
  }
  CHECK(agent.api("GET", "/sandboxes").json_body().empty());
}

// No default image runs supervisord (images/), so a small image stands in: a script named
// supervisord, whose process is called so (/proc/PID/comm) as the real one's is.
TEST_CASE("readiness: an image that runs supervisord is ready once a supervisord process runs", "[ready][process]") {
  TestAgent agent;
  agent.start();
  const std::string fake_supervisord =
      "RUN printf '#!/bin/sh\\nwhile :; do sleep 1; done\\n' > /usr/bin/supervisord && "
      "chmod +x /usr/bin/supervisord\n";
  const std::string late = "localhost/" + unique_name("supervised") + ":test";
  ImageGuard late_guard{agent, late};
  build_image(agent, late,
              "FROM localhost/modbox/sandbox-lite:latest\n" + fake_supervisord +
                  "CMD [\"/bin/sh\", \"-c\", \"sleep 1.5; exec /usr/bin/supervisord\"]\n");
  const std::string idle = "localhost/" + unique_name("unsupervised") + ":test";
  ImageGuard idle_guard{agent, idle};
  build_image(agent, idle, "FROM localhost/modbox/sandbox-lite:latest\n" + fake_supervisord);

  SECTION("supervisord starts late: the sandbox waits for it") {
    SandboxGuard box{agent, unique_name("late")};
    provision(agent, {{"task_id", box.task}, {"image", late}});
    auto waited = wait_for(agent, box.task, 60);
    INFO(waited.body);
    REQUIRE(waited.status == 200);
    json sandbox = waited.json_body();
    CHECK(sandbox["readiness_probe"] == json{{"process", {{"name", "supervisord"}}}, {"interval_ms", 100}});
    CHECK(sandbox["readiness"]["state"] == "passed");
    CHECK(sandbox["readiness"]["attempts"].get<int>() >= 2);
    CHECK(sandbox["startup_ms"].get<long>() >= 1500);
  }
  SECTION("supervisord installed but not running: wait answers 408 naming it") {
    SandboxGuard box{agent, unique_name("idle")};
    provision(agent, {{"task_id", box.task}, {"image", idle}});
    auto waited = wait_for(agent, box.task, 2);
    INFO(waited.body);
    CHECK(waited.status == 408);
    std::string reason = waited.json_body().value("detail", "");
    CHECK(reason.find("process supervisord running") != std::string::npos);
    CHECK(reason.find("no supervisord process is running") != std::string::npos);
  }
  SECTION("an image without supervisord is ready when its helper answers") {
    SandboxGuard box{agent, unique_name("plain")};
    provision(agent, {{"task_id", box.task}});
    auto waited = wait_for(agent, box.task, 60);
    REQUIRE(waited.status == 200);
    CHECK(waited.json_body()["readiness_probe"].is_null());
  }
}
