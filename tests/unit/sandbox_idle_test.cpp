// The lifecycle's idle timeout (seed 004), tags, network and the retention of ended records, over
// fakes and a fake clock: what the reaper destroys for idleness and what keeps a sandbox alive, what
// lists keep, and when the records of destroyed sandboxes go.

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

ProvisionRequest idle_request(const std::string& task_id, int idle_seconds) {
  return ProvisionRequest{.task_id = task_id, .idle_timeout_seconds = idle_seconds};
}

bool destroyed_idle(ServiceHarness& harness, const std::string& id) {
  auto sandbox = harness.service->get(std::nullopt, id);
  return sandbox && sandbox->status == SandboxStatus::destroyed && sandbox->destroy_reason == DestroyReason::idle;
}

}  // namespace

TEST_CASE("the reaper destroys a sandbox idle for its idle timeout, with reason idle", "[service][idle]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  Sandbox idle = harness.provision_running(idle_request("idle", 30));
  Sandbox patient = harness.provision_running(ProvisionRequest{.task_id = "patient"});
  CHECK(idle.idle_timeout_seconds == 30);

  harness.clock.advance(std::chrono::seconds(31));
  REQUIRE(eventually([&] { return destroyed_idle(harness, idle.id); }));
  Sandbox destroyed = expect_value(harness.service->get(std::nullopt, idle.id));
  CHECK(destroyed.error == "idle timeout reached");
  CHECK(harness.stored_record(idle.id).destroy_reason == DestroyReason::idle);
  CHECK_FALSE(harness.podman.container(idle.container_id).has_value());
  CHECK(harness.status_of(patient.id) == SandboxStatus::running);  // no idle timeout: never idle
}

TEST_CASE("exec, file calls and open connections keep a sandbox from idling", "[service][idle]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  // The witness has the same timeout and no activity: once the reaper has destroyed it, it has
  // looked at the other sandbox at the same moment too.
  Sandbox witness = harness.provision_running(idle_request("witness", 30));
  Sandbox used = harness.provision_running(idle_request("used", 30));

  SECTION("an exec counts from when it ends") {
    harness.clock.advance(std::chrono::seconds(20));
    REQUIRE(harness.service->exec(std::nullopt, "used", {.command = "true"}).has_value());
    harness.clock.advance(std::chrono::seconds(11));  // 31 s after ready, 11 s after the exec
    REQUIRE(eventually([&] { return destroyed_idle(harness, witness.id); }));
    CHECK(harness.status_of(used.id) == SandboxStatus::running);
    harness.clock.advance(std::chrono::seconds(20));  // 31 s after the exec
    CHECK(eventually([&] { return destroyed_idle(harness, used.id); }));
  }
  SECTION("a hold (an open connection, a transfer, a running command) counts for as long as it lasts") {
    auto connection = harness.service->hold_activity(used.id);
    harness.clock.advance(std::chrono::seconds(100));
    REQUIRE(eventually([&] { return destroyed_idle(harness, witness.id); }));
    CHECK(harness.status_of(used.id) == SandboxStatus::running);
    connection.release();  // closed at +100 s: idle from there
    harness.clock.advance(std::chrono::seconds(28));
    Sandbox witness2 = harness.provision_running(idle_request("witness2", 1));
    harness.clock.advance(std::chrono::seconds(1));  // +129 s: the new witness is idle, `used` one second short
    REQUIRE(eventually([&] { return destroyed_idle(harness, witness2.id); }));
    CHECK(harness.status_of(used.id) == SandboxStatus::running);
    harness.clock.advance(std::chrono::seconds(1));
    CHECK(eventually([&] { return destroyed_idle(harness, used.id); }));
  }
  SECTION("a hold does not stop the TTL") {
    Sandbox both =
        harness.provision_running(ProvisionRequest{.task_id = "both", .ttl_seconds = 60, .idle_timeout_seconds = 30});
    auto connection = harness.service->hold_activity(both.id);
    harness.clock.advance(std::chrono::seconds(61));
    REQUIRE(eventually([&] { return harness.status_of(both.id) == SandboxStatus::destroyed; }));
    CHECK(expect_value(harness.service->get(std::nullopt, both.id)).destroy_reason == DestroyReason::ttl);
  }
}

