// Readiness probes over the fake helpers: a provisioning sandbox is probed (tcp, exec, or its image's
// HTTP probe) until the probe passes, and stays provisioning while it does not; wait answers 408 with
// the probe's last error when it gives up or when wait's own timeout comes first.

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>

#include "agent/readiness_probe.h"
#include "common/encoding.h"
#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;
using namespace std::chrono_literals;

namespace {


/// A port inside the fake sandbox: refused (as the helper refuses a port where nothing listens)
/// until open() is called; then each relay reaches a server that has already written its answer: the
/// nth relay the nth of `answers`, the last one for every relay after.
class FakePort {
 public:
  explicit FakePort(std::string answer = "") : answers_{std::move(answer)} {}
  explicit FakePort(std::vector<std::string> answers) : answers_(std::move(answers)) {}
  void open() { open_ = true; }
  FakeHelpers::RelayOpener opener() {
    return [this](std::uint16_t port) -> Result<UniqueFd> {
      if (!open_) return fail(ErrorKind::bad_gateway, "nothing listens on port " + std::to_string(port) + " in the sandbox");
      // Called on the provisioning thread, where Catch's assertions are not safe: failures are errors.
      int fds[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return fail(ErrorKind::internal, "socketpair");
      UniqueFd relay(fds[0]), server(fds[1]);
      std::lock_guard lock(mutex_);
      const std::string& answer = answers_[std::min(servers_.size(), answers_.size() - 1)];
      if (::write(server.get(), answer.data(), answer.size()) != static_cast<ssize_t>(answer.size()))
        return fail(ErrorKind::internal, "the fake server's answer did not fit the socket buffer");
      servers_.push_back(std::move(server));  // kept open so the probe's request can be written
      return relay;
    };
  }
  /// What the probe wrote to the `index`th server, as far as it has arrived.
  std::string received(std::size_t index) {
    std::lock_guard lock(mutex_);
    REQUIRE(index < servers_.size());
    char buffer[4096];
    ssize_t got = ::recv(servers_[index].get(), buffer, sizeof buffer, MSG_DONTWAIT);
    return got > 0 ? std::string(buffer, static_cast<std::size_t>(got)) : "";
  }

 private:
  std::atomic<bool> open_ = false;
  std::vector<std::string> answers_;
  std::mutex mutex_;
  std::vector<UniqueFd> servers_;
};

ReadinessProbe tcp_probe(int port, int interval_ms = 10) {
  return {.kind = ReadinessProbe::Kind::tcp, .port = port, .interval_ms = interval_ms};
}

ReadinessProbe exec_probe(std::vector<std::string> command, int interval_ms = 10) {
  return {.kind = ReadinessProbe::Kind::exec, .command = std::move(command), .interval_ms = interval_ms};
}

Sandbox provision_probed(ServiceHarness& harness, const std::string& task_id, ReadinessProbe probe) {
  return expect_value(harness.service->provision(std::nullopt, {.task_id = task_id, .readiness_probe = probe}));
}

Sandbox detail(ServiceHarness& harness, const std::string& id) { return expect_value(harness.service->get(std::nullopt, id)); }

ExecResult exited(int code, std::string stderr_text = "") {
  return ExecResult{.exit_code = code, .stderr_text = std::move(stderr_text)};
}

}  // namespace

TEST_CASE("a tcp probe keeps the sandbox provisioning until its port accepts", "[service][readiness]") {
  ServiceHarness harness;
  FakePort port;
  harness.helpers.set_relay(port.opener());
  Sandbox sandbox = provision_probed(harness, "web", tcp_probe(8000));
  CHECK(sandbox.readiness_probe == tcp_probe(8000));

  REQUIRE(eventually([&] { return detail(harness, sandbox.id).readiness.attempts >= 3; }));
  Sandbox probing = detail(harness, sandbox.id);
  CHECK(probing.status == SandboxStatus::provisioning);
  CHECK(probing.readiness.phase == ReadinessState::Phase::probing);
  CHECK(probing.readiness.last_passed == false);
  CHECK(probing.readiness.last_error == "nothing listens on port 8000 in the sandbox");
  CHECK_FALSE(probing.ready_at.has_value());

  port.open();
  Sandbox running = expect_value(harness.wait("web"));
  CHECK(running.status == SandboxStatus::running);
  CHECK(running.readiness.phase == ReadinessState::Phase::passed);
  CHECK(running.readiness.last_passed == true);
  CHECK(running.readiness.attempts >= 4);
  CHECK(running.ready_at == harness.clock.now());
  CHECK(running.startup_ms == 0);  // the fake clock stands still
  for (const auto& [socket, relayed_port] : harness.helpers.relays()) CHECK(relayed_port == 8000);
  CHECK(harness.stored_record(sandbox.id).ready_at == running.ready_at);
}

TEST_CASE("an exec probe passes when its command exits 0, run quoted with a short timeout", "[service][readiness]") {
  ServiceHarness harness;
  std::atomic<bool> ready = false;
  harness.helpers.set_exec([&](const ExecRequest&) -> Result<ExecResult> {
    return ready ? exited(0) : exited(1, "not yet\n");
  });
  Sandbox sandbox = provision_probed(harness, "setup", exec_probe({"test", "-f", "/tmp/it's ready"}));
  REQUIRE(eventually([&] { return detail(harness, sandbox.id).readiness.attempts >= 2; }));
  Sandbox probing = detail(harness, sandbox.id);
  CHECK(probing.readiness.last_error == "`'test' '-f' '/tmp/it'\\''s ready'` exited with 1: not yet");
  CHECK(probing.progress == "waiting for its readiness probe (exec test -f /tmp/it's ready)");
  ready = true;
  Sandbox running = expect_value(harness.wait("setup"));
  CHECK(running.status == SandboxStatus::running);
  CHECK(running.readiness.last_passed == true);
  CHECK_FALSE(running.readiness.last_error.has_value());
  auto execs = harness.helpers.execs();
  CHECK(static_cast<int>(execs.size()) == running.readiness.attempts);
  REQUIRE(execs.size() >= 3);
  CHECK(execs[0].second.command == "'test' '-f' '/tmp/it'\\''s ready'");
  CHECK(execs[0].second.timeout_ms == limits::readiness_attempt_timeout_ms);
  CHECK(execs[0].first == harness.dir / "run" / "sandboxes" / sandbox.id / "helper.sock");
}

TEST_CASE("a sandbox without a probe is ready when its helper answers, as before", "[service][readiness]") {
  ServiceHarness harness;
  Sandbox running = harness.provision_running("plain");
  CHECK_FALSE(running.readiness_probe.has_value());
  CHECK(running.ready_at == harness.clock.now());
  CHECK(harness.helpers.relays().empty());
  CHECK(harness.helpers.execs().empty());
}

TEST_CASE("a probe that never passes gives up, leaves the sandbox provisioning, and wait says why",
          "[service][readiness]") {
  ServiceHarness harness;
  harness.readiness_give_up = 300ms;
  harness.restart();
  FakePort port;
  harness.helpers.set_relay(port.opener());
  Sandbox sandbox = provision_probed(harness, "never", tcp_probe(8000, 20));

  auto started = std::chrono::steady_clock::now();
  auto waited = harness.service->wait(std::nullopt, {.task_id = "never", .timeout_seconds = 10});
  CHECK(std::chrono::steady_clock::now() - started < 5s);  // at the give-up, not at wait's timeout
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::timeout);
  CHECK(waited.error().message ==
        "sandbox 'never' is not ready: the readiness probe (tcp port 8000) did not pass within 300 ms: nothing "
        "listens on port 8000 in the sandbox (the sandbox is left provisioning; destroy it)");

