// modbox: the command-line client of modboxd. Builds the command tree, runs the chosen action,
// and is the one place that turns errors into messages and exit codes.

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/command_suggestion.h"
#include "cli/exit_codes.h"

int main(int argc, char** argv) {
  // An agent that answers an upload early and closes must give an error, not kill the CLI.
  std::signal(SIGPIPE, SIG_IGN);
  modbox::CommandTree tree;
  CLI::App& app = tree.app;
  modbox::CliContext& context = tree.context;

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() != 0)
      if (auto unknown = modbox::unknown_command_message(app, std::vector<std::string>(argv + 1, argv + argc))) {
        std::fprintf(stderr, "modbox: %s\n", unknown->c_str());
        return modbox::exit_status::usage;
      }
    // --help and --version exit 0; every usage error exits 2, as modbox(1) documents, instead
    // of CLI11's per-error codes (105-114) that no script can tell apart from a command's status.
    // The other statuses are cli/exit_codes.h's.
    return app.exit(error) == 0 ? modbox::exit_status::success : modbox::exit_status::usage;
  }
  try {
    if (auto loaded = context.load_settings(); !loaded) {
      modbox::print_error(loaded.error());
      return modbox::exit_status::error;
    }
    auto exit_code = context.action();
    if (!exit_code) {
      modbox::print_error(exit_code.error());
      return modbox::exit_status::for_error(exit_code.error());
    }
    return *exit_code;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "modbox: unexpected error: %s\n", error.what());
    return modbox::exit_status::error;
  }
}
