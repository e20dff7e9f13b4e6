#pragma once
// The real modbox-helper binary as a child of the test, serving on a socket in a temp dir with a
// clean environment, for the tests that drive it through the agent's helper client.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/helper_client.h"
#include "tests/unit/test_support.h"

namespace modbox::testing {

class HelperProcess {
 public:
  /// Starts the helper (with `options` before `-- entrypoint`) and waits until it answers a ping.
  explicit HelperProcess(std::vector<std::string> entrypoint = {}, std::vector<std::string> options = {});
  /// Kills the helper and what a failed test left running: the commands' shims, their groups, orphans.
  ~HelperProcess();
  HelperProcess(const HelperProcess&) = delete;
  HelperProcess& operator=(const HelperProcess&) = delete;

  /// The helper's wait status once it has exited on its own within `timeout`; nullopt otherwise.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  /// SIGTERM, then the helper's exit status.
  int terminate();

  Result<ExecResult> exec(const std::string& command, int timeout_ms = 10000, const std::string& cwd = "/");
  ExecResult run(const std::string& command, int timeout_ms = 10000, const std::string& cwd = "/");
  pid_t pid() const { return pid_; }
  SandboxHelpers& client() { return *client_; }
  const std::filesystem::path& socket() const { return socket_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::filesystem::path socket_;
  std::unique_ptr<SandboxHelpers> client_ = make_helper_client();
  pid_t pid_ = -1;
};

bool process_gone(pid_t pid);

/// Kills, at the end of a test, the processes it learned of that are still there: a test that
/// fails must not leave them running on the host.
struct KillLeftovers {
  std::vector<pid_t> pids;
  ~KillLeftovers();
};

}  // namespace modbox::testing
