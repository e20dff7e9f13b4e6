#include "agent/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "common/system.h"

extern char** environ;

namespace modbox {

Result<pid_t> spawn_process(const SpawnOptions& options) {
  if (options.argv.empty()) return fail(ErrorKind::internal, "spawn_process: empty argv");
  auto executable = find_in_path(options.argv[0]);
  if (!executable) return fail(ErrorKind::unavailable, options.argv[0] + " is not installed (not found in PATH)");

  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string item = *entry;
    std::string name = item.substr(0, item.find('='));
    if (!options.extra_env.contains(name)) environment.push_back(item);
  }
  for (const auto& [name, value] : options.extra_env) environment.push_back(name + "=" + value);
  std::vector<char*> env_pointers;
  for (auto& item : environment) env_pointers.push_back(item.data());
  env_pointers.push_back(nullptr);
  std::vector<std::string> argv = options.argv;
  std::vector<char*> argv_pointers;
  for (auto& item : argv) argv_pointers.push_back(item.data());
  argv_pointers.push_back(nullptr);

  UniqueFd input(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd output(options.output_file.empty()
                      ? ::open("/dev/null", O_WRONLY | O_CLOEXEC)
                      : ::open(options.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!input.valid() || !output.valid()) return std::unexpected(system_error("open", options.output_file, errno));

  pid_t parent = ::getpid();
  int descriptor_limit = static_cast<int>(std::min<long>(::sysconf(_SC_OPEN_MAX), 1 << 16));
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(system_error("fork", options.argv[0], errno));
  if (pid == 0) {
    if (options.new_session) ::setsid();
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
    }
    ::dup2(input.get(), 0);
    ::dup2(output.get(), 1);
    ::dup2(output.get(), 2);
    // Only 0-2 go on: the front's sockets (Asio opens them without O_CLOEXEC) would otherwise keep
    // sandbox ports and connections open for as long as a child lives, and a shell like dash cannot
    // redirect onto descriptors above 9 that are already taken (mmdebstrap's `cat >&11`).
    if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
      for (int fd = 3; fd < descriptor_limit; ++fd) ::close(fd);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(executable->c_str(), argv_pointers.data(), env_pointers.data());
    ::_exit(127);
  }
  return pid;
}

std::optional<int> wait_process(pid_t pid, std::optional<std::chrono::milliseconds> timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::milliseconds(0));
  for (;;) {
    int status = 0;
    pid_t done = ::waitpid(pid, &status, timeout ? WNOHANG : 0);
    if (done == pid) return status;
    if (done < 0 && errno != EINTR) return -1;
    if (timeout && std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    if (timeout) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

}  // namespace modbox
