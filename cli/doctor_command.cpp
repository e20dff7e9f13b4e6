// modbox doctor: gathers the facts cli/doctor.h judges (Podman's own answers, files under /etc, /dev
// and /run, free space, the agent's status) and prints the verdicts. Never starts the agent, and asks
// Podman at most twice, so it answers in about a second.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cli/cli.h"
#include "cli/doctor.h"
#include "common/paths.h"
#include "common/system.h"
#include "common/unique_fd.h"

namespace modbox {

namespace {

struct Captured {
  int status = -1;  // the exit status; -1: did not exit by itself within the time
  std::string out;
  std::string err;
};

/// Runs argv (found in PATH) with stdin from /dev/null and both outputs captured, killing it after
/// `timeout`.
Result<Captured> run_captured(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return std::unexpected(system_error("pipe2", argv.front(), errno));
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return std::unexpected(system_error("pipe2", argv.front(), errno));
  UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(system_error("fork", argv.front(), errno));
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(out_write.get(), 1);
    ::dup2(err_write.get(), 2);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  out_write.reset();
  err_write.reset();
  Captured captured;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true;
  bool err_open = true;
  bool timed_out = false;
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{out_open ? out_read.get() : -1, POLLIN, 0}, {err_open ? err_read.get() : -1, POLLIN, 0}};
    int ready = ::poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    char buffer[16384];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0)
        (i == 0 ? captured.out : captured.err).append(buffer, static_cast<std::size_t>(got));
      else
        (i == 0 ? out_open : err_open) = false;
    }
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!timed_out && WIFEXITED(status)) captured.status = WEXITSTATUS(status);
  if (timed_out) captured.err = "no answer within " + std::to_string(timeout.count() / 1000) + " s";
  return captured;
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

std::optional<std::string> env(const char* name) {
  return process_environment(name);
}

