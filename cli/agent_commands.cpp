// modbox agent start | stop | restart | status | logs | env | reap | install-unit | uninstall-unit

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include "cli/agent_log.h"
#include "cli/cli.h"
#include "cli/exit_codes.h"
#include "cli/user_unit.h"
#include "common/models.h"
#include "common/system.h"

namespace modbox {

namespace {

Result<AgentStatus> fetch_status(const AgentClient& agent) {
  auto body = agent.call("GET", "/agent/status", "", 10);
  if (!body) return std::unexpected(body.error());
  return agent_status_from_json(*body);
}

void print_status(const CliContext& context, const AgentStatus& status) {
  if (context.json) {
    std::printf("%s\n", agent_status_to_json(status).c_str());
    return;
  }
  std::printf("modboxd %s running (pid %d, user %s)\n", status.version.c_str(), status.pid, status.user.c_str());
  std::printf("  socket:    %s\n", status.socket_path.c_str());
  std::printf("  api url:   %s\n", status.api_url.value_or("(tcp disabled)").c_str());
  std::printf("  e2b envd:  %s\n", status.e2b_url.value_or("(disabled)").c_str());
  std::printf("  state:     %s\n", status.state_dir.c_str());
  std::printf("  podman:    %s (%s, runtime %s)\n", status.podman_ready ? "ready" : "NOT READY",
              status.podman_detail.c_str(), status.runtime.c_str());
  std::printf("  sandboxes: %zu live\n", status.live_sandboxes);
  if (status.ttl_layers.empty()) return;
  std::printf("  ttl layers:\n");
  for (const auto& layer : status.ttl_layers) {
    std::string name = layer.name;
    std::replace(name.begin(), name.end(), '_', ' ');
    std::printf("    %-15s %s: %s\n", name.c_str(), layer.active ? "active" : "MISSING", layer.detail.c_str());
  }
}

std::optional<pid_t> recorded_pid(const AgentPaths& paths) {
  auto text = read_file(paths.pid_file(), 64);
  if (!text) return std::nullopt;
  try {
    pid_t pid = std::stoi(*text);
    return pid > 0 ? std::optional(pid) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// Starting, stopping and reading the log are for an agent of this machine's user, not one reached
/// at a URL.
Result<void> refuse_remote(const AgentClient& agent, const std::string& what) {
  if (!agent.api_url()) return {};
  return fail(ErrorKind::bad_request,
              "cannot " + what + " modboxd at " + *agent.api_url() +
                  ": it is reached over TCP (api_url), not started by this modbox; "
                  "unset MODBOX_API_URL (or `modbox config unset api_url`) for the local agent");
}

/// Stops the local agent; `report`: say so on standard output (unless -q).
Result<int> stop_agent(const CliContext& context, bool report) {
  AgentClient agent = context.client();
  if (auto local = refuse_remote(agent, "stop"); !local) return std::unexpected(local.error());
  // An agent of the unit is stopped through systemd, which would otherwise restart one that failed, and
  // reports it stopped. One started outside the unit (before it was enabled) is stopped below.
  if (auto unit = agent_unit_in_charge(agent.paths()); unit && unit->active) {
    if (auto stopped = systemctl_user({"stop", agent_unit_name}); !stopped) return std::unexpected(stopped.error());
    if (!agent_alive(agent.paths())) {
      if (report && !context.quiet)
        std::printf("modboxd stopped (systemctl --user stop modboxd; sandboxes keep running)\n");
      return 0;
    }
  }
  auto pid = recorded_pid(agent.paths());
  // The pid file may be stale and its pid reused: the lock says whether that agent still lives.
  if (!pid || ::kill(*pid, 0) != 0 || !agent_alive(agent.paths())) {
    if (report && !context.quiet) std::printf("modboxd is not running\n");
    return 0;
  }
  if (::kill(*pid, SIGTERM) != 0) return std::unexpected(system_error("kill", std::to_string(*pid), errno));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (::kill(*pid, 0) == 0 || errno != ESRCH) {
    if (std::chrono::steady_clock::now() > deadline)
      return fail(ErrorKind::timeout, "modboxd (pid " + std::to_string(*pid) + ") did not stop within 30 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (report && !context.quiet) std::printf("modboxd stopped (sandboxes keep running)\n");
  return 0;
}

Result<int> start_agent(const CliContext& context) {
  AgentClient agent = context.client();
  if (auto local = refuse_remote(agent, "start"); !local) return std::unexpected(local.error());
  if (auto ready = agent.ensure_agent(false); !ready) return std::unexpected(ready.error());
  auto status = fetch_status(agent);
  if (!status) return std::unexpected(status.error());
  print_status(context, *status);
  return 0;
}

Result<int> install_unit(const CliContext& context, bool print_only) {
  AgentClient agent = context.client();
  AgentUnitSettings settings = agent_unit_settings(agent.paths());
  std::string text = agent_unit_text(settings);
  if (print_only) {
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  if (::access(settings.modboxd.c_str(), X_OK) != 0)
    return fail(ErrorKind::not_found, "there is no modboxd beside this modbox (" + settings.modboxd + ")");
  std::string user = current_user_name();
  if (!query_agent_unit())
    return fail(ErrorKind::unavailable, "no systemd user manager answers for " + user +
                                            ": log in, or keep one running without a login with `sudo loginctl "
                                            "enable-linger " +
                                            user + "` (systemd must be PID 1)");
  std::filesystem::path path = user_unit_path();
  if (auto made = make_directories(path.parent_path(), 0755); !made) return std::unexpected(made.error());
  if (auto written = write_file_atomic(path, text, 0644); !written) return std::unexpected(written.error());
  if (auto reloaded = systemctl_user({"daemon-reload"}); !reloaded) return std::unexpected(reloaded.error());
  // An agent started outside the unit holds the state lock, and the unit's would exit at once: it goes
  // first (its sandboxes keep running, and the unit's agent picks them up).
  auto unit = query_agent_unit();
  if (unit && !unit->active && agent_alive(agent.paths())) {
    CliContext quiet = context;
    quiet.quiet = true;
    if (auto stopped = stop_agent(quiet, false); !stopped) return std::unexpected(stopped.error());
  }
  if (auto enabled = systemctl_user({"enable", "--now", agent_unit_name}); !enabled)
    return std::unexpected(with_context(enabled.error(), "journalctl --user -u modboxd says why"));
  if (auto ready = agent.ensure_agent(false); !ready) return std::unexpected(ready.error());
  if (context.json)
    std::printf("{\"unit_file\":\"%s\",\"enabled\":true}\n", path.c_str());
  else if (!context.quiet)
    std::printf("wrote %s; modboxd.service is enabled and running (systemctl --user status modboxd)\n", path.c_str());
  return 0;
}

Result<int> uninstall_unit(const CliContext& context) {
  std::filesystem::path path = user_unit_path();
  std::error_code error;
  bool existed = std::filesystem::exists(path, error);
  if (query_agent_unit()) {
    if (auto disabled = systemctl_user({"disable", "--now", agent_unit_name}); !disabled && existed)
      return std::unexpected(disabled.error());
  }
  if (existed && !std::filesystem::remove(path, error))
    return std::unexpected(system_error("unlink", path.string(), error.value()));
  if (existed && query_agent_unit()) (void)systemctl_user({"daemon-reload"});
  if (!context.quiet)
    std::printf(existed ? "removed %s; modboxd is stopped (sandboxes keep running)\n" : "%s was not installed\n",
                path.c_str());
  return 0;
}

}  // namespace

void add_agent_commands(CLI::App& app, CliContext& context) {
  auto* group = app.add_subcommand("agent", "Start, stop and inspect the modboxd agent");
  group->require_subcommand(1);

  group->add_subcommand("start", "Start modboxd in the background (no-op when running)")->callback([&context] {
    context.action = [&context] { return start_agent(context); };
  });

  group->add_subcommand("stop", "Stop modboxd; sandboxes keep running")->callback([&context] {
    context.action = [&context] { return stop_agent(context, true); };
  });

  group->add_subcommand("restart", "Stop modboxd and start it again; sandboxes keep running")->callback([&context] {
    context.action = [&context]() -> Result<int> {
      if (auto stopped = stop_agent(context, false); !stopped) return stopped;
      return start_agent(context);
    };
  });

  group
      ->add_subcommand("status", "Show whether modboxd runs and how it is doing (exit 3: not running or not answering)")
      ->callback([&context] {
        context.action = [&context]() -> Result<int> {
          AgentClient agent = context.client();
          auto status = fetch_status(agent);
          if (!status) {
            if (status.error().kind != ErrorKind::unavailable) return std::unexpected(status.error());
            if (agent_alive(agent.paths()))
              return fail(ErrorKind::unavailable,
                          "modboxd is running but did not answer (busy, or still starting): " + status.error().message);
            if (context.json)
              std::printf("{\"running\":false}\n");
            else
              std::printf("modboxd is not running\n");
            return exit_status::agent_unavailable;
          }
          print_status(context, *status);
          return 0;
        };
      });

  struct LogsOptions {
    bool follow = false;
    std::optional<std::size_t> tail;
  };
  auto logs_options = std::make_shared<LogsOptions>();
  auto* logs = group->add_subcommand("logs", "Print the log of the agents modbox starts (agent.log)");
  logs->add_flag("-f,--follow", logs_options->follow, "Then print what is appended, until interrupted");
  logs->add_option("--tail", logs_options->tail, "Only the last N lines")->check(CLI::NonNegativeNumber);
  logs->callback([&context, logs_options] {
    context.action = [&context, logs_options]() -> Result<int> {
      AgentClient agent = context.client();
      if (auto local = refuse_remote(agent, "read the log of"); !local) return std::unexpected(local.error());
      LogOptions options{.tail = logs_options->tail, .follow = logs_options->follow};
      auto read = read_agent_log(agent.paths().log_file(), options, [](std::string_view data) {
        std::fwrite(data.data(), 1, data.size(), stdout);
        std::fflush(stdout);
      });
      if (!read) return std::unexpected(read.error());
      return 0;
    };
  });

  group->add_subcommand("reap", "Destroy the sandboxes whose TTL ran out now (what the systemd TTL timers run)")
      ->callback([&context] {
        context.action = [&context]() -> Result<int> {
          // Starting an agent is half the work: its reconcile destroys what expired while none ran.
          auto body = context.call("POST", "/sandboxes/reap", "", answer_timeout::destroy);
          if (!body) return std::unexpected(body.error());
          return print_list(context, *body, sandboxes_from_json, &Sandbox::name, [](const std::vector<Sandbox>& list) {
            for (const auto& sandbox : list)
              std::printf("destroyed %s (%s)\n", sandbox.name.c_str(),
                          sandbox.destroy_reason ? std::string(to_string(*sandbox.destroy_reason)).c_str() : "-");
          });
        };
      });

  auto print_only = std::make_shared<bool>(false);
  auto* install = group->add_subcommand(
      "install-unit",
      "Write modboxd's systemd user unit to ~/.config/systemd/user and enable it (systemctl --user enable --now "
      "modboxd); agent start and stop then go through systemctl");
  install->add_flag("--print", *print_only, "Print the unit instead of writing and enabling it");
  install->callback([&context, print_only] {
    context.action = [&context, print_only] { return install_unit(context, *print_only); };
  });
  group->add_subcommand("uninstall-unit", "Disable and stop modboxd's user unit and remove its file")
      ->callback([&context] { context.action = [&context] { return uninstall_unit(context); }; });

  auto e2b = std::make_shared<bool>(false);
  auto* env = group->add_subcommand(
      "env", "Print MODBOX_API_URL and MODBOX_API_TOKEN (with --e2b, E2B's variables) for `eval $(modbox agent env)`");
  env->add_flag("--e2b", *e2b,
                "Print E2B_API_URL, E2B_SANDBOX_URL, E2B_DOMAIN and E2B_API_KEY instead, for E2B's SDKs");
  env->callback([&context, e2b] {
    context.action = [&context, e2b]() -> Result<int> {
      auto agent = context.running_client();
      if (!agent) return std::unexpected(agent.error());
      auto status = fetch_status(*agent);
      if (!status) return std::unexpected(status.error());
      if (!status->api_url)
        return fail(ErrorKind::conflict,
                    "modboxd runs without TCP (--no-tcp): use its unix socket " + status->socket_path);
      if (*e2b && (!status->e2b_url || !status->e2b_domain))
        return fail(ErrorKind::conflict, "modboxd runs without E2B's envd (--no-e2b): restart it without that flag");
      auto token = read_file(agent->paths().token_file(), 4096);
      if (!token) return std::unexpected(token.error());
      std::string value = *token;
      while (!value.empty() && value.back() == '\n') value.pop_back();
      if (*e2b) {
        // The control plane lives under /e2b of the control API (E2B's SDKs keep a path in E2B_API_URL),
        // so that its routes never meet modbox's own.
        std::printf(
            "E2B_API_URL=%s/e2b\nE2B_SANDBOX_URL=%s\nE2B_DOMAIN=%s\nE2B_API_KEY=%s\n"
            "export E2B_API_URL E2B_SANDBOX_URL E2B_DOMAIN E2B_API_KEY\n",
            status->api_url->c_str(), status->e2b_url->c_str(), status->e2b_domain->c_str(), value.c_str());
        return 0;
      }
      std::printf("MODBOX_API_URL=%s\nMODBOX_API_TOKEN=%s\nexport MODBOX_API_URL MODBOX_API_TOKEN\n",
                  status->api_url->c_str(), value.c_str());
      return 0;
    };
  });
}

}  // namespace modbox
