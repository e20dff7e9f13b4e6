// kill -9 of the agent at any moment loses no record and leaves no unparseable file; a dead
// Podman service is restarted and requests in between get 503, never a hang.

#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "common/models.h"
#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {
/// Every record file parses; returns id → status. A crash in the middle of a write may leave a
/// temporary file (never the only copy of a record); a started agent has cleaned them up.
std::map<std::string, std::string> read_records(const TestAgent& agent, bool after_crash) {
  std::map<std::string, std::string> records;
  for (const auto& entry : std::filesystem::directory_iterator(agent.paths().sandboxes_dir())) {
    std::string name = entry.path().filename().string();
    INFO("file " << name);
    if (after_crash && name.starts_with(".") && name.find(".json.tmp-") != std::string::npos) continue;
    CHECK(name.ends_with(".json"));  // nothing set aside as unreadable
    auto text = modbox::read_file(entry.path());
    REQUIRE(text);
    auto sandbox = modbox::sandbox_record_from_json(*text);
    REQUIRE(sandbox);
    records[sandbox->id] = std::string(modbox::to_string(sandbox->status));
  }
  return records;
}
}  // namespace

/// The agent's own containers (label io.modbox.agent=<its id>): sandbox id → states.
std::map<std::string, std::vector<std::string>> own_containers(const TestAgent& agent) {
  auto listed = agent.podman({"ps", "-a", "--filter", "label=io.modbox.agent=" + agent.agent_id(), "--format", "json"});
  json containers = json::parse(listed.out, nullptr, false);
  INFO(listed.err);
  REQUIRE(containers.is_array());
  std::map<std::string, std::vector<std::string>> by_sandbox;
  for (const auto& container : containers)
    by_sandbox[container["Labels"].value("io.modbox.sandbox", "?")].push_back(container.value("State", "?"));
  return by_sandbox;
}

TEST_CASE("kill -9 of the agent during provisions and destroys loses no record", "[crash]") {
  TestAgent agent;
  std::mt19937 random(static_cast<unsigned>(::getpid()));
  std::mutex mutex;
  std::set<std::string> accepted;   // ids whose provision the agent answered 200
  std::set<std::string> destroyed;  // ids whose destroy the agent answered 200
  for (int round = 0; round < 4; ++round) {
    agent.start();
    // Fire requests from another thread and kill the agent in the middle of them: once it has answered
    // one (a fresh agent's first provision can take a second on a loaded machine), at a random moment.
    std::atomic<bool> stop = false;
    std::atomic<bool> answered = false;
    std::thread client([&] {
      for (int i = 0; !stop && i < 50; ++i) {
        std::string task = unique_name("crash");
        auto reply = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"ttl_seconds", 600}}.dump(), std::nullopt, 10s);
        if (reply.status != 200) continue;  // killed before or while answering: nothing was promised
        std::string id = reply.json_body()["id"];
        {
          std::lock_guard lock(mutex);
          accepted.insert(id);
        }
        answered = true;
        if (i % 2 == 0) continue;
        auto destroy = agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), std::nullopt, 10s);
        if (destroy.status == 200) {
          std::lock_guard lock(mutex);
          destroyed.insert(id);
        }
      }
    });
    bool got_one = eventually([&] { return answered.load(); }, 60s, 5ms);
    if (got_one) std::this_thread::sleep_for(std::chrono::milliseconds(random() % 400));
    agent.kill9();
    stop = true;
    client.join();
    REQUIRE(got_one);
    // On disk, right after the kill: every accepted sandbox has a record that parses.
    auto records = read_records(agent, true);
    std::lock_guard lock(mutex);
    for (const auto& id : accepted) CHECK(records.contains(id));
  }
  // Every round had a provision answered before its kill: fewer would mean the checks below held
  // vacuously.
  REQUIRE(accepted.size() >= 4);

  // After a restart and its reconcile: the same sandboxes, none lost, none twice, each destroy kept, and
  // containers exactly for the live ones.
  agent.start();
  REQUIRE(eventually([&] { return agent.api("GET", "/sandboxes?status=provisioning").json_body().empty(); }, 90s, 100ms));
  json listed = agent.api("GET", "/sandboxes").json_body();
  REQUIRE(listed.is_array());
  std::map<std::string, std::string> status_of;
  for (const auto& sandbox : listed) {
    std::string id = sandbox["id"];
    INFO("sandbox " << sandbox.dump());
    CHECK_FALSE(status_of.contains(id));
    status_of[id] = sandbox["status"];
  }
  for (const auto& id : accepted) {
    INFO("accepted sandbox " << id);
    REQUIRE(status_of.contains(id));
    if (destroyed.contains(id)) CHECK(status_of[id] == "destroyed");
    else CHECK((status_of[id] == "running" || status_of[id] == "destroyed"));
  }
  auto containers = own_containers(agent);
  for (const auto& [id, status] : status_of) {
    INFO("sandbox " << id << " is " << status);
    if (status == "running") CHECK(containers[id] == std::vector<std::string>{"running"});
    else CHECK_FALSE(containers.contains(id));
  }
  for (const auto& [id, states] : containers) {
    INFO("container of sandbox " << id);
    CHECK(status_of.contains(id));  // no orphan: every container of this agent's belongs to a record
  }
  read_records(agent, false);
}

TEST_CASE("a killed podman service is restarted and requests in between never hang", "[crash]") {
  TestAgent agent;
  agent.start();
  json sandbox = agent.provision_running(unique_name("svc"));
  pid_t service = agent.podman_service_pid();
  REQUIRE(service > 0);
  ::kill(service, SIGKILL);
  // Requests right after the kill get an answer quickly: a result or 503.
  auto started = std::chrono::steady_clock::now();
  auto reply = agent.api("POST", "/sandboxes/provision", json{{"task_id", unique_name("during")}}.dump());
  CHECK((reply.status == 200 || reply.status == 503));
  CHECK(std::chrono::steady_clock::now() - started < 15s);
  // The agent brings the service back, and the old sandbox still works.
  CHECK(eventually([&] { return agent.podman_service_pid() > 0 && agent.podman_service_pid() != service; }, 30s));
  CHECK(eventually([&] { return agent.api("GET", "/agent/status").json_body().value("podman_ready", false); }, 30s));
  CHECK(agent.cli({"exec", sandbox["name"], "--", "true"}).exit_code == 0);
  auto after = agent.provision_running(unique_name("after"));
  CHECK(after["status"] == "running");
}

TEST_CASE("an unreadable record is set aside and does not stop the agent", "[crash]") {
  TestAgent agent;
  agent.start();
  json sandbox = agent.provision_running(unique_name("good"));
  agent.stop();
  auto broken = agent.paths().sandboxes_dir() / "0badc0de-0000-4000-8000-000000000000.json";
  REQUIRE(modbox::write_file_atomic(broken, "{\"id\": trunc"));
  agent.start();
  CHECK(agent.api("GET", "/sandboxes/detail/" + sandbox["id"].get<std::string>()).json_body()["status"] == "running");
  CHECK(!std::filesystem::exists(broken));
  bool set_aside = false;
  for (const auto& entry : std::filesystem::directory_iterator(agent.paths().sandboxes_dir()))
    set_aside = set_aside || entry.path().filename().string().find(".corrupt-") != std::string::npos;
  CHECK(set_aside);
}
