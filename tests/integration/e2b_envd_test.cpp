// E2B's envd served by the agent, against the real agent and real (rootless) Podman: the official
// `e2b` SDK's sandbox calls (commands, files, watches, PTYs, ports by header and by Host, bad input;
// tests/integration/clients/e2b-envd.mjs), a Connect stream that ends cleanly when its sandbox is
// destroyed under it, and the sandbox URL's own file watch (GET /modbox/api/files/watch).

#include <httplib.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/output_events.h"
#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;
using Clock = std::chrono::steady_clock;

namespace {

/// The agent's E2B listener (E2B_SANDBOX_URL), from its status.
std::string e2b_url(TestAgent& agent) {
  auto status = agent.api("GET", "/agent/status");
  REQUIRE(status.status == 200);
  json body = status.json_body();
  INFO(status.body);
  REQUIRE(body["e2b_url"].is_string());
  return body["e2b_url"];
}

/// The end of the agent's log, for failure messages.
std::string log_tail(const TestAgent& agent) {
  std::ifstream file(agent.log_path());
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

/// One Connect envelope.
std::string envelope(std::uint8_t flags, const std::string& payload) {
  std::string bytes(1, static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((payload.size() >> shift) & 0xff));
  return bytes + payload;
}

struct Envelope {
  std::uint8_t flags;
  json message;
};
std::vector<Envelope> envelopes_of(const std::string& body) {
  std::vector<Envelope> out;
  for (std::size_t at = 0; at + 5 <= body.size();) {
    std::size_t length = 0;
    for (int i = 1; i <= 4; ++i) length = (length << 8) | static_cast<unsigned char>(body[at + i]);
    if (at + 5 + length > body.size()) break;
    out.push_back({static_cast<std::uint8_t>(body[at]), json::parse(body.substr(at + 5, length), nullptr, false)});
    at += 5 + length;
  }
  return out;
}

}  // namespace

TEST_CASE("e2b-envd: the e2b SDK runs commands, files, watches, PTYs and ports in a sandbox", "[e2b-envd]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  std::string url = e2b_url(agent);
  std::string domain = "localhost:" + url.substr(url.rfind(':') + 1);
  auto run = run_client("e2b-envd.mjs", {url, box.sandbox()["id"].get<std::string>(), box.key(), domain}, 240s);
  INFO(run.out << run.err << "\nagent log:\n" << log_tail(agent));
  std::size_t checks = 0;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    json check = json::parse(line, nullptr, false);
    if (!check.is_object() || !check.contains("check")) continue;
    ++checks;
    INFO(check.dump());
    CHECK(check["ok"] == true);
  }
  CHECK(checks == 15);
  CHECK(run.exit_code == 0);
}

TEST_CASE("e2b-envd: a command's stream ends with end-of-stream when its sandbox is destroyed", "[e2b-envd]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  std::string url = e2b_url(agent);
  httplib::Client client(url);
  client.set_read_timeout(std::chrono::seconds(60));
  httplib::Request request;
  request.method = "POST";
  request.path = "/process.Process/Start";
  request.headers = {{"E2b-Sandbox-Id", box.sandbox()["id"].get<std::string>()},
                     {"X-Access-Token", box.key()},
                     {"Connect-Protocol-Version", "1"},
                     {"Keepalive-Ping-Interval", "1"}};
  request.body =
      envelope(0, json{{"process", {{"cmd", "/bin/bash"}, {"args", {"-c", "echo started; sleep 600"}}}}}.dump());
  request.set_header("Content-Type", "application/connect+json");
  std::string received;
  std::atomic<bool> started = false;
  std::atomic<bool> kept_alive = false;
  request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
    received.append(data, length);
    if (received.find("c3RhcnRlZAo=") != std::string::npos) started = true;  // "started\n"
    if (received.find("\"keepalive\"") != std::string::npos) kept_alive = true;
    return true;
  };
  int status = 0;
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  std::thread reader([&] { client.send(request); });
  bool saw_output = eventually([&] { return started.load(); }, 20s, 20ms);
  // Quiet for a second: a keepalive event comes (Keepalive-Ping-Interval: 1).
  bool saw_keepalive = saw_output && eventually([&] { return kept_alive.load(); }, 5s, 20ms);
  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task()}}.dump());
  reader.join();
  INFO("received: " << received.size() << " bytes, status " << status << "\nagent log:\n" << log_tail(agent));
  REQUIRE(saw_output);
  CHECK(saw_keepalive);
  CHECK(destroyed.status == 200);
  CHECK(status == 200);
  auto got = envelopes_of(received);
  INFO(received << "\nagent log:\n" << log_tail(agent));
  REQUIRE(got.size() >= 3);
  CHECK(got.front().message["event"].contains("start"));
  CHECK(got.back().flags == 2);  // the end-of-stream envelope closes it
  CHECK(got.back().message.is_object());
}

TEST_CASE("e2b-envd: the sandbox URL streams file changes as server-sent events", "[e2b-envd]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  std::string dir = "/tmp/" + unique_name("watched");
  box.sh("mkdir -p " + dir + "/sub");

  // Bad input first: no path, a relative one, a missing directory, a file.
  auto call = [&](const std::string& path) {
    return http_request(box.url(), "GET", path, "", {{"Authorization", "Bearer " + box.key()}});
  };
  CHECK(call("/modbox/api/files/watch").status == 422);
  CHECK(call("/modbox/api/files/watch?path=tmp").status == 422);
  CHECK(call("/modbox/api/files/watch?path=" + dir + "/nope").status == 404);
  box.sh("touch " + dir + "/plain");
  CHECK(call("/modbox/api/files/watch?path=" + dir + "/plain").status == 400);
  CHECK(call("/modbox/api/files/watch?path=" + dir + "&recursive=maybe").status == 422);
  CHECK(http_request(box.url(), "GET", "/modbox/api/files/watch?path=" + dir).status == 401);

  httplib::Client client(box.url());
  client.set_read_timeout(std::chrono::seconds(30));
  httplib::Request request;
  request.method = "GET";
  request.path = "/modbox/api/files/watch?recursive=true&path=" + dir;
  request.headers = {{"Authorization", "Bearer " + box.key()}, {"Accept", "text/event-stream"}};
  modbox::EventReader events;
  std::vector<std::pair<std::string, json>> seen;
  std::mutex seen_mutex;
  std::atomic<bool> ready = false;
  std::atomic<bool> done = false;
  request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
    events.feed(std::string_view(data, length));
    while (auto event = events.next()) {
      std::lock_guard lock(seen_mutex);
      seen.emplace_back(event->name, json::parse(event->data, nullptr, false));
      if (event->name == "ready") ready = true;
      if (event->name == "change" && seen.back().second["name"] == "sub/new.txt" &&
          seen.back().second["type"] == "create")
        done = true;
    }
    return !done;  // hang up once the change came
  };
  std::thread reader([&] { client.send(request); });
  bool was_ready = eventually([&] { return ready.load(); }, 20s, 20ms);
  if (was_ready) box.sh("echo hi > " + dir + "/sub/new.txt");
  bool got_change = eventually([&] { return done.load(); }, 20s, 20ms);
  if (!got_change) client.stop();
  reader.join();
  std::lock_guard lock(seen_mutex);
  INFO(json(seen).dump());
  REQUIRE(was_ready);
  CHECK(seen.front().first == "ready");
  CHECK(got_change);
}
