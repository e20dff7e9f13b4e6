// A provision's `command` over fakes: the container runs it under the helper, its exit (the helper's
// bell, or a container that stopped) ends the sandbox as `exited` with Podman's exit code, wait answers
// 409 with the log's last lines, and the log is served, followed and kept after the sandbox ends.

#include <catch2/catch.hpp>
#include <thread>

#include "common/helper_protocol.h"
#include "common/main_log.h"
#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

const std::vector<std::string> command = {"sh", "-c", "echo hi; exit 3"};

Sandbox provision_command(ServiceHarness& harness, const std::string& task, std::vector<std::string> argv = command) {
  auto provisioned =
      harness.service->provision(std::nullopt, ProvisionRequest{.task_id = task, .command = std::move(argv)});
  INFO((provisioned ? "" : provisioned.error().message));
  REQUIRE(provisioned.has_value());
  return *provisioned;
}

std::filesystem::path helper_directory(ServiceHarness& harness, const std::string& id) {
  return harness.dir / "run" / "sandboxes" / id;
}

/// What the helper does when the command writes `output` and exits with `code`: the log, the
/// bell, and (through the fake) the container's end.
void command_exits(ServiceHarness& harness, const Sandbox& sandbox, int code, const std::string& output,
                   bool oom_killed = false, bool ring = true, std::string bell = "") {
  auto directory = helper_directory(harness, sandbox.id);
  auto log = expect_value(main_log::Writer::create((directory / helper::main_log_name).string()));
  REQUIRE(log.append(output).has_value());
  // The helper rings the bell before it exits: once the container has stopped, the agent may release the
  // helper's directory at any moment.
  if (bell.empty()) bell = std::to_string(code) + "\n";
  if (ring) REQUIRE(write_file_atomic(directory / helper::main_exit_name, bell).has_value());
  harness.podman.exit_container(sandbox.container_id, code, oom_killed);
}

Sandbox wait_until_destroyed(ServiceHarness& harness, const std::string& id) {
  REQUIRE(eventually([&] { return harness.status_of(id) == SandboxStatus::destroyed; }));
  return expect_value(harness.service->get(std::nullopt, id));
}

}  // namespace

TEST_CASE("a command runs as the helper's child, which ends the sandbox with it", "[service][entrypoint]") {
  ServiceHarness harness;
  Sandbox sandbox = provision_command(harness, "job");
  CHECK(sandbox.command == command);
  auto running = expect_value(harness.wait("job"));
  auto specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].entrypoint ==
        std::vector<std::string>{"/.modbox/helper", "--socket", "/run/modbox/helper.sock", "--exit-with-child", "--"});
  CHECK(specs[0].command == command);
  CHECK(harness.stored_record(sandbox.id).command == command);

  // An image's own entrypoint is not run with a command, and without one the helper does not exit with it.
  expect_value(harness.service->provision(std::nullopt, ProvisionRequest{.task_id = "plain"}));
  expect_value(harness.wait("plain"));
  specs = harness.podman.created_specs();
  REQUIRE(specs.size() == 2);
  CHECK(std::find(specs[1].entrypoint.begin(), specs[1].entrypoint.end(), "--exit-with-child") ==
        specs[1].entrypoint.end());
}

TEST_CASE("the command's exit destroys the sandbox as exited, with Podman's exit code", "[service][entrypoint]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  provision_command(harness, "job");
  Sandbox running = expect_value(harness.wait("job"));
  command_exits(harness, running, 3, "hi\nbye\n");
  Sandbox ended = wait_until_destroyed(harness, running.id);
  CHECK(ended.destroy_reason == DestroyReason::exited);
  CHECK(ended.exit_code == 3);
  CHECK(ended.oom_killed == false);
  CHECK_FALSE(ended.error.has_value());
  CHECK_FALSE(harness.podman.container(running.container_id).has_value());
  CHECK(harness.stored_record(running.id).exit_code == 3);
  // The log outlives the helper's directory, next to the record.
  CHECK_FALSE(std::filesystem::exists(helper_directory(harness, running.id)));
  CHECK(std::filesystem::exists(harness.store_directory() / (running.id + ".log")));
  CHECK(expect_value(harness.service->logs(std::nullopt, "job", std::nullopt)) == "hi\nbye\n");
  CHECK(expect_value(harness.service->logs(std::nullopt, running.id, 1)) == "bye\n");

  auto waited = harness.wait("job");
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::conflict);
  CHECK(waited.error().message.find("exit code 3") != std::string::npos);
  CHECK(waited.error().message.find("hi\nbye") != std::string::npos);
}

