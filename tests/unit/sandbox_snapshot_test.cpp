// Snapshots over a fake Podman and the real ImageService: what is committed (and with which config
// changes), how the new image is registered, and the refusals (unknown task, not running, name taken,
// Podman failing), which never leave an image behind.

#include <algorithm>
#include <catch2/catch.hpp>

#include "agent/image_service.h"
#include "agent/podman_backend.h"
#include "agent/sandbox_service.h"
#include "tests/unit/fakes.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

struct Harness {
  TempDir dir;
  FakePodman podman;
  FakeEndpoints endpoints;
  FakeClock clock{TimePoint(std::chrono::seconds(1'779'444'000))};
  std::unique_ptr<ImageService> images = make_images();
  PodmanBackend backend{{.agent_id = "agent-1", .images = images.get()}, podman};
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

  Sandbox running(const std::string& task_id, const Workspace& workspace, std::optional<std::string> image_id,
                  std::map<std::string, std::string> env = {}) {
    auto provisioned = sandboxes->provision(
        workspace, {.task_id = task_id, .image_id = std::move(image_id), .env_vars = std::move(env)});
    REQUIRE(provisioned.has_value());
    return expect_value(sandboxes->wait(workspace, {.task_id = task_id, .timeout_seconds = 10}));
  }
};

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

}  // namespace

TEST_CASE("a snapshot commits the sandbox's container and registers the image in its workspace",
          "[service][snapshot]") {
  Harness harness;
  SandboxImage base = expect_value(harness.images->create(
      "team-a", {.name = "web", .image = "localhost/web", .tag = "v1", .memory_mb = 2048, .readiness_port = 8000}));
  harness.podman.set_image_config("localhost/web:v1", {.entrypoint = {"/entry.sh"},
                                                       .command = {"serve", "--port", "8000"},
                                                       .user = "app",
                                                       .env = {"PATH=/bin", "MODE=prod"}});
  Sandbox sandbox = harness.running("t1", "team-a", base.id, {{"SANDBOX_API_KEY", "secret"}, {"MODE", "dev"}});

  SandboxImage snapshot =
      expect_value(harness.sandboxes->snapshot("team-a", {.task_id = "t1", .name = "Web, warmed up"}));
  auto commits = harness.podman.commits();
  REQUIRE(commits.size() == 1);
  const auto& [container, options] = commits.front();
  CHECK(container == sandbox.container_id);
  CHECK(options.repository == "localhost/modbox-snapshot/web-warmed-up");
  CHECK(is_uuid(options.tag));
  CHECK_FALSE(options.pause);
  // The image's own config comes back; the sandbox's key does not go into the image.
  CHECK(contains(options.changes, R"(ENTRYPOINT ["/entry.sh"])"));
  CHECK(contains(options.changes, R"(CMD ["serve", "--port", "8000"])"));
  CHECK(contains(options.changes, "USER app"));
  CHECK(contains(options.changes, "ENV SANDBOX_API_KEY="));
  CHECK(contains(options.changes, "ENV MODE=prod"));
  CHECK(contains(options.changes, "LABEL io.modbox.agent="));
  for (const auto& change : options.changes) CHECK(change.find("secret") == std::string::npos);

  CHECK(snapshot.name == "Web, warmed up");
  CHECK(snapshot.image == options.repository);
  CHECK(snapshot.tag == options.tag);
  CHECK(snapshot.workspace_id == std::optional<std::string>("team-a"));
  CHECK(snapshot.memory_mb == 2048);
  CHECK(snapshot.readiness_port == 8000);
  CHECK_FALSE(snapshot.is_default);
  CHECK(snapshot.description.value_or("").find("t1") != std::string::npos);
  CHECK(expect_value(harness.images->get("team-a", snapshot.id)).id == snapshot.id);
  CHECK_FALSE(harness.images->get("team-b", snapshot.id).has_value());

  SECTION("provisioning by the snapshot's image_id runs the committed image") {
    Sandbox restored = harness.running("t2", "team-a", snapshot.id);
    CHECK(restored.image == options.repository + ":" + options.tag);
    CHECK(harness.podman.created_specs().back().image == restored.image);
  }
  SECTION("a second snapshot with the same name is 409, before anything is copied") {
    CHECK(error_kind(harness.sandboxes->snapshot("team-a", {.task_id = "t1", .name = "Web, warmed up"})) ==
          ErrorKind::conflict);
    CHECK(harness.podman.commits().size() == 1);
  }
}

TEST_CASE("an image without entrypoint or user is committed with none", "[service][snapshot]") {
  Harness harness;
  harness.running("t1", std::nullopt, std::nullopt);
  SandboxImage snapshot = expect_value(harness.sandboxes->snapshot(std::nullopt, {.task_id = "t1", .name = "lite"}));
  auto commits = harness.podman.commits();
  REQUIRE(commits.size() == 1);
  const CommitOptions& options = commits.front().second;
  CHECK(contains(options.changes, "ENTRYPOINT []"));
  CHECK(contains(options.changes, "CMD []"));
  CHECK(std::none_of(options.changes.begin(), options.changes.end(),
                     [](const std::string& change) { return change.starts_with("USER"); }));
  CHECK_FALSE(snapshot.workspace_id.has_value());  // the owner's sandbox: a global image
}

TEST_CASE("a snapshot is refused for an unknown task, a sandbox that is not running, or a taken name",
          "[service][snapshot]") {
  Harness harness;
  CHECK(error_kind(harness.sandboxes->snapshot("team-a", {.task_id = "nope", .name = "x"})) == ErrorKind::not_found);

  harness.running("t1", "team-a", std::nullopt);
  SECTION("destroyed") {
    REQUIRE(harness.sandboxes->destroy("team-a", "t1").has_value());
    auto refused = harness.sandboxes->snapshot("team-a", {.task_id = "t1", .name = "x"});
    CHECK(error_kind(refused) == ErrorKind::conflict);
    CHECK(refused.error().message.find("destroyed") != std::string::npos);
  }
  SECTION("another workspace's sandbox is unknown") {
    CHECK(error_kind(harness.sandboxes->snapshot("team-b", {.task_id = "t1", .name = "x"})) == ErrorKind::not_found);
  }
  SECTION("a name another image of the workspace has") {
    REQUIRE(harness.images->create("team-a", {.name = "taken", .image = "localhost/taken"}).has_value());
    CHECK(error_kind(harness.sandboxes->snapshot("team-a", {.task_id = "t1", .name = "taken"})) == ErrorKind::conflict);
    CHECK(harness.podman.commits().empty());
  }
  SECTION("Podman failing to commit is 409 with its reason, and registers nothing") {
    harness.podman.fail_commit(Error{ErrorKind::internal, "committing container: podman: no space left on device", {}});
    auto refused = harness.sandboxes->snapshot("team-a", {.task_id = "t1", .name = "x"});
    CHECK(error_kind(refused) == ErrorKind::conflict);
    CHECK(refused.error().message.find("no space left") != std::string::npos);
    CHECK(harness.images->list("team-a", false).size() == builtin_images().size());
  }
  SECTION("Podman down is 503") {
    harness.podman.fail_commit(Error{ErrorKind::unavailable, "podman is not answering", {}});
    CHECK(error_kind(harness.sandboxes->snapshot("team-a", {.task_id = "t1", .name = "x"})) == ErrorKind::unavailable);
  }
  CHECK(harness.podman.removed_images().empty());
}

TEST_CASE("snapshot repositories are valid OCI names made from the snapshot's name", "[snapshot]") {
  CHECK(snapshot_repository("My App") == "localhost/modbox-snapshot/my-app");
  CHECK(snapshot_repository("--a__b..c--") == "localhost/modbox-snapshot/a-b-c");
  CHECK(snapshot_repository("日本") == "localhost/modbox-snapshot/snapshot");
  CHECK(snapshot_repository(std::string(300, 'x')).size() <= std::string("localhost/modbox-snapshot/").size() + 64);
  for (const char* name : {"My App", "--a__b..c--", "日本", "x"})
    CHECK_FALSE(check_image_repository(snapshot_repository(name), {"body", "image"}).has_value());
}

TEST_CASE("a snapshot request needs a task_id and an image name", "[models][snapshot]") {
  CHECK(expect_value(parse_snapshot_request(R"({"task_id": "t1", "name": "My snapshot"})")).name == "My snapshot");
  auto loc_of = [](std::string_view body) {
    auto parsed = parse_snapshot_request(body);
    REQUIRE_FALSE(parsed.has_value());
    REQUIRE(parsed.error().kind == ErrorKind::validation);
    REQUIRE_FALSE(parsed.error().fields.empty());
    return parsed.error().fields.front().loc;
  };
  using Loc = std::vector<std::string>;
  CHECK(loc_of(R"({"name": "x"})") == Loc{"body", "task_id"});
  CHECK(loc_of(R"({"task_id": "t1"})") == Loc{"body", "name"});
  CHECK(loc_of(R"({"task_id": "bad id", "name": "x"})") == Loc{"body", "task_id"});
  CHECK(loc_of(R"({"task_id": "t1", "name": ""})") == Loc{"body", "name"});
  CHECK(loc_of(R"({"task_id": "t1", "name": 5})") == Loc{"body", "name"});
  CHECK(loc_of(R"({"task_id": "t1", "name": ")" + std::string(256, 'x') + R"("})") == Loc{"body", "name"});
}

TEST_CASE("image names are unique within a workspace, and among the global images", "[images][service][snapshot]") {
  Harness harness;
  REQUIRE(harness.images->create("team-a", {.name = "app", .image = "localhost/app"}).has_value());
  CHECK(error_kind(harness.images->create("team-a", {.name = "app", .image = "localhost/other"})) ==
        ErrorKind::conflict);
  CHECK(harness.images->create("team-b", {.name = "app", .image = "localhost/app"}).has_value());
  CHECK(harness.images->create(std::nullopt, {.name = "app", .image = "localhost/app"}).has_value());
  CHECK(error_kind(harness.images->create(std::nullopt, {.name = "modbox/ubuntu", .image = "localhost/u"})) ==
        ErrorKind::conflict);
  SandboxImage other = expect_value(harness.images->create("team-a", {.name = "other", .image = "localhost/o"}));
  CHECK(error_kind(harness.images->update("team-a", other.id, {.name = "app"})) == ErrorKind::conflict);
  CHECK(harness.images->update("team-a", other.id, {.name = "other"}).has_value());  // its own name is no conflict
}
