// The CLI's rule for starting modboxd: an agent is dead only when nobody holds its state lock, so a
// busy agent (or one still starting) is waited for and never doubled; with none alive, one is started.
// The spawn step is replaced by one that records the call, so no test starts a real agent.

#include "cli/agent_client.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <thread>

#include "agent/http.h"
#include "common/models.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

/// A unix socket that accepts connections into its backlog and never answers them.
UniqueFd listen_without_answering(const std::filesystem::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  REQUIRE(path.native().size() < sizeof address.sun_path);
  std::copy(path.native().begin(), path.native().end(), address.sun_path);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(fd.get(), 64) == 0);
  return fd;
}

/// An exclusive flock on `path`, held until destroyed, as a running agent holds its lock.
UniqueFd hold_lock(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(fd.valid());
  REQUIRE(::flock(fd.get(), LOCK_EX | LOCK_NB) == 0);
  return fd;
}

/// A state and runtime directory of their own, and a start policy whose spawn only counts.
struct ClientHarness {
  TempDir dir;
  AgentPaths paths{.state_dir = dir / "state", .runtime_dir = dir / "run"};
  std::atomic<int> spawned = 0;
  std::mutex mutex;
  std::vector<std::string> notices;
  AgentStartPolicy policy;

  ClientHarness() {
    // The client would talk to $MODBOX_API_URL instead of the socket under test.
    ::unsetenv("MODBOX_API_URL");
    ::unsetenv("MODBOX_API_TOKEN");
    REQUIRE(make_directories(paths.state_dir, 0700).has_value());
    REQUIRE(make_directories(paths.runtime_dir, 0700).has_value());
    policy.spawn = [this](const AgentPaths&) -> Result<pid_t> {
      ++spawned;
      return fail(ErrorKind::internal, "not starting agents in unit tests");
    };
    policy.notice = [this](const std::string& line) {
      std::lock_guard lock(mutex);
      notices.push_back(line);
    };
    policy.status_timeout = std::chrono::milliseconds(100);
    policy.busy_notice_after = std::chrono::milliseconds(200);
    policy.busy_wait = std::chrono::milliseconds(1000);
  }

  Result<void> ensure_agent() { return AgentClient(paths).ensure_agent(false, policy); }

  std::vector<std::string> told() {
    std::lock_guard lock(mutex);
    return notices;
  }
};

/// Serves GET /agent/status on the agent's socket: slowly (beyond the client's status timeout) for
/// the first `slow_answers` requests, at once after.
std::unique_ptr<HttpListener> serve_status(const AgentPaths& paths, int slow_answers, std::atomic<int>& asked) {
  auto handler = [slow_answers, &asked](HttpRequest&) {
    if (asked++ < slow_answers) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return json_response(200, agent_status_to_json(AgentStatus{.version = "test", .pid = 1, .podman_ready = true}));
  };
  auto listener = HttpListener::start({.unix_path = paths.agent_socket().string()}, handler, 8);
  REQUIRE(listener.has_value());
  return std::move(*listener);
}

}  // namespace

TEST_CASE("an agent that holds its lock but does not answer is waited for, never started twice", "[cli][agent]") {
  ClientHarness harness;
  UniqueFd lock = hold_lock(harness.paths.lock_file());
  UniqueFd socket;
  SECTION("its socket accepts and never answers (busy)") {
    socket = listen_without_answering(harness.paths.agent_socket());
  }
  SECTION("its socket is not there yet (starting: it reconciles before it serves)") {}

  auto started = std::chrono::steady_clock::now();
  auto ensured = harness.ensure_agent();
  auto took = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(ensured.has_value());
  CHECK(ensured.error().kind == ErrorKind::unavailable);
  CHECK(ensured.error().message.find("is running but has not answered") != std::string::npos);
  CHECK(harness.spawned == 0);
  CHECK(harness.told() == std::vector<std::string>{"modbox: waiting for modboxd (busy)..."});
  CHECK(took >= harness.policy.busy_wait);
  CHECK(took < std::chrono::seconds(10));
}

TEST_CASE("a busy agent slower than the status timeout at every answer is used, and none is started", "[cli][agent]") {
  ClientHarness harness;
  UniqueFd lock = hold_lock(harness.paths.lock_file());
  std::atomic<int> asked = 0;
  auto agent = serve_status(harness.paths, std::numeric_limits<int>::max(), asked);
  harness.policy.busy_wait = std::chrono::seconds(10);

  auto ensured = harness.ensure_agent();
  INFO((ensured ? "" : ensured.error().message));
  CHECK(ensured.has_value());
  CHECK(asked >= 2);  // the first slow answer did not end the wait
  CHECK(harness.spawned == 0);
  CHECK(harness.told() == std::vector<std::string>{"modbox: waiting for modboxd (busy)..."});
}

TEST_CASE("an agent that answers is used at once", "[cli][agent]") {
  ClientHarness harness;
  UniqueFd lock = hold_lock(harness.paths.lock_file());
  std::atomic<int> asked = 0;
  auto agent = serve_status(harness.paths, 0, asked);
  CHECK(harness.ensure_agent().has_value());
  CHECK(asked == 1);
  CHECK(harness.spawned == 0);
  CHECK(harness.told().empty());
}

TEST_CASE("with no agent alive, ensure_agent starts one", "[cli][agent]") {
  ClientHarness harness;
  UniqueFd stranger;
  SECTION("no socket, no lock file: none was ever started here") {}
  SECTION("a stale socket and an unlocked lock file: the last agent was killed") {
    listen_without_answering(harness.paths.agent_socket());  // closed at once: connections are refused
    REQUIRE(std::filesystem::exists(harness.paths.agent_socket()));
    hold_lock(harness.paths.lock_file());  // released at once
  }
  SECTION("a socket that accepts, but nobody holds the lock: no agent of this state serves it") {
    stranger = listen_without_answering(harness.paths.agent_socket());
    hold_lock(harness.paths.lock_file());
  }
  auto ensured = harness.ensure_agent();
  REQUIRE_FALSE(ensured.has_value());
  CHECK(ensured.error().message == "not starting agents in unit tests");
  CHECK(harness.spawned == 1);
  CHECK(harness.told().empty());
}

TEST_CASE("agent_alive reads the state lock and leaves it free", "[cli][agent]") {
  ClientHarness harness;
  CHECK_FALSE(agent_alive(harness.paths));
  {
    UniqueFd lock = hold_lock(harness.paths.lock_file());
    CHECK(agent_alive(harness.paths));
  }
  CHECK_FALSE(agent_alive(harness.paths));
  // The test took the lock for an instant and let it go: an agent starting now gets it.
  UniqueFd agent = hold_lock(harness.paths.lock_file());
  CHECK(agent_alive(harness.paths));
}