TEST_CASE("a command killed for running out of memory is 137 with oom_killed", "[service][entrypoint]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  struct Case {
    std::string task;
    int code;
    bool podman_oom;
    std::string bell;
    bool expected;
  };
  for (const Case& item : {Case{"podman-says", 137, true, "137\n", true},
                           Case{"cgroup-says", 137, false, "137 oom\n", true},  // conmon missed it
                           Case{"plain-kill", 137, false, "137\n", false},      // kill -9, not memory
                           Case{"claims-only", 1, false, "1 oom\n", false}}) {  // without Podman's 137
    provision_command(harness, item.task);
    Sandbox running = expect_value(harness.wait(item.task));
    command_exits(harness, running, item.code, "", item.podman_oom, true, item.bell);
    Sandbox ended = wait_until_destroyed(harness, running.id);
    INFO(item.task);
    CHECK(ended.exit_code == item.code);
    CHECK(ended.oom_killed == item.expected);
  }
  auto waited = harness.wait("cgroup-says");
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().message.find("out of memory") != std::string::npos);
  CHECK(waited.error().message.find("no output") != std::string::npos);
}

TEST_CASE("a bell while the container still runs changes nothing; a stopped container without one does",
          "[service][entrypoint]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  provision_command(harness, "liar");
  Sandbox running = expect_value(harness.wait("liar"));
  // The sandbox rings the bell itself: Podman says the container runs, so the sandbox lives on.
  REQUIRE(write_file_atomic(helper_directory(harness, running.id) / helper::main_exit_name, "0\n").has_value());
  std::this_thread::sleep_for(main_exit_poll * 3);
  CHECK(harness.status_of(running.id) == SandboxStatus::running);
  CHECK(harness.podman.count_calls("inspect ") >= 1);

  // A helper that could not ring (killed itself): Podman's list of stopped containers tells.
  provision_command(harness, "silent");
  Sandbox silent = expect_value(harness.wait("silent"));
  command_exits(harness, silent, 9, "", false, false);
  Sandbox ended = wait_until_destroyed(harness, silent.id);
  CHECK(ended.destroy_reason == DestroyReason::exited);
  CHECK(ended.exit_code == 9);
  CHECK(harness.status_of(running.id) == SandboxStatus::running);
}

TEST_CASE("a sandbox without a command outlives its container's entrypoint as before", "[service][entrypoint]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  Sandbox running = harness.provision_running("plain");
  harness.podman.exit_container(running.container_id, 0);
  std::this_thread::sleep_for(main_exit_backend_poll / 2);
  CHECK(harness.status_of(running.id) == SandboxStatus::running);
  CHECK(harness.podman.count_calls("inspect ") == 0);
}

TEST_CASE("a command that exits before the helper answers: wait answers 409 at once", "[service][entrypoint]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  harness.helpers.set_ready(false);
  Sandbox sandbox = provision_command(harness, "crash");
  // The container is started; the command exits before its helper ever answered.
  REQUIRE(eventually([&] {
    auto current = harness.service->get(std::nullopt, "crash");
    return current && !current->container_id.empty() &&
           harness.podman.container(current->container_id).value_or(FakeContainer{}).state == "running";
  }));
  Sandbox started = expect_value(harness.service->get(std::nullopt, "crash"));
  command_exits(harness, started, 7, "booting\nno config file\n");
  auto began = std::chrono::steady_clock::now();
  auto waited = harness.service->wait(std::nullopt, WaitRequest{.task_id = "crash", .timeout_seconds = 60});
  CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(5));
  REQUIRE_FALSE(waited.has_value());
  CHECK(waited.error().kind == ErrorKind::conflict);
  CHECK(waited.error().message.find("exit code 7") != std::string::npos);
  CHECK(waited.error().message.find("no config file") != std::string::npos);
  Sandbox ended = expect_value(harness.service->get(std::nullopt, sandbox.id));
  CHECK(ended.status == SandboxStatus::destroyed);
  CHECK(ended.destroy_reason == DestroyReason::exited);
}

