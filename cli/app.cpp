// modbox's command tree: the global options and every command group. Building it runs nothing,
// so the completion generator and the tests walk the very tree that main parses with.

#include "cli/cli.h"
#include "cli/exit_codes.h"

namespace modbox {

void build_cli(CLI::App& app, CliContext& context) {
  app.description("modbox: local sandboxes on rootless Podman");
  app.set_version_flag("--version", MODBOX_VERSION);
  app.require_subcommand(1);
  app.footer(exit_status::help_footer());
  // Global options are accepted after the subcommand too: `modbox list --json`.
  app.fallthrough();
  app.add_flag("--json", context.json, "Print the API's JSON");
  app.add_flag("-q,--quiet", context.quiet, "Print only names");
  // Their environment variables and the config file are read by CliContext::load_settings, which
  // knows where each value came from (`modbox config list`).
  app.add_option("-w,--workspace", context.workspace, "Workspace (X-Workspace-Id; else $MODBOX_WORKSPACE or config)");
  app.add_option("--api-url", context.api_url,
                 "The agent's TCP API URL, instead of its unix socket (else $MODBOX_API_URL or config)");
  add_sandbox_commands(app, context);
  add_process_commands(app, context);
  add_shell_command(app, context);
  add_file_commands(app, context);
  add_image_commands(app, context);
  add_registry_commands(app, context);
  add_pool_commands(app, context);
  add_agent_commands(app, context);
  add_config_commands(app, context);
  add_doctor_command(app, context);
  add_completion_command(app, context);
}

}  // namespace modbox
