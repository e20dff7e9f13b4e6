// Streamed exec and background processes against the real agent and real (rootless) Podman: output
// that arrives while the command still runs, binary output as base64, a hang-up that cancels the
// command; background processes that outlive other requests and their readers, with complete
// output, stdin, signals to their whole tree, the idle timeout they hold off, bad input, and the CLI.

#include <httplib.h>

#include <catch2/catch.hpp>
#include <functional>

#include "common/encoding.h"
#include "common/output_events.h"
#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Event {
  std::string name;
  std::string data;
  Clock::duration after;  // since the request was sent
  json body() const { return json::parse(data, nullptr, false); }
};

/// A running sandbox with a key, and its URL's routes.
struct ProcessSandbox {
  TestAgent& agent;
  std::string task = unique_name("proc");
  std::string key = unique_name("key");
  json sandbox;
  std::string url;

  explicit ProcessSandbox(TestAgent& test_agent, json extra = json::object()) : agent(test_agent) {
    extra["env_vars"]["SANDBOX_API_KEY"] = key;
    if (!extra.contains("ttl_seconds")) extra["ttl_seconds"] = 900;
    sandbox = agent.provision_running(task, extra);
    url = sandbox["sandbox_url"];
  }
  HttpReply call(const std::string& method, const std::string& path, const json& body = nullptr) const {
    return http_request(url, method, path, body.is_null() ? "" : body.dump(), {{"Authorization", "Bearer " + key}});
  }
  /// The answer of `method path` as an event stream, read as it comes; `on_event` returning false
  /// hangs up. Returns every event read.
  std::vector<Event> events(const std::string& method, const std::string& path, const json& body = nullptr,
                            const std::function<bool(const Event&)>& on_event = {}) const {
    httplib::Client client(url);
    client.set_read_timeout(std::chrono::seconds(60));
    httplib::Request request;
    request.method = method;
    request.path = path;
    request.headers = {{"Authorization", "Bearer " + key}, {"Accept", "text/event-stream"}};
    if (!body.is_null()) {
      request.body = body.dump();
      request.headers.emplace("Content-Type", "application/json");
    }
    auto sent = Clock::now();
    modbox::EventReader reader;
    std::vector<Event> events;
    int status = 0;
    request.response_handler = [&](const httplib::Response& response) {
      status = response.status;
      return true;
    };
    request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
      reader.feed(std::string_view(data, length));
      while (auto next = reader.next()) {
        events.push_back({next->name, next->data, Clock::now() - sent});
        if (on_event && !on_event(events.back())) return false;
      }
      return true;
    };
    client.send(request);
    INFO("HTTP " << status);
    CHECK(status == 200);
    return events;
  }
  json process(int id) const {
    auto reply = call("GET", "/modbox/api/processes/" + std::to_string(id));
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    return reply.json_body();
  }
  json start(const std::string& command, const json& extra = json::object()) const {
    json body = extra;
    body["command"] = command;
    auto reply = call("POST", "/modbox/api/processes", body);
    INFO(reply.body);
    REQUIRE(reply.status == 201);
    return reply.json_body();
  }
  bool exited(int id) const { return process(id)["state"] == "exited"; }
};

/// The bytes of a stream's events, decoded.
std::string stream_bytes(const std::vector<Event>& events, const std::string& name) {
  std::string bytes;
  for (const auto& event : events)
    if (event.name == name) bytes += modbox::output_event_bytes(event.data).value_or("<undecodable>");
  return bytes;
}

std::string loc_of(const HttpReply& reply) {
  json body = reply.json_body();
  if (!body.is_object() || !body["detail"].is_array() || body["detail"].empty()) return reply.body;
  return body["detail"][0]["loc"].dump();
}

}  // namespace

