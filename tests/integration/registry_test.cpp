// Private registries for real: Debian's docker-registry on loopback with htpasswd (bcrypt) auth. An image
// is pushed into it, a credential and an image are registered, and a sandbox is provisioned from it
// (pulled through libpod with X-Registry-Auth) and runs a command. A wrong password, an unknown tag and a
// registry that is not there end the sandbox `failed` with the reason, which `wait` reports.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <stdexcept>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

const std::string workspace = "0c5a6e0e-6f55-4c43-9d0e-00000000c0c0";
const std::string user = "modbox";
const std::string password = "correct-horse-battery";

/// A loopback port nobody listens on right now.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw std::runtime_error("cannot find a free port");
  int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

/// docker-registry serving 127.0.0.1:port from a temp dir, with one htpasswd user. The destructor stops
/// the server by its PID and removes the dir, also when the test fails.
class TestRegistry {
 public:
  TestRegistry() {
    char pattern[] = "/tmp/mbreg-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    port_ = free_port();
    auto hashed = run_command({"htpasswd", "-Bbc", (dir_ / "htpasswd").string(), user, password});
    if (hashed.exit_code != 0) throw std::runtime_error("htpasswd failed: " + hashed.err);
    std::ofstream(dir_ / "config.yml") << "version: 0.1\n"
                                          "log:\n  level: warn\n"
                                          "storage:\n  filesystem:\n    rootdirectory: " << (dir_ / "data").string() << "\n"
                                          "http:\n  addr: 127.0.0.1:" << port_ << "\n"
                                          "auth:\n  htpasswd:\n    realm: modbox-test\n    path: "
                                       << (dir_ / "htpasswd").string() << "\n";
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Even a test killed outright (SIGKILL, a closed pipe) takes its registry with it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      int log = ::open((dir_ / "registry.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(log, 1);
      ::dup2(log, 2);
      std::string config = (dir_ / "config.yml").string();
      ::execlp("docker-registry", "docker-registry", "serve", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    bool up = eventually([&] { return http_request(url(), "GET", "/v2/").status == 401; }, 30s);
    if (!up) throw std::runtime_error("docker-registry did not come up; its log:\n" + log());
  }
  ~TestRegistry() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      if (!eventually([&] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; }, 10s)) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
      }
    }
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }
  TestRegistry(const TestRegistry&) = delete;
  TestRegistry& operator=(const TestRegistry&) = delete;

  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url() const { return "http://" + server(); }
  std::string log() const { return modbox::read_file(dir_ / "registry.log").value_or("(no log)"); }

 private:
  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

/// Removes the listed images from the test user's storage when the test ends, however it ends.
class ImageCleanup {
 public:
  explicit ImageCleanup(const TestAgent& agent) : agent_(agent) {}
  ~ImageCleanup() {
    for (const auto& reference : references_) agent_.podman({"rmi", "-f", reference});
  }
  void add(std::string reference) { references_.push_back(std::move(reference)); }

 private:
  const TestAgent& agent_;
  std::vector<std::string> references_;
};

std::string create_registry(const TestAgent& agent, const std::string& name, const std::string& server,
                            const std::string& secret) {
  auto reply = agent.api("POST", "/registries",
                         json{{"name", name}, {"server", server}, {"username", user}, {"password", secret}}.dump(),
                         workspace);
  if (reply.status != 201) throw std::runtime_error("POST /registries: " + reply.body);
  return reply.json_body()["id"];
}

/// Registers `repository:tag` under a name of its own: image names are unique within a workspace.
std::string create_image(const TestAgent& agent, const std::string& repository, const std::string& tag,
                         const std::string& registry_id) {
  auto reply = agent.api("POST", "/sandbox-images",
                         json{{"name", unique_name("private-" + tag)}, {"image", repository}, {"tag", tag}, {"registry_id", registry_id}}.dump(),
                         workspace);
  if (reply.status != 201) throw std::runtime_error("POST /sandbox-images: " + reply.body);
  return reply.json_body()["id"];
}

