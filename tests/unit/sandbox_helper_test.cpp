// The lifecycle's use of the in-sandbox helper, over fakes: the container runs the helper as PID 1
// with the image's entrypoint as its child, a sandbox is running only once its helper answers, and
// its host directory lives exactly as long as the sandbox.

#include <sys/stat.h>

#include <fstream>

#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;

TEST_CASE("the container runs the helper with the image's entrypoint and cmd as its child", "[service][helper]") {
  ServiceHarness harness;
  harness.podman.set_image_config(default_image, {.entrypoint = {"/entry.sh"}, .command = {"serve", "--port=8080"}});
  Sandbox sandbox = harness.provision_running("helper");
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 1);
  const ContainerSpec& spec = specs[0];
  CHECK(spec.entrypoint == std::vector<std::string>{"/.modbox/helper", "--socket", "/run/modbox/helper.sock", "--"});
  CHECK(spec.command == std::vector<std::string>{"/entry.sh", "serve", "--port=8080"});
  auto directory = harness.dir / "run" / "sandboxes" / sandbox.id;
  REQUIRE(spec.mounts.size() == 2);
  CHECK(spec.mounts[0].source == harness.helper_binary);
  CHECK(spec.mounts[0].destination == "/.modbox/helper");
  CHECK(spec.mounts[0].read_only);
  CHECK(spec.mounts[1].source == directory.string());
  CHECK(spec.mounts[1].destination == "/run/modbox");
  CHECK_FALSE(spec.mounts[1].read_only);
  struct stat info {};
  REQUIRE(::stat(directory.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0700);
  CHECK(harness.helpers.pinged() == std::vector<std::filesystem::path>{directory / "helper.sock"});
  // The agent's environment never reaches the container: only the sandbox's env_vars.
  CHECK(spec.env.empty());

  SECTION("destroy removes the directory") {
    REQUIRE(harness.service->destroy(std::nullopt, "helper").has_value());
    CHECK_FALSE(std::filesystem::exists(directory));
  }
}

TEST_CASE("an image with a non-root USER starts as root and hands the user to the helper", "[service][helper]") {
  ServiceHarness harness;
  harness.podman.set_image_config(default_image, {.command = {"serve"}, .user = "sandbox:staff"});
  harness.provision_running("user");
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].user == "0:0");
  CHECK(specs[0].entrypoint == std::vector<std::string>{"/.modbox/helper", "--socket", "/run/modbox/helper.sock",
                                                        "--user", "sandbox:staff", "--"});
  CHECK(specs[0].command == std::vector<std::string>{"serve"});
}

TEST_CASE("an image whose USER is root, or none, runs as the image says", "[service][helper]") {
  for (std::string user : {"", "root", "0"}) {
    ServiceHarness harness;
    harness.podman.set_image_config(default_image, {.command = {"serve"}, .user = user});
    harness.provision_running("root");
    auto specs = harness.podman.created_specs();
    REQUIRE(specs.size() == 1);
    INFO("USER '" << user << "'");
    CHECK(specs[0].user.empty());
    CHECK(specs[0].entrypoint ==
          std::vector<std::string>{"/.modbox/helper", "--socket", "/run/modbox/helper.sock", "--"});
  }
}

