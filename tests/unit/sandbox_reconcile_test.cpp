// SandboxService across agent restarts: records persist, and reconcile() brings them into
// agreement with the containers Podman really has.

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

/// A record as an earlier agent left it, created ten seconds before the harness's "now".
Sandbox earlier_record(ServiceHarness& harness, const std::string& task_id, SandboxStatus status, int port) {
  Sandbox sandbox;
  sandbox.id = new_uuid();
  sandbox.name = task_id;
  sandbox.status = status;
  sandbox.image = default_image;
  sandbox.created_by = "tester";
  sandbox.created_at = harness.clock.now() - std::chrono::seconds(10);
  sandbox.gateway_port = port;
  sandbox.sandbox_url = "http://127.0.0.1:" + std::to_string(port);
  return sandbox;
}

/// Gives `sandbox` a container in the fake Podman, labelled as the agent labels its own.
void add_container_for(ServiceHarness& harness, Sandbox& sandbox, const std::string& state) {
  ContainerSpec spec{.name = "modbox-" + sandbox.name,
                     .image = sandbox.image,
                     .labels = {{"io.modbox.agent", agent_id}, {"io.modbox.sandbox", sandbox.id}}};
  sandbox.container_id = harness.podman.add_container(std::move(spec), state);
}

void reconcile(ServiceHarness& harness) {
  harness.restart();
  auto reconciled = harness.service->reconcile();
  INFO((reconciled ? "" : reconciled.error().message));
  REQUIRE(reconciled.has_value());
}

}  // namespace

TEST_CASE("records survive an agent restart", "[service][persistence]") {
  ServiceHarness harness;
  Sandbox running = harness.provision_running("kept", "team-a", 600, {{"SANDBOX_API_KEY", "k"}});
  harness.podman.set_image_missing(default_image);
  Sandbox failed = harness.provision("broken");
  REQUIRE_FALSE(harness.wait("broken").has_value());

  harness.restart();
  Sandbox reloaded = expect_value(harness.service->get("team-a", "kept"));
  CHECK(reloaded.id == running.id);
  CHECK(reloaded.status == SandboxStatus::running);
  CHECK(reloaded.sandbox_url == running.sandbox_url);
  CHECK(reloaded.container_id == running.container_id);
  CHECK(reloaded.env_vars == running.env_vars);
  CHECK(reloaded.expires_at() == running.expires_at());
  CHECK(harness.status_of(failed.id) == SandboxStatus::failed);
  CHECK(harness.service->list(std::nullopt, std::nullopt).size() == 2);
  CHECK(harness.service->live_count() == 1);
}

TEST_CASE("unreadable records are set aside at load and the others still load", "[service][persistence]") {
  ServiceHarness harness;
  Sandbox good = earlier_record(harness, "good", SandboxStatus::running, 42001);
  harness.store_record(good);
  std::string garbage_id = new_uuid();
  std::ofstream(harness.store_directory() / (garbage_id + ".json")) << "{\"id\": ";
  // A record whose file name does not match its id is not trusted either.
  Sandbox misnamed = earlier_record(harness, "misnamed", SandboxStatus::running, 42002);
  std::string other_id = new_uuid();
  std::ofstream(harness.store_directory() / (other_id + ".json")) << sandbox_record_to_json(misnamed);

  harness.restart();
  auto sandboxes = harness.service->list(std::nullopt, std::nullopt);
  REQUIRE(sandboxes.size() == 1);
  CHECK(sandboxes.front().id == good.id);
  int set_aside = 0;
  for (const auto& name : list_directory(harness.store_directory()))
    if (name.find(".json.corrupt-") != std::string::npos) ++set_aside;
  CHECK(set_aside == 2);
}

TEST_CASE("reconcile keeps a running sandbox whose container runs, on its old port", "[service][reconcile]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "alive", SandboxStatus::running, 42010);
  add_container_for(harness, sandbox, "running");
  harness.store_record(sandbox);

  reconcile(harness);
  CHECK(harness.status_of(sandbox.id) == SandboxStatus::running);
  CHECK(harness.endpoints.open_ports() == std::map<std::string, int>{{sandbox.id, 42010}});
  CHECK(harness.podman.container(sandbox.container_id).has_value());
  CHECK(harness.podman.count_calls("remove ") == 0);
}

TEST_CASE("reconcile moves a sandbox URL whose port is taken, and records it", "[service][reconcile]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "moved", SandboxStatus::running, 42011);
  add_container_for(harness, sandbox, "running");
  harness.store_record(sandbox);
  harness.endpoints.set_port_taken(42011);

  reconcile(harness);
  int port = harness.endpoints.open_ports().at(sandbox.id);
  CHECK(port != 42011);
  Sandbox reloaded = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(reloaded.gateway_port == port);
  CHECK(reloaded.sandbox_url == "http://127.0.0.1:" + std::to_string(port));
  CHECK(harness.stored_record(sandbox.id).gateway_port == port);
}

