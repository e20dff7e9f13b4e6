#pragma once
// How the helper runs one exec command: through a shim, one per exec, between the helper and the
// command's shell, so that a timeout or a cancel kills every process the command started, also
// those that left its process group or session (`setsid sleep 999 &`).
//
//   helper ── shim (own process group, child subreaper) ── shell (leads a new session) ── ...
//
// The helper forks the shim; the shim closes every descriptor but the shell's stdio, forks and
// execs the shell, then waits for one of two things:
//   - the shell exits: the shim exits the same way (the same status, or the same signal), so the
//     helper reads the command's status from the shim's. Background jobs live on (as they do after
//     `docker exec`); once the shim is gone they are the helper's orphans.
//   - kill_tree_signal from the helper: the shim SIGKILLs the command's process group, then, round
//     after round until it has no child left, every child it has (and the group each leads), and
//     reaps them. Because the shim is a subreaper, every orphan of the tree (a process whose parent
//     died, whatever its group or session) becomes its child, so nothing escapes. Then it kills
//     itself with SIGKILL, which the helper reports as the command's end.
// The shim is not in the command's process group, so group signals the command sends (`kill 0`,
// `kill -- -$$`) do not reach it, and the shell stays the leader of its own session and group.
// If the shim has not exited kill_tree_grace after the request (stopped by the sandbox's code,
// say), the helper kills it, its children and their groups itself: force_kill_tree().

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <string>

#include "agent/helper/os.h"
#include "agent/helper/user.h"

namespace modbox::helper {

/// What the helper sends a shim to have its command's whole tree killed. Sent by anyone else, the
/// shim ignores it.
inline constexpr int kill_tree_signal = SIGUSR1;
/// How long a shim has to kill the tree before the helper kills it.
inline constexpr auto kill_tree_grace = std::chrono::seconds(1);

/// Where a command runs and with what.
struct ShellCommand {
  std::string shell;  // absolute path of bash or sh
  std::string command;
  std::string cwd;
  const SandboxUser* user = nullptr;  // who the shell runs as; null: as the helper (root)
};

struct RunningCommand {
  pid_t pid = -1;  // the shim: it ends as the command ends, and leads a process group of its own
  UniqueFd stdout_fd;
  UniqueFd stderr_fd;
};

/// Runs `shell -c command` under a new shim, in a new session, in `cwd`, as `user`, with stdin from
/// /dev/null and the helper's own environment. A cwd that cannot be entered makes the command exit
/// with status 1 and a message on its stderr; a user it cannot become, with 126; a shell that
/// cannot run, with 127. The shim itself stays root, out of the user's reach.
Result<RunningCommand> spawn_shell(const ShellCommand& command);

/// Asks the shim `shim` to kill its command's whole tree (kill_tree_signal).
void request_kill_tree(pid_t shim);

/// In a child subreaper with SIGCHLD blocked (a shim, a session's worker): SIGKILLs process group
/// `group`, then, round after round until the caller has no child left, every child it has and the
/// group each leads, and reaps them. Orphans of the tree come to the caller as the processes
/// between them die, whatever their group or session, so nothing escapes.
void kill_subreaper_tree(pid_t group);

/// The helper's fallback when a shim did not end in time: SIGKILL to the shim's children and the
/// process groups they lead, then to the shim's own group.
void force_kill_tree(pid_t shim);

}  // namespace modbox::helper
