// README.md's two-minute tour and its CI cookbook (the shell script and the GitHub Actions step), run as
// written against the real agent and real Podman, from a directory laid out as a reader's checkout
// (build/bin holds the binaries under test).

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "common/system.h"
#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;

namespace {

/// A checkout as the README's reader has one: build/bin is the binaries under test.
struct ReaderCheckout {
  LocalDir dir;
  ReaderCheckout() {
    std::filesystem::create_directories(dir.path / "build");
    std::filesystem::create_directory_symlink(bin_dir(), dir.path / "build" / "bin");
  }
};

/// The environment of a reader whose `modbox` is on PATH and talks to `agent`.
std::map<std::string, std::string> reader_environment(const TestAgent& agent) {
  auto environment = agent.cli_env();
  const char* path = std::getenv("PATH");
  environment["PATH"] = bin_dir() + ":" + (path != nullptr ? path : "/usr/bin:/bin");
  return environment;
}

/// A project to test in CI: its run-tests prints a line and exits with `status`.
void write_project(const std::filesystem::path& dir, int status) {
  std::filesystem::create_directories(dir / ".git");
  std::ofstream(dir / ".git" / "HEAD") << "ref: refs/heads/main\n";
  std::ofstream(dir / "data.txt") << "42\n";
  std::ofstream(dir / "run-tests") << "#!/bin/sh\n"
                                   << "test -f data.txt && test ! -e .git || exit 99\n"
                                   << "echo \"3 tests ran in $(pwd), status " << status << "\"\n"
                                   << "exit " << status << "\n";
  std::filesystem::permissions(dir / "run-tests", std::filesystem::perms::owner_all);
}

/// Whether the agent lists no live sandbox, and every sandbox it ever had ended as requested.
void require_all_destroyed(const TestAgent& agent) {
  CHECK(agent.cli({"list", "-q"}).out.empty());
  json all = json::parse(agent.cli({"list", "-a", "--json"}).out, nullptr, false);
  REQUIRE(all.is_array());
  REQUIRE_FALSE(all.empty());
  for (const auto& sandbox : all) {
    INFO(sandbox.dump());
    CHECK(sandbox["status"] == "destroyed");
    CHECK(sandbox["destroy_reason"] == "requested");
  }
}

}  // namespace

TEST_CASE("readme: the two-minute tour runs as written", "[readme]") {
  TestAgent agent;
  agent.start();
  ReaderCheckout checkout;
  auto run =
      run_command({"env", "-C", checkout.dir.path.string(), "bash", "-euo", "pipefail", "-c", readme_example("tour")},
                  reader_environment(agent), 300s);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out.find("(3, 11)") != std::string::npos);  // Debian bookworm's Python, from inside the sandbox
  CHECK(run.out.find("hello from a file") != std::string::npos);
  CHECK(run.out.find("sleep 300") != std::string::npos);          // `modbox ps`
  CHECK(run.out.find("http://127.0.0.1:") != std::string::npos);  // the URL provision --wait prints
  require_all_destroyed(agent);
}

TEST_CASE("readme: the CI script runs the tests in a sandbox, exits with their status, and cleans up", "[readme]") {
  TestAgent agent;
  agent.start();
  LocalDir scripts;
  std::ofstream(scripts.path / "ci.sh") << readme_example("ci-script");
  for (int status : {0, 7}) {
    LocalDir project;
    write_project(project.path, status);
    auto run = run_command({"env", "-C", project.path.string(), "bash", (scripts.path / "ci.sh").string()},
                           reader_environment(agent), 300s);
    INFO("tests exiting " << status << ": " << run.out << run.err);
    CHECK(run.exit_code == status);
    CHECK(run.out.find("3 tests ran in /workspace, status " + std::to_string(status)) != std::string::npos);
  }
  require_all_destroyed(agent);
}

TEST_CASE("readme: the GitHub Actions job's step runs as GitHub runs it", "[readme]") {
  TestAgent agent;
  agent.start();
  YAML::Node workflow = YAML::Load(readme_example("github-actions"));
  YAML::Node steps = workflow["jobs"]["test"]["steps"];
  REQUIRE(steps.IsSequence());
  CHECK(steps[0]["uses"].as<std::string>() == "actions/checkout@v4");
  std::string script;
  for (const auto& step : steps)
    if (step["name"] && step["name"].as<std::string>() == "Test in a sandbox") {
      script = step["run"].as<std::string>();
      CHECK(step["env"]["TASK"].as<std::string>().starts_with("ci-${{ github.run_id }}"));
    }
  REQUIRE_FALSE(script.empty());
  LocalDir project;
  write_project(project.path, 0);
  auto environment = reader_environment(agent);
  environment["TASK"] = unique_name("ci-gh");
  // GitHub's `shell: bash`, the default on Linux: bash --noprofile --norc -eo pipefail {0}.
  auto run = run_command(
      {"env", "-C", project.path.string(), "bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script},
      environment, 300s);
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.out.find("3 tests ran in /workspace, status 0") != std::string::npos);
  require_all_destroyed(agent);
}

TEST_CASE("readme: the HTTP API with curl runs as written", "[readme]") {
  TestAgent agent;
  agent.start();
  ReaderCheckout checkout;
  auto run = run_command(
      {"env", "-C", checkout.dir.path.string(), "bash", "-euo", "pipefail", "-c", readme_example("curl-api")},
      reader_environment(agent), 300s);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out.find("\"stdout\":\"hello\\n\"") != std::string::npos);
  for (const char* line : {"line 1", "line 2", "line 3"}) CHECK(run.out.find(line) != std::string::npos);
  CHECK(run.out.find("event: exit") != std::string::npos);
  CHECK(run.out.find("python3 -m http.server 8000") != std::string::npos);
  // The download landed beside the upload, under the name the agent gave it.
  bool downloaded = false;
  for (const auto& entry : std::filesystem::directory_iterator(checkout.dir.path))
    if (entry.path().filename().string().ends_with("-data.csv"))
      downloaded = modbox::read_file(entry.path()).value_or("") == "city,visits\n";
  CHECK(downloaded);
  require_all_destroyed(agent);
}
