// Warm pools over a fake Podman and fake helpers: the size's validation and storage, members that are
// never listed, claims that take the request's task, env_vars (given to the helper), tags and TTL from
// the claim, refills, shrinking, falling back to a cold provision, and restarts.

#include <catch2/catch.hpp>

#include "agent/image_service.h"
#include "agent/podman_backend.h"
#include "agent/sandbox_service.h"
#include "common/pool_models.h"
#include "tests/unit/fakes.h"
#include "tests/unit/helper_process.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

struct PoolHarness {
  TempDir dir;
  FakePodman podman;
  FakeEndpoints endpoints;
  FakeHelpers helpers;
  FakeClock clock{TimePoint(std::chrono::seconds(1'779'444'000))};
  std::unique_ptr<ImageService> images = make_images();
  std::unique_ptr<PodmanBackend> backend;
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
    backend = std::make_unique<PodmanBackend>(PodmanBackendConfig{.agent_id = "agent-1",
                                                                  .images = images.get(),
                                                                  .helper_binary = "/bin/true",
                                                                  .sandbox_runtime_root = dir / "run" / "sandboxes"},
                                              podman);
    auto store = RecordStore::open(dir / "sandboxes");
    REQUIRE(store.has_value());
    auto made = std::make_unique<SandboxService>(SandboxServiceConfig{.created_by = "tester",
                                                                      .now = [this] { return clock.now(); },
                                                                      .images = images.get(),
                                                                      .helpers = &helpers,
                                                                      .pool_directory = dir / "pools",
                                                                      .pool_retry = std::chrono::milliseconds(20)},
                                                 *backend, std::move(*store), endpoints);
    made->load();
    REQUIRE(made->reconcile().has_value());
    made->start_reaper();
    return made;
  }

  void restart() {
    sandboxes.reset();
    sandboxes = make_sandboxes();
  }

  PoolView pool(const std::string& image_id) {
    for (const auto& view : sandboxes->pools(std::nullopt))
      if (view.image_id == image_id) return view;
    FAIL("no pool of " << image_id);
    return {};
  }

  bool ready(const std::string& image_id, int count) {
    return eventually([&] { return pool(image_id).ready == count && pool(image_id).starting == 0; });
  }
};

std::string image_id(PoolHarness& harness, const std::string& workspace = "team-a") {
  return expect_value(harness.images->create(workspace, {.name = "app", .image = "localhost/app", .ttl_seconds = 900}))
      .id;
}

}  // namespace

TEST_CASE("a pool size is 0 to 20 and needs an image the caller sees", "[pool]") {
  CHECK(parse_pool_size_request(R"({"size": 3})").value().size == 3);
  CHECK(parse_pool_size_request(R"({"size": 0})").value().size == 0);
  for (const char* body : {R"({"size": 21})", R"({"size": -1})", R"({"size": "2"})", R"({})", R"({"size": 1.5})"}) {
    INFO(body);
    auto parsed = parse_pool_size_request(body);
    REQUIRE_FALSE(parsed.has_value());
    CHECK(parsed.error().kind == ErrorKind::validation);
    CHECK(parsed.error().fields.front().loc == std::vector<std::string>{"body", "size"});
  }
  PoolHarness harness;
  std::string id = image_id(harness);
  CHECK(error_kind(harness.sandboxes->set_pool("team-a", id, 21)) == ErrorKind::validation);
  CHECK(error_kind(harness.sandboxes->set_pool("team-a", "00000000-0000-4000-8000-000000000000", 1)) ==
        ErrorKind::not_found);
  CHECK(error_kind(harness.sandboxes->set_pool("team-b", id, 1)) == ErrorKind::not_found);
  CHECK(harness.sandboxes->pools(std::nullopt).empty());
  CHECK(harness.podman.count_calls("create ") == 0);
}

TEST_CASE("pool records round-trip and refuse sizes out of range", "[pool]") {
  PoolSetting setting{.image_id = "abc", .size = 4, .workspace_id = "team-a", .updated_at = TimePoint{}};
  auto back = pool_setting_from_json(pool_setting_to_json(setting));
  REQUIRE(back.has_value());
  CHECK(back->size == 4);
  CHECK(back->workspace_id == "team-a");
  CHECK_FALSE(pool_setting_from_json(R"({"image_id": "abc", "size": 99})").has_value());
  CHECK_FALSE(pool_setting_from_json(R"({"image_id": "", "size": 1})").has_value());
}

TEST_CASE("a pool fills with members that no listing or lookup shows", "[pool]") {
  PoolHarness harness;
  std::string id = image_id(harness);
  PoolView set = expect_value(harness.sandboxes->set_pool("team-a", id, 2));
  CHECK(set.size == 2);
  CHECK(set.image == "localhost/app:latest");
  REQUIRE(harness.ready(id, 2));
  CHECK(harness.podman.count_calls("create ") == 2);
  CHECK(harness.sandboxes->list(std::nullopt, std::nullopt).empty());
  CHECK(harness.sandboxes->live_count() == 0);
  // Stored, so a restart keeps the size.
  CHECK(std::filesystem::exists(harness.dir / "pools" / (id + ".json")));
}

TEST_CASE("a provision claims a member: its task, env, tags and TTL from the claim", "[pool]") {
  PoolHarness harness;
  std::string id = image_id(harness);
  expect_value(harness.sandboxes->set_pool("team-a", id, 1));
  REQUIRE(harness.ready(id, 1));
  harness.clock.advance(std::chrono::seconds(600));  // the member waited: its TTL must not have counted
  Sandbox claimed =
      expect_value(harness.sandboxes->provision("team-a", {.task_id = "job",
                                                           .image_id = id,
                                                           .env_vars = {{"SANDBOX_API_KEY", "k1"}, {"COLOR", "blue"}},
                                                           .tags = {{"team", "x"}}}));
  CHECK(claimed.status == SandboxStatus::running);
  CHECK(claimed.from_pool);
  CHECK(claimed.name == "job");
  CHECK(claimed.workspace_id == "team-a");
  CHECK(claimed.tags == std::map<std::string, std::string>{{"team", "x"}});
  CHECK(claimed.created_at == harness.clock.now());
  CHECK(claimed.expires_at() == harness.clock.now() + std::chrono::seconds(900));
  CHECK(harness.helpers.environment(harness.backend->helper_socket(claimed.id)) ==
        std::vector<std::string>{"COLOR=blue", "SANDBOX_API_KEY=k1"});
  CHECK(harness.podman.count_calls("create ") == 1);  // no new container for the claim itself
  auto listed = harness.sandboxes->list("team-a", std::nullopt);
  REQUIRE(listed.size() == 1);
  CHECK(listed.front().id == claimed.id);
  // The pool refills behind it.
  REQUIRE(harness.ready(id, 1));
  CHECK(harness.podman.count_calls("create ") == 2);

  SECTION("the claim survives a restart, and its environment is given again") {
    harness.restart();
    Sandbox again = expect_value(harness.sandboxes->get("team-a", "job"));
    CHECK(again.id == claimed.id);
    CHECK(again.status == SandboxStatus::running);
    CHECK(again.env_vars.at("SANDBOX_API_KEY") == "k1");
    CHECK(harness.helpers.environment(harness.backend->helper_socket(claimed.id)).size() == 4);
    REQUIRE(harness.ready(id, 1));
    CHECK(harness.sandboxes->list(std::nullopt, std::nullopt).size() == 1);
    CHECK(harness.podman.count_calls("create ") == 2);  // the member was kept, not replaced
  }
  SECTION("a task_id in use is refused, the member stays") {
    auto again = harness.sandboxes->provision("team-a", {.task_id = "job", .image_id = id});
    CHECK(error_kind(again) == ErrorKind::conflict);
    CHECK(harness.pool(id).ready == 1);
  }
}

TEST_CASE("provisions a pool cannot serve start cold", "[pool]") {
  PoolHarness harness;
  std::string id = image_id(harness);
  expect_value(harness.sandboxes->set_pool("team-a", id, 1));
  REQUIRE(harness.ready(id, 1));
  SECTION("a command") {
    Sandbox cold = expect_value(
        harness.sandboxes->provision("team-a", {.task_id = "c", .image_id = id, .command = {"sleep", "100"}}));
    CHECK(cold.status == SandboxStatus::provisioning);
    CHECK_FALSE(cold.from_pool);
  }
  SECTION("an empty pool") {
    harness.podman.hold_starts();  // the refill cannot be ready in time
    CHECK(expect_value(harness.sandboxes->provision("team-a", {.task_id = "a", .image_id = id})).from_pool);
    Sandbox next = expect_value(harness.sandboxes->provision("team-a", {.task_id = "b", .image_id = id}));
    CHECK(next.status == SandboxStatus::provisioning);
    CHECK_FALSE(next.from_pool);
    harness.podman.release_starts();
    CHECK(expect_value(harness.sandboxes->wait("team-a", {.task_id = "b", .timeout_seconds = 10})).status ==
          SandboxStatus::running);
  }
  SECTION("a helper that cannot take the environment") {
    harness.helpers.set_environment_error(Error{ErrorKind::unavailable, "gone"});
    Sandbox cold = expect_value(
        harness.sandboxes->provision("team-a", {.task_id = "e", .image_id = id, .env_vars = {{"A", "1"}}}));
    CHECK(cold.status == SandboxStatus::provisioning);
    CHECK_FALSE(cold.from_pool);
  }
}

TEST_CASE("a pool whose members cannot start says why and pauses between tries", "[pool]") {
  PoolHarness harness;
  std::string id = image_id(harness);
  harness.podman.fail_create(Error{ErrorKind::internal, "no space left on device"});
  expect_value(harness.sandboxes->set_pool("team-a", id, 2));
  REQUIRE(eventually([&] { return harness.pool(id).last_error.has_value(); }));
  CHECK(harness.pool(id).last_error->find("no space left") != std::string::npos);
  CHECK(harness.pool(id).ready == 0);
  CHECK(harness.sandboxes->list(std::nullopt, std::nullopt).empty());
  // A provision still works the cold way (and fails as that would).
  auto cold = harness.sandboxes->provision("team-a", {.task_id = "t", .image_id = id});
  REQUIRE(cold.has_value());
  CHECK_FALSE(cold->from_pool);
  harness.podman.fail_create(std::nullopt);
  REQUIRE(harness.ready(id, 2));
  // Cleared once a member started (at the pool's next round).
  CHECK(eventually([&] { return !harness.pool(id).last_error.has_value(); }));
}

TEST_CASE("size 0 deletes the pool and destroys its idle members", "[pool]") {
  PoolHarness harness;
  std::string id = image_id(harness);
  expect_value(harness.sandboxes->set_pool("team-a", id, 3));
  REQUIRE(harness.ready(id, 3));
  expect_value(harness.sandboxes->set_pool("team-a", id, 1));
  REQUIRE(harness.ready(id, 1));
  expect_value(harness.sandboxes->set_pool("team-a", id, 0));
  CHECK(harness.sandboxes->pools(std::nullopt).empty());
  REQUIRE(eventually([&] { return harness.podman.count_calls("remove ") >= 3; }));
  CHECK_FALSE(std::filesystem::exists(harness.dir / "pools" / (id + ".json")));
  // Their records go too: they never were anyone's sandboxes.
  REQUIRE(eventually([&] {
    std::size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(harness.dir / "sandboxes"))
      files += entry.path().extension() == ".json";
    return files == 0;
  }));
}

