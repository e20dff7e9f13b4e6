// The CLI's output through the real binary against a real agent: --format templates on the listing
// commands, tables fitted to COLUMNS and without colour off a terminal, and the names the shells'
// completion offers, asked of the running agent in real bash, fish and zsh.

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "common/system.h"
#include "tests/integration/harness.h"
#include "tests/shell_completion.h"

using namespace modbox::test;

namespace {

/// The lines of `text`.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = std::min(text.find('\n', start), text.size());
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

/// Characters on a terminal: UTF-8 lead bytes.
std::size_t columns_of(const std::string& line) {
  std::size_t count = 0;
  for (char c : line) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& each : lines_of(text))
    if (each == line) return true;
  return false;
}

/// A shell command line run with the CLI's environment for `agent` and the binaries first in PATH.
CommandResult run_shell(const TestAgent& agent, const std::string& command_line) {
  auto environment = agent.cli_env();
  const char* path = std::getenv("PATH");
  environment["PATH"] = bin_dir() + ":" + (path ? path : "/usr/bin:/bin");
  return run_command({"bash", "-c", command_line}, environment, 60s);
}

}  // namespace

TEST_CASE("--format prints the API's fields a line per item, and tables fit COLUMNS", "[cli]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("format-with-a-long-name-");
  json sandbox = agent.provision_running(task, {{"ttl_seconds", 300}, {"tags", {{"team", "ml"}}}});

  auto listed = agent.cli({"list", "--format", "{{.name}} {{.status}} {{.tags.team}}"});
  INFO(listed.err);
  REQUIRE(listed.exit_code == 0);
  CHECK(listed.out == task + " running ml\n");
  CHECK(agent.cli({"ls", "-a", "--format", "{{.name}}\\t{{json .tags}}{{.nothing}}"}).out ==
        task + "\t{\"team\":\"ml\"}\n");
  auto got = agent.cli({"get", task, "--format", "{{.id}}|{{.sandbox_url}}|{{.readiness.phase}}"});
  CHECK(got.exit_code == 0);
  CHECK(got.out == sandbox["id"].get<std::string>() + "|" + sandbox["sandbox_url"].get<std::string>() + "|" +
                       (sandbox["readiness"].is_object() ? sandbox["readiness"].value("phase", "") : "") + "\n");

  {  // the other listing commands
    auto images = agent.cli({"images", "list", "--format", "{{.image}}:{{.tag}} {{.is_default}}"});
    CHECK(images.exit_code == 0);
    CHECK(has_line(images.out, "modbox/sandbox-lite:latest true"));
    auto image = agent.cli({"images", "get", "modbox/sandbox-lite", "--format", "{{.name}}"});
    CHECK(image.exit_code == 0);
    CHECK(!image.out.empty());
    auto registries = agent.cli({"registries", "list", "--format", "{{.name}}"});
    CHECK(registries.exit_code == 0);
    CHECK(registries.out.empty());
    auto detached = agent.cli({"exec", "--detach", task, "--", "sleep", "60"});
    REQUIRE(detached.exit_code == 0);
    auto processes = agent.cli({"ps", task, "--format", "{{.id}} {{.state}} {{.command}}"});
    CHECK(processes.exit_code == 0);
    CHECK(processes.out == "1 running sleep 60\n");
  }
  {  // bad templates
    auto unclosed = agent.cli({"list", "--format", "{{.name"});
    CHECK(unclosed.exit_code == 2);
    CHECK(unclosed.err.find("--format") != std::string::npos);
    auto not_a_field = agent.cli({"list", "--format", "{{name}}"});
    CHECK(not_a_field.exit_code == 2);
    CHECK(not_a_field.err.find("{{.name}}") != std::string::npos);
    auto inside_a_string = agent.cli({"get", task, "--format", "{{.name.first}}"});
    CHECK(inside_a_string.exit_code == 1);
    CHECK(inside_a_string.err.find("is a string") != std::string::npos);
    CHECK(agent.cli({"list", "--json", "--format", "{{.name}}"}).exit_code == 1);
    // Commands that show no list do not take it.
    CHECK(agent.cli({"destroy", task, "--format", "{{.name}}"}).exit_code == 2);
  }
  {  // a table fits COLUMNS, cutting the ID and then the name, and has no colour off a terminal
    auto whole = agent.cli({"list"});
    REQUIRE(whole.exit_code == 0);
    CHECK(whole.out.find('\x1b') == std::string::npos);
    CHECK(whole.out.find(sandbox["id"].get<std::string>()) != std::string::npos);
    auto environment = agent.cli_env();
    environment["COLUMNS"] = "80";
    auto fitted = run_command({bin_dir() + "/modbox", "list"}, environment, 60s);
    REQUIRE(fitted.exit_code == 0);
    auto lines = lines_of(fitted.out);
    REQUIRE(lines.size() == 2);
    for (const auto& line : lines) {
      INFO(line);
      CHECK(columns_of(line) <= 80);
    }
    CHECK(lines[1].find("…") != std::string::npos);
    CHECK(lines[1].find("running") != std::string::npos);
    CHECK(lines[1].find(sandbox["sandbox_url"].get<std::string>()) != std::string::npos);
  }
  {  // on a terminal (script(1) gives it one), statuses are coloured, unless NO_COLOR says no
    const std::string on_terminal = "script -qec 'COLUMNS=200 modbox list' /dev/null";
    auto coloured = run_shell(agent, on_terminal);
    INFO(coloured.out << coloured.err);
    CHECK(coloured.out.find("\x1b[32mrunning\x1b[0m") != std::string::npos);
    auto plain = run_shell(agent, "NO_COLOR=1 " + on_terminal);
    CHECK(plain.out.find(task) != std::string::npos);
    CHECK(plain.out.find('\x1b') == std::string::npos);
  }
}

