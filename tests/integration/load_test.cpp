// Load, against the real agent and real Podman: 50 concurrent provisions, 1,000 execs from 50 clients
// across them, 50 concurrent destroys. Zero errors; each phase's time is printed.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>

#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// Runs `work(i)` for i in [0, count) on `count` threads at once; returns the wall time.
template <typename Work>
double run_concurrently(int count, Work work) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  threads.reserve(count);
  for (int i = 0; i < count; ++i) threads.emplace_back([&work, i] { work(i); });
  for (auto& thread : threads) thread.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Destroys the sandboxes whatever happens in the test (the agent removes their containers).
struct DestroyAll {
  const TestAgent& agent;
  const std::vector<std::string>& tasks;
  ~DestroyAll() {
    for (const auto& task : tasks) agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump());
  }
};

}  // namespace

TEST_CASE("load: 50 concurrent provisions, 1,000 execs from 50 clients, 50 concurrent destroys", "[load]") {
  constexpr int sandboxes = 50;
  constexpr int clients = 50;
  constexpr int execs_per_client = 20;
  TestAgent agent;
  agent.start();
  std::vector<std::string> tasks;
  std::vector<std::string> keys;
  for (int i = 0; i < sandboxes; ++i) {
    tasks.push_back(unique_name("load"));
    keys.push_back(unique_name("key"));
  }
  DestroyAll cleanup{agent, tasks};
  std::mutex errors_lock;
  std::vector<std::string> errors;
  auto error = [&](std::string what) {
    std::lock_guard lock(errors_lock);
    errors.push_back(std::move(what));
  };

  std::vector<std::string> urls(sandboxes);
  double provision_seconds = run_concurrently(sandboxes, [&](int i) {
    auto provisioned = agent.api(
        "POST", "/sandboxes/provision",
        json{{"task_id", tasks[i]}, {"ttl_seconds", 900}, {"env_vars", {{"SANDBOX_API_KEY", keys[i]}}}}.dump());
    if (provisioned.status != 200) return error("provision " + tasks[i] + ": " + provisioned.body);
    auto waited =
        agent.api("POST", "/sandboxes/wait", json{{"task_id", tasks[i]}, {"timeout", 600}}.dump(), std::nullopt, 620s);
    if (waited.status != 200)
      return error("wait " + tasks[i] + ": " + std::to_string(waited.status) + " " + waited.body);
    urls[i] = waited.json_body().value("sandbox_url", "");
  });
  INFO("errors: " << (errors.empty() ? "" : errors.front()));
  REQUIRE(errors.empty());

  std::atomic<int> answered{0};
  double exec_seconds = run_concurrently(clients, [&](int client) {
    for (int n = 0; n < execs_per_client; ++n) {
      int box = (client + n) % sandboxes;
      std::string marker = std::to_string(client) + "-" + std::to_string(n);
      auto reply = http_request(urls[box], "POST", "/modbox/api/exec", json{{"command", "echo " + marker}}.dump(),
                                {{"Authorization", "Bearer " + keys[box]}}, 120s);
      if (reply.status != 200 || reply.json_body().value("stdout", "") != marker + "\n")
        error("exec " + marker + " in " + tasks[box] + ": " + std::to_string(reply.status) + " " + reply.body);
      else
        ++answered;
    }
  });
  INFO("errors: " << (errors.empty() ? "" : errors.front()));
  CHECK(errors.empty());
  CHECK(answered == clients * execs_per_client);

  double destroy_seconds = run_concurrently(sandboxes, [&](int i) {
    auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", tasks[i]}}.dump());
    if (destroyed.status != 200) error("destroy " + tasks[i] + ": " + destroyed.body);
  });
  INFO("errors: " << (errors.empty() ? "" : errors.front()));
  CHECK(errors.empty());
  auto listed = agent.api("GET", "/sandboxes?status=running").json_body();
  CHECK(listed.empty());
  CHECK(agent.podman({"ps", "-aq", "--filter", "label=io.modbox.agent=" + agent.agent_id()}).out.empty());

  std::cout << "load: " << sandboxes << " concurrent provisions (provision + wait) " << provision_seconds << " s; "
            << clients * execs_per_client << " execs from " << clients << " clients " << exec_seconds << " s ("
            << clients * execs_per_client / exec_seconds << "/s); " << sandboxes << " concurrent destroys "
            << destroy_seconds << " s" << std::endl;
}
