#pragma once
// Shell completion generated from the CLI11 command tree, so that it cannot drift from the
// commands: the tree is read into a plain description, and each shell's script is written from it.

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
  bool repeats = false;              // takes every remaining argument
  bool names_sandbox = false;        // an existing sandbox: completed with the live sandboxes' names
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

}  // namespace modbox
