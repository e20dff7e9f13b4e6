#pragma once
// Shared by the CLI's command groups: global options and the action chosen by parsing.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cli/agent_client.h"
#include "cli/exit_codes.h"
#include "cli/settings.h"
#include "common/result.h"
#include "common/terminal_protocol.h"

namespace modbox {

/// Prints an error the way every command does: "modbox: <message>" plus field errors.
void print_error(const Error& error);

struct CliContext {
  bool json = false;      // print the API's JSON instead of text
  bool quiet = false;     // print only names/ids
  std::string workspace;  // --workspace as given (X-Workspace-Id); empty: not given
  std::string api_url;    // --api-url as given; empty: not given
  std::string format;     // --format TEMPLATE of the listing commands; empty: none
  /// Each setting's effective value and origin (cli/settings.h), once load_settings() ran.
  Settings settings;
  /// Set by the chosen subcommand's callback; returns the process exit code.
  std::function<Result<int>()> action;

  /// Resolves `settings` from the flags above, the environment and the config file; an error when
  /// the config file cannot be read. main calls it after parsing, before the action.
  Result<void> load_settings();

  AgentClient client() const;
  /// A client whose agent is running (started on demand).
  Result<AgentClient> running_client() const;
  /// running_client() and one call through it: the answer's body, or the error.
  Result<std::string> call(const std::string& method, const std::string& path, const std::string& body = "",
                           int timeout_seconds = 60) const;
};

/// A running sandbox's URL, and a client of the agent that serves it: for the routes behind the
/// sandbox URL (files, streamed exec, background processes), which the CLI calls with the agent's
/// own token.
struct SandboxTarget {
  AgentClient agent;
  std::string url;
};
/// The sandbox `task_id` (409 when it is not running).
Result<SandboxTarget> sandbox_target(const CliContext& context, const std::string& task_id);

/// Adds `--format TEMPLATE` (cli/format_template.h) to a command that shows sandboxes, images,
/// registries or processes; a template that does not parse is a usage error.
void add_format_option(CLI::App& command, CliContext& context);

/// With --format: prints `json` (an answer of the API, or an array of them) through the template, a
/// line per item, and answers true; answers false without --format. --format with --json or -q is
/// an error.
Result<bool> print_formatted(const CliContext& context, const std::string& json);

/// Prints the answer of a list command as they all do: the JSON as it came (--json), each item's
/// `key` on a line (-q), a line per item through --format, or `table(items)`.
template <typename Decode, typename Key, typename Table>
Result<int> print_list(const CliContext& context, const std::string& body, Decode decode, Key key, Table table) {
  auto formatted = print_formatted(context, body);
  if (!formatted) return std::unexpected(formatted.error());
  if (*formatted) return 0;
  if (context.json) {
    std::printf("%s\n", body.c_str());
    return 0;
  }
  auto items = decode(body);
  if (!items) return std::unexpected(items.error());
  if (context.quiet)
    for (const auto& item : *items) std::printf("%s\n", std::invoke(key, item).c_str());
  else
    table(*items);
  return 0;
}

/// The exit status of a command that acted on several names: 0 when none failed, the status of the
/// failures when they all had the same (4: each name was not found), else 1.
int combined_exit_status(const std::vector<int>& failures);

/// Acts on each name of a command that takes several (delete, destroy, rm), going on past
/// failures as rm does: `act(name)` gives the answer's body and the line to print for it (the
/// body itself with --json; nothing with -q when the line is empty). Exit status as
/// combined_exit_status.
template <typename Act>
int for_each_name(const CliContext& context, const std::vector<std::string>& names, Act act) {
  std::vector<int> failures;
  for (const auto& name : names) {
    Result<std::pair<std::string, std::string>> answer = act(name);
    if (!answer) {
      print_error(answer.error());
      failures.push_back(exit_status::for_error(answer.error()));
    } else if (context.json) {
      std::printf("%s\n", answer->first.c_str());
    } else if (!answer->second.empty()) {
      std::printf("%s\n", answer->second.c_str());
    }
  }
  return combined_exit_status(failures);
}

/// argv joined into one shell command line, each argument quoted as needed; a single argument is
/// taken as a command line already.
std::string shell_command(const std::vector<std::string>& argv);

/// Runs `session` in the running sandbox `task_id` through its terminal WebSocket, with this
/// process's stdin (when `forward_stdin`), stdout and stderr (cli/interactive_session.h): `modbox
/// shell` and `modbox exec -i/-t`. The command's exit status.
Result<int> run_sandbox_session(const CliContext& context, const std::string& task_id,
                                const terminal::SessionOptions& session, bool forward_stdin);

/// Type name of the positional arguments that name an existing sandbox: shown in --help, and
/// shell completion offers the live sandboxes' names for them.
inline constexpr const char* sandbox_type_name = "SANDBOX";
/// Likewise for an existing image (completed with the images' names) and registry credential.
inline constexpr const char* image_type_name = "IMAGE";
inline constexpr const char* registry_type_name = "REGISTRY";

/// Builds modbox's whole command tree on `app` without running anything: main parses with it,
/// and the completion generator and the tests walk it. `context` receives the parsed options
/// and the chosen action, so it must outlive `app`'s use.
void build_cli(CLI::App& app, CliContext& context);

/// modbox's command tree with the context its parsing fills, built as main builds it.
struct CommandTree {
  CliContext context;
  CLI::App app;
  CommandTree() { build_cli(app, context); }
};

void add_sandbox_commands(CLI::App& app, CliContext& context);
/// `modbox ps | output | kill`: background processes (`modbox exec --detach` starts them).
void add_process_commands(CLI::App& app, CliContext& context);
/// `modbox shell`.
void add_shell_command(CLI::App& app, CliContext& context);
void add_file_commands(CLI::App& app, CliContext& context);
void add_agent_commands(CLI::App& app, CliContext& context);
/// `modbox images ...` and `modbox snapshot`.
void add_image_commands(CLI::App& app, CliContext& context);
void add_registry_commands(CLI::App& app, CliContext& context);
/// `modbox pool set | ls`: warm pools.
void add_pool_commands(CLI::App& app, CliContext& context);
/// An image argument: its id, or a name or repository that names exactly one visible image.
Result<std::string> image_id_of(const AgentClient& agent, const std::string& argument);
/// `modbox completion bash|zsh|fish` and `modbox __complete sandboxes|images|registries` (the
/// names the scripts complete, from an agent that runs), both hidden from --help.
void add_completion_command(CLI::App& app, CliContext& context);
/// `modbox config get | set | unset | list`.
void add_config_commands(CLI::App& app, CliContext& context);
/// `modbox doctor`.
void add_doctor_command(CLI::App& app, CliContext& context);

}  // namespace modbox
