// kill -9 of the agent at any moment loses no record and leaves no unparseable file; a dead
// Podman service is restarted and requests in between get 503, never a hang.

#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <future>
#include <mutex>
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
    if (name.ends_with(".log")) continue;  // a sandbox's main-process output, beside its record
    CHECK(name.ends_with(".json"));        // nothing set aside as unreadable
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

/// After a restart: waits for the reconcile (no sandbox left provisioning), then checks that each sandbox is
/// listed once, that none the agent accepted is lost and every answered destroy stays destroyed, and that
/// containers run exactly for the running records (no orphan). Returns id → status.
std::map<std::string, std::string> check_reconciled(const TestAgent& agent, const std::set<std::string>& accepted,
                                                    const std::set<std::string>& destroyed,
                                                    std::chrono::seconds reconcile_deadline) {
  REQUIRE(eventually([&] { return agent.api("GET", "/sandboxes?status=provisioning").json_body().empty(); },
                     reconcile_deadline, 100ms));
  json listed = agent.api("GET", "/sandboxes").json_body();
  REQUIRE(listed.is_array());
  std::map<std::string, std::string> status_of;
  for (const auto& sandbox : listed) {
    std::string id = sandbox["id"];
    INFO("sandbox " << sandbox.dump());
    CHECK_FALSE(status_of.contains(id));  // never listed twice
    status_of[id] = sandbox["status"];
  }
  for (const auto& id : accepted) {
    INFO("accepted sandbox " << id);
    REQUIRE(status_of.contains(id));  // never lost
    if (destroyed.contains(id)) CHECK(status_of[id] == "destroyed");
  }
  auto containers = own_containers(agent);
  for (const auto& [id, status] : status_of) {
    INFO("sandbox " << id << " is " << status);
    if (status == "running")
      CHECK(containers[id] == std::vector<std::string>{"running"});
    else
      CHECK_FALSE(containers.contains(id));
  }
  for (const auto& [id, states] : containers) {
    INFO("container of sandbox " << id);
    CHECK(status_of.contains(id));  // no orphan: every container of this agent's belongs to a record
  }
  return status_of;
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
        auto reply = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"ttl_seconds", 600}}.dump(),
                               std::nullopt, 10s);
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
  auto status_of = check_reconciled(agent, accepted, destroyed, 90s);
  for (const auto& id : accepted) {
    INFO("accepted sandbox " << id);
    CHECK((status_of[id] == "running" || status_of[id] == "destroyed"));
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

TEST_CASE("with Podman down, a destroy answers 503 at once and changes nothing; once Podman is back it goes through",
          "[crash]") {
  // The agent's own service would be restarted at once: this agent uses a service the test runs, so that
  // Podman stays down for as long as the test says. The service gets the configuration the agent would
  // give its own (OCI runtime, capabilities), written by a first start.
  LocalDir local;
  auto socket = local.path / "podman.sock";
  auto conf = local.path / "containers.conf";
  TestAgent agent;
  agent.start();
  std::filesystem::copy_file(agent.paths().containers_conf(), conf);
  agent.stop();
  auto start_service = [&] {
    std::filesystem::remove(socket);
    auto service = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{"podman", "system", "service", "--time=0", "unix://" + socket.string()},
        std::map<std::string, std::string>{{"CONTAINERS_CONF", conf.string()}});
    INFO(service->errors());
    REQUIRE(eventually([&] { return std::filesystem::exists(socket); }, 30s));
    return service;
  };
  auto service = start_service();
  agent.start({"--podman-socket", socket.string()});
  json sandbox = agent.provision_running(unique_name("down"));
  std::string id = sandbox["id"];
  std::string task = sandbox["name"];

  service.reset();  // SIGKILL: the socket stays, nothing answers on it
  auto started = std::chrono::steady_clock::now();
  auto refused = agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), std::nullopt, 90s);
  INFO(refused.body);
  CHECK(refused.status == 503);
  CHECK(std::chrono::steady_clock::now() - started < 15s);
  CHECK_FALSE(refused.json_body().value("detail", "").empty());
  // Nothing changed: still running, its container too, and it still runs commands (through its helper).
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "running");
  CHECK(agent.container_states(id) == std::vector<std::string>{"running"});
  auto exec = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "echo alive"}}.dump());
  CHECK(exec.status == 200);
  CHECK(exec.json_body().value("stdout", "") == "alive\n");

  service = start_service();
  REQUIRE(eventually([&] { return agent.api("GET", "/agent/status").json_body().value("podman_ready", false); }, 30s));
  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump());
  INFO(destroyed.body);
  CHECK(destroyed.status == 200);
  CHECK(agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "destroyed");
  CHECK(agent.container_states(id).empty());
}

