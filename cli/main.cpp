// modbox: the command-line client of modboxd. Builds the command tree, runs the chosen action,
// and is the one place that turns errors into messages and exit codes.

#include <cstdio>

#include "cli/cli.h"

int main(int argc, char** argv) {
  modbox::CliContext context;
  CLI::App app{"modbox: local sandboxes on rootless Podman"};
  app.set_version_flag("--version", MODBOX_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_flag("--json", context.json, "Print the API's JSON");
  app.add_flag("-q,--quiet", context.quiet, "Print only names");
  app.add_option("-w,--workspace", context.workspace, "Workspace (X-Workspace-Id)")->envname("MODBOX_WORKSPACE");
  modbox::add_sandbox_commands(app, context);
  modbox::add_agent_commands(app, context);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  try {
    auto exit_code = context.action();
    if (!exit_code) {
      modbox::print_error(exit_code.error());
      return 1;
    }
    return *exit_code;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "modbox: unexpected error: %s\n", error.what());
    return 1;
  }
}