TEST_CASE("completion offers the running agent's sandboxes in bash, fish and zsh, and never starts an agent", "[cli]") {
  TestAgent agent;  // not started
  auto started = std::chrono::steady_clock::now();
  auto none = agent.cli({"__complete", "sandboxes"});
  CHECK(none.exit_code == 0);
  CHECK(none.out.empty());
  CHECK(none.err.empty());
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(agent.cli({"agent", "status"}).exit_code == 3);  // still no agent

  agent.start();
  const std::string task = unique_name("complete");
  agent.provision_running(task, {{"ttl_seconds", 300}});
  CHECK(agent.cli({"__complete", "sandboxes"}).out == task + "\n");
  auto images = agent.cli({"__complete", "images"});
  INFO(images.out << images.err);
  CHECK(has_line(images.out, "modbox/sandbox-lite"));
  CHECK(agent.cli({"__complete", "registries"}).out.empty());

  LocalDir scripts;
  for (const char* shell : {"bash", "zsh", "fish"}) {
    auto script = agent.cli({"completion", shell});
    REQUIRE(script.exit_code == 0);
    std::string name = std::string(shell) == "zsh" ? "_modbox" : std::string("modbox.") + shell;
    REQUIRE(modbox::write_file_atomic(scripts.path / name, script.out, 0600));
  }
  REQUIRE(modbox::write_file_atomic(scripts.path / "zsh-complete", std::string(modbox::testing::zsh_complete_script),
                                    0600));
  const std::string dir = scripts.path.string();
  const std::string prefix = task.substr(0, task.size() - 1);

  auto bash = run_shell(agent, "source '" + dir + "/modbox.bash'; COMP_WORDS=(modbox exec '" + prefix +
                                   "'); COMP_CWORD=2; _modbox; printf '%s\\n' \"${COMPREPLY[@]}\"");
  INFO(bash.err);
  CHECK(bash.out == task + "\n");
  auto fish = run_shell(agent, "timeout 20 fish --no-config -c 'source $argv[1]; complete -C \"modbox exec " + prefix +
                                   "\"' '" + dir + "/modbox.fish'");
  INFO(fish.err);
  CHECK(fish.out == task + "\n");
  auto zsh =
      run_shell(agent, "timeout 30 zsh -f '" + dir + "/zsh-complete' '" + dir + "' modbox exec '" + prefix + "'");
  INFO(zsh.err);
  CHECK(zsh.out == task + "\n");
}
