// modbox provision | wait | get | list | destroy | extend | exec | logs

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/cli.h"
#include "cli/event_printer.h"
#include "cli/sandbox_list.h"
#include "cli/table.h"
#include "common/models.h"
#include "common/process_models.h"

namespace modbox {

namespace {

std::string when(const std::optional<TimePoint>& time) {
  return time ? format_timestamp(*time) : "-";
}

/// The ports the sandbox asked for: with their URLs once they are served, as a list before.
void print_ports(const Sandbox& sandbox) {
  if (sandbox.ports.empty()) return;
  auto urls = port_urls(sandbox);
  if (urls.empty()) {
    std::string list;
    for (int port : sandbox.ports) list += (list.empty() ? "" : " ") + std::to_string(port);
    std::printf("ports:        %s\n", list.c_str());
    return;
  }
  const char* label = "port_urls:";
  for (int port : sandbox.ports) {
    auto url = urls.find(port);
    std::printf("%-13s %-5d %s\n", label, port, url == urls.end() ? "-" : url->second.c_str());
    label = "";
  }
}

void print_sandbox(const Sandbox& sandbox) {
  std::printf("id:           %s\n", sandbox.id.c_str());
  std::printf("name:         %s\n", sandbox.name.c_str());
  std::printf("status:       %s\n", std::string(to_string(sandbox.status)).c_str());
  std::printf("sandbox_url:  %s\n", sandbox.sandbox_url.value_or("-").c_str());
  print_ports(sandbox);
  std::printf("image:        %s\n", sandbox.image.c_str());
  std::printf("workspace:    %s\n", sandbox.workspace_id.value_or("-").c_str());
  std::printf("created_by:   %s\n", sandbox.created_by.c_str());
  std::printf("created_at:   %s\n", format_timestamp(sandbox.created_at).c_str());
  std::printf(
      "expires_at:   %s%s\n", when(sandbox.expires_at()).c_str(),
      sandbox.ttl_extended_at ? (" (extended at " + format_timestamp(*sandbox.ttl_extended_at) + ")").c_str() : "");
  if (sandbox.idle_timeout_seconds) std::printf("idle_timeout: %d s\n", *sandbox.idle_timeout_seconds);
  if (sandbox.network) std::printf("network:      %s\n", sandbox.network->c_str());
  for (const auto& [key, value] : sandbox.tags) std::printf("tag:          %s=%s\n", key.c_str(), value.c_str());
  std::printf("destroyed_at: %s\n", when(sandbox.destroyed_at).c_str());
  if (sandbox.destroy_reason)
    std::printf("destroy_reason: %s\n", std::string(to_string(*sandbox.destroy_reason)).c_str());
  if (!sandbox.command.empty()) std::printf("command:      %s\n", shell_command(sandbox.command).c_str());
  if (sandbox.exit_code)
    std::printf("exit_code:    %d%s\n", *sandbox.exit_code,
                sandbox.oom_killed.value_or(false) ? " (killed for running out of memory)" : "");
  if (sandbox.progress) std::printf("progress:     %s\n", sandbox.progress->c_str());
  if (sandbox.readiness_probe) {
    const ReadinessState& readiness = sandbox.readiness;
    std::printf("readiness:    %s, %s (%d attempts%s)\n", describe(*sandbox.readiness_probe).c_str(),
                std::string(to_string(readiness.phase)).c_str(), readiness.attempts,
                readiness.last_error ? ("; last error: " + *readiness.last_error).c_str() : "");
  }
  if (sandbox.ready_at)
    std::printf("ready_at:     %s (%lld ms after provision)\n", format_timestamp(*sandbox.ready_at).c_str(),
                static_cast<long long>(sandbox.startup_ms.value_or(0)));
  if (sandbox.memory_mb)
    std::printf("memory:       %d MB, %s\n", *sandbox.memory_mb,
                sandbox.memory_limit_enforced.value_or(false)
                    ? "enforced"
                    : sandbox.memory_limit_detail.value_or("not enforced").c_str());
  if (sandbox.error) std::printf("error:        %s\n", sandbox.error->c_str());
}

/// Prints a sandbox answer: the JSON as is, the URL alone, or the detail.
Result<int> show_sandbox(const CliContext& context, const std::string& body, bool url_only) {
  auto formatted = print_formatted(context, body);
  if (!formatted) return std::unexpected(formatted.error());
  if (*formatted) return 0;
  if (context.json) {
    std::printf("%s\n", body.c_str());
    return 0;
  }
  auto sandbox = sandbox_from_json(body);
  if (!sandbox) return std::unexpected(sandbox.error());
  if (context.quiet)
    std::printf("%s\n", sandbox->name.c_str());
  else if (url_only && sandbox->sandbox_url)
    std::printf("%s\n", sandbox->sandbox_url->c_str());
  else
    print_sandbox(*sandbox);
  return 0;
}

/// On a terminal, prints the sandbox's `progress` (an image pull or build) each time it changes, until
/// `done`: the wait itself is one blocking request.
void report_progress(const AgentClient& agent, const std::string& task_id, const std::atomic<bool>& done) {
  std::string shown;
  while (!done) {
    if (auto body = agent.call("GET", "/sandboxes/detail/" + task_id, "", 5))
      if (auto sandbox = sandbox_from_json(*body); sandbox && sandbox->progress && *sandbox->progress != shown) {
        shown = *sandbox->progress;
        std::fprintf(stderr, "  %s...\n", shown.c_str());
      }
    for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<int> wait_for(const CliContext& context, const AgentClient& agent, const std::string& task_id, int timeout) {
  bool on_terminal = !context.json && ::isatty(2);
  if (on_terminal) std::fprintf(stderr, "waiting for %s to be running (up to %d s)...\n", task_id.c_str(), timeout);
  std::atomic<bool> done = false;
  std::thread reporter;
  if (on_terminal) reporter = std::thread([&] { report_progress(agent, task_id, done); });
  auto body = agent.call("POST", "/sandboxes/wait", wait_request_to_json({task_id, timeout}), timeout + 30);
  done = true;
  if (reporter.joinable()) reporter.join();
  if (!body) return std::unexpected(body.error());
  return show_sandbox(context, *body, true);
}

/// `--tag KEY=VALUE` items as a map; an item without '=' is a usage error.
Result<std::map<std::string, std::string>> parse_tag_options(const std::vector<std::string>& items) {
  std::map<std::string, std::string> tags;
  for (const auto& item : items) {
    auto equals = item.find('=');
    if (equals == std::string::npos || equals == 0)
      return fail(ErrorKind::bad_request, "--tag needs KEY=VALUE, got '" + item + "'");
    tags[item.substr(0, equals)] = item.substr(equals + 1);
  }
  return tags;
}

}  // namespace

std::string shell_command(const std::vector<std::string>& argv) {
  if (argv.size() == 1) return argv.front();
  std::string line;
  for (const auto& arg : argv) {
    bool plain = !arg.empty() &&
                 arg.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@%+=:,./_-") ==
                     std::string::npos;
    std::string quoted = plain ? arg : "'";
    if (!plain) {
      for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
      quoted += "'";
    }
    line += (line.empty() ? "" : " ") + quoted;
  }
  return line;
}

namespace {

void add_provision(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("provision", "Create a sandbox (answers at once unless --wait)");
  struct Options {
    std::string task_id;
    std::optional<int> ttl;
    std::vector<std::string> env;
    std::vector<int> ports;
    std::vector<std::string> tags;
    std::optional<int> idle_timeout;
    std::string network;
    std::string image;
    std::string image_id;
    bool wait = false;
    int timeout = 120;
    std::string command_line;
    std::vector<std::string> argv;
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "Name of the sandbox ([A-Za-z0-9._-], at most 63)")->required();
  command->add_option("--ttl", options->ttl, "Destroy the sandbox after this many seconds (1-86400)");
  command->add_option("-e,--env", options->env, "Environment variable NAME=VALUE (repeatable)");
  command->add_option("--port", options->ports, "Serve this port of the sandbox on a URL of its own (repeatable)")
      ->check(CLI::Range(limits::port_min, limits::port_max));
  command->add_option("--idle-timeout", options->idle_timeout,
                      "Destroy the sandbox after this many seconds without exec, file calls or connections (1-86400)");
  command->add_option("--tag", options->tags, "Tag KEY=VALUE, for list --tag (repeatable)");
  command->add_option("--network", options->network, "none: no network but loopback inside the sandbox")
      ->check(CLI::IsMember({"none"}));
  command->add_option("--image", options->image, "Local image reference (default: modbox/sandbox-lite)");
  command->add_option("--image-id", options->image_id, "Registered image id");
  command->add_flag("--wait", options->wait, "Wait until the sandbox is running and print its URL");
  command->add_option("--timeout", options->timeout, "Seconds --wait waits (default 120)");
  command->add_option("--command", options->command_line,
                      "Run this shell line (/bin/sh -c) as the sandbox's main process; it ends when that exits");
  command->add_option("command", options->argv,
                      "Command and arguments (after --) to run as the sandbox's main process instead of the "
                      "image's; the sandbox ends when it exits");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      ProvisionRequest request{.task_id = options->task_id,
                               .ttl_seconds = options->ttl,
                               .ports = options->ports,
                               .idle_timeout_seconds = options->idle_timeout};
      if (!options->command_line.empty() && !options->argv.empty())
        return fail(ErrorKind::bad_request, "give --command LINE or a command after --, not both");
      if (!options->command_line.empty())
        request.command = {"/bin/sh", "-c", options->command_line};
      else
        request.command = options->argv;
      auto tags = parse_tag_options(options->tags);
      if (!tags) return std::unexpected(tags.error());
      request.tags = std::move(*tags);
      if (!options->network.empty()) request.network = options->network;
      if (!options->image.empty()) request.image = options->image;
      if (!options->image_id.empty()) request.image_id = options->image_id;
      for (const auto& item : options->env) {
        auto equals = item.find('=');
        if (equals == std::string::npos)
          return fail(ErrorKind::bad_request, "--env needs NAME=VALUE, got '" + item + "'");
        request.env_vars[item.substr(0, equals)] = item.substr(equals + 1);
      }
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      auto body = agent->call("POST", "/sandboxes/provision", provision_request_to_json(request));
      if (!body) return std::unexpected(body.error());
      if (options->wait) return wait_for(context, *agent, options->task_id, options->timeout);
      return show_sandbox(context, *body, false);
    };
  });
}

void add_wait(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("wait", "Wait until a sandbox is running; print its URL");
  auto task_id = std::make_shared<std::string>();
  auto timeout = std::make_shared<int>(120);
  command->add_option("task_id", *task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("--timeout", *timeout, "Seconds to wait (default 120)");
  command->callback([&context, task_id, timeout] {
    context.action = [&context, task_id, timeout]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      return wait_for(context, *agent, *task_id, *timeout);
    };
  });
}

void add_get(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("get", "Show one sandbox");
  auto id = std::make_shared<std::string>();
  command->add_option("sandbox", *id, "task_id or sandbox id")->required()->type_name(sandbox_type_name);
  add_format_option(*command, context);
  command->callback([&context, id] {
    context.action = [&context, id]() -> Result<int> {
      auto body = context.call("GET", "/sandboxes/detail/" + *id);
      if (!body) return std::unexpected(body.error());
      return show_sandbox(context, *body, false);
    };
  });
}

/// Prints the answer of GET /sandboxes as `modbox list` shows it: the sandboxes that `selection` keeps,
/// newest first, as the API's JSON (each element as the agent wrote it), names, lines through
/// --format, or a table fitted to the terminal.
Result<int> print_sandbox_list(const CliContext& context, const std::string& body, const ListSelection& selection) {
  auto sandboxes = sandboxes_from_json(body);
  if (!sandboxes) return std::unexpected(sandboxes.error());
  auto listed = listed_sandboxes(*sandboxes, selection);
  if (context.json || !context.format.empty()) {
    nlohmann::json answered = nlohmann::json::parse(body, nullptr, false);
    if (!answered.is_array() || answered.size() != sandboxes->size())
      return fail(ErrorKind::internal, "the agent's list of sandboxes is not a JSON array");
    nlohmann::json shown = nlohmann::json::array();
    for (std::size_t index : listed) shown.push_back(std::move(answered[index]));
    auto formatted = print_formatted(context, shown.dump());
    if (!formatted) return std::unexpected(formatted.error());
    if (!*formatted) std::printf("%s\n", shown.dump().c_str());
    return 0;
  }
  std::vector<Sandbox> shown;
  for (std::size_t index : listed) shown.push_back(std::move((*sandboxes)[index]));
  if (context.quiet) {
    for (const auto& sandbox : shown) std::printf("%s\n", sandbox.name.c_str());
    return 0;
  }
  std::fputs(sandbox_table(shown, std::chrono::system_clock::now(), stdout_terminal()).c_str(), stdout);
  return 0;
}

void add_list(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("list", "List the live sandboxes, newest first (-a: the ended ones too)");
  command->alias("ls");
  struct Options {
    std::string status;
    std::vector<std::string> tags;
    bool all = false;
  };
  auto options = std::make_shared<Options>();
  command->add_flag("-a,--all", options->all, "Show the ended sandboxes too (failed and destroyed)");
  command->add_option("--status", options->status, "Only this status (ended ones included without --all)")
      ->check(CLI::IsMember({"provisioning", "running", "failed", "destroyed"}));
  command->add_option("--tag", options->tags, "Only sandboxes with tag KEY=VALUE (repeatable: all of them)");
  add_format_option(*command, context);
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      std::string query;
      if (!options->status.empty()) query += "&status=" + options->status;
      for (const auto& tag : options->tags) {
        if (tag.find('=') == std::string::npos || tag.front() == '=')
          return fail(ErrorKind::bad_request, "--tag needs KEY=VALUE, got '" + tag + "'");
        query += "&tag=" + percent_encode(tag);
      }
      if (!query.empty()) query[0] = '?';
      auto body = context.call("GET", "/sandboxes" + query);
      if (!body) return std::unexpected(body.error());
      return print_sandbox_list(context, *body, {.all = options->all, .status_given = !options->status.empty()});
    };
  });
}

