#include "agent/helper/os.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace modbox::helper {

Error os_error(const char* call, const std::string& subject, int errno_value) {
  return Error{ErrorKind::internal, std::string(call) + "(" + subject + "): " + std::strerror(errno_value), {}};
}

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::unexpected(os_error("pipe2", "", errno));
  Pipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  return pipe;
}

Result<Pipe> make_input_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::unexpected(os_error("pipe2", "", errno));
  Pipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  return pipe;
}

Result<UniqueFd> listen_unix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) return fail(ErrorKind::bad_request, "socket path too long: " + path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return std::unexpected(os_error("socket", path, errno));
  ::unlink(path.c_str());
  // Created 0600 from the start: no moment where another user could connect.
  mode_t previous = ::umask(0177);
  int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  int bind_errno = errno;
  ::umask(previous);
  if (bound != 0) return std::unexpected(os_error("bind", path, bind_errno));
  if (::listen(fd.get(), SOMAXCONN) != 0) return std::unexpected(os_error("listen", path, errno));
  return fd;
}

Result<std::optional<UniqueFd>> accept_connection(int listener) {
  for (;;) {
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) return std::optional<UniqueFd>(UniqueFd(fd));
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<UniqueFd>();
    return std::unexpected(os_error("accept4", "", errno));
  }
}

Result<UniqueFd> block_and_watch_signals(const std::vector<int>& signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : signals) sigaddset(&set, signal);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return std::unexpected(os_error("sigprocmask", "", errno));
  UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd.valid()) return std::unexpected(os_error("signalfd", "", errno));
  return fd;
}

std::optional<int> read_signal(int signal_fd) {
  signalfd_siginfo info{};
  ssize_t got = ::read(signal_fd, &info, sizeof info);
  if (got != static_cast<ssize_t>(sizeof info)) return std::nullopt;
  return static_cast<int>(info.ssi_signo);
}

std::optional<std::pair<pid_t, int>> reap_one() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) return std::pair{pid, status};
    if (pid < 0 && errno == EINTR) continue;
    return std::nullopt;
  }
}

std::optional<std::string> read_some(int fd, std::size_t max) {
  std::string buffer(max, '\0');
  for (;;) {
    ssize_t got = ::read(fd, buffer.data(), max);
    if (got >= 0) {
      buffer.resize(static_cast<std::size_t>(got));
      return buffer;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::nullopt;
    return std::string();
  }
}

long send_some(int fd, const std::string& data) {
  for (;;) {
    ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent >= 0) return sent;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

long write_some(int fd, std::string_view data) {
  for (;;) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written >= 0) return written;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

void reset_signals() {
  ::signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void write_stderr(const std::string& text) {
  ssize_t ignored = ::write(2, text.data(), text.size());
  (void)ignored;
}

std::vector<pid_t> child_processes(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<pid_t> children;
  if (!fd.valid()) return children;
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  pid_t child = 0;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      child = child * 10 + (c - '0');
    } else if (child > 0) {
      children.push_back(child);
      child = 0;
    }
  }
  if (child > 0) children.push_back(child);
  return children;
}

int become_worker(UniqueFd connection) {
  int fd = connection.release();
  if (fd != 3) ::dup2(fd, 3);
  close_descriptors_from(4);
  reset_signals();
  return 3;
}

void close_descriptors_from(int first) {
  if (::close_range(static_cast<unsigned>(first), ~0U, 0) == 0) return;
  // Kernels before 5.9 lack close_range: close what the limit allows.
  rlimit limit{};
  long last = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
                  ? static_cast<long>(limit.rlim_cur)
                  : 65536;
  for (long fd = first; fd < last; ++fd) ::close(static_cast<int>(fd));
}

Result<pid_t> spawn_entrypoint(const std::vector<std::string>& argv, const SandboxUser* user, int output_fd) {
  std::vector<char*> pointers;
  for (const auto& arg : argv) pointers.push_back(const_cast<char*>(arg.c_str()));
  pointers.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(os_error("fork", argv.at(0), errno));
  if (pid == 0) {
    reset_signals();
    if (output_fd >= 0) {
      ::dup2(output_fd, 1);
      ::dup2(output_fd, 2);
    }
    if (user != nullptr) {
      give_stdio_to(*user);
      if (auto became = become_user(*user); !became) {
        write_stderr("modbox-helper: cannot run the image's entrypoint as its user: " + became.error().message + "\n");
        ::_exit(126);
      }
    }
    ::execvp(pointers[0], pointers.data());
    write_stderr("modbox-helper: cannot run the image's entrypoint " + argv[0] + ": " + std::strerror(errno) + "\n");
    ::_exit(127);
  }
  return pid;
}

std::optional<std::uint64_t> cgroup_oom_kills() {
  for (const char* path : {"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"}) {
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) continue;
    char buffer[4096];
    ssize_t got = ::read(fd.get(), buffer, sizeof buffer - 1);
    if (got <= 0) continue;
    buffer[got] = '\0';
    for (const char* line = buffer; line != nullptr && *line != '\0';) {
      if (std::strncmp(line, "oom_kill ", 9) == 0) return std::strtoull(line + 9, nullptr, 10);
      line = std::strchr(line, '\n');
      if (line != nullptr) ++line;
    }
  }
  return std::nullopt;
}

namespace {
bool is_executable_file(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string search_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string directories = path != nullptr ? path : "";
  std::size_t start = 0;
  while (start < directories.size()) {
    std::size_t colon = directories.find(':', start);
    if (colon == std::string::npos) colon = directories.size();
    std::string directory = directories.substr(start, colon - start);
    if (!directory.empty() && directory.front() == '/' && is_executable_file(directory + "/" + name))
      return directory + "/" + name;
    start = colon + 1;
  }
  return "";
}
}  // namespace

std::string find_shell() {
  // Looked up for every command: an image may install bash while it runs.
  for (const char* candidate : {"/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"})
    if (is_executable_file(candidate)) return candidate;
  if (auto found = search_path("bash"); !found.empty()) return found;
  for (const char* candidate : {"/bin/sh", "/usr/bin/sh"})
    if (is_executable_file(candidate)) return candidate;
  return search_path("sh");
}

void raise_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace modbox::helper
