// Shell completion: the description read from the command tree, the checked-in scripts being
// what the tree generates today, and the bash script completing in a real bash.

#include "cli/completion.h"

#include <stdio.h>
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;

namespace {

const CommandSpec& subcommand(const CommandSpec& command, const std::string& name) {
  auto found =
      std::ranges::find_if(command.subcommands, [&](const CommandSpec& sub) { return sub.path.back() == name; });
  REQUIRE(found != command.subcommands.end());
  return *found;
}

const OptionSpec* option(const CommandSpec& command, const std::string& name) {
  auto found = std::ranges::find_if(command.options, [&](const OptionSpec& option) {
    return std::ranges::find(option.names, name) != option.names.end();
  });
  return found == command.options.end() ? nullptr : &*found;
}

std::vector<std::string> names_of(const std::vector<CommandSpec>& commands) {
  std::vector<std::string> names;
  for (const auto& command : commands) names.push_back(command.path.back());
  return names;
}

std::string source_file(const std::string& relative) {
  auto text = read_file(std::filesystem::path(MODBOX_SOURCE_DIR) / relative);
  INFO("reading " << relative << ": " << (text ? "" : text.error().message));
  REQUIRE(text.has_value());
  return *text;
}

struct Finished {
  int exit_code = -1;
  std::string output;
};

/// Runs a shell command line and collects its standard output.
Finished run_shell(const std::string& command_line) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command_line.c_str(), "r"), ::pclose);
  REQUIRE(pipe != nullptr);
  Finished finished;
  char buffer[4096];
  while (std::size_t read = std::fread(buffer, 1, sizeof buffer, pipe.get())) finished.output.append(buffer, read);
  int status = ::pclose(pipe.release());
  finished.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return finished;
}

/// Completes the last of `words` with the checked-in bash script, the way bash calls it on TAB,
/// and answers the completions separated by spaces. A fake `modbox` on PATH plays a running agent
/// with the live sandboxes alpha and beta (running) and gamma (provisioning).
class BashCompletion {
 public:
  BashCompletion() {
    REQUIRE(write_file_atomic(directory_ / "modbox", R"sh(#!/bin/sh
case "$*" in
  "agent status") exit 0 ;;
  "list -q --status running") printf 'alpha\nbeta\n' ;;
  "list -q --status provisioning") printf 'gamma\n' ;;
  *) exit 1 ;;
esac
)sh",
                              0700));
  }

  std::string complete(const std::vector<std::string>& words) {
    std::string driver = "source " + (std::filesystem::path(MODBOX_SOURCE_DIR) / "completions/modbox.bash").string() +
                         " || exit 9\nCOMP_WORDS=(";
    for (const auto& word : words) driver += " '" + word + "'";
    driver += " )\nCOMP_CWORD=" + std::to_string(words.size() - 1) +
              "\nCOMP_LINE=\"${COMP_WORDS[*]}\" COMP_POINT=${#COMP_LINE}\n_modbox\necho \"${COMPREPLY[*]}\"\n";
    REQUIRE(write_file_atomic(directory_ / "driver.sh", driver, 0600));
    Finished finished = run_shell("PATH='" + directory_.path().string() + "':\"$PATH\" bash --norc --noprofile '" +
                                  (directory_ / "driver.sh").string() + "'");
    INFO(driver);
    REQUIRE(finished.exit_code == 0);
    std::string output = finished.output;
    if (!output.empty() && output.back() == '\n') output.pop_back();
    return output;
  }

 private:
  testing::TempDir directory_;
};

}  // namespace