TEST_CASE("a helper that stops at start gives the sandbox its reason", "[service][helper]") {
  ServiceHarness harness;
  harness.helpers.set_ready(false);
  harness.podman.set_state_after_start("exited");
  harness.podman.hold_starts();
  Sandbox sandbox = harness.provision("nouser");
  REQUIRE(eventually([&] { return harness.podman.starts_waiting() == 1; }));
  // What the helper leaves in its directory (the sandbox can write there too) before it exits.
  auto note = harness.dir / "run" / "sandboxes" / sandbox.id / "helper.failed";
  std::string secret = "host secret " + std::string(40, 's');
  SECTION("its words, cleaned") {
    std::ofstream(note) << "unable to find user nobody-such: no matching entries in passwd file\n\x1b[31m";
  }
  SECTION("a symlink planted there is not followed") {
    std::ofstream(harness.dir / "secret") << secret;
    std::filesystem::create_symlink(harness.dir / "secret", note);
  }
  harness.podman.release_starts();
  auto waited = harness.wait("nouser");
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::conflict);
  CHECK(harness.status_of(sandbox.id) == SandboxStatus::failed);
  CHECK(harness.podman.containers().empty());
  CHECK_FALSE(std::filesystem::exists(note.parent_path()));
  if (std::filesystem::exists(harness.dir / "secret")) {
    CHECK_THAT(waited.error().message, !Catch::Contains("host secret"));
    CHECK_THAT(waited.error().message, Catch::Contains("container stopped while starting (exited)"));
  } else {
    CHECK_THAT(waited.error().message, Catch::EndsWith("the sandbox's helper could not start: unable to find user "
                                                       "nobody-such: no matching entries in passwd file  [31m"));
  }
}

TEST_CASE("an image without entrypoint or cmd gets a helper that just waits", "[service][helper]") {
  ServiceHarness harness;
  harness.podman.set_image_config(default_image, {.entrypoint = {""}, .command = {}});
  harness.provision_running("bare");
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].command.empty());
  CHECK(specs[0].entrypoint.back() == "--");
}

TEST_CASE("a sandbox whose helper never answers fails with the reason and leaves nothing", "[service][helper]") {
  ServiceHarness harness;
  harness.helpers.set_ready(false);
  harness.helper_ready_timeout = std::chrono::milliseconds(300);
  harness.restart();
  Sandbox sandbox = harness.provision("silent");
  auto waited = harness.wait("silent");
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::conflict);
  CHECK_THAT(waited.error().message, Catch::Contains("helper did not answer"));
  CHECK(harness.status_of(sandbox.id) == SandboxStatus::failed);
  CHECK(harness.podman.containers().empty());
  CHECK_FALSE(std::filesystem::exists(harness.dir / "run" / "sandboxes" / sandbox.id));
}

TEST_CASE("a missing helper binary fails the sandbox with a clear reason", "[service][helper]") {
  ServiceHarness harness;
  harness.helper_binary = (harness.dir / "no-such-helper").string();
  harness.restart();
  Sandbox sandbox = harness.provision("nohelper");
  auto waited = harness.wait("nohelper");
  REQUIRE_FALSE(waited.has_value());
  CHECK_THAT(waited.error().message, Catch::Contains("modbox-helper"));
  CHECK(harness.podman.created_specs().empty());
}

TEST_CASE("exec answers unavailable when the helper fails, and conflict when a destroy raced it", "[service][helper]") {
  ServiceHarness harness;
  Sandbox sandbox = harness.provision_running("flaky");
  harness.helpers.set_exec_result(fail(ErrorKind::unavailable, "the sandbox's helper closed the connection"));
  auto result = harness.service->run_exec(sandbox, {.command = "true"});
  CHECK(error_kind(result) == ErrorKind::unavailable);
  CHECK_THAT(result.error().message, Catch::Contains("helper closed the connection"));

  REQUIRE(harness.service->destroy(std::nullopt, "flaky").has_value());
  // `sandbox` is the snapshot taken before the destroy, as a request in flight holds it.
  auto raced = harness.service->run_exec(sandbox, {.command = "true"});
  CHECK(error_kind(raced) == ErrorKind::conflict);
  CHECK_THAT(raced.error().message, Catch::Contains("destroyed"));
}

TEST_CASE("reconcile removes directories of sandboxes that are gone and keeps the live ones", "[service][helper]") {
  ServiceHarness harness;
  Sandbox live = harness.provision_running("keep");
  auto root = harness.dir / "run" / "sandboxes";
  std::filesystem::create_directories(root / "left-over-from-a-crash");
  REQUIRE(harness.service->reconcile().has_value());
  CHECK(std::filesystem::exists(root / live.id));
  CHECK_FALSE(std::filesystem::exists(root / "left-over-from-a-crash"));
}