TEST_CASE("streamed exec: a line every 200 ms arrives as it is printed, long before the end", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent);
  auto events = box.events("POST", "/modbox/api/exec",
                           {{"command", "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done"}, {"timeout", 20000}});
  REQUIRE(events.size() >= 6);
  CHECK(events.front().name == "stdout");
  CHECK(events.back().name == "exit");
  auto first = events.front().after;
  auto end = events.back().after;
  INFO("first line after " << std::chrono::duration_cast<std::chrono::milliseconds>(first).count() << " ms, exit after "
                           << std::chrono::duration_cast<std::chrono::milliseconds>(end).count() << " ms");
  CHECK(end >= std::chrono::milliseconds(800));
  CHECK(end - first >= std::chrono::milliseconds(600));  // the first line came while four were still to come
  CHECK(first < std::chrono::milliseconds(500));
  CHECK(stream_bytes(events, "stdout") == "line 1\nline 2\nline 3\nline 4\nline 5\n");
  json exit = events.back().body();
  CHECK(exit["exitCode"] == 0);
  CHECK(exit["stdout"] == "");
  CHECK(exit["killed"] == false);
  CHECK(exit["truncated"] == false);
}

TEST_CASE("streamed exec: binary output is base64, text stays text, and there is no 1 MiB cap", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent);
  auto events = box.events("POST", "/modbox/api/exec",
                           {{"command", "printf 'h\\303\\251llo\\n'; printf '\\211PNG\\000\\377' >&2; head -c 3000000 /dev/zero | tr '\\0' x"}});
  REQUIRE_FALSE(events.empty());
  CHECK(events.front().body()["data"] == "h\xc3\xa9llo\n");
  std::string err = stream_bytes(events, "stderr");
  CHECK(err == std::string("\x89PNG\0\xff", 6));
  bool base64 = false;
  for (const auto& event : events) base64 = base64 || (event.name == "stderr" && event.body().contains("data_base64"));
  CHECK(base64);
  CHECK(stream_bytes(events, "stdout").size() == 7 + 3000000);
  CHECK(events.back().name == "exit");
  CHECK(events.back().body()["truncated"] == false);
}

TEST_CASE("streamed exec: a client that hangs up cancels the command and all it started", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent);
  std::string pid;
  box.events("POST", "/modbox/api/exec", {{"command", "sleep 999 & echo $!; wait"}, {"timeout", 30000}},
             [&](const Event& event) {
               pid += modbox::output_event_bytes(event.data).value_or("");
               return pid.find('\n') == std::string::npos;  // hang up once the pid is known
             });
  pid = pid.substr(0, pid.find('\n'));
  REQUIRE_FALSE(pid.empty());
  bool gone = eventually(
      [&] {
        auto reply = box.call("POST", "/modbox/api/exec", {{"command", "kill -0 " + pid + " 2>/dev/null"}});
        return reply.status == 200 && reply.json_body()["exitCode"] != 0;
      },
      10s, 200ms);
  CHECK(gone);
}

TEST_CASE("a background process outlives other requests and a reader's hang-up; its output is complete",
          "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent);
  json started = box.start("for i in $(seq 1 10); do echo line $i; sleep 0.1; done; echo done >&2; exec sleep 999");
  int id = started["id"];
  CHECK(started["state"] == "running");

  // Three other requests, and a reader that hangs up after the first line.
  CHECK(box.call("POST", "/modbox/api/exec", {{"command", "true"}}).status == 200);
  CHECK(box.call("GET", "/modbox/api/files").status == 200);
  CHECK(box.call("GET", "/modbox/api/processes").json_body().size() == 1);
  auto seen = box.events("GET", "/modbox/api/processes/" + std::to_string(id) + "/output?follow=true", nullptr,
                         [](const Event&) { return false; });
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].name == "stdout");

  // It runs on, and everything it wrote is there, in order.
  REQUIRE(eventually(
      [&] {
        auto output = box.call("GET", "/modbox/api/processes/" + std::to_string(id) + "/output").json_body();
        return output["stderr"] == "done\n";
      },
      20s, 200ms));
  auto output = box.call("GET", "/modbox/api/processes/" + std::to_string(id) + "/output").json_body();
  std::string expected;
  for (int i = 1; i <= 10; ++i) expected += "line " + std::to_string(i) + "\n";
  CHECK(output["stdout"] == expected);
  CHECK(output["state"] == "running");
  CHECK(output["truncated"] == false);

  // A signal ends it; a follower sees the whole output again, then its exit.
  REQUIRE(box.call("POST", "/modbox/api/processes/" + std::to_string(id) + "/signal", {{"signal", "TERM"}}).status ==
          200);
  REQUIRE(eventually([&] { return box.exited(id); }, 10s, 100ms));
  json ended = box.process(id);
  CHECK(ended["exit_code"] == 143);
  CHECK(ended["signal"] == "SIGTERM");
  CHECK_FALSE(ended["ended_at"].is_null());
  auto replay = box.events("GET", "/modbox/api/processes/" + std::to_string(id) + "/output?follow=true");
  CHECK(stream_bytes(replay, "stdout") == expected);
  CHECK(stream_bytes(replay, "stderr") == "done\n");
  REQUIRE_FALSE(replay.empty());
  CHECK(replay.back().name == "exit");
  CHECK(replay.back().body()["exit_code"] == 143);
}