void add_destroy(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("destroy", "Destroy sandboxes at once");
  command->alias("rm");
  auto task_ids = std::make_shared<std::vector<std::string>>();
  command->add_option("task_id", *task_ids, "The sandboxes' task_ids")->required()->type_name(sandbox_type_name);
  command->callback([&context, task_ids] {
    context.action = [&context, task_ids]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      return for_each_name(
          context, *task_ids, [&](const std::string& task_id) -> Result<std::pair<std::string, std::string>> {
            auto body =
                agent->call("POST", "/sandboxes/destroy", destroy_request_to_json({task_id}), answer_timeout::destroy);
            if (!body) return std::unexpected(body.error());
            return std::pair{*body, task_id};
          });
    };
  });
}

void add_extend(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("extend", "Make a sandbox expire TTL seconds from now");
  struct Options {
    std::string task_id;
    int ttl = 0;
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("--ttl", options->ttl, "Seconds from now until the sandbox is destroyed (1-86400)")->required();
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto body = context.call("POST", "/sandboxes/extend", extend_request_to_json({options->task_id, options->ttl}));
      if (!body) return std::unexpected(body.error());
      return show_sandbox(context, *body, false);
    };
  });
}

struct ExecOptions {
  std::string task_id;
  std::vector<std::string> argv;
  std::optional<int> timeout;
  std::string cwd = "/";
  bool detach = false;
  std::vector<std::string> env;
  bool interactive = false;
  bool tty = false;
};