TEST_CASE("the command tree is described for completion", "[completion]") {
  CommandTree tree;
  CommandSpec root = describe_command_tree(tree.app);

  auto commands = names_of(root.subcommands);
  for (const char* name : {"provision", "wait", "get", "list", "destroy", "exec", "agent", "completion"}) {
    INFO(name);
    CHECK(std::ranges::find(commands, name) != commands.end());
  }
  CHECK(names_of(subcommand(root, "agent").subcommands) ==
        std::vector<std::string>{"start", "stop", "restart", "status", "logs", "reap", "env"});
  CHECK(subcommand(root, "completion").hidden);
  CHECK_FALSE(subcommand(root, "list").hidden);
  CHECK(subcommand(root, "list").aliases == std::vector<std::string>{"ls"});

  SECTION("option choices come from IsMember checks") {
    const OptionSpec* status = option(subcommand(root, "list"), "--status");
    REQUIRE(status != nullptr);
    CHECK(status->takes_value);
    CHECK(status->choices == std::vector<std::string>{"provisioning", "running", "failed", "destroyed"});
    CHECK(subcommand(root, "completion").positionals.at(0).choices == std::vector<std::string>{"bash", "zsh"});
  }

  SECTION("global options reach every command through fallthrough") {
    const CommandSpec& start = subcommand(subcommand(root, "agent"), "start");
    for (const char* name : {"--json", "-q", "--quiet", "-w", "--workspace", "--help"}) {
      INFO(name);
      CHECK(option(start, name) != nullptr);
    }
    CHECK(option(start, "--workspace")->takes_value);
    CHECK_FALSE(option(start, "--json")->takes_value);
  }

  SECTION("flags, values and repeatable options") {
    const CommandSpec& provision = subcommand(root, "provision");
    CHECK_FALSE(option(provision, "--wait")->takes_value);
    CHECK(option(provision, "--ttl")->takes_value);
    CHECK_FALSE(option(provision, "--ttl")->repeatable);
    CHECK(option(provision, "-e")->repeatable);
    CHECK(option(provision, "--port")->takes_value);
    CHECK(option(provision, "--port")->repeatable);
  }

  SECTION("positional arguments that name a sandbox, and only those") {
    CHECK_FALSE(subcommand(root, "provision").positionals.at(0).names_sandbox);
    for (const char* name : {"wait", "get", "destroy", "exec"}) {
      INFO(name);
      CHECK(subcommand(root, name).positionals.at(0).names_sandbox);
    }
    CHECK(subcommand(root, "destroy").positionals.at(0).repeats);
    CHECK_FALSE(subcommand(root, "exec").positionals.at(1).names_sandbox);
  }
}

TEST_CASE("the checked-in completion scripts are the ones the command tree generates", "[completion]") {
  CommandTree tree;
  // Compared without CHECK on the strings: a diff of two whole scripts says less than the fix.
  if (bash_completion_script(tree.app) != source_file("completions/modbox.bash"))
    FAIL_CHECK("completions/modbox.bash differs from the command tree: run `cmake --build build --target completions`");
  if (zsh_completion_script(tree.app) != source_file("completions/_modbox"))
    FAIL_CHECK("completions/_modbox differs from the command tree: run `cmake --build build --target completions`");
}

TEST_CASE("the bash completion script completes in bash", "[completion]") {
  REQUIRE(run_shell("bash -n '" MODBOX_SOURCE_DIR "/completions/modbox.bash' 2>&1").exit_code == 0);
  auto registered = run_shell("bash --norc --noprofile -c 'source \"$0\"; complete -p modbox' '" MODBOX_SOURCE_DIR
                              "/completions/modbox.bash'");
  CHECK(registered.output == "complete -F _modbox modbox\n");

  BashCompletion bash;
  SECTION("commands") {
    CHECK(bash.complete({"modbox", "ag"}) == "agent");
    CHECK(bash.complete({"modbox", "agent", ""}) == "start stop restart status logs reap env");
    CHECK(bash.complete({"modbox", "agent", "st"}) == "start stop status");
    // Every visible command, and not the hidden `completion`.
    std::string commands = bash.complete({"modbox", ""});
    CHECK(commands.starts_with("provision wait get list destroy extend exec "));
    CHECK(commands.ends_with(" agent config doctor"));
    CHECK(bash.complete({"modbox", "--json", "-w", "ci", "agent", "s"}) == "start stop status");
  }
  SECTION("options and their values") {
    CHECK(bash.complete({"modbox", "list", "--st"}) == "--status");
    CHECK(bash.complete({"modbox", "ls", "--status", "r"}) == "running");
    CHECK(bash.complete({"modbox", "list", "--status", ""}) == "provisioning running failed destroyed");
    // COMP_WORDBREAKS splits `--status=r` at '='.
    CHECK(bash.complete({"modbox", "list", "--status", "=", "f"}) == "failed");
    CHECK(bash.complete({"modbox", "list", "--status", "="}) == "provisioning running failed destroyed");
    CHECK(bash.complete({"modbox", "agent", "start", "--j"}) == "--json");
    CHECK(bash.complete({"modbox", "provision", "web", "--po"}) == "--port");
    CHECK(bash.complete({"modbox", "provision", "web", "--port", "8000", "--port", ""}).empty());  // a number
    CHECK(bash.complete({"modbox", "completion", ""}) == "bash zsh");
  }
  SECTION("live sandbox names for arguments that name a sandbox") {
    CHECK(bash.complete({"modbox", "exec", ""}) == "alpha beta gamma");
    CHECK(bash.complete({"modbox", "exec", "--timeout", "5", "b"}) == "beta");
    CHECK(bash.complete({"modbox", "exec", "alpha", ""}).empty());
    CHECK(bash.complete({"modbox", "exec", "alpha", "--", "-"}).empty());
    CHECK(bash.complete({"modbox", "rm", "alpha", "g"}) == "gamma");
    CHECK(bash.complete({"modbox", "wait", "a"}) == "alpha");
    CHECK(bash.complete({"modbox", "provision", ""}).empty());
  }
}
