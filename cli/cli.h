#pragma once
// Shared by the CLI's command groups: global options and the action chosen by parsing.

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "cli/agent_client.h"
#include "common/result.h"

namespace modbox {

struct CliContext {
  bool json = false;       // print the API's JSON instead of text
  bool quiet = false;      // print only names/ids
  std::string workspace;   // X-Workspace-Id; empty: none
  /// Set by the chosen subcommand's callback; returns the process exit code.
  std::function<Result<int>()> action;

  AgentClient client() const;
  /// A client whose agent is running (started on demand).
  Result<AgentClient> running_client() const;
};

/// Type name of the positional arguments that name an existing sandbox: shown in --help, and
/// shell completion offers the live sandboxes' names for them.
inline constexpr const char* sandbox_type_name = "SANDBOX";

/// Builds modbox's whole command tree on `app` without running anything: main parses with it,
/// and the completion generator and the tests walk it. `context` receives the parsed options
/// and the chosen action, so it must outlive `app`'s use.
void build_cli(CLI::App& app, CliContext& context);

void add_sandbox_commands(CLI::App& app, CliContext& context);
void add_file_commands(CLI::App& app, CliContext& context);
void add_agent_commands(CLI::App& app, CliContext& context);
void add_image_commands(CLI::App& app, CliContext& context);
void add_registry_commands(CLI::App& app, CliContext& context);
/// `modbox completion bash|zsh`, hidden from --help.
void add_completion_command(CLI::App& app, CliContext& context);

/// Prints an error the way every command does: "modbox: <message>" plus field errors.
void print_error(const Error& error);

}  // namespace modbox