  Sandbox gave_up = detail(harness, sandbox.id);
  CHECK(gave_up.status == SandboxStatus::provisioning);
  CHECK(gave_up.readiness.phase == ReadinessState::Phase::timed_out);
  CHECK(gave_up.readiness.attempts >= 2);
  CHECK(harness.podman.count_calls("remove ") == 0);
  // No more attempts after giving up; a later wait answers the same at once.
  auto attempts = harness.helpers.relays().size();
  CHECK(error_kind(harness.service->wait(std::nullopt, {.task_id = "never", .timeout_seconds = 10})) == ErrorKind::timeout);
  CHECK(harness.helpers.relays().size() == attempts);

  CHECK(expect_value(harness.service->destroy(std::nullopt, "never")).status == SandboxStatus::destroyed);
  CHECK(harness.podman.count_calls("remove ") == 1);
}

TEST_CASE("a wait that ends before the probe passes answers 408 naming the probe's last error", "[service][readiness]") {
  ServiceHarness harness;
  harness.helpers.set_exec([](const ExecRequest&) -> Result<ExecResult> { return exited(1); });
  provision_probed(harness, "slow", exec_probe({"false"}, 20));
  auto waited = harness.service->wait(std::nullopt, {.task_id = "slow", .timeout_seconds = 1});
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::timeout);
  CHECK(waited.error().message.starts_with(
      "sandbox 'slow' is still provisioning after 1 s: the readiness probe (exec false) has not passed yet ("));
  CHECK(waited.error().message.ends_with(" attempts; last error: `'false'` exited with 1)"));

  // A destroy ends the probing at once: the worker is gone before the harness stops.
  auto destroyed = expect_value(harness.service->destroy(std::nullopt, "slow"));
  auto execs = harness.helpers.execs().size();
  std::this_thread::sleep_for(100ms);  // five intervals: no attempt may follow the destroy
  CHECK(harness.helpers.execs().size() <= execs + 1);
  CHECK(destroyed.status == SandboxStatus::destroyed);
}