TEST_CASE("reconcile destroys a running sandbox whose container is gone", "[service][reconcile]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "vanished", SandboxStatus::running, 42020);
  sandbox.container_id = "container-that-is-gone";
  harness.store_record(sandbox);

  reconcile(harness);
  Sandbox reloaded = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(reloaded.status == SandboxStatus::destroyed);
  REQUIRE(reloaded.error.has_value());
  CHECK(reloaded.error->find("disappeared") != std::string::npos);
  CHECK(harness.stored_record(sandbox.id).status == SandboxStatus::destroyed);
  CHECK(harness.endpoints.open_ports().empty());
}

TEST_CASE("reconcile destroys a running sandbox whose container stopped, and removes it", "[service][reconcile]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "stopped", SandboxStatus::running, 42021);
  add_container_for(harness, sandbox, "exited");
  harness.store_record(sandbox);

  reconcile(harness);
  Sandbox reloaded = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(reloaded.status == SandboxStatus::destroyed);
  REQUIRE(reloaded.error.has_value());
  CHECK(reloaded.error->find("exited") != std::string::npos);
  CHECK_FALSE(harness.podman.container(sandbox.container_id).has_value());
}

TEST_CASE("reconcile destroys a sandbox that expired while the agent was away", "[service][reconcile]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "expired", SandboxStatus::running, 42030);
  sandbox.ttl_seconds = 5;  // created ten seconds ago
  add_container_for(harness, sandbox, "running");
  harness.store_record(sandbox);

  reconcile(harness);
  Sandbox reloaded = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(reloaded.status == SandboxStatus::destroyed);
  REQUIRE(reloaded.error.has_value());
  CHECK(reloaded.error->find("ttl expired") != std::string::npos);
  CHECK(reloaded.destroyed_at == harness.clock.now());
  CHECK_FALSE(harness.podman.container(sandbox.container_id).has_value());
  CHECK(harness.endpoints.open_ports().empty());
}

TEST_CASE("reconcile removes this agent's containers that no live record owns", "[service][reconcile]") {
  ServiceHarness harness;
  std::string orphan = harness.podman.add_container(
      {.name = "orphan", .labels = {{"io.modbox.agent", agent_id}, {"io.modbox.sandbox", new_uuid()}}}, "running");
  Sandbox destroyed = earlier_record(harness, "done", SandboxStatus::destroyed, 42040);
  add_container_for(harness, destroyed, "running");
  harness.store_record(destroyed);
  std::string foreign = harness.podman.add_container(
      {.name = "foreign", .labels = {{"io.modbox.agent", "another-agent"}, {"io.modbox.sandbox", new_uuid()}}},
      "running");
  std::string unlabelled = harness.podman.add_container({.name = "user's own"}, "running");

  reconcile(harness);
  CHECK_FALSE(harness.podman.container(orphan).has_value());
  CHECK_FALSE(harness.podman.container(destroyed.container_id).has_value());
  CHECK(harness.podman.container(foreign).has_value());
  CHECK(harness.podman.container(unlabelled).has_value());
}

TEST_CASE("reconcile resumes an interrupted provisioning", "[service][reconcile]") {
  ServiceHarness harness;
  SECTION("before its container was created") {
    Sandbox sandbox = earlier_record(harness, "resumed", SandboxStatus::provisioning, 42050);
    harness.store_record(sandbox);
    reconcile(harness);
    Sandbox running = expect_value(harness.wait("resumed"));
    CHECK(running.id == sandbox.id);
    CHECK(running.status == SandboxStatus::running);
    CHECK(harness.podman.count_calls("create ") == 1);
    CHECK(harness.endpoints.open_ports().at(sandbox.id) == 42050);
  }
  SECTION("after its container was created") {
    Sandbox sandbox = earlier_record(harness, "resumed", SandboxStatus::provisioning, 42051);
    add_container_for(harness, sandbox, "created");
    harness.store_record(sandbox);
    reconcile(harness);
    Sandbox running = expect_value(harness.wait("resumed"));
    CHECK(running.container_id == sandbox.container_id);
    CHECK(harness.podman.count_calls("create ") == 0);
    CHECK(harness.podman.container(sandbox.container_id).value().state == "running");
  }
  CHECK(harness.stored_record(expect_value(harness.service->get(std::nullopt, "resumed")).id).status ==
        SandboxStatus::running);
}

