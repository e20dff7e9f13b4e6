// The agent builds a missing default image on first provision (agent/image_builder.h runs
// images/build), end to end: provisioning in a Podman storage where the image is missing makes the
// agent start the build, the sandbox says so in its progress, and then runs from the built image.
//
// What is covered: the agent finding images/ (--images-dir), spawning images/build as its child (only
// fds 0-2 open), build_one's base check, `podman build` of the image's Containerfile with the host CA
// secret and proxy settings, and the provision going on from the built image. What is not: the
// bootstrap of the Debian and Ubuntu bases with mmdebstrap (minutes; tests/run runs it through
// images/build before the suite, with the same script), because the bases are copied into the test's
// storage from the test user's own. The storage is the test's alone (its storage.conf, through
// XDG_CONFIG_HOME, for the agent, its Podman service and its builds), so the shared default images are never removed,
// tests running meanwhile see nothing, and removing the directory leaves everything as it was.

#include <catch2/catch.hpp>
#include <fstream>

#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// A Podman storage of its own in a temp directory, holding copies of the given images of the
/// user's storage; removed (through `podman unshare`: its files belong to subordinate ids) at the end.
class PrivateStorage {
 public:
  explicit PrivateStorage(const std::vector<std::string>& images) {
    // Rootless Podman 4.3 reads $XDG_CONFIG_HOME/containers/storage.conf before CONTAINERS_STORAGE_CONF.
    std::filesystem::create_directories(root_.path / "config" / "containers");
    std::ofstream(root_.path / "config" / "containers" / "storage.conf")
        << "[storage]\ndriver = \"overlay\"\ngraphroot = \"" << (root_.path / "graph").string() << "\"\nrunroot = \""
        << (root_.path / "run").string() << "\"\n";
    for (const auto& image : images) {
      auto archive = (root_.path / "image.tar").string();
      auto saved = run_command({"podman", "save", "-q", "-o", archive, image}, {}, 300s);
      INFO(saved.err);
      REQUIRE(saved.exit_code == 0);
      auto loaded = run_command({"podman", "load", "-q", "-i", archive}, environment(), 300s);
      INFO(loaded.err);
      REQUIRE(loaded.exit_code == 0);
      std::filesystem::remove(archive);
    }
  }
  ~PrivateStorage() {
    // The overlay driver keeps its directory mounted in the user's rootless mount namespace.
    std::string graph = (root_.path / "graph").string(), run = (root_.path / "run").string();
    run_command({"podman", "unshare", "sh", "-c", "umount -l \"$1/overlay\" 2>/dev/null; rm -rf \"$1\" \"$2\"", "sh",
                 graph, run},
                environment(), 300s);
  }
  std::map<std::string, std::string> environment() const {
    return {{"XDG_CONFIG_HOME", (root_.path / "config").string()}};
  }

 private:
  LocalDir root_;
};

std::string image_id_of(const TestAgent& agent, const std::string& repository) {
  json listed = agent.api("GET", "/sandbox-images").json_body();
  for (const auto& image : listed)
    if (image["image"] == repository) return image["id"];
  FAIL("no registered image " << repository);
  return "";
}

/// Provisions, sees the sandbox's progress name the build, and waits until it runs.
void provision_through_build(const TestAgent& agent, const std::string& task, const json& body,
                             const std::string& reference) {
  json request = body;
  request["task_id"] = task;
  auto provisioned = agent.api("POST", "/sandboxes/provision", request.dump());
  INFO(provisioned.body);
  REQUIRE(provisioned.status == 200);
  bool saw_build = eventually(
      [&] {
        json sandbox = agent.api("GET", "/sandboxes/detail/" + task).json_body();
        return sandbox.value("progress", json()).is_string() &&
               sandbox["progress"].get<std::string>().find("building " + reference) != std::string::npos;
      },
      60s, 20ms);
  CHECK(saw_build);
  auto waited =
      agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 600}}.dump(), std::nullopt, 630s);
  INFO(waited.body);
  REQUIRE(waited.status == 200);
}

}  // namespace

TEST_CASE("first-build: provisioning a default image that is not built makes the agent build it", "[first-build]") {
  PrivateStorage storage({"localhost/modbox/ubuntu-base:noble"});
  // images/ as shipped, except sandbox-lite's Containerfile: a tiny one on the copied base, so the test
  // measures the agent-started build of a Containerfile and not apt downloads.
  LocalDir images;
  std::filesystem::copy(test_images_dir(), images.path, std::filesystem::copy_options::recursive);
  std::ofstream(images.path / "sandbox-lite" / "Containerfile", std::ios::trunc)
      << "FROM localhost/modbox/ubuntu-base:noble\nRUN echo built by the agent > /built\n"
         "CMD [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done\"]\n";
  TestAgent agent;  // declared after the storage: stopped before it is removed
  agent.set_environment(storage.environment());
  agent.start({"--images-dir=" + images.path.string()});
  REQUIRE(agent.podman({"image", "exists", "localhost/modbox/ubuntu:latest"}).exit_code == 1);
  REQUIRE(agent.podman({"image", "exists", "localhost/modbox/sandbox-lite:latest"}).exit_code == 1);

  SECTION("modbox/ubuntu, on its own (mmdebstrap) base") {
    const std::string task = unique_name("first-ubuntu");
    provision_through_build(agent, task, json{{"image_id", image_id_of(agent, "modbox/ubuntu")}},
                            "localhost/modbox/ubuntu:latest");
    auto exec =
        agent.api("POST", "/sandboxes/exec",
                  json{{"task_id", task}, {"command", ". /etc/os-release && echo \"$NAME $VERSION_ID\""}}.dump());
    INFO(exec.body);
    CHECK(exec.json_body()["stdout"] == "Ubuntu 24.04\n");
    CHECK(std::filesystem::exists(agent.paths().runtime_dir / "build-ubuntu.log"));
  }
  SECTION("a Containerfile image: the default sandbox-lite, from a tiny Containerfile") {
    const std::string task = unique_name("first-lite");
    provision_through_build(agent, task, json::object(), "localhost/modbox/sandbox-lite:latest");
    auto exec = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "cat /built"}}.dump());
    INFO(exec.body);
    CHECK(exec.json_body()["stdout"] == "built by the agent\n");
  }
}