TEST_CASE("a pool and its members survive a restart", "[pool]") {
  PoolHarness harness;
  std::string id = image_id(harness);
  expect_value(harness.sandboxes->set_pool("team-a", id, 2));
  REQUIRE(harness.ready(id, 2));
  harness.restart();
  CHECK(harness.pool(id).size == 2);
  REQUIRE(harness.ready(id, 2));
  CHECK(harness.podman.count_calls("create ") == 2);
  CHECK(harness.sandboxes->list(std::nullopt, std::nullopt).empty());
}

TEST_CASE("the helper gives a claim's environment to every later command", "[pool][helper]") {
  helper::EnvironmentSet set{{"SANDBOX_API_KEY=k1", "POOL_GREETING=hello world", "EMPTY="}};
  auto frame = helper::encode(set);
  helper::FrameDecoder decoder;
  decoder.feed(frame);
  auto decoded = decoder.next();
  REQUIRE(decoded.has_value());
  REQUIRE(decoded->has_value());
  CHECK(std::get<helper::EnvironmentSet>(**decoded).env == set.env);
  // Entries that are no NAME=VALUE never reach the helper.
  helper::FrameDecoder bad;
  bad.feed(helper::encode(helper::EnvironmentSet{{"=nothing"}}));
  CHECK_FALSE(bad.next().has_value());

  HelperProcess process;
  CHECK(process.run("echo \"[$POOL_GREETING]\"").stdout_text == "[]\n");
  REQUIRE(process.client().set_environment(process.socket(), set).has_value());
  CHECK(process.run("echo \"[$POOL_GREETING] [$SANDBOX_API_KEY]\"").stdout_text == "[hello world] [k1]\n");
  // A later claim's entries win.
  REQUIRE(process.client().set_environment(process.socket(), {{"POOL_GREETING=again"}}).has_value());
  CHECK(process.run("echo $POOL_GREETING $SANDBOX_API_KEY").stdout_text == "again k1\n");
}