/// --json: the control API's exec, answered once the command has ended.
Result<int> exec_to_json(const CliContext& context, const ExecOptions& options, int timeout) {
  SandboxExecRequest request{options.task_id, {shell_command(options.argv), timeout * 1000, options.cwd}};
  auto body = context.call("POST", "/sandboxes/exec", sandbox_exec_request_to_json(request), timeout + 30);
  if (!body) return std::unexpected(body.error());
  auto result = exec_result_from_json(*body);
  if (!result) return std::unexpected(result.error());
  std::printf("%s\n", body->c_str());
  return result->exit_code;
}

/// The command's output as it comes, through the sandbox URL's event stream.
Result<int> exec_live(const CliContext& context, const ExecOptions& options, int timeout) {
  auto target = sandbox_target(context, options.task_id);
  if (!target) return std::unexpected(target.error());
  ExecRequest request{shell_command(options.argv), timeout * 1000, options.cwd};
  EventPrinter printer;
  auto streamed = target->agent.sandbox_events(
      target->url, "POST", "/modbox/api/exec", exec_request_to_json(request),
      [&](std::string_view bytes) { return printer.feed(bytes); }, timeout + 30);
  if (!streamed) return std::unexpected(streamed.error());
  if (!printer.ending() || printer.ending()->name != "exit")
    return fail(ErrorKind::unavailable, printer.failure("exec in sandbox '" + options.task_id + "'"));
  auto result = exec_result_from_json(printer.ending()->data);
  if (!result) return std::unexpected(result.error());
  if (result->killed) std::fprintf(stderr, "modbox: command killed after %d s (--timeout)\n", timeout);
  if (result->truncated)
    std::fprintf(stderr, "modbox: output truncated (the sandbox's helper keeps 1 MiB per stream)\n");
  return result->exit_code;
}