/// Provisions from `image_id` and waits; returns the wait's answer. One test case without SECTIONs:
/// Catch would rerun the setup (agent, registry, push) for each.
HttpReply provision_and_wait(const TestAgent& agent, const std::string& task, const std::string& image_id) {
  auto provisioned = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"image_id", image_id}}.dump(), workspace);
  if (provisioned.status != 200) throw std::runtime_error("provision: " + provisioned.body);
  return agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 300}}.dump(), workspace, 330s);
}

}  // namespace

TEST_CASE("a private image is pulled with its registry credential; bad pulls fail with the reason", "[registry]") {
  TestAgent agent;
  agent.start();
  ImageCleanup cleanup(agent);
  TestRegistry registry;
  const std::string repository = registry.server() + "/modbox-test/lite";
  const std::string pushed = repository + ":v1";
  cleanup.add(pushed);

  auto push = agent.podman({"push", "--tls-verify=false", "--creds", user + ":" + password,
                            "localhost/modbox/sandbox-lite:latest", pushed});
  INFO("podman push: " << push.err << "\nregistry log:\n" << registry.log());
  REQUIRE(push.exit_code == 0);
  // The push leaves no local copy under the registry's name: provisioning has to pull it.
  REQUIRE(agent.podman({"image", "exists", pushed}).exit_code == 1);

  {  // a wrong password: failed, unauthorized, and the secret is nowhere
    std::string credential = create_registry(agent, "wrong", registry.server(), "not-the-password");
    std::string image = create_image(agent, repository, "v1", credential);
    auto waited = provision_and_wait(agent, unique_name("wrongpw"), image);
    INFO(waited.body);
    CHECK(waited.status == 409);
    std::string reason = waited.json_body()["detail"];
    CHECK(reason.find("unauthorized") != std::string::npos);
    CHECK(reason.find("not-the-password") == std::string::npos);
  }
  {  // a tag the registry does not have: failed, with the registry's answer
    std::string credential = create_registry(agent, "right", registry.server(), password);
    std::string image = create_image(agent, repository, "no-such-tag", credential);
    auto waited = provision_and_wait(agent, unique_name("notag"), image);
    INFO(waited.body);
    CHECK(waited.status == 409);
    CHECK(waited.json_body()["detail"].get<std::string>().find("manifest unknown") != std::string::npos);
  }
  {  // a registry that is not there: failed, not a timeout
    const std::string gone = "127.0.0.1:" + std::to_string(free_port());
    std::string credential = create_registry(agent, "gone", gone, password);
    std::string image = create_image(agent, gone + "/modbox-test/lite", "v1", credential);
    auto started = std::chrono::steady_clock::now();
    auto waited = provision_and_wait(agent, unique_name("gone"), image);
    INFO(waited.body);
    CHECK(waited.status == 409);
    CHECK(waited.json_body()["detail"].get<std::string>().find("connection refused") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - started < 120s);
  }
  {  // the right password: pulled, running, and a command runs in it
    std::string credential = create_registry(agent, "right", registry.server(), password);
    std::string image = create_image(agent, repository, "v1", credential);
    const std::string task = unique_name("private");
    auto waited = provision_and_wait(agent, task, image);
    INFO(waited.body << "\nregistry log:\n" << registry.log());
    REQUIRE(waited.status == 200);
    CHECK(waited.json_body()["image"] == pushed);
    CHECK(agent.podman({"image", "exists", pushed}).exit_code == 0);
    auto exec = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "cat /etc/debian_version"}}.dump(),
                          workspace);
    REQUIRE(exec.status == 200);
    CHECK(exec.json_body()["exitCode"] == 0);
    CHECK_FALSE(exec.json_body()["stdout"].get<std::string>().empty());
    CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), workspace).status == 200);

    // The secret is stored 0600 and never answered or logged.
    auto listed = agent.api("GET", "/registries", "", workspace);
    CHECK(listed.body.find(password) == std::string::npos);
    auto log = modbox::read_file(agent.paths().state_dir.parent_path() / "agent.log");
    REQUIRE(log.has_value());
    CHECK(log->find(password) == std::string::npos);
    struct stat info {};
    REQUIRE(::stat((agent.paths().registries_dir() / (credential + ".json")).c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
  }
}