TEST_CASE("an ended sandbox has no activity meter, and holding it does nothing", "[service][idle]") {
  ServiceHarness harness;
  Sandbox sandbox = harness.provision_running(idle_request("gone", 30));
  CHECK(harness.service->activity(sandbox.id) != nullptr);
  REQUIRE(harness.service->destroy(std::nullopt, "gone").has_value());
  CHECK(harness.service->activity(sandbox.id) == nullptr);
  CHECK_FALSE(harness.service->hold_activity(sandbox.id).active());
  CHECK(harness.service->activity("no-such-id") == nullptr);
}

TEST_CASE("tags are stored, shown and filter the list; every tag given must match", "[service][tags]") {
  ServiceHarness harness;
  harness.provision_running(ProvisionRequest{.task_id = "a", .tags = {{"team", "ml"}, {"run", "1"}}});
  harness.clock.advance(std::chrono::seconds(1));  // lists are oldest first
  harness.provision_running(ProvisionRequest{.task_id = "b", .tags = {{"team", "ml"}, {"run", "2"}}});
  harness.clock.advance(std::chrono::seconds(1));
  Sandbox c = harness.provision_running(ProvisionRequest{.task_id = "c", .tags = {{"team", "web"}}});
  CHECK(c.tags == std::map<std::string, std::string>{{"team", "web"}});
  CHECK(harness.stored_record(c.id).tags == c.tags);

  auto names = [&](SandboxFilter filter) {
    std::vector<std::string> found;
    for (const auto& sandbox : harness.service->list(std::nullopt, filter)) found.push_back(sandbox.name);
    return found;
  };
  CHECK(names({.status = std::nullopt, .tags = {{"team", "ml"}}}) == std::vector<std::string>{"a", "b"});
  CHECK(names({.status = std::nullopt, .tags = {{"team", "ml"}, {"run", "2"}}}) == std::vector<std::string>{"b"});
  CHECK(names({.status = std::nullopt, .tags = {{"team", "ml"}, {"team", "web"}}}).empty());
  CHECK(names({.status = SandboxStatus::destroyed, .tags = {{"team", "web"}}}).empty());
  CHECK(names({}).size() == 3);
}

TEST_CASE("network none gives the container loopback only; the default leaves Podman's network", "[service][network]") {
  ServiceHarness harness;
  Sandbox isolated = harness.provision_running(ProvisionRequest{.task_id = "isolated", .network = "none"});
  harness.provision_running(ProvisionRequest{.task_id = "default"});
  CHECK(isolated.network == "none");
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].no_network);
  CHECK_FALSE(specs[1].no_network);
}

TEST_CASE("records of destroyed sandboxes are pruned after the retention period", "[service][retention]") {
  ServiceHarness harness;
  Sandbox old = harness.provision_running(ProvisionRequest{.task_id = "old"});
  Sandbox live = harness.provision_running(ProvisionRequest{.task_id = "live"});
  REQUIRE(harness.service->destroy(std::nullopt, "old").has_value());
  auto record_file = harness.store_directory() / (old.id + ".json");
  REQUIRE(std::filesystem::exists(record_file));

  harness.clock.advance(std::chrono::hours(7 * 24) - std::chrono::seconds(1));
  CHECK(harness.service->prune_ended() == 0);
  CHECK(harness.service->get(std::nullopt, old.id).has_value());

  harness.clock.advance(std::chrono::seconds(1));
  CHECK(harness.service->prune_ended() == 1);
  CHECK_FALSE(std::filesystem::exists(record_file));
  CHECK(error_kind(harness.service->get(std::nullopt, old.id)) == ErrorKind::not_found);
  CHECK(error_kind(harness.service->get(std::nullopt, "old")) == ErrorKind::not_found);
  CHECK(harness.service->list(std::nullopt, std::nullopt).size() == 1);
  CHECK(harness.status_of(live.id) == SandboxStatus::running);  // live ones are never pruned

  SECTION("the task_id is free and found again") {
    Sandbox again = harness.provision_running(ProvisionRequest{.task_id = "old"});
    CHECK(expect_value(harness.service->get(std::nullopt, "old")).id == again.id);
  }
}