TEST_CASE("a followed log gets what the command writes next, and ends with the sandbox", "[service][entrypoint]") {
  ServiceHarness harness;
  harness.service->start_reaper();
  provision_command(harness, "chatty");
  Sandbox running = expect_value(harness.wait("chatty"));
  auto directory = helper_directory(harness, running.id);
  auto log = expect_value(main_log::Writer::create((directory / helper::main_log_name).string()));
  REQUIRE(log.append("one\ntwo\n").has_value());

  std::mutex mutex;
  std::string received;
  std::atomic<bool> ended = false, result = false;
  std::thread follower([&] {
    result = harness.service->follow_logs(running.id, 1, [&](std::string_view bytes) {
      std::lock_guard lock(mutex);
      received.append(bytes);
      return true;
    });
    ended = true;
  });
  auto seen = [&](const std::string& text) {
    return eventually([&] {
      std::lock_guard lock(mutex);
      return received == text;
    });
  };
  CHECK(seen("two\n"));  // tail=1
  REQUIRE(log.append("three\n").has_value());
  CHECK(seen("two\nthree\n"));
  CHECK_FALSE(ended);
  REQUIRE(log.append("four\n").has_value());
  harness.podman.exit_container(running.container_id, 0);
  REQUIRE(write_file_atomic(directory / helper::main_exit_name, "0\n").has_value());
  CHECK(eventually([&] { return ended.load(); }));
  follower.join();
  CHECK(result);
  CHECK(received == "two\nthree\nfour\n");
}

TEST_CASE("a follower whose client is gone stops; logs of an unknown sandbox are not found", "[service][entrypoint]") {
  ServiceHarness harness;
  provision_command(harness, "quiet", {"sleep", "600"});
  Sandbox running = expect_value(harness.wait("quiet"));
  int asked = 0;
  bool result = harness.service->follow_logs(running.id, std::nullopt, [&](std::string_view) { return ++asked < 3; });
  CHECK_FALSE(result);
  CHECK(asked == 3);
  CHECK(expect_value(harness.service->logs(std::nullopt, "quiet", std::nullopt)).empty());
  CHECK(harness.service->logs(std::nullopt, "nope", std::nullopt).error().kind == ErrorKind::not_found);
}

TEST_CASE("a destroy keeps the log; a command that exited while the agent was away is recorded at start",
          "[service][entrypoint]") {
  ServiceHarness harness;
  provision_command(harness, "kept", {"sleep", "600"});
  Sandbox kept = expect_value(harness.wait("kept"));
  auto log =
      expect_value(main_log::Writer::create((helper_directory(harness, kept.id) / helper::main_log_name).string()));
  REQUIRE(log.append("kept\n").has_value());
  Sandbox destroyed = expect_value(harness.service->destroy(std::nullopt, "kept"));
  CHECK(destroyed.destroy_reason == DestroyReason::requested);
  CHECK_FALSE(destroyed.exit_code.has_value());
  CHECK(expect_value(harness.service->logs(std::nullopt, "kept", std::nullopt)) == "kept\n");

  provision_command(harness, "away");
  Sandbox away = expect_value(harness.wait("away"));
  harness.service.reset();  // the agent stops; the command exits meanwhile
  command_exits(harness, away, 2, "gone\n");
  harness.service = harness.make_service();
  REQUIRE(harness.service->reconcile().has_value());
  Sandbox ended = expect_value(harness.service->get(std::nullopt, away.id));
  CHECK(ended.status == SandboxStatus::destroyed);
  CHECK(ended.destroy_reason == DestroyReason::exited);
  CHECK(ended.exit_code == 2);
  CHECK(expect_value(harness.service->logs(std::nullopt, "away", std::nullopt)) == "gone\n");
}