TEST_CASE("a wait answers within one interval of the probe passing", "[service][readiness]") {
  ServiceHarness harness;
  FakePort port;
  harness.helpers.set_relay(port.opener());
  provision_probed(harness, "quick", tcp_probe(8000, 200));
  REQUIRE(eventually([&] { return !harness.helpers.relays().empty(); }));
  auto opened = std::chrono::steady_clock::now();
  port.open();
  REQUIRE(harness.wait("quick").has_value());
  CHECK(std::chrono::steady_clock::now() - opened < 400ms);  // one interval, plus slack for a loaded machine
}

TEST_CASE("an HTTP probe writes GET / with Connection: close, follows redirects and passes on 2xx only", "[readiness][http]") {
  FakeHelpers helpers;
  ReadinessProbe probe{.kind = ReadinessProbe::Kind::http, .port = 3000};
  SECTION("nothing listening: the helper's refusal") {
    FakePort port;
    helpers.set_relay(port.opener());
    auto attempt = probe_once(helpers, "/s", probe);
    REQUIRE_FALSE(attempt.has_value());
    CHECK(attempt.error().message == "nothing listens on port 3000 in the sandbox");
  }
  SECTION("a 200") {
    FakePort port("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    port.open();
    helpers.set_relay(port.opener());
    CHECK(probe_once(helpers, "/s", probe).has_value());
    std::string request = port.received(0);
    CHECK(request.starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
    CHECK(request.find("\r\nConnection: close\r\n") != std::string::npos);
    CHECK(request.ends_with("\r\n\r\n"));
  }
  SECTION("a 503 is not ready, and says so") {
    FakePort port("HTTP/1.0 503 Service Unavailable\r\n\r\n");
    port.open();
    helpers.set_relay(port.opener());
    auto attempt = probe_once(helpers, "/s", probe);
    REQUIRE_FALSE(attempt.has_value());
    CHECK(attempt.error().message == "GET / on port 3000 answered 503 Service Unavailable");
  }
  SECTION("redirects are followed to paths on the same port, and the 2xx at the end passes") {
    FakePort port(std::vector<std::string>{
        "HTTP/1.1 302 Moved Temporarily\r\nContent-Length: 0\r\nlocation: /vnc/\r\n\r\n",
        "HTTP/1.1 302 Found\r\nLocation: http://sandbox.example:8080/vnc/vnc.html?autoconnect=true\r\n\r\n",
        "HTTP/1.1 301 Moved\r\nLocation: page.html\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"});
    port.open();
    helpers.set_relay(port.opener());
    CHECK(probe_once(helpers, "/s", probe).has_value());
    CHECK(port.received(0).starts_with("GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
    CHECK(port.received(1).starts_with("GET /vnc/ HTTP/1.1\r\n"));
    CHECK(port.received(2).starts_with("GET /vnc/vnc.html?autoconnect=true HTTP/1.1\r\n"));
    CHECK(port.received(3).starts_with("GET /vnc/page.html HTTP/1.1\r\n"));
  }
  SECTION("a redirect to a path that fails says where it led") {
    FakePort port(std::vector<std::string>{"HTTP/1.1 302 Found\r\nLocation: /vnc/\r\n\r\n",
                                           "HTTP/1.1 502 Bad Gateway\r\n\r\n"});
    port.open();
    helpers.set_relay(port.opener());
    auto attempt = probe_once(helpers, "/s", probe);
    REQUIRE_FALSE(attempt.has_value());
    CHECK(attempt.error().message == "GET /vnc/ on port 3000 answered 502 Bad Gateway");
  }
  SECTION("a redirect loop gives up after five redirects, and a 3xx without Location fails") {
    FakePort loop("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n");
    loop.open();
    helpers.set_relay(loop.opener());
    auto attempt = probe_once(helpers, "/s", probe);
    REQUIRE_FALSE(attempt.has_value());
    CHECK(attempt.error().message == "GET / on port 3000 answered 302 Found to /, after 5 redirects already");
    FakePort nowhere("HTTP/1.1 304 Not Modified\r\n\r\n");
    nowhere.open();
    helpers.set_relay(nowhere.opener());
    attempt = probe_once(helpers, "/s", probe);
    REQUIRE_FALSE(attempt.has_value());
    CHECK(attempt.error().message == "GET / on port 3000 answered 304 Not Modified");
  }
  SECTION("something that is not HTTP") {
    FakePort port("SSH-2.0-OpenSSH\r\n");
    port.open();
    helpers.set_relay(port.opener());
    auto attempt = probe_once(helpers, "/s", probe);
    REQUIRE_FALSE(attempt.has_value());
    CHECK(attempt.error().message == "GET / on port 3000 got no HTTP status line: SSH-2.0-OpenSSH");
  }
}

TEST_CASE("exec probe arguments are single-quoted for the helper's shell", "[readiness]") {
  CHECK(shell_quote({"test", "-f", "/tmp/ready"}) == "'test' '-f' '/tmp/ready'");
  CHECK(shell_quote({"echo", "it's", "a b; rm -rf /", "", "$HOME"}) == "'echo' 'it'\\''s' 'a b; rm -rf /' '' '$HOME'");
}

TEST_CASE("a wait that ends before the probe first runs says the probe has not run yet", "[service][readiness]") {
  ServiceHarness harness;
  harness.podman.hold_starts();
  provision_probed(harness, "held", tcp_probe(8000));
  auto waited = harness.service->wait(std::nullopt, {.task_id = "held", .timeout_seconds = 0});
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::timeout);
  CHECK(waited.error().message ==
        "sandbox 'held' is still provisioning after 0 s (the readiness probe (tcp port 8000) has not run yet)");
  harness.podman.release_starts();
}

TEST_CASE("an image that runs supervisord is ready once a supervisord process runs", "[service][readiness][process]") {
  ServiceHarness harness;
  harness.podman.set_image_config(default_image, {.command = {"/usr/bin/supervisord", "-n"}});
  std::atomic<bool> started = false;
  harness.helpers.set_exec([&](const ExecRequest& request) -> Result<ExecResult> {
    // The probe reads /proc/*/comm in the sandbox's own shell, looking for the name.
    bool is_probe = request.command.find("/proc/[0-9]*/comm") != std::string::npos &&
                    request.command.find("'supervisord'") != std::string::npos;
    return is_probe && started ? exited(0) : exited(1);
  });
  Sandbox sandbox = harness.provision("supervised");
  REQUIRE(eventually([&] { return detail(harness, sandbox.id).readiness.attempts >= 2; }));
  Sandbox probing = detail(harness, sandbox.id);
  CHECK(probing.status == SandboxStatus::provisioning);
  REQUIRE(probing.readiness_probe.has_value());
  CHECK(probing.readiness_probe->kind == ReadinessProbe::Kind::process);
  CHECK(probing.readiness_probe->process == "supervisord");
  CHECK(probing.readiness.last_error == "no supervisord process is running");
  CHECK(harness.stored_record(sandbox.id).readiness_probe == probing.readiness_probe);
  CHECK(harness.helpers.supervisord_checks() == 0);  // the image's cmd said so already
  started = true;
  Sandbox running = expect_value(harness.wait("supervised"));
  CHECK(running.status == SandboxStatus::running);
  CHECK(running.readiness.last_passed == true);
  CHECK(sandbox_to_json(running).find(R"("readiness_probe":{"interval_ms":100,"process":{"name":"supervisord"}})") !=
        std::string::npos);
}

TEST_CASE("an image with a supervisord binary gets the process probe; one without is ready at once",
          "[service][readiness][process]") {
  ServiceHarness harness;
  harness.helpers.set_exec([](const ExecRequest&) -> Result<ExecResult> { return exited(1); });
  SECTION("installed") {
    harness.helpers.set_supervisord_installed(true);
    Sandbox sandbox = harness.provision("installed");
    REQUIRE(eventually([&] { return detail(harness, sandbox.id).readiness.attempts >= 1; }));
    CHECK(detail(harness, sandbox.id).readiness_probe->kind == ReadinessProbe::Kind::process);
    CHECK(detail(harness, sandbox.id).status == SandboxStatus::provisioning);
  }
  SECTION("not installed") {
    Sandbox running = harness.provision_running("plain");
    CHECK_FALSE(running.readiness_probe.has_value());
    CHECK(harness.helpers.supervisord_checks() == 1);
    CHECK(harness.helpers.execs().empty());
  }
  SECTION("an image with a readiness_port keeps its HTTP probe, a provision its own") {
    harness.helpers.set_supervisord_installed(true);
    harness.helpers.set_exec([](const ExecRequest&) -> Result<ExecResult> { return exited(0); });
    Sandbox running = expect_value(harness.wait(provision_probed(harness, "own", exec_probe({"true"})).name));
    CHECK(running.readiness_probe->kind == ReadinessProbe::Kind::exec);
    CHECK(harness.helpers.supervisord_checks() == 0);
  }
}

TEST_CASE("process_probe_for looks at the entrypoint and cmd before asking the sandbox", "[readiness][process]") {
  int asked = 0;
  auto installed = [&] {
    ++asked;
    return false;
  };
  CHECK(process_probe_for({"/usr/bin/supervisord"}, installed).has_value());
  CHECK(process_probe_for({"/bin/sh", "-c", "exec supervisord -c /etc/supervisor/supervisord.conf"}, installed));
  CHECK(asked == 0);
  CHECK_FALSE(process_probe_for({"nginx", "-g", "daemon off;"}, installed).has_value());
  CHECK(asked == 1);
}