TEST_CASE("a destroy stuck on a hung Podman holds up no other sandbox's requests", "[crash]") {
  TestAgent agent;
  agent.start();
  json stuck = agent.provision_running(unique_name("stuck"));
  json other = agent.provision_running(unique_name("other"));
  pid_t service = agent.podman_service_pid();
  REQUIRE(service > 0);
  ::kill(service, SIGSTOP);  // every Podman call now waits
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{service};

  auto destroying = std::async(std::launch::async, [&] {
    return agent.api("POST", "/sandboxes/destroy", json{{"task_id", stuck["name"]}}.dump(), std::nullopt, 120s);
  });
  // The destroy is held by Podman (a bound, not a pause: it must still be waiting)...
  REQUIRE(destroying.wait_for(2s) == std::future_status::timeout);
  // ...while the other sandbox and the listing are answered at once.
  for (int i = 0; i < 10; ++i) {
    auto started = std::chrono::steady_clock::now();
    auto exec =
        agent.api("POST", "/sandboxes/exec",
                  json{{"task_id", other["name"]}, {"command", "echo " + std::to_string(i)}}.dump(), std::nullopt, 30s);
    INFO("exec " << i << ": " << exec.body);
    CHECK(exec.status == 200);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
  }
  auto started = std::chrono::steady_clock::now();
  auto listed = agent.api("GET", "/sandboxes", "", std::nullopt, 30s);
  CHECK(listed.status == 200);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  // A provision needs Podman itself: it is answered all the same, accepted or 503 once the agent's
  // check of Podman times out, never left hanging.
  started = std::chrono::steady_clock::now();
  auto late =
      agent.api("POST", "/sandboxes/provision", json{{"task_id", unique_name("late")}}.dump(), std::nullopt, 60s);
  INFO("provision during the hang: " << late.body);
  CHECK((late.status == 200 || late.status == 503));
  CHECK(std::chrono::steady_clock::now() - started < 15s);
  // The record tells the truth while the destroy is under way.
  CHECK(agent.api("GET", "/sandboxes/detail/" + stuck["id"].get<std::string>()).json_body()["status"] == "running");
  CHECK(destroying.wait_for(0s) == std::future_status::timeout);

  ::kill(service, SIGCONT);
  auto destroyed = destroying.get();
  INFO(destroyed.body);
  CHECK(destroyed.status == 200);
  CHECK(agent.container_states(stuck["id"]).empty());
  // A provision accepted during the hang completes once Podman moves again.
  if (late.status != 200) return;
  std::string late_id = late.json_body()["id"];
  CHECK(eventually([&] { return agent.api("GET", "/sandboxes/detail/" + late_id).json_body()["status"] == "running"; },
                   60s, 100ms));
}

TEST_CASE("a provision interrupted by a crash is resumed by the next start and ends running, with one container",
          "[crash]") {
  TestAgent agent;
  agent.start();
  // Killed right after the answer, while the container is being created: the record on disk says
  // provisioning. (Rarely the provision wins the race; a few tries make sure the case is tested.)
  std::string id;
  std::string task;
  for (int attempt = 0; attempt < 5 && id.empty(); ++attempt) {
    task = unique_name("resume");
    auto reply = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"ttl_seconds", 600}}.dump());
    REQUIRE(reply.status == 200);
    agent.kill9();
    std::string candidate = reply.json_body()["id"];
    auto record = modbox::read_file(agent.paths().sandboxes_dir() / (candidate + ".json"));
    REQUIRE(record);
    auto parsed = modbox::sandbox_record_from_json(*record);
    REQUIRE(parsed);
    if (parsed->status == modbox::SandboxStatus::provisioning) id = candidate;
    agent.start();
  }
  REQUIRE_FALSE(id.empty());
  INFO("sandbox " << id);
  CHECK(eventually([&] { return agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "running"; }, 90s,
                   100ms));
  CHECK(agent.container_states(id) == std::vector<std::string>{"running"});
  auto exec = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "echo resumed"}}.dump());
  CHECK(exec.json_body().value("stdout", "") == "resumed\n");
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
  CHECK(agent.container_states(id).empty());
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

