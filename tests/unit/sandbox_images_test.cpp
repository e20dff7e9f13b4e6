// Provisioning from registered images over a fake Podman: image_id resolution, the image's TTL and
// memory limit (and saying so where the host cannot enforce it), pulls with registry credentials and
// their failures, and building a missing default image on first use.

#include <algorithm>
#include <catch2/catch.hpp>
#include <condition_variable>

#include "agent/image_service.h"
#include "agent/podman_backend.h"
#include "agent/sandbox_service.h"
#include "tests/unit/fakes.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

class FakeBuilder final : public ImageBuilder {
 public:
  explicit FakeBuilder(FakePodman& podman) : podman_(podman) {}
  std::optional<std::string> buildable(const std::string& reference) const override {
    if (reference == "localhost/modbox/code-exec:latest") return "code-exec";
    return std::nullopt;
  }
  Result<void> build(const std::string& name) override {
    std::unique_lock lock(mutex_);
    building_ = true;
    released_.wait_for(lock, std::chrono::seconds(10), [this] { return !holding_; });
    building_ = false;
    built_.push_back(name);
    if (fail_) return fail(ErrorKind::internal, "images/build " + name + " exited with status 1");
    podman_.set_image_present("localhost/modbox/" + name + ":latest");
    return {};
  }
  std::vector<std::string> built() const {
    std::lock_guard lock(mutex_);
    return built_;
  }
  void set_fail(bool value) { fail_ = value; }
  /// Makes build() wait until release() (or 10 s), so a test can look at a sandbox mid-build.
  void hold() {
    std::lock_guard lock(mutex_);
    holding_ = true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    holding_ = false;
    released_.notify_all();
  }
  bool building() const {
    std::lock_guard lock(mutex_);
    return building_;
  }

 private:
  FakePodman& podman_;
  mutable std::mutex mutex_;
  std::condition_variable released_;
  bool holding_ = false;
  bool building_ = false;
  std::vector<std::string> built_;
  bool fail_ = false;
};