bool path_exists(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

/// Free space for this user at `path`, or at its nearest existing parent (what it will be created on).
DiskSpace space_at(const std::filesystem::path& path) {
  DiskSpace space{path.string(), std::nullopt, ""};
  std::filesystem::path probe = path;
  while (!probe.empty() && !path_exists(probe) && probe != probe.parent_path()) probe = probe.parent_path();
  struct statvfs info {};
  if (::statvfs(probe.c_str(), &info) != 0) {
    space.error = std::strerror(errno);
    return space;
  }
  space.available_bytes = static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize;
  return space;
}

/// Why the agent could not keep its state at `path`, or empty: it must be a writable directory, or be
/// creatable under the nearest parent that exists.
std::string state_dir_problem(const std::filesystem::path& path) {
  std::error_code error;
  auto status = std::filesystem::status(path, error);
  if (std::filesystem::is_directory(status))
    return ::access(path.c_str(), W_OK | X_OK) == 0 ? "" : "it is not writable by this user";
  if (std::filesystem::exists(status)) return "it exists and is not a directory";
  for (auto parent = path.parent_path(); !parent.empty(); parent = parent.parent_path()) {
    auto parent_status = std::filesystem::status(parent, error);
    if (std::filesystem::is_directory(parent_status))
      return ::access(parent.c_str(), W_OK | X_OK) == 0
                 ? ""
                 : "it cannot be created: " + parent.string() + " is not writable";
    if (std::filesystem::exists(parent_status))
      return "it cannot be created: " + parent.string() + " is not a directory";
    if (parent == parent.parent_path()) break;
  }
  return "";
}

void gather_podman(DoctorFacts& facts) {
  auto podman = find_in_path("podman");
  if (!podman) return;
  facts.podman_path = *podman;
  // As images/prepare-host: the first podman run creates the storage, and its driver sticks.
  auto config_home = env("XDG_CONFIG_HOME").value_or(env("HOME").value_or("/") + "/.config");
  auto data_home = env("XDG_DATA_HOME").value_or(env("HOME").value_or("/") + "/.local/share");
  facts.storage_conf_path = config_home + "/containers/storage.conf";
  facts.storage_configured =
      facts.root || path_exists(facts.storage_conf_path) || path_exists(data_home + "/containers/storage");
  if (!facts.storage_configured) {
    if (auto version = run_captured({"podman", "--version"}, std::chrono::seconds(5)); version && version->status == 0)
      facts.podman_version_line = first_line(version->out);
    return;
  }
  auto info = run_captured({"podman", "info", "--format", "json"}, std::chrono::seconds(10));
  if (!info) {
    facts.podman_error = info.error().message;
    return;
  }
  if (info->status != 0) {
    facts.podman_error = first_line(info->err.empty() ? info->out : info->err);
    return;
  }
  auto parsed = parse_podman_info(info->out);
  if (!parsed) {
    facts.podman_error = parsed.error().message;
    return;
  }
  facts.podman = *parsed;
  facts.graph_root_space = space_at(parsed->graph_root);
  auto images = run_captured({"podman", "images", "--format", "json"}, std::chrono::seconds(10));
  if (images && images->status == 0)
    if (auto names = parse_podman_image_names(images->out)) facts.built_images = *names;
}

void gather_agent(DoctorFacts& facts, const CliContext& context) {
  AgentClient agent = context.client();
  facts.api_url = agent.api_url();
  facts.api_url_origin = context.settings.api_url.origin;
  facts.agent_log = agent.paths().log_file().string();
  auto reply = agent.send("GET", "/agent/status", "", 2);
  if (reply && reply->status == 200) {
    if (auto status = agent_status_from_json(reply->body)) {
      facts.agent = AgentState::answering;
      facts.agent_status = *status;
      return;
    }
  }
  if (facts.api_url) {
    facts.agent = AgentState::unreachable;
    facts.agent_error =
        reply ? "HTTP " + std::to_string(reply->status) + ": " + first_line(reply->body) : reply.error().message;
    return;
  }
  facts.agent = agent_alive(agent.paths()) ? AgentState::busy : AgentState::not_running;
}

DoctorFacts gather_facts(const CliContext& context) {
  DoctorFacts facts;
  facts.user = current_user_name();
  facts.uid = ::geteuid();
  facts.root = facts.uid == 0;
  if (auto images = find_images_dir()) facts.images_dir = images->string();
  facts.cgroup_layout = detect_cgroup_layout();
  facts.has_crun = find_in_path("crun").has_value();
  facts.has_runc = find_in_path("runc").has_value() || path_exists("/usr/sbin/runc");
  if (auto text = read_file("/etc/subuid", 4 << 20)) facts.subuid_text = *text;
  if (auto text = read_file("/etc/subgid", 4 << 20)) facts.subgid_text = *text;
  facts.tun_exists = path_exists("/dev/net/tun");
  facts.tun_usable = ::access("/dev/net/tun", R_OK | W_OK) == 0;
  facts.systemd_booted = path_exists("/run/systemd/system");
  std::filesystem::path manager_dir = "/run/user/" + std::to_string(facts.uid);
  facts.user_manager_bus = path_exists(manager_dir / "bus") || path_exists(manager_dir / "systemd/private");
  facts.systemd_run_installed = find_in_path("systemd-run").has_value();

  AgentPaths paths = AgentPaths::from_environment();
  facts.state_dir_from_environment = env("MODBOX_STATE_DIR").has_value();
  facts.state_dir_space = space_at(paths.state_dir);
  facts.state_dir_problem = state_dir_problem(paths.state_dir);

  gather_podman(facts);
  gather_agent(facts, context);
  return facts;
}

void print_checks(const std::vector<DoctorCheck>& checks) {
  int problems = 0;
  int warnings = 0;
  for (const auto& check : checks) {
    std::printf("%-8s %-16s %s\n", to_string(check.status), check.name.c_str(), check.detail.c_str());
    if (!check.fix.empty()) std::printf("%-8s %-16s fix: %s\n", "", "", check.fix.c_str());
    problems += check.status == CheckStatus::problem;
    warnings += check.status == CheckStatus::warning;
  }
  if (problems > 0)
    std::printf("%d problem%s block provisioning; run the fix shown for each, then modbox doctor again\n", problems,
                problems == 1 ? "" : "s");
  else
    std::printf("ready to provision (%d warning%s)\n", warnings, warnings == 1 ? "" : "s");
}

}  // namespace

void add_doctor_command(CLI::App& app, CliContext& context) {
  app.add_subcommand("doctor",
                     "Check this host for sandboxes: each problem with the command that fixes it (exit 1: a problem)")
      ->callback([&context] {
        context.action = [&context]() -> Result<int> {
          auto checks = diagnose(gather_facts(context));
          if (context.json)
            std::printf("%s\n", doctor_checks_to_json(checks).c_str());
          else if (context.quiet) {
            for (const auto& check : checks)
              if (check.status != CheckStatus::ok) std::printf("%s\n", check.name.c_str());
          } else
            print_checks(checks);
          return doctor_exit_status(checks);
        };
      });
}

}  // namespace modbox
