#include "agent/helper/shim.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

extern char** environ;

namespace modbox::helper {

namespace {

/// The shim's child: the shell, leading a new session, with the stdio the shim set up.
[[noreturn]] void exec_shell(const ShellCommand& command, char** argv) {
  ::setsid();
  reset_signals();
  // Entered before the switch to the user, as runc does for `docker exec --workdir`.
  if (::chdir(command.cwd.c_str()) != 0) {
    write_stderr("modbox-helper: cannot change to directory " + command.cwd + ": " + std::strerror(errno) + "\n");
    ::_exit(1);
  }
  if (command.user != nullptr) {
    give_stdio_to(*command.user);
    if (auto became = become_user(*command.user); !became) {
      write_stderr("modbox-helper: cannot run the command as the image's user: " + became.error().message + "\n");
      ::_exit(126);
    }
  }
  ::execve(command.shell.c_str(), argv, environ);
  write_stderr("modbox-helper: cannot run " + command.shell + ": " + std::strerror(errno) + "\n");
  ::_exit(127);
}

/// Ends the shim the way the shell ended (wait status `status`), so that the helper's waitpid
/// reads the shell's status from the shim's.
[[noreturn]] void exit_like(int status) {
  if (WIFSIGNALED(status)) {
    int signal = WTERMSIG(status);
    // The shell may have dumped core; the shim must not add a core file of its own.
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(signal, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal);
    ::sigprocmask(SIG_UNBLOCK, &only, nullptr);
    ::raise(signal);
    ::_exit(128 + signal);  // a signal that does not end a process by default
  }
  ::_exit(WEXITSTATUS(status));
}

/// Reaps every child that has exited; false once the shim has no child at all.
bool reap_exited_children() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0 || (pid < 0 && errno == EINTR)) continue;
    return pid == 0;
  }
}

/// The kill request: the command's tree, then the shim itself.
[[noreturn]] void kill_tree(pid_t shell) {
  kill_subreaper_tree(shell);
  ::kill(::getpid(), SIGKILL);
  ::_exit(128 + SIGKILL);
}

[[noreturn]] void run_shim(const ShellCommand& command, char** argv, int stdin_fd, int stdout_fd, int stderr_fd) {
  pid_t helper = ::getppid();
  ::setpgid(0, 0);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::dup2(stdin_fd, 0);
  ::dup2(stdout_fd, 1);
  ::dup2(stderr_fd, 2);
  // The helper's socket, its connections and other commands' pipes must not leak into this command.
  close_descriptors_from(3);
  // Blocked in the helper already (so a request sent before this point waits): waited for here.
  sigset_t waited;
  sigemptyset(&waited);
  sigaddset(&waited, SIGCHLD);
  sigaddset(&waited, kill_tree_signal);
  ::sigprocmask(SIG_BLOCK, &waited, nullptr);

  pid_t shell = ::fork();
  if (shell < 0) {
    write_stderr(std::string("modbox-helper: cannot start the command: fork: ") + std::strerror(errno) + "\n");
    ::_exit(127);
  }
  if (shell == 0) exec_shell(command, argv);
  // The shim holds no end of the pipes: they close when the command's tree closes them.
  ::close(0);
  ::close(1);
  ::close(2);
  for (;;) {
    siginfo_t info{};
    int signal = ::sigwaitinfo(&waited, &info);
    if (signal == kill_tree_signal && info.si_pid == helper) kill_tree(shell);
    if (signal != SIGCHLD) continue;
    // Orphans of the tree are the shim's children too: reap them all, watch for the shell.
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid == shell) exit_like(status);
      if (pid > 0 || (pid < 0 && errno == EINTR)) continue;
      break;
    }
  }
}

}  // namespace

void kill_subreaper_tree(pid_t group) {
  // The command's group at once (none of its members can fork past that), then the rest of the
  // tree, which comes to the caller as the processes between die.
  ::kill(-group, SIGKILL);
  sigset_t child_exited;
  sigemptyset(&child_exited);
  sigaddset(&child_exited, SIGCHLD);
  const timespec pause{0, 10'000'000};
  for (;;) {
    // A child that left the group leads a group of its own (setsid); it goes with its group.
    for (pid_t child : child_processes(::getpid())) {
      ::kill(-child, SIGKILL);
      ::kill(child, SIGKILL);
    }
    if (!reap_exited_children()) break;
    // Bounded: an orphan can become the caller's child without any SIGCHLD for it.
    ::sigtimedwait(&child_exited, nullptr, &pause);
  }
}

Result<RunningCommand> spawn_shell(const ShellCommand& command) {
  auto out = make_pipe();
  if (!out) return std::unexpected(out.error());
  auto err = make_pipe();
  if (!err) return std::unexpected(err.error());
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null.valid()) return std::unexpected(os_error("open", "/dev/null", errno));
  // Prepared before fork: the children only make system calls and format their failures.
  std::string shell_name = command.shell.substr(command.shell.rfind('/') + 1);
  std::vector<char*> argv = {shell_name.data(), const_cast<char*>("-c"), const_cast<char*>(command.command.c_str()),
                             nullptr};
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(os_error("fork", command.shell, errno));
  if (pid == 0) run_shim(command, argv.data(), null.get(), out->write_end.get(), err->write_end.get());
  // Also here, so that the group exists whichever of the two runs first.
  ::setpgid(pid, pid);
  return RunningCommand{pid, std::move(out->read_end), std::move(err->read_end)};
}

void request_kill_tree(pid_t shim) {
  ::kill(shim, kill_tree_signal);
}

void force_kill_tree(pid_t shim) {
  for (pid_t child : child_processes(shim)) {
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
  }
  ::kill(-shim, SIGKILL);
  ::kill(shim, SIGKILL);
}

}  // namespace modbox::helper
