#pragma once
// Integration test harness: a real modboxd with its own state in a temp dir, driven over its
// real sockets, with real Podman underneath. Everything it starts is stopped and removed in
// destructors, so a failing test cleans up too.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/agent_client.h"

namespace modbox::test {

using nlohmann::json;
using namespace std::chrono_literals;

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs argv (PATH lookup) with extra environment, killing it after `timeout`.
CommandResult run_command(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                          std::chrono::seconds timeout = 120s);

/// Where modbox and modboxd are: $MODBOX_BIN_DIR, else the build tree.
std::string bin_dir();

/// A name no other test run uses: prefix + pid + counter.
std::string unique_name(const std::string& prefix);

/// A local temp directory removed whatever happens.
struct LocalDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / unique_name("local");
  LocalDir() { std::filesystem::create_directories(path); }
  ~LocalDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

/// Writes `size` pseudo-random bytes (the same for the same seed) to `path`; returns `path`.
std::filesystem::path write_random_file(const std::filesystem::path& path, std::size_t size, unsigned seed = 7);

/// The peak resident memory of process `pid` so far, in KiB (VmHWM); -1 when unknown.
long peak_memory_kib(pid_t pid);

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 50ms);

/// A command running in the background whose stdout is read line by line as the lines arrive, each with
/// the wall-clock time it was read (comparable with times other processes report). stdin is /dev/null;
/// stderr is kept. Killed (SIGKILL) and reaped when destroyed.
class BackgroundProcess {
 public:
  struct Line {
    std::string text;  // without the newline
    std::chrono::system_clock::time_point arrived;
  };
  explicit BackgroundProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  /// The next line of stdout; nullopt when stdout ended or `timeout` passed first.
  std::optional<Line> next_line(std::chrono::milliseconds timeout);
  /// What the process wrote to stderr so far.
  std::string errors() const;
  /// Whether stdout has ended (the process closed it or exited) and every line of it was taken.
  bool output_ended() const { return stdout_ended_ && pending_.find('\n') == std::string::npos; }
  /// Waits up to `timeout` for the process to exit: its exit code (128 + n for signal n), or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::filesystem::path stderr_path_;
  std::string pending_;
  bool stdout_ended_ = false;
  std::optional<int> exit_code_;
};

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string body;
  std::map<std::string, std::string> headers;
  json json_body() const { return json::parse(body, nullptr, false); }
};

/// One HTTP request to a URL like http://127.0.0.1:PORT (no TLS).
HttpReply http_request(const std::string& base_url, const std::string& method, const std::string& path,
                       const std::string& body = "", const std::map<std::string, std::string>& headers = {},
                       std::chrono::seconds timeout = 60s);

class TestAgent {
 public:
  TestAgent();
  ~TestAgent();
  TestAgent(const TestAgent&) = delete;
  TestAgent& operator=(const TestAgent&) = delete;

  /// Starts modboxd and waits until it and its Podman service answer.
  void start(const std::vector<std::string>& extra_args = {});
  /// Extra environment for the agent (and so its Podman service and image builds) and for podman():
  /// an XDG_CONFIG_HOME with a containers/storage.conf gives them a storage of their own. Set before start().
  void set_environment(std::map<std::string, std::string> environment) { environment_ = std::move(environment); }
  /// SIGTERM and wait.
  void stop();
  /// SIGKILL, as a crash would.
  void kill9();
  pid_t pid() const { return pid_; }
  /// The agent's podman service process (its child), or -1.
  pid_t podman_service_pid() const;

  /// A control API request over the unix socket.
  HttpReply api(const std::string& method, const std::string& path, const std::string& body = "",
                const std::optional<std::string>& workspace = std::nullopt, std::chrono::seconds timeout = 60s) const;
  /// Provisions and waits until running; returns the sandbox JSON.
  json provision_running(const std::string& task_id, const json& extra = json::object());

  /// Runs the `modbox` CLI against this agent.
  CommandResult cli(const std::vector<std::string>& args, std::chrono::seconds timeout = 120s) const;
  /// Runs the `podman` CLI as the same user (shares the user's storage with the agent).
  CommandResult podman(const std::vector<std::string>& args) const;
  /// States of the containers that carry label io.modbox.sandbox=<id>: empty when none.
  std::vector<std::string> container_states(const std::string& sandbox_id) const;

  const AgentPaths& paths() const { return paths_; }
  /// Where the agent's stdout and stderr (its log) go.
  std::filesystem::path log_path() const { return root_ / "agent.log"; }
  std::string agent_id() const;
  std::map<std::string, std::string> cli_env() const;

 private:
  std::filesystem::path root_;
  AgentPaths paths_;
  pid_t pid_ = -1;
  std::map<std::string, std::string> environment_;
};

/// The images/ directory (build script and Containerfiles): $MODBOX_TEST_IMAGES_DIR, else the checkout's.
std::filesystem::path test_images_dir();

/// Removes an image built by a test, whatever happens in the test.
struct ImageGuard {
  const TestAgent& agent;
  std::string tag;
  ~ImageGuard() { agent.podman({"rmi", "-f", tag}); }
};

/// Builds `containerfile` as `tag` in the storage the agent uses (guard it with an ImageGuard);
/// `files` (name in the context → local file) are copied into the build context.
void build_image(const TestAgent& agent, const std::string& tag, const std::string& containerfile,
                 const std::map<std::string, std::filesystem::path>& files = {});

}  // namespace modbox::test
