// The systemd layer of the TTL over fake timers: provision arms a sandbox's timer, extend moves it,
// destroy removes it, reconcile re-arms them, and none of it ever fails a request. Also extend's rules,
// and the systemd-run command line the real timers use.

#include <catch2/catch.hpp>

#include "agent/process.h"
#include "agent/ttl_timers.h"
#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;
using namespace std::chrono_literals;

namespace {
Result<Sandbox> extend(ServiceHarness& harness, const std::string& task_id, int ttl_seconds) {
  return harness.service->extend(std::nullopt, ExtendRequest{.task_id = task_id, .ttl_seconds = ttl_seconds});
}

std::map<std::string, TimePoint> settled_timers(ServiceHarness& harness) {
  REQUIRE(harness.service->settle_ttl_timers(5s));
  return harness.timers.armed();
}
}  // namespace

TEST_CASE("a sandbox with a TTL gets a timer at its expiry; one without gets none", "[ttl-timers]") {
  ServiceHarness harness;
  Sandbox with_ttl = harness.provision_running("with-ttl", std::nullopt, 60);
  harness.provision_running("without");
  CHECK(settled_timers(harness) == std::map<std::string, TimePoint>{{with_ttl.id, harness.clock.now() + 60s}});
}

TEST_CASE("extend sets the TTL from now and moves the timer", "[ttl-timers][extend]") {
  ServiceHarness harness;
  Sandbox sandbox = harness.provision_running("task", std::nullopt, 60);
  harness.clock.advance(50s);
  auto extended = extend(harness, "task", 300);
  REQUIRE(extended.has_value());
  CHECK(extended->ttl_seconds == 300);
  CHECK(extended->ttl_extended_at == harness.clock.now());
  CHECK(extended->expires_at() == harness.clock.now() + 300s);
  CHECK(harness.stored_record(sandbox.id).expires_at() == harness.clock.now() + 300s);
  CHECK(settled_timers(harness).at(sandbox.id) == harness.clock.now() + 300s);

  SECTION("the reaper keeps it past its first expiry, then destroys it at the new one") {
    harness.service->start_reaper();
    harness.clock.advance(20s);  // 70 s after creation: past the first TTL
    CHECK(harness.status_of(sandbox.id) == SandboxStatus::running);
    harness.clock.advance(300s);
    CHECK(eventually([&] { return harness.status_of(sandbox.id) == SandboxStatus::destroyed; }, 5s));
    CHECK(harness.stored_record(sandbox.id).destroy_reason == DestroyReason::ttl);
  }
  SECTION("the extended expiry survives a restart") {
    harness.restart();
    auto reloaded = harness.service->get(std::nullopt, sandbox.id);
    REQUIRE(reloaded.has_value());
    CHECK(reloaded->expires_at() == harness.clock.now() + 300s);
  }
  SECTION("it may shorten the TTL too") {
    REQUIRE(extend(harness, "task", 1).has_value());
    CHECK(settled_timers(harness).at(sandbox.id) == harness.clock.now() + 1s);
  }
}

TEST_CASE("extend gives a TTL to a sandbox that had none", "[ttl-timers][extend]") {
  ServiceHarness harness;
  Sandbox sandbox = harness.provision_running("task");
  REQUIRE(extend(harness, "task", 120).has_value());
  CHECK(settled_timers(harness).at(sandbox.id) == harness.clock.now() + 120s);
}

TEST_CASE("extend answers 404 for an unknown task and 409 for a sandbox that is not live", "[ttl-timers][extend]") {
  ServiceHarness harness;
  auto unknown = extend(harness, "nobody", 60);
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().kind == ErrorKind::not_found);

  harness.provision_running("gone", std::nullopt, 60);
  REQUIRE(harness.service->destroy(std::nullopt, "gone").has_value());
  auto destroyed = extend(harness, "gone", 60);
  REQUIRE_FALSE(destroyed.has_value());
  CHECK(destroyed.error().kind == ErrorKind::conflict);
  CHECK(destroyed.error().message.find("destroyed") != std::string::npos);

  harness.podman.fail_create(Error{ErrorKind::not_found, "no such image", {}});
  harness.provision("broken", std::nullopt, 60);
  auto waited = harness.wait("broken");
  REQUIRE_FALSE(waited.has_value());
  REQUIRE(harness.status_of("broken") == SandboxStatus::failed);
  harness.podman.fail_create(std::nullopt);
  auto failed = extend(harness, "broken", 60);
  REQUIRE_FALSE(failed.has_value());
  CHECK(failed.error().kind == ErrorKind::conflict);
}

TEST_CASE("extend cannot pass a sandbox's lifetime end, where Podman's timeout is armed", "[ttl-timers][extend]") {
  ServiceHarness harness;
  harness.provision_running("task", std::nullopt, 60);
  harness.clock.advance(std::chrono::seconds(limits::sandbox_lifetime_max_seconds - 100));
  auto too_long = extend(harness, "task", 101);
  REQUIRE_FALSE(too_long.has_value());
  CHECK(too_long.error().kind == ErrorKind::conflict);
  CHECK(too_long.error().message.find("at most 100 s") != std::string::npos);
  CHECK(extend(harness, "task", 100).has_value());
}

