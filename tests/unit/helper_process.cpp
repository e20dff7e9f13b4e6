#include "tests/unit/helper_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <thread>

namespace modbox::testing {

using Clock = std::chrono::steady_clock;

HelperProcess::HelperProcess(std::vector<std::string> entrypoint, std::vector<std::string> options) {
  socket_ = dir_ / "helper.sock";
  std::vector<std::string> argv = {MODBOX_HELPER_BINARY, "--socket", socket_.string()};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back("--");
  argv.insert(argv.end(), entrypoint.begin(), entrypoint.end());
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hi there", "HOME=/"};
  std::vector<char*> args, envp;
  for (auto& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  for (auto& item : env) envp.push_back(item.data());
  envp.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  REQUIRE(pid_ > 0);
  bool ready = eventually([&] { return client_->ping(socket_, std::chrono::milliseconds(200)).has_value(); });
  REQUIRE(ready);
}

HelperProcess::~HelperProcess() {
  if (pid_ <= 0) return;
  std::ifstream children("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
  for (pid_t child = 0; children >> child;) {
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::optional<int> HelperProcess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int HelperProcess::terminate() {
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

Result<ExecResult> HelperProcess::exec(const std::string& command, int timeout_ms, const std::string& cwd) {
  return client_->exec(socket_, {.command = command, .timeout_ms = timeout_ms, .cwd = cwd});
}

ExecResult HelperProcess::run(const std::string& command, int timeout_ms, const std::string& cwd) {
  return expect_value(exec(command, timeout_ms, cwd));
}

bool process_gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

KillLeftovers::~KillLeftovers() {
  for (pid_t pid : pids)
    if (!process_gone(pid)) ::kill(pid, SIGKILL);
}

}  // namespace modbox::testing
