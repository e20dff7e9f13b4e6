// SandboxService lifecycle over a fake Podman: provision → running, failures, destroy, TTL,
// workspaces and the sandbox API key.

#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;

TEST_CASE("a provisioned sandbox starts as provisioning and becomes running", "[service][provision]") {
  ServiceHarness harness;
  Sandbox provisioned = harness.provision("build-1");
  CHECK(provisioned.status == SandboxStatus::provisioning);
  CHECK(provisioned.name == "build-1");
  CHECK(provisioned.image == default_image);
  CHECK(provisioned.created_by == "tester");
  CHECK(provisioned.created_at == harness.clock.now());
  CHECK(provisioned.sandbox_url == "http://127.0.0.1:" + std::to_string(provisioned.gateway_port));
  CHECK(harness.endpoints.open_ports() == std::map<std::string, int>{{provisioned.id, provisioned.gateway_port}});

  auto running = harness.wait("build-1");
  REQUIRE(running.has_value());
  CHECK(running->id == provisioned.id);
  CHECK(running->status == SandboxStatus::running);
  REQUIRE_FALSE(running->container_id.empty());
  auto container = harness.podman.container(running->container_id);
  REQUIRE(container.has_value());
  CHECK(container->state == "running");
  CHECK(harness.stored_record(provisioned.id).status == SandboxStatus::running);
  CHECK(harness.service->live_count() == 1);
}

TEST_CASE("the container carries the TTL, the labels and the env vars", "[service][provision]") {
  ServiceHarness harness;
  Sandbox sandbox = harness.provision_running("task-7", "team-a", 600, {{"SANDBOX_API_KEY", "k"}, {"MODE", "ci"}});
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 1);
  const ContainerSpec& spec = specs.front();
  CHECK(spec.image == default_image);
  CHECK(spec.name.starts_with("modbox-task-7-"));
  // Podman cannot move it later: it is armed at the latest an extend can reach (the fake clock stands still).
  CHECK(spec.timeout_seconds == limits::sandbox_lifetime_max_seconds);
  CHECK(spec.labels.at("io.modbox.agent") == agent_id);
  CHECK(spec.labels.at("io.modbox.sandbox") == sandbox.id);
  CHECK(spec.labels.at("io.modbox.task") == "task-7");
  CHECK(spec.labels.at("io.modbox.workspace") == "team-a");
  CHECK(spec.env == std::map<std::string, std::string>{{"SANDBOX_API_KEY", "k"}, {"MODE", "ci"}});
}

TEST_CASE("a sandbox without a TTL gets no container timeout", "[service][provision]") {
  ServiceHarness harness;
  harness.provision_running("no-ttl");
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 1);
  CHECK_FALSE(specs.front().timeout_seconds.has_value());
  CHECK(specs.front().labels.at("io.modbox.workspace") == "");
}

TEST_CASE("a live task_id cannot be provisioned twice", "[service][provision]") {
  ServiceHarness harness;
  SECTION("while the first one runs") {
    Sandbox first = harness.provision_running("dup");
    auto second = harness.service->provision(std::nullopt, {.task_id = "dup"});
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().kind == ErrorKind::conflict);
    CHECK(second.error().message.find(first.id) != std::string::npos);
    CHECK(harness.service->list(std::nullopt, std::nullopt).size() == 1);
    CHECK(harness.status_of(first.id) == SandboxStatus::running);
    CHECK(harness.podman.count_calls("create ") == 1);
    CHECK(harness.endpoints.open_count() == 1);
    CHECK(list_directory(harness.store_directory()).size() == 1);
  }
  SECTION("while the first one is still provisioning") {
    harness.podman.hold_starts();
    Sandbox first = harness.provision("dup");
    auto second = harness.service->provision(std::nullopt, {.task_id = "dup"});
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().kind == ErrorKind::conflict);
    harness.podman.release_starts();
    CHECK(expect_value(harness.wait("dup")).id == first.id);
    CHECK(harness.podman.count_calls("create ") == 1);
  }
}

