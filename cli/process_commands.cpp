// modbox ps | output | kill: the background processes of a sandbox (`modbox exec --detach` starts
// them), through the sandbox URL's /modbox/api/processes with the agent's own token.

#include <cstdio>

#include "cli/cli.h"
#include "cli/event_printer.h"
#include "cli/table.h"
#include "common/models.h"
#include "common/process_models.h"

namespace modbox {

namespace {

/// A process's id as the CLI takes it: digits, as `ps` prints them.
Result<std::string> process_id_argument(const std::string& text) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos)
    return fail(ErrorKind::bad_request, "'" + text + "' is not a process id: `modbox ps TASK` lists them");
  return text;
}

std::string process_path(const std::string& id, std::string_view action = {}) {
  std::string path = "/modbox/api/processes/" + id;
  if (!action.empty()) path.append("/").append(action);
  return path;
}

/// The first line of a command, with an ellipsis when it has more.
std::string command_column(const std::string& command) {
  std::string line = command.substr(0, command.find('\n'));
  return line.size() < command.size() ? line + "…" : line;
}

void print_process_table(const std::vector<BackgroundProcess>& processes) {
  std::vector<std::vector<std::string>> rows{{"ID", "STATE", "EXIT", "STARTED", "COMMAND"}};
  for (const auto& process : processes)
    rows.push_back({std::to_string(process.id), std::string(to_string(process.state)),
                    process.exit_code ? std::to_string(*process.exit_code) : "-", format_timestamp(process.started_at),
                    command_column(process.command)});
  auto colour = [](std::size_t column, std::string_view cell) {
    return column == 1 ? status_colour(cell) : std::string_view();
  };
  std::fputs(format_columns(rows, {.output = stdout_terminal(), .flexible = {4}, .colour_of = colour}).c_str(), stdout);
}

void add_ps(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("ps", "List a sandbox's background processes (exec --detach)");
  auto task_id = std::make_shared<std::string>();
  command->add_option("task_id", *task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  add_format_option(*command, context);
  command->callback([&context, task_id] {
    context.action = [&context, task_id]() -> Result<int> {
      auto target = sandbox_target(context, *task_id);
      if (!target) return std::unexpected(target.error());
      auto body = target->agent.sandbox_call(target->url, "GET", "/modbox/api/processes");
      if (!body) return std::unexpected(body.error());
      auto id_of = [](const BackgroundProcess& process) { return std::to_string(process.id); };
      return print_list(context, *body, background_processes_from_json, id_of, print_process_table);
    };
  });
}

void add_output(CLI::App& app, CliContext& context) {
  auto* command =
      app.add_subcommand("output", "Print a background process's output (-f: and what it writes next, until it exits)");
  struct Options {
    std::string task_id;
    std::string id;
    bool follow = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("id", options->id, "The process's id (from exec --detach or ps)")->required()->type_name("ID");
  command->add_flag("-f,--follow", options->follow, "Go on printing what it writes until it exits");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto id = process_id_argument(options->id);
      if (!id) return std::unexpected(id.error());
      auto target = sandbox_target(context, options->task_id);
      if (!target) return std::unexpected(target.error());
      std::string path = process_path(*id, "output") + (options->follow ? "?follow=true" : "");
      if (context.json && !options->follow) {
        auto body = target->agent.sandbox_call(target->url, "GET", path);
        if (!body) return std::unexpected(body.error());
        std::printf("%s\n", body->c_str());
        return 0;
      }
      EventPrinter printer;
      // Followed, a process may stay quiet for as long as the sandbox lives (a day at most with a TTL).
      int read_timeout = options->follow ? 8 * 86400 : answer_timeout::standard;
      auto streamed = target->agent.sandbox_events(
          target->url, "GET", path, "",
          [&](std::string_view bytes) {
            if (!context.json) return printer.feed(bytes);
            // --json -f: the event stream itself, for a program to read.
            return std::fwrite(bytes.data(), 1, bytes.size(), stdout) == bytes.size() && std::fflush(stdout) == 0;
          },
          read_timeout);
      if (!streamed) return std::unexpected(streamed.error());
      if (context.json) return 0;
      const auto& ending = printer.ending();
      if (!ending || (ending->name != "exit" && ending->name != "end"))
        return fail(ErrorKind::unavailable, printer.failure("the output of process " + *id));
      auto end = process_read_end_from_json(ending->data);
      if (!end) return std::unexpected(end.error());
      if (end->truncated)
        std::fprintf(stderr, "modbox: older output is gone: the sandbox keeps the last 1 MiB of each stream\n");
      return end->process.exit_code.value_or(0);
    };
  });
}

void add_kill(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("kill", "Send a signal to a background process's whole tree (default SIGTERM)");
  struct Options {
    std::string task_id;
    std::string id;
    std::string signal = "SIGTERM";
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("id", options->id, "The process's id (from exec --detach or ps)")->required()->type_name("ID");
  command->add_option("-s,--signal", options->signal, "Signal name or number: TERM, SIGKILL, 9, ... (default SIGTERM)");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto id = process_id_argument(options->id);
      if (!id) return std::unexpected(id.error());
      auto target = sandbox_target(context, options->task_id);
      if (!target) return std::unexpected(target.error());
      auto body = target->agent.sandbox_call(target->url, "POST", process_path(*id, "signal"),
                                             process_signal_request_to_json(options->signal));
      if (!body) return std::unexpected(body.error());
      if (context.json) std::printf("%s\n", body->c_str());
      return 0;
    };
  });
}

}  // namespace

void add_process_commands(CLI::App& app, CliContext& context) {
  add_ps(app, context);
  add_output(app, context);
  add_kill(app, context);
}

}  // namespace modbox
