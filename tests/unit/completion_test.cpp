// Shell completion: the description read from the command tree, the checked-in scripts being
// what the tree generates today, and each script completing in its real shell: bash through its
// completion function, fish through `complete -C`, zsh on a pseudo-terminal (tests/shell_completion.h).

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
#include "tests/shell_completion.h"
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

/// A directory with a fake `modbox` that answers `modbox __complete KIND` as a running agent with
/// the live sandboxes alpha, beta and gamma, the images sandbox-lite and code-exec and the registry
/// ghcr would: for PATH.
class FakeModbox {
 public:
  FakeModbox() {
    REQUIRE(write_file_atomic(directory_ / "modbox", R"sh(#!/bin/sh
case "$*" in
  "__complete sandboxes") printf 'alpha\nbeta\ngamma\n' ;;
  "__complete images") printf 'sandbox-lite\ncode-exec\n' ;;
  "__complete registries") printf 'ghcr\n' ;;
  *) exit 1 ;;
esac
)sh",
                              0700));
  }
  std::string path() const { return directory_.path().string(); }
  /// The zsh driver (tests/shell_completion.h), written beside the fake.
  std::string zsh_driver() const {
    auto driver = directory_ / "zsh-complete";
    REQUIRE(write_file_atomic(driver, std::string(testing::zsh_complete_script), 0600));
    return driver.string();
  }

 private:
  testing::TempDir directory_;
};

/// `lines` joined by spaces, each cut at its first tab (fish's description).
std::string words_of(const std::string& lines) {
  std::string words;
  for (std::size_t start = 0; start < lines.size();) {
    std::size_t end = std::min(lines.find('\n', start), lines.size());
    std::string line = lines.substr(start, end - start);
    line = line.substr(0, line.find('\t'));
    if (!line.empty()) words += (words.empty() ? "" : " ") + line;
    start = end + 1;
  }
  return words;
}

/// Completes the last of `words` with the checked-in bash script, the way bash calls it on TAB,
/// and answers the completions separated by spaces, with FakeModbox's names.
class BashCompletion {
 public:
  BashCompletion() {}

  std::string complete(const std::vector<std::string>& words) {
    std::string driver = "source " + (std::filesystem::path(MODBOX_SOURCE_DIR) / "completions/modbox.bash").string() +
                         " || exit 9\nCOMP_WORDS=(";
    for (const auto& word : words) driver += " '" + word + "'";
    driver += " )\nCOMP_CWORD=" + std::to_string(words.size() - 1) +
              "\nCOMP_LINE=\"${COMP_WORDS[*]}\" COMP_POINT=${#COMP_LINE}\n_modbox\necho \"${COMPREPLY[*]}\"\n";
    REQUIRE(write_file_atomic(directory_ / "driver.sh", driver, 0600));
    Finished finished = run_shell("PATH='" + modbox_.path() + "':\"$PATH\" bash --norc --noprofile '" +
                                  (directory_ / "driver.sh").string() + "'");
    INFO(driver);
    REQUIRE(finished.exit_code == 0);
    std::string output = finished.output;
    if (!output.empty() && output.back() == '\n') output.pop_back();
    return output;
  }

 private:
  FakeModbox modbox_;
  testing::TempDir directory_;
};

/// What fish offers for `line` (the cursor at its end) with the checked-in script: `complete -C`.
std::string fish_complete(const FakeModbox& modbox, const std::string& line) {
  Finished finished =
      run_shell("PATH='" + modbox.path() +
                "':\"$PATH\" timeout 20 fish --no-config -c 'source \"$argv[1]\"; complete -C \"$argv[2]\"' '" +
                MODBOX_SOURCE_DIR "/completions/modbox.fish' '" + line + "'");
  INFO("fish: " << line);
  REQUIRE(finished.exit_code == 0);
  return words_of(finished.output);
}

/// What zsh offers for the last of `words` with the checked-in _modbox (tests/shell_completion.h).
std::string zsh_complete(const FakeModbox& modbox, const std::vector<std::string>& words) {
  std::string command = "PATH='" + modbox.path() + "':\"$PATH\" timeout 30 zsh -f '" + modbox.zsh_driver() +
                        "' '" MODBOX_SOURCE_DIR "/completions'";
  for (const auto& word : words) command += " '" + word + "'";
  Finished finished = run_shell(command);
  INFO("zsh: " << command);
  REQUIRE(finished.exit_code == 0);
  return words_of(finished.output);
}

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
        std::vector<std::string>{"start", "stop", "restart", "status", "logs", "reap", "install-unit", "uninstall-unit", "env"});
  CHECK(subcommand(root, "completion").hidden);
  CHECK_FALSE(subcommand(root, "list").hidden);
  CHECK(subcommand(root, "list").aliases == std::vector<std::string>{"ls"});

  SECTION("option choices come from IsMember checks") {
    const OptionSpec* status = option(subcommand(root, "list"), "--status");
    REQUIRE(status != nullptr);
    CHECK(status->takes_value);
    CHECK(status->choices == std::vector<std::string>{"provisioning", "running", "failed", "destroyed"});
    CHECK(subcommand(root, "completion").positionals.at(0).choices == std::vector<std::string>{"bash", "zsh", "fish"});
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

  SECTION("positional arguments that name a sandbox, an image or a registry, and only those") {
    CHECK(subcommand(root, "provision").positionals.at(0).names_kind.empty());
    for (const char* name : {"wait", "get", "destroy", "exec", "ps", "logs"}) {
      INFO(name);
      CHECK(subcommand(root, name).positionals.at(0).names_kind == "sandboxes");
    }
    CHECK(subcommand(root, "destroy").positionals.at(0).repeats);
    CHECK(subcommand(root, "exec").positionals.at(1).names_kind.empty());
    for (const char* name : {"get", "update", "delete"}) {
      INFO("images " << name);
      CHECK(subcommand(subcommand(root, "images"), name).positionals.at(0).names_kind == "images");
    }
    CHECK(subcommand(subcommand(root, "registries"), "delete").positionals.at(0).names_kind == "registries");
    CHECK(subcommand(subcommand(root, "registries"), "create").positionals.at(0).names_kind.empty());
    CHECK(subcommand(root, "__complete").hidden);
  }
}

