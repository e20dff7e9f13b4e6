// ImageService over real record stores in a temp dir: the built-in defaults, workspace scoping,
// what a workspace may change, registry credentials, and resolving image_id for provisioning.

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "agent/image_service.h"
#include "tests/unit/fakes.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

const std::string sandbox_lite_id = "46e5ebb3-953e-4ab0-97d9-d5df69c87a82";

struct ImageHarness {
  TempDir dir;
  FakeClock clock{TimePoint(std::chrono::seconds(1'779'444'000))};
  std::unique_ptr<ImageService> service = make();

  std::unique_ptr<ImageService> make() {
    auto images = RecordStore::open(dir / "images");
    auto registries = RecordStore::open(dir / "registries");
    REQUIRE(images.has_value());
    REQUIRE(registries.has_value());
    auto made = std::make_unique<ImageService>(std::move(*images), std::move(*registries), [this] { return clock.now(); });
    REQUIRE(made->load().has_value());
    return made;
  }

  SandboxImage create(const ImageService::Workspace& workspace, std::string image = "ghcr.io/org/app",
                      std::optional<std::string> registry_id = std::nullopt) {
    return expect_value(service->create(
        workspace, ImageCreateRequest{.name = "app", .image = std::move(image), .registry_id = std::move(registry_id)}));
  }

  Registry registry(const ImageService::Workspace& workspace, std::string server = "ghcr.io") {
    return expect_value(service->create_registry(
        workspace, RegistryCreateRequest{.name = "creds", .server = std::move(server), .username = "u", .password = "s3cret"}));
  }
};

std::vector<std::string> ids(const std::vector<SandboxImage>& images) {
  std::vector<std::string> result;
  for (const auto& image : images) result.push_back(image.id);
  return result;
}

}  // namespace

TEST_CASE("the default images are global, is_default, with ids that survive a restart", "[images][service]") {
  ImageHarness harness;
  auto listed = harness.service->list(std::nullopt, false);
  REQUIRE(listed.size() == builtin_images().size());
  for (std::size_t i = 0; i < listed.size(); ++i) {
    CHECK(listed[i].id == builtin_images()[i].id);
    CHECK(listed[i].image == "modbox/" + builtin_images()[i].name);
    CHECK(listed[i].is_default);
    CHECK(listed[i].enabled);
    CHECK_FALSE(listed[i].workspace_id.has_value());
  }
  CHECK(listed.front().id == sandbox_lite_id);
  REQUIRE(builtin_images().size() == default_image_names.size());
  for (std::size_t i = 0; i < default_image_names.size(); ++i) CHECK(builtin_images()[i].name == default_image_names[i]);
  CHECK(harness.service->list("team-a", false).size() == builtin_images().size());

  auto created_at = listed.front().created_at;
  harness.clock.advance(std::chrono::hours(1));
  harness.service = harness.make();
  auto again = expect_value(harness.service->get("team-a", sandbox_lite_id));
  CHECK(again.created_at == created_at);
  CHECK(again.updated_at == created_at);  // unchanged, so not rewritten
}

TEST_CASE("a workspace sees its own images and the global ones, never another's", "[images][service][scope]") {
  ImageHarness harness;
  SandboxImage mine = harness.create("team-a");
  SandboxImage theirs = harness.create("team-b");
  SandboxImage global = harness.create(std::nullopt);
  CHECK(mine.workspace_id == "team-a");
  CHECK_FALSE(global.workspace_id.has_value());
  CHECK_FALSE(global.is_default);

  auto visible = ids(harness.service->list("team-a", false));
  CHECK(std::count(visible.begin(), visible.end(), mine.id) == 1);
  CHECK(std::count(visible.begin(), visible.end(), global.id) == 1);
  CHECK(std::count(visible.begin(), visible.end(), theirs.id) == 0);
  CHECK(harness.service->list(std::nullopt, false).size() == builtin_images().size() + 3);  // the owner sees all

  CHECK(error_kind(harness.service->get("team-a", theirs.id)) == ErrorKind::not_found);
  CHECK(error_kind(harness.service->update("team-a", theirs.id, {.tag = "x"})) == ErrorKind::not_found);
  CHECK(error_kind(harness.service->remove("team-a", theirs.id)) == ErrorKind::not_found);
  CHECK(harness.service->get("team-b", theirs.id).has_value());
}

TEST_CASE("enabled_only leaves disabled images out", "[images][service]") {
  ImageHarness harness;
  SandboxImage image = harness.create("team-a");
  expect_value(harness.service->update("team-a", image.id, {.enabled = false}));
  auto all = ids(harness.service->list("team-a", false));
  auto enabled = ids(harness.service->list("team-a", true));
  CHECK(std::count(all.begin(), all.end(), image.id) == 1);
  CHECK(std::count(enabled.begin(), enabled.end(), image.id) == 0);
}

TEST_CASE("built-in and global images cannot be changed or deleted by a workspace", "[images][service][scope]") {
  ImageHarness harness;
  SandboxImage global = harness.create(std::nullopt);
  for (const ImageService::Workspace& workspace : {ImageService::Workspace{"team-a"}, ImageService::Workspace{}}) {
    auto changed = harness.service->update(workspace, sandbox_lite_id, {.memory_mb = 2048});
    CHECK(error_kind(changed) == ErrorKind::forbidden);
    CHECK(changed.error().message.find("built-in") != std::string::npos);
    CHECK(error_kind(harness.service->remove(workspace, sandbox_lite_id)) == ErrorKind::forbidden);
  }
  auto changed = harness.service->update("team-a", global.id, {.tag = "v2"});
  CHECK(error_kind(changed) == ErrorKind::forbidden);
  CHECK(changed.error().message.find("global") != std::string::npos);
  CHECK(error_kind(harness.service->remove("team-a", global.id)) == ErrorKind::forbidden);
  // The owner may change the global images it registered.
  CHECK(expect_value(harness.service->update(std::nullopt, global.id, {.tag = "v2"})).tag == "v2");
  CHECK(harness.service->remove(std::nullopt, global.id).has_value());
  CHECK(harness.service->list(std::nullopt, false).size() == builtin_images().size());
}

TEST_CASE("an update changes the given fields, persists, and moves updated_at", "[images][service]") {
  ImageHarness harness;
  SandboxImage image = expect_value(harness.service->create(
      "team-a", {.name = "app", .image = "ghcr.io/org/app", .ttl_seconds = 600}));
  harness.clock.advance(std::chrono::seconds(30));
  ImageUpdateRequest update{.tag = "v2.1.0", .memory_mb = 2048, .ttl_seconds = std::optional<int>{}};
  SandboxImage updated = expect_value(harness.service->update("team-a", image.id, update));
  CHECK(updated.tag == "v2.1.0");
  CHECK(updated.memory_mb == 2048);
  CHECK_FALSE(updated.ttl_seconds.has_value());
  CHECK(updated.name == "app");
  CHECK(updated.created_at == image.created_at);
  CHECK(updated.updated_at == harness.clock.now());

  harness.service = harness.make();
  SandboxImage reloaded = expect_value(harness.service->get("team-a", image.id));
  CHECK(reloaded.tag == "v2.1.0");
  CHECK(reloaded.updated_at == updated.updated_at);
}

TEST_CASE("registry_id must name a credential of the image's workspace for its server", "[images][service][registries]") {
  ImageHarness harness;
  Registry own = harness.registry("team-a", "127.0.0.1:5000");
  Registry other = harness.registry("team-b", "127.0.0.1:5000");

  SandboxImage image = harness.create("team-a", "127.0.0.1:5000/team/app", own.id);
  CHECK(image.registry_name == "creds");

  auto unknown = harness.service->create("team-a", {.name = "x", .image = "127.0.0.1:5000/a",
                                                    .registry_id = "00000000-0000-4000-8000-000000000000"});
  CHECK(error_kind(unknown) == ErrorKind::validation);
  CHECK(unknown.error().fields.front().loc == std::vector<std::string>{"body", "registry_id"});
  CHECK(error_kind(harness.service->create("team-a", {.name = "x", .image = "127.0.0.1:5000/a", .registry_id = other.id})) ==
        ErrorKind::validation);
  auto wrong_server = harness.service->create("team-a", {.name = "x", .image = "ghcr.io/a", .registry_id = own.id});
  CHECK(error_kind(wrong_server) == ErrorKind::validation);
  CHECK(wrong_server.error().message.find("127.0.0.1:5000") != std::string::npos);
  CHECK(error_kind(harness.service->update("team-a", image.id, {.image = "ghcr.io/a"})) == ErrorKind::validation);

  SECTION("a credential in use cannot be deleted") {
    auto removed = harness.service->remove_registry("team-a", own.id);
    CHECK(error_kind(removed) == ErrorKind::conflict);
    CHECK(removed.error().message.find(image.id) != std::string::npos);
    expect_value(harness.service->update("team-a", image.id, {.registry_id = std::optional<std::string>{}}));
    CHECK(harness.service->remove_registry("team-a", own.id).has_value());
  }
  SECTION("credentials are scoped like images, and never shared") {
    CHECK(harness.service->list_registries("team-a").size() == 1);
    CHECK(harness.service->list_registries(std::nullopt).size() == 2);
    CHECK(error_kind(harness.service->get_registry("team-a", other.id)) == ErrorKind::not_found);
    CHECK(error_kind(harness.service->remove_registry("team-a", other.id)) == ErrorKind::not_found);
  }
}

TEST_CASE("registry records are 0600 and survive a restart with their secret", "[registries][service]") {
  ImageHarness harness;
  Registry registry = harness.registry("team-a", "127.0.0.1:5000");
  struct stat info {};
  REQUIRE(::stat((harness.dir / "registries" / (registry.id + ".json")).c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  harness.service = harness.make();
  auto options = expect_value(harness.service->pull_options(registry.id));
  REQUIRE(options.auth.has_value());
  CHECK(options.auth->username == "u");
  CHECK(options.auth->password == "s3cret");
  CHECK_FALSE(options.tls_verify);  // a loopback registry
}

TEST_CASE("resolving image_id gives the reference, TTL, memory and credential", "[images][service][resolve]") {
  ImageHarness harness;
  Registry registry = harness.registry("team-a", "127.0.0.1:5000");
  SandboxImage image = expect_value(harness.service->create(
      "team-a", {.name = "app", .image = "127.0.0.1:5000/team/app", .tag = "v1", .memory_mb = 512, .ttl_seconds = 120,
                 .registry_id = registry.id}));
  ResolvedImage resolved = expect_value(harness.service->resolve("team-a", image.id));
  CHECK(resolved.reference == "127.0.0.1:5000/team/app:v1");
  CHECK(resolved.image_id == image.id);
  CHECK(resolved.ttl_seconds == 120);
  CHECK(resolved.memory_mb == 512);
  CHECK(resolved.registry_id == registry.id);

  CHECK(error_kind(harness.service->resolve("team-b", image.id)) == ErrorKind::not_found);
  expect_value(harness.service->update("team-a", image.id, {.enabled = false}));
  auto disabled = harness.service->resolve("team-a", image.id);
  CHECK(error_kind(disabled) == ErrorKind::conflict);
  CHECK(disabled.error().message.find("disabled") != std::string::npos);
}

TEST_CASE("without image_id the workspace default is used, else sandbox-lite", "[images][service][resolve]") {
  ImageHarness harness;
  ResolvedImage fallback = expect_value(harness.service->resolve("team-a", std::nullopt));
  CHECK(fallback.reference == "localhost/modbox/sandbox-lite:latest");
  CHECK(fallback.image_id == sandbox_lite_id);
  CHECK(fallback.memory_mb == 1024);

  SandboxImage global = expect_value(
      harness.service->create(std::nullopt, {.name = "g", .image = "localhost/global", .is_default = true}));
  CHECK(expect_value(harness.service->resolve("team-a", std::nullopt)).image_id == global.id);
  SandboxImage own = expect_value(harness.service->create("team-a", {.name = "o", .image = "localhost/own", .is_default = true}));
  CHECK(expect_value(harness.service->resolve("team-a", std::nullopt)).image_id == own.id);
  CHECK(expect_value(harness.service->resolve("team-b", std::nullopt)).image_id == global.id);
  expect_value(harness.service->update("team-a", own.id, {.enabled = false}));
  CHECK(expect_value(harness.service->resolve("team-a", std::nullopt)).image_id == global.id);
}