TEST_CASE("destroy removes the timer, and so does the reaper", "[ttl-timers]") {
  ServiceHarness harness;
  Sandbox destroyed = harness.provision_running("destroyed", std::nullopt, 60);
  Sandbox expired = harness.provision_running("expired", std::nullopt, 30);
  REQUIRE(harness.service->destroy(std::nullopt, "destroyed").has_value());
  harness.clock.advance(31s);
  auto reaped = harness.service->reap_due();
  REQUIRE(reaped.size() == 1);
  CHECK(reaped[0].id == expired.id);
  CHECK(reaped[0].destroy_reason == DestroyReason::ttl);
  CHECK(settled_timers(harness).empty());
  auto calls = harness.timers.calls();
  CHECK(std::count(calls.begin(), calls.end(), "disarm " + destroyed.id) == 1);
  CHECK(std::count(calls.begin(), calls.end(), "disarm " + expired.id) == 1);
  CHECK(harness.service->reap_due().empty());
}

TEST_CASE("reconcile re-arms the timers of live sandboxes and destroys the expired ones", "[ttl-timers][reconcile]") {
  ServiceHarness harness;
  Sandbox live = harness.provision_running("live", std::nullopt, 600);
  Sandbox expired = harness.provision_running("expired", std::nullopt, 30);
  harness.restart();
  harness.clock.advance(60s);
  REQUIRE(harness.service->reconcile().has_value());
  CHECK(harness.status_of(expired.id) == SandboxStatus::destroyed);
  CHECK(settled_timers(harness) == std::map<std::string, TimePoint>{{live.id, live.created_at + 600s}});
}

TEST_CASE("timers that fail or are missing never fail a request, and the layer says why", "[ttl-timers]") {
  ServiceHarness harness;
  SECTION("failing") {
    harness.timers.set_failing(true);
    Sandbox sandbox = harness.provision_running("task", std::nullopt, 60);
    CHECK(extend(harness, "task", 120).has_value());
    REQUIRE(harness.service->settle_ttl_timers(5s));
    auto layers = harness.service->ttl_layers();
    REQUIRE(layers.size() == 3);
    CHECK(layers[0].name == "systemd_timer");
    CHECK(layers[0].detail.find("fake failure") != std::string::npos);
    CHECK(harness.service->destroy(std::nullopt, "task").has_value());
  }
  SECTION("missing: nothing is asked of them") {
    harness.timers.set_active(false);
    harness.provision_running("task", std::nullopt, 60);
    CHECK(extend(harness, "task", 120).has_value());
    CHECK(harness.service->destroy(std::nullopt, "task").has_value());
    REQUIRE(harness.service->settle_ttl_timers(5s));
    CHECK(harness.timers.calls().empty());
    auto layers = harness.service->ttl_layers();
    CHECK_FALSE(layers[0].active);
    CHECK(layers[1].name == "podman_timeout");
    CHECK(layers[2].name == "agent_reaper");
    CHECK(layers[2].active);
  }
}

TEST_CASE("the timer queue carries out only the latest operation of a sandbox", "[ttl-timers]") {
  FakeTtlTimers timers;
  TtlTimerQueue queue(timers);
  TimePoint at(std::chrono::seconds(1'779'444'000));
  for (int i = 0; i < 50; ++i) queue.arm("a", at + std::chrono::seconds(i));
  queue.disarm("b");
  REQUIRE(queue.settle(5s));
  CHECK(timers.armed() == std::map<std::string, TimePoint>{{"a", at + 49s}});
  auto calls = timers.calls();
  CHECK(calls.size() <= 51);
  CHECK(calls.back() == "disarm b");
}

TEST_CASE("the systemd timer fires at the expiry in UTC and runs modbox agent reap", "[ttl-timers]") {
  SystemdTimersConfig config{.cli_binary = "/opt/modbox/bin/modbox",
                             .command_env = {{"MODBOX_STATE_DIR", "/home/u/.local/share/modbox"}},
                             .manager_runtime_dir = "/run/user/1000",
                             .user = "u"};
  // 2026-05-22 10:00:00.250 UTC: never before the expiry, so the next second.
  TimePoint at = TimePoint(std::chrono::seconds(1'779'444'000)) + 250ms;
  CHECK(systemd_calendar_time(at) == "2026-05-22 10:00:01 UTC");
  CHECK(systemd_calendar_time(TimePoint(std::chrono::seconds(1'779'444'000))) == "2026-05-22 10:00:00 UTC");
  auto argv = systemd_run_argv(config, "0f1e", at);
  auto has = [&](const std::string& item) { return std::find(argv.begin(), argv.end(), item) != argv.end(); };
  CHECK(argv.front() == "systemd-run");
  CHECK(has("--user"));
  CHECK(has("--unit=modbox-ttl-0f1e"));
  CHECK(has("--on-calendar=2026-05-22 10:00:01 UTC"));
  CHECK(has("--timer-property=AccuracySec=1s"));
  CHECK(has("--setenv=MODBOX_STATE_DIR=/home/u/.local/share/modbox"));
  CHECK(std::vector<std::string>(argv.end() - 3, argv.end()) ==
        std::vector<std::string>{"/opt/modbox/bin/modbox", "agent", "reap"});
}

TEST_CASE("without systemd as PID 1 the systemd layer says so", "[ttl-timers]") {
  TempDir dir;
  SystemdTimersConfig config{.cli_binary = "/bin/true",
                             .manager_runtime_dir = dir / "user",
                             .systemd_booted_marker = dir / "no-such-marker",
                             .user = "u"};
  TtlLayer layer = probe_systemd_user_manager(config);
  CHECK_FALSE(layer.active);
  CHECK(layer.detail == "no systemd user manager: systemctl --user is unreachable (no systemd as PID 1)");
  SECTION("with systemd but no user manager") {
    config.systemd_booted_marker = dir.path();
    layer = probe_systemd_user_manager(config);
    CHECK_FALSE(layer.active);
    if (find_in_path("systemd-run") && find_in_path("systemctl"))
      CHECK(layer.detail.find("loginctl enable-linger u") != std::string::npos);
  }
}
