#pragma once
// Shell completion generated from the CLI11 command tree, so that it cannot drift from the
// commands: the tree is read into a plain description, and each shell's script is written from it.
// The names of sandboxes, images and registries come from `modbox __complete KIND`, which asks only
// an agent that already runs.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace modbox {

struct OptionSpec {
  std::vector<std::string> names;  // as typed: long names ("--status") first, then short ("-q")
  std::string description;
  bool takes_value = false;
  bool repeatable = false;           // may be given more than once (`-e A -e B`)
  std::vector<std::string> choices;  // the allowed values, from an IsMember check
};

struct PositionalSpec {
  std::string name;
  bool repeats = false;  // takes every remaining argument
  /// What it names, when that is something of the agent's: "sandboxes" (a live sandbox),
  /// "images" or "registries"; completed with `modbox __complete KIND`. Empty otherwise.
  std::string names_kind;
  std::vector<std::string> choices;  // the allowed values, from an IsMember check
};

struct CommandSpec {
  std::vector<std::string> path;  // {"modbox", "agent", "start"}
  std::vector<std::string> aliases;
  std::string description;
  bool hidden = false;              // left out of --help and of the subcommands offered
  std::vector<OptionSpec> options;  // its own, then those of its parents that fall through to it
  std::vector<PositionalSpec> positionals;
  std::vector<CommandSpec> subcommands;
};

/// The values an option allows, from its IsMember check (CLI11 appends them to the type name as
/// ":{a,b,c}"); empty when it has none.
std::vector<std::string> option_choices(const CLI::Option& option);

/// Reads the command tree under `app`, which is called `program` on the command line.
CommandSpec describe_command_tree(const CLI::App& app, const std::string& program = "modbox");

/// A bash completion script for the command tree under `app`; `complete -F _modbox modbox`.
std::string bash_completion_script(const CLI::App& app);

/// A zsh completion script (`#compdef modbox`) for the command tree under `app`: for fpath, or
/// sourced after compinit.
std::string zsh_completion_script(const CLI::App& app);

struct CliContext;
/// What `modbox __complete KIND` prints, a name a line: the live sandboxes' names, the images'
/// names (or ids, for a name with a space) or the registries'. Empty, at once, when no agent runs:
/// completion never starts one, and asks a running one with a short timeout.
std::vector<std::string> completion_names(const CliContext& context, const std::string& kind);

/// A fish completion script for the command tree under `app`: for
/// ~/.config/fish/completions/modbox.fish or vendor_completions.d.
std::string fish_completion_script(const CLI::App& app);

}  // namespace modbox