TEST_CASE("a followed process streams as it writes, takes stdin and ends with its exit", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent, {{"env_vars", {{"FROM_SANDBOX", "yes"}}}});
  json started = box.start("echo \"$FROM_SANDBOX $EXTRA $(pwd)\"; while read line; do echo got $line; done; exit 7",
                           {{"env", {{"EXTRA", "x"}}}, {"cwd", "/tmp"}});
  std::string id = std::to_string(started["id"].get<int>());
  bool fed = false;
  auto events = box.events("GET", "/modbox/api/processes/" + id + "/output?follow=true", nullptr, [&](const Event&) {
    if (!fed) {
      fed = true;
      CHECK(box.call("POST", "/modbox/api/processes/" + id + "/stdin", {{"data", "one\n"}}).status == 200);
      CHECK(box.call("POST", "/modbox/api/processes/" + id + "/stdin",
                     {{"data_base64", modbox::base64_encode("two\n")}, {"close", true}})
                .status == 200);
    }
    return true;
  });
  CHECK(stream_bytes(events, "stdout") == "yes x /tmp\ngot one\ngot two\n");
  REQUIRE_FALSE(events.empty());
  CHECK(events.back().name == "exit");
  CHECK(events.back().body()["exit_code"] == 7);
  auto closed = box.call("POST", "/modbox/api/processes/" + id + "/stdin", {{"data", "late"}});
  CHECK(closed.status == 409);
}

TEST_CASE("a signal reaches the process's whole tree; unknown ids are 404 and bad signals 422", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent);
  json started = box.start("setsid sleep 997 & sleep 998 & wait");
  std::string id = std::to_string(started["id"].get<int>());
  auto count_sleeps = [&] {
    auto reply = box.call("POST", "/modbox/api/exec", {{"command", "ps -eo args | grep -c '^sleep 99[78]$'"}});
    return reply.status == 200 ? std::stoi("0" + reply.json_body()["stdout"].get<std::string>()) : -1;
  };
  REQUIRE(eventually([&] { return count_sleeps() == 2; }, 10s, 100ms));

  auto bad = box.call("POST", "/modbox/api/processes/" + id + "/signal", {{"signal", "SIGNOPE"}});
  CHECK(bad.status == 422);
  CHECK(loc_of(bad) == R"(["body","signal"])");
  CHECK(box.call("POST", "/modbox/api/processes/" + id + "/signal", json::object()).status == 422);
  CHECK(box.call("POST", "/modbox/api/processes", {{"cwd", "/"}}).status == 422);
  CHECK(box.call("GET", "/modbox/api/processes/" + id + "/output?follow=perhaps").status == 422);
  for (std::string unknown : {"999", "abc"}) {
    CHECK(box.call("GET", "/modbox/api/processes/" + unknown).status == 404);
    CHECK(box.call("GET", "/modbox/api/processes/" + unknown + "/output").status == 404);
    CHECK(box.call("POST", "/modbox/api/processes/" + unknown + "/signal", {{"signal", "TERM"}}).status == 404);
    CHECK(box.call("POST", "/modbox/api/processes/" + unknown + "/stdin", {{"data", "x"}}).status == 404);
  }

  REQUIRE(box.call("POST", "/modbox/api/processes/" + id + "/signal", {{"signal", 9}}).status == 200);
  CHECK(eventually([&] { return count_sleeps() == 0; }, 10s, 100ms));
  REQUIRE(eventually([&] { return box.exited(std::stoi(id)); }, 10s, 100ms));
  CHECK(box.process(std::stoi(id))["exit_code"] == 137);
  CHECK(box.call("POST", "/modbox/api/processes/" + id + "/signal", {{"signal", "TERM"}}).status == 409);
}