TEST_CASE("a destroyed task_id can be provisioned again", "[service][provision]") {
  ServiceHarness harness;
  Sandbox first = harness.provision_running("again");
  REQUIRE(harness.service->destroy(std::nullopt, "again").has_value());
  Sandbox second = harness.provision_running("again");
  CHECK(second.id != first.id);
  CHECK(expect_value(harness.service->get(std::nullopt, "again")).id == second.id);
  CHECK(harness.status_of(first.id) == SandboxStatus::destroyed);
  CHECK(harness.service->list(std::nullopt, std::nullopt).size() == 2);
  CHECK(harness.service->list(std::nullopt, SandboxStatus::running).size() == 1);
}

TEST_CASE("a missing image fails the sandbox with the reason", "[service][provision]") {
  ServiceHarness harness;
  harness.podman.set_image_missing(default_image);
  Sandbox sandbox = harness.provision("no-image");

  auto waited = harness.wait("no-image");
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::conflict);
  CHECK(waited.error().message.find("is not in Podman storage") != std::string::npos);

  auto failed = harness.service->get(std::nullopt, sandbox.id);
  REQUIRE(failed.has_value());
  CHECK(failed->status == SandboxStatus::failed);
  REQUIRE(failed->error.has_value());
  CHECK(failed->error->find(default_image) != std::string::npos);
  CHECK(harness.podman.count_calls("create ") == 0);
  CHECK(harness.endpoints.open_ports().empty());
  CHECK(harness.stored_record(sandbox.id).status == SandboxStatus::failed);
  CHECK(harness.service->live_count() == 0);
}

TEST_CASE("a failed create or start fails the sandbox and leaves no container", "[service][provision]") {
  ServiceHarness harness;
  SECTION("create") {
    harness.podman.fail_create(Error{ErrorKind::internal, "creating container: podman: no space left", {}});
    harness.provision("broken");
    auto waited = harness.wait("broken");
    REQUIRE_FALSE(waited.has_value());
    CHECK(waited.error().message.find("no space left") != std::string::npos);
  }
  SECTION("start") {
    harness.podman.fail_start(Error{ErrorKind::internal, "starting container: podman: runc failed", {}});
    harness.provision("broken");
    auto waited = harness.wait("broken");
    REQUIRE_FALSE(waited.has_value());
    CHECK(waited.error().message.find("runc failed") != std::string::npos);
    CHECK(harness.podman.count_calls("remove ") == 1);
  }
  CHECK(expect_value(harness.service->get(std::nullopt, "broken")).status == SandboxStatus::failed);
  CHECK(harness.podman.containers().empty());
  CHECK(harness.endpoints.open_ports().empty());
}

TEST_CASE("while Podman is down, provision is unavailable and creates nothing", "[service][provision]") {
  ServiceHarness harness;
  harness.podman.set_down(true);
  auto provisioned = harness.service->provision(std::nullopt, {.task_id = "t"});
  REQUIRE_FALSE(provisioned.has_value());
  CHECK(provisioned.error().kind == ErrorKind::unavailable);
  CHECK(harness.service->list(std::nullopt, std::nullopt).empty());
  CHECK(list_directory(harness.store_directory()).empty());
  CHECK(harness.endpoints.open_count() == 0);
  CHECK(harness.podman.calls() == std::vector<std::string>{"ping"});
}

TEST_CASE("without an image catalog an image_id is not_found and touches nothing", "[service][provision]") {
  ServiceHarness harness;
  auto provisioned = harness.service->provision(std::nullopt, {.task_id = "t", .image_id = "img-1"});
  REQUIRE_FALSE(provisioned.has_value());
  CHECK(provisioned.error().kind == ErrorKind::not_found);
  CHECK(harness.podman.calls().empty());
}