TEST_CASE("SIGKILL churn: 50 kills at random moments of provisions, destroys, uploads and URL traffic", "[churn]") {
  TestAgent agent;
  agent.start();
  const std::string key = unique_name("key");
  const std::string keeper = unique_name("keep");
  json kept = agent.provision_running(keeper, {{"ttl_seconds", 1800}, {"env_vars", {{"SANDBOX_API_KEY", key}}}});
  const std::string kept_id = kept["id"];
  const std::string kept_url = kept["sandbox_url"];
  const auto upload_file = std::filesystem::temp_directory_path() / unique_name("churn-upload");
  write_random_file(upload_file, 256 << 10);
  struct RemoveFile {
    std::filesystem::path path;
    ~RemoveFile() { std::filesystem::remove(path); }
  } remove_upload{upload_file};

  std::mt19937 random(static_cast<unsigned>(::getpid()));
  std::mutex mutex;
  std::set<std::string> accepted;   // provisions the agent answered 200
  std::set<std::string> destroyed;  // destroys the agent answered 200
  int rounds_with_work = 0;
  constexpr int kills = 50;
  for (int round = 0; round < kills; ++round) {
    std::atomic<bool> stop = false;
    std::atomic<int> provisions = 0;
    std::atomic<int> transfers = 0;
    auto remember = [&](std::set<std::string>& into, const std::string& id) {
      std::lock_guard lock(mutex);
      into.insert(id);
    };
    std::thread lifecycle([&, coin = std::mt19937(static_cast<unsigned>(random()))]() mutable {
      while (!stop) {
        std::string task = unique_name("churn");
        auto reply = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"ttl_seconds", 900}}.dump(),
                               std::nullopt, 10s);
        if (reply.status != 200) continue;
        std::string id = reply.json_body()["id"];
        remember(accepted, id);
        ++provisions;
        if (coin() % 2 == 0) continue;
        auto destroy = agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump(), std::nullopt, 10s);
        if (destroy.status == 200) remember(destroyed, id);
      }
    });
    std::thread traffic([&] {
      while (!stop) {
        // An upload (a temporary file in the sandbox, then its rename) and a proxied request through the URL.
        run_command({"curl", "-sS", "--noproxy", "*", "-m", "10", "-o", "/dev/null", "-H",
                     "Authorization: Bearer " + key, "-F", "file=@" + upload_file.string(),
                     kept_url + "/modbox/api/files/upload"});
        run_command({"curl", "-sS", "--noproxy", "*", "-m", "10", "-o", "/dev/null", "-H",
                     "Authorization: Bearer " + key, kept_url + "/anything"});
        ++transfers;
      }
    });
    // Killed once both kinds of work have begun, at a random moment after.
    bool got_one = eventually([&] { return provisions.load() >= 1 && transfers.load() >= 1; }, 60s, 5ms);
    if (got_one) {
      ++rounds_with_work;
      std::this_thread::sleep_for(std::chrono::milliseconds(random() % 600));
    }
    agent.kill9();
    stop = true;
    lifecycle.join();
    traffic.join();

    // After the restart and its reconcile, the invariants hold.
    agent.start();
    INFO("round " << round);
    std::map<std::string, std::string> status_of;
    {
      std::lock_guard lock(mutex);
      status_of = check_reconciled(agent, accepted, destroyed, 120s);
    }
    auto records = read_records(agent, false);  // every record parses, no temporary file is left
    CHECK(status_of.size() == records.size());
    CHECK(status_of[kept_id] == "running");
    // The uploads that were cut off left no temporary file behind in the sandbox's uploads.
    auto leftovers = agent.api(
        "POST", "/sandboxes/exec",
        json{{"task_id", keeper}, {"command", "ls -A /workspace/uploads | grep -v -- '-churn-upload' | wc -l"}}.dump());
    CHECK(leftovers.json_body().value("stdout", "") == "0\n");
    // Keep the churn bounded: only the kept sandbox lives into the next round.
    for (const auto& sandbox : agent.api("GET", "/sandboxes?status=running").json_body())
      if (sandbox["id"] != kept_id) {
        auto destroy = agent.api("POST", "/sandboxes/destroy", json{{"task_id", sandbox["name"]}}.dump());
        if (destroy.status == 200) destroyed.insert(sandbox["id"]);
      }
  }
  REQUIRE(rounds_with_work >= kills / 2);  // most kills came in the middle of work
  REQUIRE(accepted.size() >= static_cast<std::size_t>(kills / 2));
}