/// --detach: a background process; prints its id.
Result<int> exec_detached(const CliContext& context, const ExecOptions& options) {
  ProcessStartRequest request{shell_command(options.argv), options.cwd, {}};
  for (const auto& item : options.env) {
    auto equals = item.find('=');
    if (equals == std::string::npos) return fail(ErrorKind::bad_request, "--env needs NAME=VALUE, got '" + item + "'");
    request.env[item.substr(0, equals)] = item.substr(equals + 1);
  }
  auto target = sandbox_target(context, options.task_id);
  if (!target) return std::unexpected(target.error());
  auto body =
      target->agent.sandbox_call(target->url, "POST", "/modbox/api/processes", process_start_request_to_json(request));
  if (!body) return std::unexpected(body.error());
  auto process = background_process_from_json(*body);
  if (!process) return std::unexpected(process.error());
  if (context.json)
    std::printf("%s\n", body->c_str());
  else
    std::printf("%u\n", process->id);
  return 0;
}

void add_exec(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("exec", "Run a command in a sandbox; exits with the command's status");
  auto options = std::make_shared<ExecOptions>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("command", options->argv, "Command and arguments (after --); one argument is a shell line")
      ->required();
  command->add_option("--timeout", options->timeout, "Seconds before the command is killed (1-30)")
      ->check(CLI::Range(1, 30));
  command->add_option("--cwd", options->cwd, "Working directory in the sandbox (default /)");
  command->add_flag("-d,--detach", options->detach,
                    "Start it as a background process that outlives this command; print its id");
  // One value per -e, so that `-e A=1 -- CMD` ends the option at A=1, not at `--`.
  command->add_option("-e,--env", options->env, "With --detach: environment variable NAME=VALUE (repeatable)")
      ->allow_extra_args(false);
  command->add_flag("-i,--interactive", options->interactive,
                    "Send stdin to the command, its end as the end of input; no --timeout");
  command->add_flag("-t,--tty", options->tty, "Run the command on a terminal (-it: as docker exec -it)");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      if (options->interactive || options->tty) {
        if (options->detach || options->timeout || !options->env.empty())
          return fail(ErrorKind::bad_request, "-i and -t do not go with --detach, --timeout or --env");
        if (options->tty && options->interactive && !::isatty(STDIN_FILENO))
          return fail(ErrorKind::bad_request,
                      "-it needs a terminal on stdin; leave out -t to send stdin through a pipe");
        terminal::SessionOptions session{
            .tty = options->tty, .command = shell_command(options->argv), .cwd = options->cwd};
        return run_sandbox_session(context, options->task_id, session, options->interactive);
      }
      if (options->detach) {
        if (options->timeout)
          return fail(ErrorKind::bad_request,
                      "--timeout does not apply to --detach: a background process runs until "
                      "it exits (modbox kill ends it)");
        return exec_detached(context, *options);
      }
      if (!options->env.empty()) return fail(ErrorKind::bad_request, "--env goes with --detach");
      int timeout = options->timeout.value_or(30);
      return context.json ? exec_to_json(context, *options, timeout) : exec_live(context, *options, timeout);
    };
  });
}