TEST_CASE("the checked-in completion scripts are the ones the command tree generates", "[completion]") {
  CommandTree tree;
  // Compared without CHECK on the strings: a diff of two whole scripts says less than the fix.
  if (bash_completion_script(tree.app) != source_file("completions/modbox.bash"))
    FAIL_CHECK("completions/modbox.bash differs from the command tree: run `cmake --build build --target completions`");
  if (zsh_completion_script(tree.app) != source_file("completions/_modbox"))
    FAIL_CHECK("completions/_modbox differs from the command tree: run `cmake --build build --target completions`");
  if (fish_completion_script(tree.app) != source_file("completions/modbox.fish"))
    FAIL_CHECK("completions/modbox.fish differs from the command tree: run `cmake --build build --target completions`");
}

TEST_CASE("the bash completion script completes in bash", "[completion]") {
  REQUIRE(run_shell("bash -n '" MODBOX_SOURCE_DIR "/completions/modbox.bash' 2>&1").exit_code == 0);
  auto registered = run_shell("bash --norc --noprofile -c 'source \"$0\"; complete -p modbox' '" MODBOX_SOURCE_DIR
                              "/completions/modbox.bash'");
  CHECK(registered.output == "complete -F _modbox modbox\n");

  BashCompletion bash;
  SECTION("commands") {
    CHECK(bash.complete({"modbox", "ag"}) == "agent");
    CHECK(bash.complete({"modbox", "agent", ""}) == "start stop restart status logs reap install-unit uninstall-unit env");
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
    CHECK(bash.complete({"modbox", "completion", ""}) == "bash zsh fish");
    CHECK(bash.complete({"modbox", "list", "--fo"}) == "--format");
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
  SECTION("image and registry names") {
    CHECK(bash.complete({"modbox", "images", "get", ""}) == "sandbox-lite code-exec");
    CHECK(bash.complete({"modbox", "images", "rm", "sandbox-lite", "c"}) == "code-exec");
    CHECK(bash.complete({"modbox", "registries", "delete", ""}) == "ghcr");
    CHECK(bash.complete({"modbox", "registries", "create", ""}).empty());
  }
}

TEST_CASE("the fish completion script completes in fish", "[completion]") {
  REQUIRE(run_shell("fish --no-execute '" MODBOX_SOURCE_DIR "/completions/modbox.fish' 2>&1").exit_code == 0);
  FakeModbox modbox;
  CHECK(fish_complete(modbox, "modbox ex") == "exec extend");
  CHECK(fish_complete(modbox, "modbox agent st") == "start status stop");
  CHECK(fish_complete(modbox, "modbox --json -w ci agent s") == "start status stop");
  CHECK(fish_complete(modbox, "modbox list --st") == "--status");
  CHECK(fish_complete(modbox, "modbox ls --status r") == "running");
  CHECK(fish_complete(modbox, "modbox list --status=f") == "--status=failed");
  CHECK(fish_complete(modbox, "modbox completion ") == "bash fish zsh");
  CHECK(fish_complete(modbox, "modbox exec ") == "alpha beta gamma");
  CHECK(fish_complete(modbox, "modbox exec --timeout 5 b") == "beta");
  CHECK(fish_complete(modbox, "modbox exec alpha ").empty());
  CHECK(fish_complete(modbox, "modbox rm alpha g") == "gamma");
  CHECK(fish_complete(modbox, "modbox provision ").empty());
  CHECK(fish_complete(modbox, "modbox images get ") == "code-exec sandbox-lite");
  CHECK(fish_complete(modbox, "modbox registries delete ") == "ghcr");
  // Descriptions come with the commands.
  Finished described =
      run_shell("timeout 20 fish --no-config -c 'source \"$argv[1]\"; complete -C \"modbox ext\"' '" MODBOX_SOURCE_DIR
                "/completions/modbox.fish'");
  CHECK(described.output == "extend\tMake a sandbox expire TTL seconds from now\n");
}

TEST_CASE("the zsh completion script completes in zsh", "[completion]") {
  FakeModbox modbox;
  CHECK(zsh_complete(modbox, {"modbox", "ag"}) == "agent");
  CHECK(zsh_complete(modbox, {"modbox", "agent", "st"}) == "start stop status");
  CHECK(zsh_complete(modbox, {"modbox", "list", "--status", ""}) == "provisioning running failed destroyed");
  CHECK(zsh_complete(modbox, {"modbox", "exec", ""}) == "alpha beta gamma");
  CHECK(zsh_complete(modbox, {"modbox", "images", "get", ""}) == "sandbox-lite code-exec");
  CHECK(zsh_complete(modbox, {"modbox", "completion", ""}) == "bash zsh fish");
}
