#pragma once
// A SandboxService over fakes and a real RecordStore in a temp dir, with the helpers the
// lifecycle tests share.

#include <catch2/catch.hpp>
#include <memory>

#include "agent/podman_backend.h"
#include "agent/sandbox_service.h"
#include "tests/unit/fakes.h"
#include "tests/unit/test_support.h"

namespace modbox::testing {

inline constexpr const char* agent_id = "agent-1";
inline constexpr const char* default_image = "localhost/modbox/sandbox-lite:latest";

struct ServiceHarness {
  TempDir dir;
  FakePodman podman;
  FakeEndpoints endpoints;
  FakeHelpers helpers;
  FakeTtlTimers timers;
  std::string helper_binary = "/bin/true";  // any executable file: the fakes never run it
  std::chrono::milliseconds helper_ready_timeout{10000};
  std::chrono::milliseconds readiness_give_up = limits::readiness_give_up;
  FakeClock clock{TimePoint(std::chrono::seconds(1'779'444'000))};
  std::unique_ptr<PodmanBackend> backend;                    // the real Podman backend, over the fake Podman
  std::unique_ptr<SandboxService> service = make_service();  // declared last: stopped first

  std::filesystem::path store_directory() const { return dir / "sandboxes"; }

  /// A service over the harness's store directory, with its records loaded.
  std::unique_ptr<SandboxService> make_service() {
    auto store = RecordStore::open(store_directory());
    REQUIRE(store.has_value());
    backend = std::make_unique<PodmanBackend>(
        PodmanBackendConfig{
            .agent_id = agent_id, .helper_binary = helper_binary, .sandbox_runtime_root = dir / "run" / "sandboxes"},
        podman);
    SandboxServiceConfig config{.default_image = default_image,
                                .created_by = "tester",
                                .now = [this] { return clock.now(); },
                                .helpers = &helpers,
                                .helper_ready_timeout = helper_ready_timeout,
                                .readiness_give_up = readiness_give_up,
                                .timers = &timers};
    auto made = std::make_unique<SandboxService>(std::move(config), *backend, std::move(*store), endpoints);
    made->load();
    return made;
  }

  /// Stops the service and starts a new one over the same records, as an agent restart does.
  void restart() {
    service.reset();
    backend.reset();
    service = make_service();
  }

  /// Writes a record as an earlier agent would have left it.
  void store_record(const Sandbox& sandbox) {
    auto store = RecordStore::open(store_directory());
    REQUIRE(store.has_value());
    REQUIRE(store->put(sandbox.id, sandbox_record_to_json(sandbox)).has_value());
  }

  /// The record as it is on disk.
  Sandbox stored_record(const std::string& id) const {
    auto text = read_file(store_directory() / (id + ".json"));
    REQUIRE(text.has_value());
    auto sandbox = sandbox_record_from_json(*text);
    REQUIRE(sandbox.has_value());
    return *sandbox;
  }

  Sandbox provision(const std::string& task_id, const Workspace& workspace = std::nullopt,
                    std::optional<int> ttl_seconds = std::nullopt, std::map<std::string, std::string> env = {}) {
    auto provisioned = service->provision(
        workspace, ProvisionRequest{.task_id = task_id, .ttl_seconds = ttl_seconds, .env_vars = std::move(env)});
    INFO((provisioned ? "" : provisioned.error().message));
    REQUIRE(provisioned.has_value());
    return *provisioned;
  }

  Result<Sandbox> wait(const std::string& task_id, const Workspace& workspace = std::nullopt) {
    return service->wait(workspace, WaitRequest{.task_id = task_id, .timeout_seconds = 10});
  }

  Sandbox provision_running(const std::string& task_id, const Workspace& workspace = std::nullopt,
                            std::optional<int> ttl_seconds = std::nullopt,
                            std::map<std::string, std::string> env = {}) {
    provision(task_id, workspace, ttl_seconds, std::move(env));
    auto running = wait(task_id, workspace);
    INFO((running ? "" : running.error().message));
    REQUIRE(running.has_value());
    REQUIRE(running->status == SandboxStatus::running);
    return *running;
  }

  SandboxStatus status_of(const std::string& id) const {
    auto sandbox = service->get(std::nullopt, id);
    REQUIRE(sandbox.has_value());
    return sandbox->status;
  }
};

}  // namespace modbox::testing