void add_logs(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("logs", "Print the output of a sandbox's main process (-f: as it comes)");
  struct Options {
    std::string id;
    bool follow = false;
    std::optional<int> tail;
  };
  auto options = std::make_shared<Options>();
  command->add_option("sandbox", options->id, "task_id or sandbox id")->required()->type_name(sandbox_type_name);
  command->add_flag("-f,--follow", options->follow, "Go on printing what it writes until the sandbox ends");
  command->add_option("--tail", options->tail, "Only the last N lines of what is kept (the last 1 MiB)")
      ->check(CLI::Range(0, 1000000));
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      std::string path = "/sandboxes/" + percent_encode(options->id) + "/logs";
      std::string query = options->follow ? "follow=true" : "";
      if (options->tail) query += (query.empty() ? "" : "&") + ("tail=" + std::to_string(*options->tail));
      if (!query.empty()) path += "?" + query;
      // A followed log may stay quiet for as long as the sandbox lives (a day at most with a TTL).
      int read_timeout = options->follow ? 8 * 86400 : answer_timeout::standard;
      auto streamed = agent->stream_get(
          path,
          [](std::string_view bytes) {
            std::fwrite(bytes.data(), 1, bytes.size(), stdout);
            return std::fflush(stdout) == 0;
          },
          read_timeout);
      if (!streamed) return std::unexpected(streamed.error());
      return 0;
    };
  });
}

}  // namespace

void add_sandbox_commands(CLI::App& app, CliContext& context) {
  add_provision(app, context);
  add_wait(app, context);
  add_get(app, context);
  add_list(app, context);
  add_destroy(app, context);
  add_extend(app, context);
  add_exec(app, context);
  add_logs(app, context);
}

}  // namespace modbox
