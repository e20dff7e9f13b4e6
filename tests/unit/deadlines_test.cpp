// The one rule for when a sandbox ends: its TTL from creation, or its idle timeout from its last
// activity while running, whichever comes first.

#include "agent/deadlines.h"

#include <catch2/catch.hpp>

using namespace modbox;

namespace {
TimePoint at_second(int seconds) {
  return TimePoint(std::chrono::seconds(seconds));
}

Sandbox running_sandbox() {
  Sandbox sandbox;
  sandbox.status = SandboxStatus::running;
  sandbox.created_at = at_second(1000);
  sandbox.ready_at = at_second(1002);
  return sandbox;
}
}  // namespace

TEST_CASE("a sandbox without a TTL or idle timeout has no deadline", "[deadlines]") {
  CHECK_FALSE(sandbox_deadline(running_sandbox(), at_second(5000), at_second(0)));
}

TEST_CASE("the TTL counts from creation", "[deadlines]") {
  Sandbox sandbox = running_sandbox();
  sandbox.ttl_seconds = 60;
  CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(0)) == Deadline{at_second(1060), DestroyReason::ttl});
  SECTION("activity does not extend it") {
    CHECK(sandbox_deadline(sandbox, at_second(1059), at_second(0))->at == at_second(1060));
  }
  SECTION("a provisioning or failed sandbox keeps it") {
    sandbox.status = SandboxStatus::failed;
    CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(0))->at == at_second(1060));
    sandbox.status = SandboxStatus::provisioning;
    CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(0))->at == at_second(1060));
  }
  SECTION("a destroyed sandbox has none") {
    sandbox.status = SandboxStatus::destroyed;
    CHECK_FALSE(sandbox_deadline(sandbox, std::nullopt, at_second(0)));
  }
}

TEST_CASE("the idle timeout counts from the latest of ready, agent start and activity", "[deadlines]") {
  Sandbox sandbox = running_sandbox();
  sandbox.idle_timeout_seconds = 30;
  CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(0)) == Deadline{at_second(1032), DestroyReason::idle});
  CHECK(sandbox_deadline(sandbox, at_second(1100), at_second(0))->at == at_second(1130));
  CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(2000))->at == at_second(2030));
  SECTION("not while provisioning") {
    sandbox.status = SandboxStatus::provisioning;
    CHECK_FALSE(sandbox_deadline(sandbox, std::nullopt, at_second(0)));
  }
  SECTION("the earlier of TTL and idle wins") {
    sandbox.ttl_seconds = 20;
    CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(0)) == Deadline{at_second(1020), DestroyReason::ttl});
    sandbox.ttl_seconds = 100;
    CHECK(sandbox_deadline(sandbox, std::nullopt, at_second(0))->reason == DestroyReason::idle);
  }
}