TEST_CASE("destroy removes the container and keeps the record as destroyed", "[service][destroy]") {
  ServiceHarness harness;
  Sandbox running = harness.provision_running("short");
  harness.clock.advance(std::chrono::seconds(5));

  auto destroyed = harness.service->destroy(std::nullopt, "short");
  REQUIRE(destroyed.has_value());
  CHECK(destroyed->status == SandboxStatus::destroyed);
  CHECK(destroyed->destroyed_at == harness.clock.now());
  CHECK_FALSE(harness.podman.container(running.container_id).has_value());
  CHECK(harness.endpoints.open_ports().empty());
  CHECK(expect_value(harness.service->get(std::nullopt, "short")).status == SandboxStatus::destroyed);
  CHECK(harness.stored_record(running.id).status == SandboxStatus::destroyed);
  CHECK(harness.service->live_count() == 0);

  SECTION("destroying again answers the destroyed sandbox and touches nothing") {
    auto again = harness.service->destroy(std::nullopt, "short");
    REQUIRE(again.has_value());
    CHECK(again->status == SandboxStatus::destroyed);
    CHECK(harness.podman.count_calls("remove ") == 1);
  }
  SECTION("waiting for it is a conflict") {
    auto waited = harness.wait("short");
    REQUIRE_FALSE(waited.has_value());
    CHECK(waited.error().kind == ErrorKind::conflict);
  }
}

TEST_CASE("destroying an unknown task_id is not_found", "[service][destroy]") {
  ServiceHarness harness;
  auto destroyed = harness.service->destroy(std::nullopt, "never-was");
  REQUIRE_FALSE(destroyed.has_value());
  CHECK(destroyed.error().kind == ErrorKind::not_found);
  CHECK(harness.podman.calls().empty());
}

TEST_CASE("a destroy while Podman is down is unavailable and the sandbox stays running", "[service][destroy]") {
  ServiceHarness harness;
  Sandbox running = harness.provision_running("stays");
  harness.podman.set_down(true);
  auto destroyed = harness.service->destroy(std::nullopt, "stays");
  REQUIRE_FALSE(destroyed.has_value());
  CHECK(destroyed.error().kind == ErrorKind::unavailable);
  CHECK(harness.status_of(running.id) == SandboxStatus::running);
  CHECK(harness.stored_record(running.id).status == SandboxStatus::running);
}

TEST_CASE("a sandbox destroyed while its container starts ends destroyed, without a container",
          "[service][destroy]") {
  ServiceHarness harness;
  harness.podman.hold_starts();
  Sandbox sandbox = harness.provision("racing");
  REQUIRE(eventually([&] { return harness.podman.starts_waiting() == 1; }));

  auto destroyed = harness.service->destroy(std::nullopt, "racing");
  REQUIRE(destroyed.has_value());
  CHECK(destroyed->status == SandboxStatus::destroyed);
  harness.podman.release_starts();

  CHECK(eventually([&] { return harness.podman.containers().empty(); }));
  harness.service->shutdown();  // waits for the provisioning thread
  CHECK(harness.status_of(sandbox.id) == SandboxStatus::destroyed);
  CHECK(harness.stored_record(sandbox.id).status == SandboxStatus::destroyed);
  CHECK(harness.podman.containers().empty());
}

TEST_CASE("the reaper destroys a sandbox once the clock passes its expiry", "[service][ttl]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  Sandbox sandbox = harness.provision_running("expiring", std::nullopt, 60);
  Sandbox keeper = harness.provision_running("keeper", std::nullopt, 3600);
  REQUIRE(sandbox.expires_at() == harness.clock.now() + std::chrono::seconds(60));

  harness.clock.advance(std::chrono::seconds(61));
  REQUIRE(eventually([&] { return harness.status_of(sandbox.id) == SandboxStatus::destroyed; }));
  Sandbox destroyed = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(destroyed.error == "ttl expired");
  CHECK(destroyed.destroyed_at == harness.clock.now());
  CHECK_FALSE(harness.podman.container(sandbox.container_id).has_value());
  CHECK(harness.stored_record(sandbox.id).status == SandboxStatus::destroyed);
  CHECK(harness.status_of(keeper.id) == SandboxStatus::running);
}