TEST_CASE("a running background process keeps its sandbox from idling", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent, {{"idle_timeout_seconds", 2}, {"ttl_seconds", 300}});
  const std::string id = box.sandbox["id"];
  auto started_at = Clock::now();
  box.start("sleep 6");
  // From here on only the control API looks: a request to the sandbox URL would count as activity.
  REQUIRE(eventually([&] { return agent.api("GET", "/sandboxes/detail/" + id).json_body()["status"] == "destroyed"; },
                     30s, 200ms));
  auto lasted = Clock::now() - started_at;
  json sandbox = agent.api("GET", "/sandboxes/detail/" + id).json_body();
  CHECK(sandbox["destroy_reason"] == "idle");
  INFO("destroyed " << std::chrono::duration_cast<std::chrono::milliseconds>(lasted).count() << " ms after the start");
  CHECK(lasted >= std::chrono::milliseconds(7500));  // the process's 6 s, then 2 s idle
}

TEST_CASE("CLI: exec prints output live; exec --detach, ps, output and kill", "[processes]") {
  TestAgent agent;
  agent.start();
  ProcessSandbox box(agent);

  BackgroundProcess live({bin_dir() + "/modbox", "exec", box.task, "--", "sh", "-c", "echo first; sleep 1; echo second; exit 3"},
                         agent.cli_env());
  auto first = live.next_line(30s);
  REQUIRE(first.has_value());
  CHECK(first->text == "first");
  auto second = live.next_line(30s);
  REQUIRE(second.has_value());
  CHECK(second->text == "second");
  CHECK(second->arrived - first->arrived >= std::chrono::milliseconds(800));
  CHECK(live.wait_exit(30s) == 3);
  auto to_stderr = agent.cli({"exec", box.task, "--", "sh", "-c", "echo out; echo err >&2"});
  CHECK(to_stderr.out == "out\n");
  CHECK(to_stderr.err == "err\n");

  auto detached = agent.cli({"exec", "--detach", box.task, "-e", "WHO=cli", "--", "sh", "-c",
                             "echo hello $WHO; echo oops >&2; sleep 999"});
  INFO(detached.err);
  REQUIRE(detached.exit_code == 0);
  std::string id = detached.out.substr(0, detached.out.find('\n'));
  REQUIRE_FALSE(id.empty());
  auto ps = agent.cli({"ps", box.task});
  CHECK(ps.out.find("running") != std::string::npos);
  CHECK(ps.out.find("echo hello") != std::string::npos);
  CHECK(agent.cli({"ps", "-q", box.task}).out == id + "\n");
  REQUIRE(eventually([&] { return agent.cli({"output", box.task, id}).out == "hello cli\n"; }, 20s, 200ms));
  auto output = agent.cli({"output", box.task, id});
  CHECK(output.err == "oops\n");
  CHECK(output.exit_code == 0);  // it still runs

  BackgroundProcess follower({bin_dir() + "/modbox", "output", "-f", box.task, id}, agent.cli_env());
  auto replayed = follower.next_line(30s);
  REQUIRE(replayed.has_value());
  CHECK(replayed->text == "hello cli");
  CHECK(agent.cli({"kill", "--signal", "SIGNOPE", box.task, id}).exit_code != 0);
  auto killed = agent.cli({"kill", box.task, id});
  INFO(killed.err);
  CHECK(killed.exit_code == 0);
  CHECK(follower.wait_exit(30s) == 143);  // output -f ends with the process, and with its status
  CHECK(agent.cli({"kill", box.task, "999"}).exit_code != 0);
  auto json_list = json::parse(agent.cli({"ps", "--json", box.task}).out);
  REQUIRE(json_list.size() == 1);
  CHECK(json_list[0]["state"] == "exited");
  CHECK(json_list[0]["signal"] == "SIGTERM");
}
