// The lifecycle over a backend that is not Podman: whatever implements SandboxBackend gets
// provision, readiness, destroy, TTL and reconcile without the lifecycle knowing what it runs on.
// This is the fit a Kubernetes backend needs.

#include <catch2/catch.hpp>
#include <mutex>

#include "agent/sandbox_service.h"
#include "tests/unit/fakes.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

/// Instances kept in a map, named like pods; records every call.
class MapBackend final : public SandboxBackend {
 public:
  Result<void> ping() override { return {}; }
  BackendCapabilities capabilities() override { return {.memory_limits = true}; }
  Result<void> prepare_image(const Sandbox& sandbox, const Progress& progress) override {
    progress("fetching " + sandbox.image);
    return record("prepare " + sandbox.name);
  }
  Result<std::string> create(const Sandbox& sandbox, const LaunchOptions& options) override {
    std::lock_guard lock(mutex_);
    calls_.push_back("create " + sandbox.name);
    lifetimes_.push_back(options.lifetime);
    std::string id = "pod-" + sandbox.name;
    instances_[id] = BackendInstance{.sandbox_id = sandbox.id, .instance_id = id, .name = id, .running = false};
    return id;
  }
  Result<void> start(const Sandbox& sandbox) override {
    std::lock_guard lock(mutex_);
    calls_.push_back("start " + sandbox.container_id);
    instances_.at(sandbox.container_id).running = true;
    return {};
  }
  Result<void> remove(const Sandbox& sandbox) override {
    std::lock_guard lock(mutex_);
    calls_.push_back("remove " + sandbox.container_id);
    instances_.erase(sandbox.container_id);
    return {};
  }
  void release(const std::string&) override {}
  void release_all_but(const std::set<std::string>&) override {}
  Result<std::vector<BackendInstance>> list_own() override {
    std::lock_guard lock(mutex_);
    std::vector<BackendInstance> all;
    for (const auto& [id, instance] : instances_) all.push_back(instance);
    return all;
  }
  std::filesystem::path helper_socket(const std::string& sandbox_id) const override {
    return "/run/pods/" + sandbox_id + "/helper.sock";
  }
  std::optional<std::string> stopped_reason(const Sandbox&) override { return std::nullopt; }
  std::string diagnosis_hint(const Sandbox& sandbox) const override {
    return "`kubectl logs " + sandbox.container_id + "` may say why";
  }
  std::vector<std::string> image_command(const Sandbox&) override { return {}; }
  Result<void> snapshot(const Sandbox& sandbox, const std::string& repository, const std::string& tag) override {
    return record("snapshot " + sandbox.container_id + " " + repository + ":" + tag);
  }
  Result<void> remove_snapshot(const std::string& reference) override { return record("remove_snapshot " + reference); }

  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::vector<std::optional<std::chrono::seconds>> lifetimes() const {
    std::lock_guard lock(mutex_);
    return lifetimes_;
  }
  bool has(const std::string& id) const {
    std::lock_guard lock(mutex_);
    return instances_.contains(id);
  }

 private:
  Result<void> record(std::string call) {
    std::lock_guard lock(mutex_);
    calls_.push_back(std::move(call));
    return {};
  }
  mutable std::mutex mutex_;
  std::vector<std::string> calls_;
  std::vector<std::optional<std::chrono::seconds>> lifetimes_;
  std::map<std::string, BackendInstance> instances_;
};

struct Harness {
  TempDir dir;
  MapBackend backend;
  FakeEndpoints endpoints;
  FakeHelpers helpers;
  FakeClock clock{TimePoint(std::chrono::seconds(1'779'444'000))};
  std::unique_ptr<SandboxService> service = make_service();

  std::unique_ptr<SandboxService> make_service() {
    auto store = RecordStore::open(dir / "sandboxes");
    REQUIRE(store.has_value());
    auto made = std::make_unique<SandboxService>(
        SandboxServiceConfig{.created_by = "tester", .now = [this] { return clock.now(); }, .helpers = &helpers},
        backend, std::move(*store), endpoints);
    made->load();
    return made;
  }
};

}  // namespace

TEST_CASE("the lifecycle runs a sandbox on any backend", "[service][backend]") {
  Harness harness;
  auto provisioned = harness.service->provision(std::nullopt, {.task_id = "k8s", .ttl_seconds = 600});
  REQUIRE(provisioned.has_value());
  auto running = harness.service->wait(std::nullopt, {.task_id = "k8s", .timeout_seconds = 10});
  REQUIRE(running.has_value());
  CHECK(running->status == SandboxStatus::running);
  CHECK(running->container_id == "pod-k8s");
  CHECK(harness.backend.calls() == std::vector<std::string>{"prepare k8s", "create k8s", "start pod-k8s"});
  // A sandbox with a TTL reaches the backend with its own backstop, at the latest an extend can reach.
  REQUIRE(harness.backend.lifetimes().size() == 1);
  CHECK(harness.backend.lifetimes()[0] == std::chrono::seconds(limits::sandbox_lifetime_max_seconds));
  // The helper is reached where the backend says.
  CHECK(harness.helpers.pinged().back() == std::filesystem::path("/run/pods/" + running->id + "/helper.sock"));

  SECTION("destroy removes the instance and records why") {
    auto destroyed = harness.service->destroy(std::nullopt, "k8s");
    REQUIRE(destroyed.has_value());
    CHECK(destroyed->destroy_reason == DestroyReason::requested);
    CHECK_FALSE(harness.backend.has("pod-k8s"));
  }
  SECTION("an instance lost while the agent was away is recorded as lost") {
    harness.service.reset();
    Sandbox gone = *running;
    REQUIRE(harness.backend.remove(gone).has_value());
    harness.service = harness.make_service();
    REQUIRE(harness.service->reconcile().has_value());
    auto after = harness.service->get(std::nullopt, "k8s");
    REQUIRE(after.has_value());
    CHECK(after->status == SandboxStatus::destroyed);
    CHECK(after->destroy_reason == DestroyReason::lost);
  }
  SECTION("the TTL destroys it through the backend") {
    harness.service->start_reaper();
    harness.clock.advance(std::chrono::seconds(601));
    REQUIRE(eventually([&] { return !harness.backend.has("pod-k8s"); }));
    auto after = harness.service->get(std::nullopt, "k8s");
    REQUIRE(after.has_value());
    CHECK(after->destroy_reason == DestroyReason::ttl);
  }
}