TEST_CASE("the reaper also clears failed sandboxes that expired", "[service][ttl]") {
  ServiceHarness harness;
  harness.podman.set_image_missing(default_image);
  harness.service->start_reaper();
  Sandbox sandbox = harness.provision("failing", std::nullopt, 30);
  REQUIRE_FALSE(harness.wait("failing").has_value());
  harness.clock.advance(std::chrono::seconds(31));
  REQUIRE(eventually([&] { return harness.status_of(sandbox.id) == SandboxStatus::destroyed; }));
  Sandbox destroyed = expect_value(harness.service->get(std::nullopt, sandbox.id));
  REQUIRE(destroyed.error.has_value());
  CHECK(destroyed.error->find("is not in Podman storage") != std::string::npos);  // the first reason stays
  CHECK(destroyed.error->ends_with("; ttl expired"));
}

TEST_CASE("the same task_id lives in two workspaces, and lookups stay in their workspace", "[service][workspace]") {
  ServiceHarness harness;
  Sandbox in_a = harness.provision_running("shared", "team-a");
  Sandbox in_b = harness.provision_running("shared", "team-b");
  CHECK(in_a.id != in_b.id);

  CHECK(expect_value(harness.service->get("team-a", "shared")).id == in_a.id);
  CHECK(expect_value(harness.service->get("team-b", "shared")).id == in_b.id);
  CHECK(error_kind(harness.service->get("team-b", in_a.id)) == ErrorKind::not_found);
  CHECK(error_kind(harness.service->get(std::nullopt, "shared")) == ErrorKind::not_found);
  CHECK(harness.service->list("team-a", std::nullopt).size() == 1);
  CHECK(error_kind(harness.service->destroy("team-c", "shared")) == ErrorKind::not_found);

  REQUIRE(harness.service->destroy("team-a", "shared").has_value());
  CHECK(harness.status_of(in_a.id) == SandboxStatus::destroyed);
  CHECK(harness.status_of(in_b.id) == SandboxStatus::running);
}

TEST_CASE("the sandbox API takes exactly its SANDBOX_API_KEY", "[service][auth]") {
  ServiceHarness harness;
  Sandbox keyless = harness.provision_running("keyless");
  Sandbox keyed = harness.provision_running("keyed", std::nullopt, std::nullopt, {{"SANDBOX_API_KEY", "s3cret-key"}});
  auto authorize = [&](const std::string& id, const std::string* header) {
    return harness.service->authorize(id, header);
  };
  auto bearer = [](std::string key) { return std::string("Bearer ") + key; };

  SECTION("a sandbox provisioned without a key is forbidden") {
    std::string header = bearer("anything");
    CHECK(error_kind(authorize(keyless.id, &header)) == ErrorKind::forbidden);
    CHECK(error_kind(authorize(keyless.id, nullptr)) == ErrorKind::forbidden);
  }
  SECTION("a missing, wrong or partial key is unauthorized") {
    CHECK(error_kind(authorize(keyed.id, nullptr)) == ErrorKind::unauthorized);
    for (std::string header : {bearer("wrong"), bearer(""), bearer("s3cret"), bearer("s3cret-key-and-more"),
                               std::string("s3cret-key"), std::string("bearer s3cret-key"), std::string("Bearer"),
                               std::string("Basic s3cret-key")}) {
      INFO("Authorization: " << header);
      CHECK(error_kind(authorize(keyed.id, &header)) == ErrorKind::unauthorized);
    }
  }
  SECTION("the right key is accepted") {
    std::string header = bearer("s3cret-key");
    auto authorized = authorize(keyed.id, &header);
    REQUIRE(authorized.has_value());
    CHECK(authorized->id == keyed.id);
  }
  SECTION("an unknown sandbox is not_found") {
    std::string header = bearer("s3cret-key");
    CHECK(error_kind(authorize("no-such-id", &header)) == ErrorKind::not_found);
  }
}

