#include "cli/user_unit.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/system.h"
#include "common/unique_fd.h"

namespace modbox {

namespace {

/// A value as systemd reads it in a unit file: '%' starts a specifier, so it is doubled; quoted,
/// with '\' and '"' escaped, so that spaces stay inside the word.
std::string unit_quoted(std::string_view value) {
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '%')
      quoted += "%%";
    else if (c == '\\' || c == '"')
      quoted += std::string("\\") + c;
    else
      quoted += c;
  }
  return quoted + "\"";
}

std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::optional<std::string>(value) : std::nullopt;
}

std::filesystem::path self_directory() {
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::current_path() : self.parent_path();
}

/// Runs argv with `env` added; its combined output and wait status.
Result<std::pair<int, std::string>> run_captured(const std::vector<std::string>& argv,
                                                 const std::vector<std::string>& env) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return std::unexpected(system_error("pipe2", argv[0], errno));
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(system_error("fork", argv[0], errno));
  if (pid == 0) {
    ::dup2(write_end.get(), 1);
    ::dup2(write_end.get(), 2);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::close_range(3, ~0U, 0);
    for (const auto& assignment : env) ::putenv(const_cast<char*>(assignment.c_str()));
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  write_end.reset();
  std::string output;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::read(read_end.get(), buffer, sizeof buffer);
    if (got > 0 && output.size() < (64 << 10)) output.append(buffer, static_cast<std::size_t>(got));
    if (got == 0 || (got < 0 && errno != EINTR)) break;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return std::pair{status, output};
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

std::string agent_unit_text(const AgentUnitSettings& settings) {
  std::string environment;
  for (const auto& [name, value] : settings.environment)
    environment += "Environment=" + unit_quoted(name + "=" + value) + "\n";
  std::string exec_start = settings.modboxd.find_first_of(" \t\"\\%") == std::string::npos
                               ? settings.modboxd
                               : unit_quoted(settings.modboxd);
  return "# modboxd, the modbox agent, as a systemd user service. `modbox agent install-unit` writes one like it\n"
         "# (with the agent's state directories) to ~/.config/systemd/user and runs systemctl --user enable --now\n"
         "# modboxd; on a host where nobody logs in (CI), `loginctl enable-linger USER` keeps the manager running.\n"
         "[Unit]\n"
         "Description=modbox agent: sandboxes on rootless Podman\n"
         "Documentation=man:modboxd(8) man:modbox(1)\n"
         "\n"
         "[Service]\n"
         "Type=notify\n" +
         environment + "ExecStart=" + exec_start +
         "\n"
         "# Only modboxd itself is stopped: sandboxes (their conmon, and on cgroup v1 their processes) live in\n"
         "# this unit's cgroup and keep running while the agent is down, as after `modbox agent stop`.\n"
         "KillMode=process\n"
         "Restart=on-failure\n"
         "RestartSec=2\n"
         "TimeoutStartSec=120\n"
         "\n"
         "[Install]\n"
         "WantedBy=default.target\n";
}

AgentUnitSettings agent_unit_settings(const AgentPaths& paths) {
  AgentUnitSettings settings{.modboxd = (self_directory() / "modboxd").string(), .environment = {}};
  settings.environment.emplace_back("MODBOX_STATE_DIR", std::filesystem::absolute(paths.state_dir).string());
  settings.environment.emplace_back("MODBOX_RUNTIME_DIR", std::filesystem::absolute(paths.runtime_dir).string());
  for (const char* name : {"MODBOX_IMAGES_DIR", "MODBOX_RUNTIME"})
    if (auto value = env_value(name)) settings.environment.emplace_back(name, *value);
  return settings;
}

std::filesystem::path user_unit_path() {
  std::filesystem::path config;
  if (auto home = env_value("XDG_CONFIG_HOME"))
    config = *home;
  else
    config = std::filesystem::path(env_value("HOME").value_or("/")) / ".config";
  return config / "systemd/user" / agent_unit_name;
}

AgentUnitState parse_agent_unit_show(std::string_view output) {
  AgentUnitState state;
  std::istringstream lines{std::string(output)};
  std::string line;
  while (std::getline(lines, line)) {
    auto equals = line.find('=');
    if (equals == std::string::npos) continue;
    std::string key = line.substr(0, equals), value = line.substr(equals + 1);
    if (key == "LoadState")
      state.loaded = value == "loaded";
    else if (key == "UnitFileState")
      state.enabled = value == "enabled" || value == "enabled-runtime";
    else if (key == "ActiveState")
      state.active = value == "active" || value == "activating" || value == "reloading";
    else if (key == "Environment") {
      // Space-separated assignments; one with a space of its own comes quoted, and is taken as it is.
      std::istringstream words(value);
      std::string word;
      while (words >> word)
        if (auto at = word.find('='); at != std::string::npos)
          state.environment[word.substr(0, at)] = word.substr(at + 1);
    }
  }
  return state;
}

bool agent_unit_serves(const AgentUnitState& unit, const AgentPaths& paths) {
  AgentPaths unit_paths = AgentPaths::from_variables([&unit](const char* name) -> std::optional<std::string> {
    if (auto set = unit.environment.find(name); set != unit.environment.end()) return set->second;
    if (std::string_view(name).starts_with("MODBOX_")) return std::nullopt;
    const char* value = std::getenv(name);
    return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
  });
  auto normal = [](const std::filesystem::path& path) {
    auto normalized = std::filesystem::absolute(path).lexically_normal();
    return normalized.has_filename() || normalized == normalized.root_path() ? normalized : normalized.parent_path();
  };
  auto same = [&normal](const std::filesystem::path& a, const std::filesystem::path& b) {
    return normal(a) == normal(b);
  };
  return same(unit_paths.state_dir, paths.state_dir) && same(unit_paths.runtime_dir, paths.runtime_dir);
}

namespace {

/// Runs `tool --user ARGS...` against this user's manager (/run/user/UID, whatever XDG_RUNTIME_DIR says).
Result<std::string> run_user_manager_tool(const std::string& tool, const std::vector<std::string>& arguments) {
  std::string manager = "/run/user/" + std::to_string(::getuid());
  std::vector<std::string> argv = {tool, "--user"};
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  auto ran =
      run_captured(argv, {"XDG_RUNTIME_DIR=" + manager, "DBUS_SESSION_BUS_ADDRESS=unix:path=" + manager + "/bus"});
  if (!ran) return std::unexpected(ran.error());
  auto [status, output] = *ran;
  std::string command = tool + " --user";
  for (const auto& argument : arguments) command += " " + argument;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail(ErrorKind::unavailable, command + " failed" + (output.empty() ? "" : ": " + trimmed(output)));
  return output;
}

}  // namespace

Result<std::string> systemctl_user(const std::vector<std::string>& arguments) {
  return run_user_manager_tool("systemctl", arguments);
}

bool user_manager_reachable() {
  // Without systemd as PID 1 there is no user manager to ask (these development machines).
  std::error_code error;
  return std::filesystem::exists("/run/systemd/system", error) &&
         std::filesystem::exists("/run/user/" + std::to_string(::getuid()) + "/bus", error);
}

bool inside_systemd_unit() {
  return env_value("INVOCATION_ID").has_value();
}

Result<void> start_agent_as_transient_unit(const std::string& modboxd, const AgentPaths& paths) {
  std::vector<std::string> arguments = {
      "--quiet", "--collect", "--unit=modbox-agent-" + std::to_string(::getpid()),
      "--description=modbox agent for " + paths.state_dir.string(), "--property=Type=notify",
      // As the installed unit: stopping it stops modboxd alone, never the sandboxes.
      "--property=KillMode=process", "--property=StandardOutput=append:" + paths.log_file().string(),
      "--property=StandardError=append:" + paths.log_file().string()};
  for (const char* name : {"PATH", "HOME", "XDG_RUNTIME_DIR", "MODBOX_IMAGES_DIR", "MODBOX_RUNTIME"})
    if (env_value(name)) arguments.push_back(std::string("--setenv=") + name);
  arguments.insert(arguments.end(), {modboxd, "--state-dir=" + std::filesystem::absolute(paths.state_dir).string(),
                                     "--runtime-dir=" + std::filesystem::absolute(paths.runtime_dir).string()});
  if (auto started = run_user_manager_tool("systemd-run", arguments); !started) return std::unexpected(started.error());
  return {};
}

std::optional<AgentUnitState> query_agent_unit() {
  if (!user_manager_reachable()) return std::nullopt;
  auto shown = systemctl_user(
      {"show", agent_unit_name, "-p", "LoadState", "-p", "UnitFileState", "-p", "ActiveState", "-p", "Environment"});
  if (!shown) return std::nullopt;
  return parse_agent_unit_show(*shown);
}

std::optional<AgentUnitState> agent_unit_in_charge(const AgentPaths& paths) {
  auto unit = query_agent_unit();
  if (!unit || !unit->loaded || !unit->enabled || !agent_unit_serves(*unit, paths)) return std::nullopt;
  return unit;
}

}  // namespace modbox