TEST_CASE("reconcile while Podman is down changes nothing", "[service][reconcile]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "unknown", SandboxStatus::running, 42060);
  harness.store_record(sandbox);
  harness.podman.set_down(true);

  harness.restart();
  auto reconciled = harness.service->reconcile();
  REQUIRE_FALSE(reconciled.has_value());
  CHECK(reconciled.error().kind == ErrorKind::unavailable);
  CHECK(harness.status_of(sandbox.id) == SandboxStatus::running);
  CHECK(harness.stored_record(sandbox.id).status == SandboxStatus::running);
}

TEST_CASE("reconcile serves a running sandbox's ports again on their recorded host ports",
          "[service][reconcile][ports]") {
  ServiceHarness harness;
  SECTION("a record from an earlier agent") {
    Sandbox sandbox = earlier_record(harness, "web", SandboxStatus::running, 42070);
    sandbox.ports = {8000, 5173};
    sandbox.port_gateways = {{8000, 42071}, {5173, 42072}};
    add_container_for(harness, sandbox, "running");
    harness.store_record(sandbox);

    reconcile(harness);
    CHECK(harness.endpoints.open_ports() == std::map<std::string, int>{{sandbox.id, 42070}});
    CHECK(harness.endpoints.served_ports(sandbox.id) == std::map<int, int>{{8000, 42071}, {5173, 42072}});
    Sandbox reloaded = expect_value(harness.service->get(std::nullopt, sandbox.id));
    CHECK(reloaded.port_gateways == sandbox.port_gateways);
    CHECK(port_urls(reloaded).at(5173) == "http://127.0.0.1:42072");
  }
  SECTION("a sandbox this agent provisioned, across a restart") {
    Sandbox running = expect_value(harness.service->provision(std::nullopt, {.task_id = "web", .ports = {8000, 5173}}));
    running = expect_value(harness.wait("web"));
    auto served = harness.endpoints.served_ports(running.id);
    REQUIRE(served.size() == 2);
    harness.service.reset();
    harness.endpoints.close(running.id);  // the old agent's listeners ended with it

    reconcile(harness);
    CHECK(harness.endpoints.open_ports().at(running.id) == running.gateway_port);
    CHECK(harness.endpoints.served_ports(running.id) == served);
    CHECK(harness.stored_record(running.id).port_gateways == served);
  }
}

TEST_CASE("reconcile moves a port URL whose host port is taken, and records it", "[service][reconcile][ports]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "web", SandboxStatus::running, 42080);
  sandbox.ports = {8000, 5173};
  sandbox.port_gateways = {{8000, 42081}, {5173, 42082}};
  add_container_for(harness, sandbox, "running");
  harness.store_record(sandbox);
  harness.endpoints.set_port_taken(42082);

  reconcile(harness);
  auto served = harness.endpoints.served_ports(sandbox.id);
  CHECK(served.at(8000) == 42081);
  CHECK(served.at(5173) != 42082);
  CHECK(expect_value(harness.service->get(std::nullopt, sandbox.id)).port_gateways == served);
  CHECK(harness.stored_record(sandbox.id).port_gateways == served);
}

TEST_CASE("a resumed provisioning serves its ports once running", "[service][reconcile][ports]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "web", SandboxStatus::provisioning, 42090);
  sandbox.ports = {8000};
  harness.store_record(sandbox);

  reconcile(harness);
  Sandbox running = expect_value(harness.wait("web"));
  CHECK(running.port_gateways == harness.endpoints.served_ports(sandbox.id));
  CHECK(running.port_gateways.size() == 1);
}

TEST_CASE("reconcile serves no port of a sandbox whose container vanished", "[service][reconcile][ports]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "gone", SandboxStatus::running, 42095);
  sandbox.ports = {8000};
  sandbox.port_gateways = {{8000, 42096}};
  sandbox.container_id = "container-that-is-gone";
  harness.store_record(sandbox);

  reconcile(harness);
  CHECK(harness.status_of(sandbox.id) == SandboxStatus::destroyed);
  CHECK(harness.endpoints.listener_count() == 0);
}

TEST_CASE("a port that cannot be served again after a restart is left out of port_urls",
          "[service][reconcile][ports]") {
  ServiceHarness harness;
  Sandbox sandbox = earlier_record(harness, "web", SandboxStatus::running, 42097);
  sandbox.ports = {8000, 5173};
  sandbox.port_gateways = {{8000, 42098}, {5173, 42099}};
  add_container_for(harness, sandbox, "running");
  harness.store_record(sandbox);
  harness.endpoints.fail_sandbox_port(5173);

  reconcile(harness);
  Sandbox reloaded = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(reloaded.status == SandboxStatus::running);  // its URL and its other port still serve
  CHECK(reloaded.port_gateways == std::map<int, int>{{8000, 42098}});
  CHECK(harness.endpoints.served_ports(sandbox.id) == reloaded.port_gateways);
  CHECK(harness.stored_record(sandbox.id).port_gateways == reloaded.port_gateways);
}