struct Harness {
  TempDir dir;
  FakePodman podman;
  FakeEndpoints endpoints;
  FakeBuilder builder{podman};
  FakeClock clock{TimePoint(std::chrono::seconds(1'779'444'000))};
  std::unique_ptr<ImageService> images = make_images();
  PodmanBackend backend{{.agent_id = "agent-1", .images = images.get(), .builder = &builder}, podman};
  std::unique_ptr<SandboxService> sandboxes = make_sandboxes();  // declared last: stopped first

  std::unique_ptr<ImageService> make_images() {
    auto image_store = RecordStore::open(dir / "images");
    auto registry_store = RecordStore::open(dir / "registries");
    REQUIRE(image_store.has_value());
    REQUIRE(registry_store.has_value());
    auto made = std::make_unique<ImageService>(std::move(*image_store), std::move(*registry_store),
                                               [this] { return clock.now(); });
    REQUIRE(made->load().has_value());
    return made;
  }

  std::unique_ptr<SandboxService> make_sandboxes() {
    auto store = RecordStore::open(dir / "sandboxes");
    REQUIRE(store.has_value());
    auto made = std::make_unique<SandboxService>(
        SandboxServiceConfig{.created_by = "tester", .now = [this] { return clock.now(); }, .images = images.get()},
        backend, std::move(*store), endpoints);
    made->load();
    return made;
  }

  Result<Sandbox> provision(const std::string& task_id, std::optional<std::string> image_id,
                            const ImageService::Workspace& workspace = "team-a",
                            std::optional<int> ttl = std::nullopt) {
    return sandboxes->provision(workspace, {.task_id = task_id, .image_id = std::move(image_id), .ttl_seconds = ttl});
  }

  Result<Sandbox> wait(const std::string& task_id, const ImageService::Workspace& workspace = "team-a") {
    return sandboxes->wait(workspace, {.task_id = task_id, .timeout_seconds = 10});
  }
};

}  // namespace

TEST_CASE("image_id provisions that image with its TTL", "[service][images]") {
  Harness harness;
  SandboxImage image = expect_value(
      harness.images->create("team-a", {.name = "app", .image = "localhost/app", .tag = "v1", .ttl_seconds = 900}));
  Sandbox sandbox = expect_value(harness.provision("t1", image.id));
  CHECK(sandbox.image == "localhost/app:v1");
  CHECK(sandbox.image_id == image.id);
  CHECK(sandbox.ttl_seconds == 900);
  REQUIRE(expect_value(harness.wait("t1")).status == SandboxStatus::running);
  REQUIRE(harness.podman.created_specs().size() == 1);
  CHECK(harness.podman.created_specs().front().image == "localhost/app:v1");
  // Podman's timeout is the lifetime's backstop (an extend may pass the TTL), not the TTL.
  CHECK(harness.podman.created_specs().front().timeout_seconds == limits::sandbox_lifetime_max_seconds);

  SECTION("a TTL in the request wins over the image's") {
    CHECK(expect_value(harness.provision("t2", image.id, "team-a", 30)).ttl_seconds == 30);
  }
  SECTION("without image_id the default is sandbox-lite, with its id") {
    Sandbox lite = expect_value(harness.provision("t3", std::nullopt));
    CHECK(lite.image == "localhost/modbox/sandbox-lite:latest");
    CHECK(lite.image_id == builtin_images().front().id);
    CHECK_FALSE(lite.ttl_seconds.has_value());
  }
}

TEST_CASE("an unknown, foreign or disabled image_id records nothing", "[service][images]") {
  Harness harness;
  SandboxImage image = expect_value(harness.images->create("team-a", {.name = "app", .image = "localhost/app"}));
  CHECK(error_kind(harness.provision("t", "00000000-0000-4000-8000-000000000000")) == ErrorKind::not_found);
  CHECK(error_kind(harness.provision("t", image.id, "team-b")) == ErrorKind::not_found);
  expect_value(harness.images->update("team-a", image.id, {.enabled = false}));
  auto disabled = harness.provision("t", image.id);
  CHECK(error_kind(disabled) == ErrorKind::conflict);
  CHECK(disabled.error().message.find("disabled") != std::string::npos);
  auto both = harness.sandboxes->provision("team-a", {.task_id = "t", .image_id = image.id, .image = "localhost/x"});
  CHECK(error_kind(both) == ErrorKind::validation);
  CHECK(harness.sandboxes->list(std::nullopt, std::nullopt).empty());
  CHECK(harness.podman.count_calls("create ") == 0);
}

TEST_CASE("memory_mb is the container's limit where cgroups enforce it, and said otherwise",
          "[service][images][memory]") {
  Harness harness;
  SandboxImage image =
      expect_value(harness.images->create("team-a", {.name = "app", .image = "localhost/app", .memory_mb = 512}));
  SECTION("rootless on cgroup v2 with the memory controller delegated") {
    harness.podman.set_host_info({.rootless = true, .cgroup_version = "v2", .cgroup_controllers = {"cpu", "memory"}});
    Sandbox sandbox = expect_value(harness.provision("m", image.id));
    CHECK(sandbox.memory_mb == 512);
    CHECK(sandbox.memory_limit_enforced == true);
    CHECK_FALSE(sandbox.memory_limit_detail.has_value());
    REQUIRE(harness.wait("m").has_value());
    CHECK(harness.podman.created_specs().front().memory_bytes == std::int64_t{512} << 20);
  }
  SECTION("rootful on cgroup v1") {
    harness.podman.set_host_info({.rootless = false, .cgroup_version = "v1", .cgroup_controllers = {}});
    CHECK(expect_value(harness.provision("m", image.id)).memory_limit_enforced == true);
    REQUIRE(harness.wait("m").has_value());
    CHECK(harness.podman.created_specs().front().memory_bytes == std::int64_t{512} << 20);
  }
  SECTION("rootless on cgroup v1: not enforced, and the sandbox says why") {
    harness.podman.set_host_info({.rootless = true, .cgroup_version = "v1", .cgroup_controllers = {}});
    Sandbox sandbox = expect_value(harness.provision("m", image.id));
    CHECK(sandbox.memory_mb == 512);
    CHECK(sandbox.memory_limit_enforced == false);
    REQUIRE(sandbox.memory_limit_detail.has_value());
    CHECK(sandbox.memory_limit_detail->find("cgroup v1") != std::string::npos);
    REQUIRE(harness.wait("m").has_value());
    CHECK_FALSE(harness.podman.created_specs().front().memory_bytes.has_value());
  }
  SECTION("rootless on cgroup v2 without delegation") {
    harness.podman.set_host_info({.rootless = true, .cgroup_version = "v2", .cgroup_controllers = {"pids"}});
    Sandbox sandbox = expect_value(harness.provision("m", image.id));
    CHECK(sandbox.memory_limit_enforced == false);
    CHECK(sandbox.memory_limit_detail->find("delegated") != std::string::npos);
  }
}

TEST_CASE("a missing image with a registry credential is pulled with it", "[service][images][registries]") {
  Harness harness;
  Registry registry = expect_value(harness.images->create_registry(
      "team-a", {.name = "local", .server = "127.0.0.1:5000", .username = "alice", .password = "right"}));
  SandboxImage image = expect_value(harness.images->create(
      "team-a", {.name = "app", .image = "127.0.0.1:5000/team/app", .tag = "v1", .registry_id = registry.id}));
  const std::string reference = "127.0.0.1:5000/team/app:v1";
  harness.podman.set_image_missing(reference);

  SECTION("the pull carries the credential and the sandbox runs") {
    expect_value(harness.provision("p", image.id));
    REQUIRE(expect_value(harness.wait("p")).status == SandboxStatus::running);
    auto pulls = harness.podman.pulls();
    REQUIRE(pulls.size() == 1);
    CHECK(pulls.front().first == reference);
    REQUIRE(pulls.front().second.auth.has_value());
    CHECK(pulls.front().second.auth->username == "alice");
    CHECK(pulls.front().second.auth->password == "right");
    CHECK_FALSE(pulls.front().second.tls_verify);
    CHECK_FALSE(expect_value(harness.sandboxes->get("team-a", "p")).progress.has_value());  // cleared once pulled
  }
  SECTION("a refused pull fails the sandbox with the registry's reason, and wait reports it") {
    harness.podman.fail_pull(
        reference,
        Error{ErrorKind::internal, "pulling " + reference + ": podman: unauthorized: authentication required", {}});
    Sandbox sandbox = expect_value(harness.provision("p", image.id));
    auto waited = harness.wait("p");
    REQUIRE_FALSE(waited.has_value());
    CHECK(waited.error().kind == ErrorKind::conflict);
    CHECK(waited.error().message.find("unauthorized") != std::string::npos);
    Sandbox failed = expect_value(harness.sandboxes->get("team-a", sandbox.id));
    CHECK(failed.status == SandboxStatus::failed);
    CHECK(failed.error->find("unauthorized") != std::string::npos);
    CHECK(failed.error->find("right") == std::string::npos);  // never the secret
    CHECK(harness.podman.count_calls("create ") == 0);
    CHECK(harness.endpoints.open_ports().empty());
  }
  SECTION("a credential deleted before the pull is a clear reason") {
    auto options = harness.images->pull_options("00000000-0000-4000-8000-000000000000");
    CHECK(error_kind(options) == ErrorKind::not_found);
    CHECK(options.error().message.find("deleted") != std::string::npos);
  }
}

TEST_CASE("a default image that is not built is built on first provision", "[service][images][build]") {
  Harness harness;
  const std::string reference = "localhost/modbox/code-exec:latest";
  harness.podman.set_image_missing(reference);
  const std::string code_exec = builtin_images()[1].id;
  SECTION("built, then run; the detail shows the build while it lasts") {
    harness.builder.hold();
    expect_value(harness.provision("b", code_exec));
    REQUIRE(eventually([&] { return harness.builder.building(); }));
    Sandbox building = expect_value(harness.sandboxes->get("team-a", "b"));
    CHECK(building.status == SandboxStatus::provisioning);
    REQUIRE(building.progress.has_value());
    CHECK(building.progress->find("building " + reference) != std::string::npos);
    harness.builder.release();
    REQUIRE(expect_value(harness.wait("b")).status == SandboxStatus::running);
    CHECK(harness.builder.built() == std::vector<std::string>{"code-exec"});
    CHECK(harness.podman.pulls().empty());
  }
  SECTION("a failed build fails the sandbox with the build's reason") {
    harness.builder.set_fail(true);
    expect_value(harness.provision("b", code_exec));
    auto waited = harness.wait("b");
    REQUIRE_FALSE(waited.has_value());
    CHECK(waited.error().message.find("images/build code-exec") != std::string::npos);
  }
  SECTION("a missing local image that no builder knows fails with how to build it") {
    harness.podman.set_image_missing("localhost/modbox/sandbox-lite:latest");
    expect_value(harness.provision("b", std::nullopt));
    auto waited = harness.wait("b");
    REQUIRE_FALSE(waited.has_value());
    CHECK(waited.error().message.find("localhost/modbox/sandbox-lite:latest is not in Podman storage") !=
          std::string::npos);
    CHECK(waited.error().message.find("modbox images build") != std::string::npos);
    CHECK(harness.podman.pulls().empty());
  }
}

TEST_CASE("the sandbox keeps its image's readiness_port as the port its URL proxies to", "[service][images][ports]") {
  Harness harness;
  SECTION("an image with a readiness_port") {
    SandboxImage image = expect_value(
        harness.images->create("team-a", {.name = "app", .image = "localhost/app", .readiness_port = 3000}));
    Sandbox sandbox = expect_value(harness.provision("web", image.id));
    CHECK(sandbox.readiness_port == 3000);
    CHECK(proxied_port(sandbox) == 3000);
    // ... and is probed there over HTTP (seed 000); the fakes here have no helper, so it is not run.
    CHECK(sandbox.readiness_probe == ReadinessProbe{.kind = ReadinessProbe::Kind::http, .port = 3000});
    REQUIRE(harness.wait("web").has_value());
    auto stored = read_file(harness.dir / "sandboxes" / (sandbox.id + ".json"));
    REQUIRE(stored.has_value());
    CHECK(expect_value(sandbox_record_from_json(*stored)).readiness_port == 3000);
  }
  SECTION("a provision's own probe overrides the image's HTTP probe") {
    SandboxImage image = expect_value(
        harness.images->create("team-a", {.name = "app", .image = "localhost/app", .readiness_port = 3000}));
    ReadinessProbe tcp{.kind = ReadinessProbe::Kind::tcp, .port = 8000, .interval_ms = 50};
    Sandbox sandbox = expect_value(
        harness.sandboxes->provision("team-a", {.task_id = "web", .image_id = image.id, .readiness_probe = tcp}));
    CHECK(sandbox.readiness_probe == tcp);
    CHECK(proxied_port(sandbox) == 3000);
  }
  SECTION("the built-in desktop image: its nginx, probed over HTTP") {
    auto desktop =
        std::ranges::find_if(builtin_images(), [](const BuiltinImage& image) { return image.name == "sandbox"; });
    REQUIRE(desktop != builtin_images().end());
    Sandbox sandbox = expect_value(harness.provision("browser", desktop->id));
    CHECK(proxied_port(sandbox) == 8080);
    CHECK(sandbox.readiness_probe == ReadinessProbe{.kind = ReadinessProbe::Kind::http, .port = 8080});
  }
  SECTION("an image without one: 8080") {
    Sandbox sandbox = expect_value(harness.provision("lite", std::nullopt));
    CHECK_FALSE(sandbox.readiness_port.has_value());
    CHECK(proxied_port(sandbox) == 8080);
  }
  SECTION("an image reference of the `image` extension: 8080") {
    Sandbox sandbox = expect_value(harness.sandboxes->provision("team-a", {.task_id = "ref", .image = "localhost/x"}));
    CHECK(proxied_port(sandbox) == 8080);
  }
}
