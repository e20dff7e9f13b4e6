#include "tests/integration/harness.h"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include "common/system.h"

extern char** environ;

namespace modbox::test {

namespace {

void set_environment(const std::map<std::string, std::string>& env) {
  for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
}

}  // namespace

std::string bin_dir() {
  const char* dir = std::getenv("MODBOX_BIN_DIR");
  return dir != nullptr && *dir != '\0' ? dir : MODBOX_BUILD_BIN_DIR;
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter = 0;
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

std::filesystem::path write_random_file(const std::filesystem::path& path, std::size_t size, unsigned seed) {
  std::mt19937 random(seed);
  std::string content(size, '\0');
  for (auto& byte : content) byte = static_cast<char>(random() & 0xff);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

long peak_memory_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
  return -1;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

CommandResult run_command(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                          std::chrono::seconds timeout) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    set_environment(env);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_count = 2;
  bool killed = false;
  while (open_count > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !killed) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    if (::poll(fds, 2, killed ? 1000 : static_cast<int>(std::min<long long>(left.count(), 1000))) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[65536];
      ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(got));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  for (auto& fd : fds)
    if (fd.fd >= 0) ::close(fd.fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (killed) result.err += "\n[harness: killed after timeout]";
  return result;
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv,
                                     const std::map<std::string, std::string>& env) {
  char pattern[] = "/tmp/mbt-stderr-XXXXXX";
  int stderr_fd = ::mkstemp(pattern);
  int out_pipe[2];
  if (stderr_fd < 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error("mkstemp or pipe failed");
  stderr_path_ = pattern;
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(stderr_fd, 2);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    set_environment(env);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(stderr_fd);
  ::close(out_pipe[1]);
  stdout_fd_ = out_pipe[0];
}

BackgroundProcess::~BackgroundProcess() {
  if (!exit_code_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ::close(stdout_fd_);
  std::error_code ignored;
  std::filesystem::remove(stderr_path_, ignored);
}

std::optional<BackgroundProcess::Line> BackgroundProcess::next_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto newline = pending_.find('\n'); newline != std::string::npos) {
      Line line{pending_.substr(0, newline), std::chrono::system_clock::now()};
      pending_.erase(0, newline + 1);
      return line;
    }
    if (stdout_ended_) return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd ready{stdout_fd_, POLLIN, 0};
    int polled = ::poll(&ready, 1, static_cast<int>(left.count()));
    if (polled < 0 && errno != EINTR) return std::nullopt;
    if (polled <= 0) continue;
    char buffer[65536];
    ssize_t got = ::read(stdout_fd_, buffer, sizeof buffer);
    if (got > 0) {
      pending_.append(buffer, static_cast<std::size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      stdout_ended_ = true;
    }
  }
}

std::string BackgroundProcess::errors() const {
  return read_file(stderr_path_).value_or("");
}

std::optional<int> BackgroundProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  int status = 0;
  bool exited = eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout, 10ms);
  if (exited) exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

HttpReply http_request(const std::string& base_url, const std::string& method, const std::string& path,
                       const std::string& body, const std::map<std::string, std::string>& headers,
                       std::chrono::seconds timeout) {
  httplib::Client client(base_url);
  client.set_connection_timeout(5s);
  client.set_read_timeout(timeout);
  httplib::Headers request_headers(headers.begin(), headers.end());
  httplib::Result result = method == "GET"      ? client.Get(path.c_str(), request_headers)
                           : method == "DELETE" ? client.Delete(path.c_str(), request_headers)
                                                : client.Post(path.c_str(), request_headers, body, "application/json");
  HttpReply reply;
  if (!result) {
    reply.body = "no answer: " + httplib::to_string(result.error());
    return reply;
  }
  reply.status = result->status;
  reply.body = result->body;
  for (const auto& [name, value] : result->headers) reply.headers[name] = value;
  return reply;
}

TestAgent::TestAgent() {
  // Short paths: unix socket paths must stay under 108 bytes.
  char pattern[] = "/tmp/mbt-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  root_ = pattern;
  paths_.state_dir = root_ / "state";
  paths_.runtime_dir = root_ / "run";
  // Whose directory this is: sweep-test-agents removes it (and the agent's containers) once this
  // process is gone, should it die without running the destructor.
  std::ofstream(root_ / "owner-pid") << ::getpid() << "\n";
}

TestAgent::~TestAgent() {
  stop();
  // Whatever the test left behind: this agent's containers, then its directory.
  std::string id = agent_id();
  if (!id.empty()) {
    auto listed = podman({"ps", "-aq", "--filter", "label=io.modbox.agent=" + id});
    std::vector<std::string> remove = {"rm", "-f", "-t", "0"};
    std::size_t start = 0;
    while (start < listed.out.size()) {
      std::size_t end = listed.out.find('\n', start);
      if (end == std::string::npos) end = listed.out.size();
      if (end > start) remove.push_back(listed.out.substr(start, end - start));
      start = end + 1;
    }
    if (remove.size() > 4) podman(remove);
  }
  std::error_code error;
  std::filesystem::remove_all(root_, error);
}

std::string TestAgent::agent_id() const {
  auto text = read_file(paths_.agent_id_file(), 256);
  if (!text) return "";
  std::string id = *text;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id;
}

std::map<std::string, std::string> TestAgent::cli_env() const {
  return {{"MODBOX_STATE_DIR", paths_.state_dir.string()},
          {"MODBOX_RUNTIME_DIR", paths_.runtime_dir.string()},
          {"MODBOX_API_URL", ""},
          {"MODBOX_API_TOKEN", ""},
          {"MODBOX_WORKSPACE", ""},
          // A config file of this agent's own (none until a test writes it), not the test user's.
          {"MODBOX_CONFIG", (root_ / "config.json").string()}};
}

void TestAgent::start(const std::vector<std::string>& extra_args) {
  if (pid_ > 0) return;
  std::vector<std::string> argv = {bin_dir() + "/modboxd", "--state-dir=" + paths_.state_dir.string(),
                                   "--runtime-dir=" + paths_.runtime_dir.string()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  std::filesystem::create_directories(root_);
  std::string log = (root_ / "agent.log").string();
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // The agent dies with the test process, however that ends (a ctest timeout's SIGKILL included).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    for (const auto& [name, value] : environment_) ::setenv(name.c_str(), value.c_str(), 1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  bool ready = eventually(
      [&] {
        auto reply = api("GET", "/agent/status");
        return reply.status == 200 && reply.json_body().value("podman_ready", false);
      },
      60s, 20ms);
  if (!ready) {
    auto text = read_file(log);
    throw std::runtime_error("modboxd did not become ready; its log:\n" + text.value_or("(none)"));
  }
}

void TestAgent::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  pid_ = -1;
}

void TestAgent::kill9() {
  if (pid_ <= 0) return;
  pid_t service = podman_service_pid();
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  // The service dies with the agent (parent-death signal); wait until it has, so the next agent
  // does not race it for the socket.
  if (service > 0) eventually([&] { return ::kill(service, 0) != 0; }, 30s);
}

pid_t TestAgent::podman_service_pid() const {
  if (pid_ <= 0) return -1;
  std::ifstream children("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
  // The service is started by a supervisor thread, so look at every thread's children.
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task", error)) {
    std::ifstream list(task.path() / "children");
    pid_t child = 0;
    while (list >> child) {
      std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
      std::string name;
      comm >> name;
      if (name == "podman") return child;
    }
  }
  return -1;
}

HttpReply TestAgent::api(const std::string& method, const std::string& path, const std::string& body,
                         const std::optional<std::string>& workspace, std::chrono::seconds timeout) const {
  AgentClient client(paths_, workspace);
  auto reply = client.send(method, path, body, static_cast<int>(timeout.count()));
  HttpReply result;
  if (!reply) return result;
  result.status = reply->status;
  result.body = reply->body;
  return result;
}

json TestAgent::provision_running(const std::string& task_id, const json& extra) {
  json body = extra;
  body["task_id"] = task_id;
  auto provisioned = api("POST", "/sandboxes/provision", body.dump());
  if (provisioned.status != 200) throw std::runtime_error("provision failed: " + provisioned.body);
  auto waited = api("POST", "/sandboxes/wait", json{{"task_id", task_id}, {"timeout", 60}}.dump());
  if (waited.status != 200) throw std::runtime_error("wait failed: " + waited.body);
  return waited.json_body();
}

CommandResult TestAgent::cli(const std::vector<std::string>& args, std::chrono::seconds timeout) const {
  std::vector<std::string> argv = {bin_dir() + "/modbox"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, cli_env(), timeout);
}

CommandResult TestAgent::podman(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"podman"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto environment = environment_;
  environment["CONTAINERS_CONF"] = (paths_.runtime_dir / "containers.conf").string();
  return run_command(argv, environment, 60s);
}

std::filesystem::path test_images_dir() {
  const char* dir = std::getenv("MODBOX_TEST_IMAGES_DIR");
  return dir != nullptr && *dir != '\0' ? dir : MODBOX_TEST_IMAGES_DIR;
}

std::vector<std::string> TestAgent::container_states(const std::string& sandbox_id) const {
  auto listed = podman({"ps", "-a", "--filter", "label=io.modbox.sandbox=" + sandbox_id, "--format", "json"});
  json containers = json::parse(listed.out, nullptr, false);
  std::vector<std::string> states;
  if (!containers.is_array()) throw std::runtime_error("podman ps failed: " + listed.err);
  for (const auto& container : containers) states.push_back(container.value("State", "?"));
  return states;
}

void build_image(const TestAgent& agent, const std::string& tag, const std::string& containerfile,
                 const std::map<std::string, std::filesystem::path>& files) {
  auto context = std::filesystem::temp_directory_path() / unique_name("context");
  std::filesystem::create_directories(context);
  std::ofstream(context / "Containerfile") << containerfile;
  for (const auto& [name, source] : files) std::filesystem::copy_file(source, context / name);
  auto built = agent.podman({"build", "-q", "-t", tag, "-f", (context / "Containerfile").string(), context.string()});
  std::filesystem::remove_all(context);
  INFO(built.err);
  REQUIRE(built.exit_code == 0);
}

}  // namespace modbox::test
