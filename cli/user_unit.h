#pragma once
// modboxd as a systemd user service (`modbox agent install-unit`): the unit's text, where it is
// written, and what the user manager says of it. When the unit is enabled for the CLI's own state,
// the CLI starts and stops the agent through systemctl --user, so that the agent lives in the unit's
// cgroup (and not in that of whoever started it: a TTL timer's service, a CI step's shell).

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/paths.h"
#include "common/result.h"

namespace modbox {

inline constexpr const char* agent_unit_name = "modboxd.service";

struct AgentUnitSettings {
  std::string modboxd;                                           // ExecStart: the agent's absolute path
  std::vector<std::pair<std::string, std::string>> environment;  // Environment= lines, in this order
};

/// The unit file (packaging/modboxd.service.in is this with ExecStart=@MODBOXD@ and no environment).
std::string agent_unit_text(const AgentUnitSettings& settings);

/// What install-unit writes for `paths`: the modboxd beside this modbox, and the state and runtime
/// directories (with MODBOX_IMAGES_DIR and MODBOX_RUNTIME when they are set) as the agent's environment.
AgentUnitSettings agent_unit_settings(const AgentPaths& paths);

/// $XDG_CONFIG_HOME/systemd/user/modboxd.service (~/.config when unset): where a user's own units live.
std::filesystem::path user_unit_path();

/// The user manager's view of modboxd.service.
struct AgentUnitState {
  bool loaded = false;   // a unit file exists (the user's, or a package's in /usr/lib/systemd/user)
  bool enabled = false;  // started with the user's manager
  bool active = false;   // running (or starting, or stopping)
  std::map<std::string, std::string> environment;
};

/// Parses `systemctl --user show modboxd.service -p LoadState -p UnitFileState -p ActiveState -p Environment`.
AgentUnitState parse_agent_unit_show(std::string_view output);

/// Whether the agent that the unit runs keeps its state where `paths` says: the unit's environment,
/// else the CLI's own for what it leaves unset, resolved as the agent resolves them.
bool agent_unit_serves(const AgentUnitState& unit, const AgentPaths& paths);

/// Runs `systemctl --user ARGS...` against this user's manager (/run/user/UID, whatever
/// XDG_RUNTIME_DIR says); its output, or an error that carries it.
Result<std::string> systemctl_user(const std::vector<std::string>& arguments);

/// Whether this user's systemd manager can be asked: systemd is PID 1 and the manager's bus exists.
bool user_manager_reachable();

/// Whether this process runs inside a unit of a systemd manager ($INVOCATION_ID): an agent forked
/// here would stay in that unit's cgroup, and live or die with it.
bool inside_systemd_unit();

/// Starts `modboxd` for `paths` as a transient service of the user's manager (systemd-run --user,
/// Type=notify, its output appended to the agent's log, this process's PATH, HOME, XDG_RUNTIME_DIR,
/// MODBOX_IMAGES_DIR and MODBOX_RUNTIME passed on); returns once it serves.
Result<void> start_agent_as_transient_unit(const std::string& modboxd, const AgentPaths& paths);

/// The user manager's view of the unit; nothing when no user manager answers (no systemd as PID 1,
/// no login and no linger).
std::optional<AgentUnitState> query_agent_unit();

/// The unit, when it is enabled and serves `paths`: then the agent is started and stopped through it.
std::optional<AgentUnitState> agent_unit_in_charge(const AgentPaths& paths);

}  // namespace modbox
