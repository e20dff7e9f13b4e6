#pragma once
// Child processes of the agent: spawned with an explicit environment and output file, owned by PID.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/system.h"  // find_in_path, which the agent's callers of spawn_process use

namespace modbox {

struct SpawnOptions {
  std::vector<std::string> argv;
  std::map<std::string, std::string> extra_env;  // added to (or replacing in) the agent's environment
  std::string output_file;                         // stdout and stderr appended here; empty: /dev/null
  bool new_session = false;                        // detach from the caller's terminal and process group
  bool die_with_parent = false;                    // SIGTERM the child when the spawning thread dies
};

/// Starts argv[0] (searched in PATH). The child's stdin is /dev/null.
Result<pid_t> spawn_process(const SpawnOptions& options);

/// Waits for `pid` to exit; returns its wait status. With a timeout, returns nullopt when it is still running.
std::optional<int> wait_process(pid_t pid, std::optional<std::chrono::milliseconds> timeout = std::nullopt);

/// "exited with status 1" / "killed by signal 9".
std::string describe_wait_status(int status);

}  // namespace modbox
