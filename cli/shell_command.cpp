// modbox shell: an interactive shell (or command) in a sandbox, through its terminal WebSocket; and
// the session that `modbox exec -i/-t` runs too.

#include <unistd.h>

#include "cli/cli.h"
#include "cli/interactive_session.h"

namespace modbox {

Result<int> run_sandbox_session(const CliContext& context, const std::string& task_id,
                                const terminal::SessionOptions& session, bool forward_stdin) {
  auto target = sandbox_target(context, task_id);
  if (!target) return std::unexpected(target.error());
  auto token = target->agent.owner_token();
  if (!token) return std::unexpected(token.error());
  return run_interactive_session(InteractiveOptions{
      .sandbox_url = target->url, .token = *token, .session = session, .forward_stdin = forward_stdin});
}

void add_shell_command(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand(
      "shell", "Open an interactive shell in a sandbox (on a terminal when stdin is one); exits with its status");
  struct Options {
    std::string task_id;
    std::vector<std::string> argv;
    std::vector<std::string> env;
    std::string cwd;
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("command", options->argv,
                      "Command and arguments (after --) to run instead of the shell; one argument is a shell line");
  // One value per -e, so that `-e A=1 TASK` leaves TASK to the positional.
  command->add_option("-e,--env", options->env, "Environment variable NAME=VALUE for the shell (repeatable)")
      ->allow_extra_args(false);
  command->add_option("--cwd", options->cwd, "Working directory in the sandbox (default /workspace, else /)");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      // As ssh does: a terminal when stdin is one, else the shell reads its commands from stdin,
      // without prompts. The helper runs a command with the sandbox's shell (bash, or sh) as $0.
      bool tty = ::isatty(STDIN_FILENO) == 1;
      std::string command = options->argv.empty() ? (tty ? "" : "exec \"$0\" -s") : shell_command(options->argv);
      terminal::SessionOptions session{.tty = tty, .command = command, .cwd = options->cwd, .env = options->env};
      return run_sandbox_session(context, options->task_id, session, true);
    };
  });
}

}  // namespace modbox