TEST_CASE("exec runs through the sandbox's helper", "[service][exec]") {
  ServiceHarness harness;
  harness.helpers.set_exec_result(ExecResult{.exit_code = 3, .stdout_text = "out", .stderr_text = "err"});
  Sandbox sandbox = harness.provision_running("exec");
  auto result = harness.service->exec(std::nullopt, "exec", {.command = "echo hi", .timeout_ms = 1500, .cwd = "/w"});
  REQUIRE(result.has_value());
  CHECK(result->exit_code == 3);
  CHECK(result->stdout_text == "out");
  CHECK(result->stderr_text == "err");
  CHECK_FALSE(result->killed);
  auto execs = harness.helpers.execs();
  REQUIRE(execs.size() == 1);
  CHECK(execs[0].first == harness.dir / "run" / "sandboxes" / sandbox.id / "helper.sock");
  CHECK(execs[0].second.command == "echo hi");
  CHECK(execs[0].second.timeout_ms == 1500);
  CHECK(execs[0].second.cwd == "/w");
  CHECK(harness.podman.count_calls("exec") == 0);  // never through podman exec

  SECTION("not in a destroyed sandbox") {
    REQUIRE(harness.service->destroy(std::nullopt, "exec").has_value());
    CHECK(error_kind(harness.service->exec(std::nullopt, "exec", {.command = "true"})) == ErrorKind::not_found);
  }
  SECTION("not in an unknown sandbox") {
    CHECK(error_kind(harness.service->exec(std::nullopt, "other", {.command = "true"})) == ErrorKind::not_found);
  }
}

TEST_CASE("exec in a provisioning sandbox is a conflict", "[service][exec]") {
  ServiceHarness harness;
  harness.podman.hold_starts();
  harness.provision("early");
  auto result = harness.service->exec(std::nullopt, "early", {.command = "true"});
  harness.podman.release_starts();
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().kind == ErrorKind::conflict);
}

TEST_CASE("an exec whose helper dies in a destroy is a conflict, not a helper failure", "[service][exec]") {
  // The destroy removes the container before the record says destroyed: the helper's connection
  // drops in between, and that must read as the destroy it is.
  ServiceHarness harness;
  Sandbox sandbox = harness.provision_running("doomed");
  std::mutex mutex;
  std::condition_variable changed;
  bool removing = false, exec_answered = false;
  harness.helpers.set_exec([&](const ExecRequest&) -> Result<ExecResult> {
    std::unique_lock lock(mutex);
    changed.wait_for(lock, std::chrono::seconds(10), [&] { return removing; });
    return fail(ErrorKind::unavailable, "the sandbox's helper closed the connection before answering");
  });
  harness.podman.on_remove([&](const std::string&) {
    std::unique_lock lock(mutex);
    removing = true;
    changed.notify_all();
    changed.wait_for(lock, std::chrono::seconds(10), [&] { return exec_answered; });
  });
  Result<ExecResult> result = fail(ErrorKind::internal, "not run");
  std::thread exec([&] {
    result = harness.service->exec(std::nullopt, "doomed", {.command = "sleep 30"});
    std::lock_guard lock(mutex);
    exec_answered = true;
    changed.notify_all();
  });
  bool running = eventually([&] { return !harness.helpers.execs().empty(); });
  auto destroyed = harness.service->destroy(std::nullopt, "doomed");
  exec.join();
  harness.podman.on_remove({});
  REQUIRE(running);
  REQUIRE(destroyed.has_value());
  CHECK(exec_answered);
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().kind == ErrorKind::conflict);
  CHECK(result.error().message == "sandbox 'doomed' was destroyed while the command ran");
}

TEST_CASE("after shutdown, provision is unavailable", "[service]") {
  ServiceHarness harness;
  harness.service->shutdown();
  auto provisioned = harness.service->provision(std::nullopt, {.task_id = "late"});
  REQUIRE_FALSE(provisioned.has_value());
  CHECK(provisioned.error().kind == ErrorKind::unavailable);
  CHECK(harness.endpoints.open_count() == 0);
}

namespace {

Sandbox provision_with_ports(ServiceHarness& harness, const std::string& task_id, std::vector<int> ports,
                             std::optional<int> ttl_seconds = std::nullopt) {
  return expect_value(harness.service->provision(
      std::nullopt, {.task_id = task_id, .ttl_seconds = ttl_seconds, .ports = std::move(ports)}));
}

}  // namespace