TEST_CASE("an agent that starts prunes what passed retention while it was away", "[service][retention]") {
  ServiceHarness harness;
  Sandbox failed = harness.provision_running(ProvisionRequest{.task_id = "once"});
  REQUIRE(harness.service->destroy(std::nullopt, "once").has_value());
  Sandbox recent = harness.provision_running(ProvisionRequest{.task_id = "once"});
  REQUIRE(harness.service->destroy(std::nullopt, "once").has_value());
  harness.clock.advance(std::chrono::hours(2));
  harness.retention = std::chrono::hours(1);
  harness.restart();
  CHECK(error_kind(harness.service->get(std::nullopt, failed.id)) == ErrorKind::not_found);
  CHECK(error_kind(harness.service->get(std::nullopt, recent.id)) == ErrorKind::not_found);
  CHECK(harness.service->list(std::nullopt, std::nullopt).empty());
  CHECK(std::filesystem::is_empty(harness.store_directory()));
}

TEST_CASE("task_id lookups find the live sandbox among many ended ones of that name", "[service][retention]") {
  ServiceHarness harness;
  for (int i = 0; i < 3; ++i) {
    harness.provision_running(ProvisionRequest{.task_id = "reused"});
    harness.clock.advance(std::chrono::seconds(1));
    REQUIRE(harness.service->destroy(std::nullopt, "reused").has_value());
  }
  Sandbox latest_destroyed = expect_value(harness.service->get(std::nullopt, "reused"));
  CHECK(latest_destroyed.status == SandboxStatus::destroyed);
  Sandbox live = harness.provision_running(ProvisionRequest{.task_id = "reused"}, "team");
  CHECK(expect_value(harness.service->get(std::string("team"), "reused")).id == live.id);
  CHECK(expect_value(harness.service->get(std::nullopt, "reused")).id == latest_destroyed.id);
  Sandbox here = harness.provision_running(ProvisionRequest{.task_id = "reused"});
  CHECK(expect_value(harness.service->get(std::nullopt, "reused")).id == here.id);
  harness.restart();  // the index is rebuilt from the records
  CHECK(expect_value(harness.service->get(std::nullopt, "reused")).id == here.id);
  CHECK(expect_value(harness.service->get(std::string("team"), "reused")).id == live.id);
}

TEST_CASE("a running background process keeps a sandbox from idling, and its end counts as activity",
          "[service][idle]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  Sandbox witness = harness.provision_running(idle_request("witness", 30));
  Sandbox busy = harness.provision_running(idle_request("busy", 30));
  auto socket = harness.service->helper_access(busy)->socket;
  helper::ProcessInfo process;
  process.id = 1;
  process.command = "make";
  harness.helpers.set_processes(socket, {process});

  harness.clock.advance(std::chrono::seconds(31));
  REQUIRE(eventually([&] { return destroyed_idle(harness, witness.id); }));
  CHECK(harness.status_of(busy.id) == SandboxStatus::running);

  // It ended 10 s after that look (on the sandbox's clock); the next look, 30 s after the first,
  // counts from its end.
  TimePoint ready = *busy.ready_at;
  process.state = helper::ProcessState::exited;
  process.ended_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>((ready + std::chrono::seconds(41)).time_since_epoch()).count();
  harness.helpers.set_processes(socket, {process});
  std::size_t looked = harness.helpers.process_listings();
  harness.clock.advance(std::chrono::seconds(31));  // ready + 62
  REQUIRE(eventually([&] { return harness.helpers.process_listings() > looked; }));
  CHECK(harness.status_of(busy.id) == SandboxStatus::running);
  harness.clock.advance(std::chrono::seconds(10));  // ready + 72: 31 s after the process ended
  CHECK(eventually([&] { return destroyed_idle(harness, busy.id); }));
}