TEST_CASE("asked ports are served once the sandbox runs, and recorded", "[service][ports]") {
  ServiceHarness harness;
  harness.podman.hold_starts();
  Sandbox provisioned = provision_with_ports(harness, "web", {8000, 5173});
  CHECK(provisioned.ports == std::vector<int>{8000, 5173});
  CHECK(provisioned.port_gateways.empty());
  REQUIRE(eventually([&] { return harness.podman.starts_waiting() == 1; }));
  CHECK(harness.endpoints.served_ports(provisioned.id).empty());  // only the sandbox URL while provisioning
  harness.podman.release_starts();

  Sandbox running = expect_value(harness.wait("web"));
  auto served = harness.endpoints.served_ports(running.id);
  REQUIRE(served.size() == 2);
  CHECK(running.port_gateways == served);
  CHECK(served.at(8000) != served.at(5173));
  CHECK(served.at(8000) != running.gateway_port);
  CHECK(harness.endpoints.open_ports().at(running.id) == running.gateway_port);
  CHECK(harness.stored_record(running.id).port_gateways == served);
  CHECK(harness.stored_record(running.id).ports == std::vector<int>{8000, 5173});
  CHECK(port_urls(running) ==
        std::map<int, std::string>{{8000, "http://127.0.0.1:" + std::to_string(served.at(8000))},
                                   {5173, "http://127.0.0.1:" + std::to_string(served.at(5173))}});
}

TEST_CASE("a sandbox that asks for no ports serves only its URL", "[service][ports]") {
  ServiceHarness harness;
  Sandbox running = harness.provision_running("plain");
  CHECK(running.ports.empty());
  CHECK(running.port_gateways.empty());
  CHECK(harness.endpoints.listener_count() == 1);
}

TEST_CASE("every port of a sandbox is closed when it ends", "[service][ports]") {
  ServiceHarness harness;
  Sandbox other = provision_with_ports(harness, "other", {3000});
  REQUIRE(expect_value(harness.wait("other")).status == SandboxStatus::running);
  SECTION("destroyed") {
    Sandbox sandbox = provision_with_ports(harness, "web", {8000, 5173});
    REQUIRE(expect_value(harness.wait("web")).status == SandboxStatus::running);
    REQUIRE(harness.endpoints.listener_count() == 5);
    REQUIRE(harness.service->destroy(std::nullopt, "web").has_value());
    CHECK(harness.endpoints.served_ports(sandbox.id).empty());
    CHECK_FALSE(harness.endpoints.open_ports().contains(sandbox.id));
  }
  SECTION("expired") {
    harness.service->start_reaper();
    Sandbox sandbox = provision_with_ports(harness, "web", {8000, 5173}, 60);
    REQUIRE(expect_value(harness.wait("web")).status == SandboxStatus::running);
    harness.clock.advance(std::chrono::seconds(61));
    REQUIRE(eventually([&] { return harness.status_of(sandbox.id) == SandboxStatus::destroyed; }));
    CHECK(harness.endpoints.served_ports(sandbox.id).empty());
    CHECK_FALSE(harness.endpoints.open_ports().contains(sandbox.id));
  }
  // The other sandbox's URL and port stay.
  CHECK(harness.endpoints.listener_count() == 2);
  CHECK(harness.endpoints.served_ports(other.id).size() == 1);
}

TEST_CASE("a port that cannot be served fails the sandbox, which keeps nothing open", "[service][ports]") {
  ServiceHarness harness;
  harness.endpoints.fail_sandbox_port(5173);
  Sandbox sandbox = provision_with_ports(harness, "web", {8000, 5173});
  auto waited = harness.wait("web");
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::conflict);
  CHECK(waited.error().message.find("port 5173") != std::string::npos);
  Sandbox failed = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(failed.status == SandboxStatus::failed);
  CHECK(failed.port_gateways.empty());
  CHECK(harness.endpoints.listener_count() == 0);
  CHECK(harness.podman.containers().empty());
  CHECK(harness.stored_record(sandbox.id).status == SandboxStatus::failed);
}
