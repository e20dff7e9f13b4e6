// Idle timeouts, tags, network "none" and the retention of ended records, against the real agent and
// real (rootless) Podman: an unused sandbox is destroyed with destroy_reason "idle"; exec, file calls
// and an open proxied connection each keep one alive past its timeout; tags filter lists (API and CLI);
// a sandbox without a network has loopback only while its helper, files and URLs still work; and
// destroyed records are pruned at start past --retention-days.

#include <catch2/catch.hpp>

#include "common/system.h"
#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;
using Clock = std::chrono::steady_clock;

namespace {

json detail(const TestAgent& agent, const std::string& id) {
  return agent.api("GET", "/sandboxes/detail/" + id).json_body();
}

bool destroyed(const TestAgent& agent, const std::string& id) {
  return detail(agent, id)["status"] == "destroyed";
}

/// Seconds between two timestamps of the API.
double seconds_between(const json& from, const json& to) {
  auto start = modbox::parse_timestamp(from.get<std::string>());
  auto end = modbox::parse_timestamp(to.get<std::string>());
  REQUIRE(start.has_value());
  REQUIRE(end.has_value());
  return std::chrono::duration<double>(*end - *start).count();
}

/// Checks that `id` ended for idleness, no sooner than `idle_seconds` after `since` (an API timestamp).
void check_destroyed_idle(const TestAgent& agent, const std::string& id, const json& since, int idle_seconds) {
  REQUIRE(eventually([&] { return destroyed(agent, id); }, std::chrono::seconds(idle_seconds + 10)));
  json sandbox = detail(agent, id);
  CHECK(sandbox["destroy_reason"] == "idle");
  CHECK(sandbox["error"] == "idle timeout reached");
  CHECK(seconds_between(since, sandbox["destroyed_at"]) >= idle_seconds - 0.01);
  CHECK(agent.container_states(id).empty());
}

/// The "event" of a ws-hold.mjs line, or "".
std::string event_of(const std::string& line) {
  json event = json::parse(line, nullptr, false);
  return event.is_object() && event["event"].is_string() ? event["event"].get<std::string>() : "";
}

/// The names of the sandboxes a list answered.
std::vector<std::string> names_in(const HttpReply& reply) {
  std::vector<std::string> names;
  json list = reply.json_body();
  if (list.is_array())
    for (const auto& sandbox : list) names.push_back(sandbox["name"]);
  std::sort(names.begin(), names.end());
  return names;
}

std::string loc_of(const HttpReply& reply) {
  json body = reply.json_body();
  if (!body.is_object() || !body["detail"].is_array() || body["detail"].empty()) return reply.body;
  return body["detail"][0]["loc"].dump();
}

}  // namespace

TEST_CASE("idle: a sandbox nobody uses is destroyed after its idle timeout, with reason idle", "[idle]") {
  TestAgent agent;
  agent.start();
  json sandbox = agent.provision_running(unique_name("idle"), {{"idle_timeout_seconds", 2}, {"ttl_seconds", 300}});
  const std::string id = sandbox["id"];
  CHECK(sandbox["idle_timeout_seconds"] == 2);
  check_destroyed_idle(agent, id, sandbox["ready_at"], 2);
}

TEST_CASE("idle: exec through the control API and through the sandbox URL keeps a sandbox alive", "[idle]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("busy"), key = unique_name("key");
  json sandbox = agent.provision_running(
      task, {{"idle_timeout_seconds", 3}, {"ttl_seconds", 300}, {"env_vars", {{"SANDBOX_API_KEY", key}}}});
  const std::string id = sandbox["id"], url = sandbox["sandbox_url"];
  // Commands of about a second each, one after the other, for more than twice the idle timeout.
  auto until = Clock::now() + 7s;
  bool through_url = false;
  while (Clock::now() < until) {
    HttpReply reply =
        through_url ? http_request(url, "POST", "/modbox/api/exec", json{{"command", "sleep 1"}}.dump(),
                                   {{"Authorization", "Bearer " + key}})
                    : agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "sleep 1"}}.dump());
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    through_url = !through_url;
  }
  CHECK(detail(agent, id)["status"] == "running");
  json last =
      agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", "date -u +%s"}}.dump()).json_body();
  REQUIRE(last["exitCode"] == 0);
  CHECK(eventually([&] { return destroyed(agent, id); }, 15s));
  CHECK(detail(agent, id)["destroy_reason"] == "idle");
}

TEST_CASE("idle: a file transfer keeps a sandbox alive for as long as it lasts", "[idle]") {
  TestAgent agent;
  agent.start();
  const std::string task = unique_name("files"), key = unique_name("key");
  json sandbox = agent.provision_running(
      task, {{"idle_timeout_seconds", 2}, {"ttl_seconds", 300}, {"env_vars", {{"SANDBOX_API_KEY", key}}}});
  const std::string id = sandbox["id"], url = sandbox["sandbox_url"];
  LocalDir local;
  auto file = write_random_file(local.path / "data.bin", 640 << 10);
  // An upload, then a download, each slowed to last about 3 s: longer than the idle timeout.
  auto uploaded =
      run_command({"curl", "-sS", "--noproxy", "*", "--limit-rate", "200k", "-H", "Authorization: Bearer " + key, "-F",
                   "file=@" + file.string(), url + "/modbox/api/files/upload"});
  INFO(uploaded.out << uploaded.err);
  REQUIRE(uploaded.exit_code == 0);
  std::string name = json::parse(uploaded.out, nullptr, false).value("filename", "");
  REQUIRE(!name.empty());
  CHECK(detail(agent, id)["status"] == "running");
  auto downloaded = run_command({"curl", "-sS", "--noproxy", "*", "--limit-rate", "200k", "-o",
                                 (local.path / "back.bin").string(), "-w", "%{http_code}", "-H",
                                 "Authorization: Bearer " + key, url + "/modbox/api/files/download/" + name});
  CHECK(downloaded.out == "200");
  CHECK(sha256_of_file(local.path / "back.bin") == sha256_of_file(file));
  CHECK(detail(agent, id)["status"] == "running");
  REQUIRE(eventually([&] { return destroyed(agent, id); }, 15s));
  CHECK(detail(agent, id)["destroy_reason"] == "idle");
}

TEST_CASE("idle: an open WebSocket or a long answer through the sandbox's URLs keeps it alive until it closes",
          "[idle][proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent, {{"idle_timeout_seconds", 3}, {"ports", {8000}}});
  const std::string id = box.sandbox()["id"];
  box.start_server(8080);
  box.start_server(8000);
  REQUIRE(box.wait_until_proxied(box.url()) == 200);
  REQUIRE(box.wait_until_proxied(box.port_url(8000)) == 200);
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "ws"));

  SECTION("a WebSocket on the port URL, quiet after its first echo") {
    auto hold = std::make_unique<BackgroundProcess>(
        client_command("ws-hold.mjs", {box.port_url(8000) + "/ws", "--header", box.bearer(), "--max-ms", "60000"}));
    auto opened = hold->next_line(20s);
    INFO(hold->errors());
    REQUIRE(opened.has_value());
    REQUIRE(event_of(opened->text) == "open");
    // Nothing else happens for more than twice the idle timeout: the socket must stay open.
    auto quiet = hold->next_line(7s);
    CHECK_FALSE(quiet.has_value());
    CHECK(detail(agent, id)["status"] == "running");
    hold.reset();  // the client goes away, and the sandbox is idle from then
  }
  SECTION("a streamed answer (server-sent events) on the sandbox URL") {
    BackgroundProcess stream({"curl", "-sS", "--no-buffer", "--noproxy", "*", "-H", box.bearer(),
                              box.url() + "/sse?count=14&interval_ms=500"});
    std::size_t events = 0;
    while (auto line = stream.next_line(10s))
      if (line->text.starts_with("data:")) ++events;
    CHECK(events == 14);  // 7 s of answer, more than twice the idle timeout
    CHECK(detail(agent, id)["status"] == "running");
  }
  REQUIRE(eventually([&] { return destroyed(agent, id); }, 15s));
  CHECK(detail(agent, id)["destroy_reason"] == "idle");
}

TEST_CASE("tags: stored, shown, and filtering lists with repeated ?tag= (ANDed), through the API and the CLI",
          "[tags]") {
  TestAgent agent;
  agent.start();
  const std::string a = unique_name("tag-a"), b = unique_name("tag-b"), c = unique_name("tag-c");
  auto provisioned =
      agent.api("POST", "/sandboxes/provision",
                json{{"task_id", a}, {"ttl_seconds", 120}, {"tags", {{"team", "ml"}, {"run", "1"}}}}.dump());
  REQUIRE(provisioned.status == 200);
  CHECK(provisioned.json_body()["tags"] == json{{"team", "ml"}, {"run", "1"}});
  REQUIRE(agent.cli({"provision", b, "--ttl", "120", "--tag", "team=ml", "--tag", "run=2"}).exit_code == 0);
  REQUIRE(agent.cli({"provision", c, "--ttl", "120", "--tag", "team=web", "--tag", "url=http://x/?a=b&c"}).exit_code ==
          0);
  CHECK(detail(agent, c)["tags"] == json{{"team", "web"}, {"url", "http://x/?a=b&c"}});

  CHECK(names_in(agent.api("GET", "/sandboxes?tag=team%3Dml")) == std::vector<std::string>{a, b});
  CHECK(names_in(agent.api("GET", "/sandboxes?tag=team=ml&tag=run=2")) == std::vector<std::string>{b});
  CHECK(names_in(agent.api("GET", "/sandboxes?tag=team=ml&tag=team=web")).empty());
  CHECK(names_in(agent.api("GET", "/sandboxes?status=destroyed&tag=team=ml")).empty());
  auto listed = agent.cli({"list", "-q", "--tag", "url=http://x/?a=b&c"});
  CHECK(listed.out == c + "\n");
  listed = agent.cli({"list", "-q", "--tag", "team=ml", "--tag", "run=1"});
  CHECK(listed.out == a + "\n");

  auto bad_filter = agent.api("GET", "/sandboxes?tag=team");
  CHECK(bad_filter.status == 422);
  CHECK(loc_of(bad_filter) == R"(["query","tag"])");
  json many = json::object();
  for (int i = 0; i < 65; ++i) many["k" + std::to_string(i)] = "v";
  auto too_many =
      agent.api("POST", "/sandboxes/provision", json{{"task_id", unique_name("many")}, {"tags", many}}.dump());
  CHECK(too_many.status == 422);
  CHECK(loc_of(too_many) == R"(["body","tags"])");
  auto long_value = agent.api("POST", "/sandboxes/provision",
                              json{{"task_id", unique_name("long")}, {"tags", {{"k", std::string(257, 'v')}}}}.dump());
  CHECK(long_value.status == 422);
  CHECK(loc_of(long_value) == R"(["body","tags","k"])");
  auto bad_idle = agent.api("POST", "/sandboxes/provision",
                            json{{"task_id", unique_name("idle")}, {"idle_timeout_seconds", 0}}.dump());
  CHECK(bad_idle.status == 422);
  CHECK(loc_of(bad_idle) == R"(["body","idle_timeout_seconds"])");
  CHECK(agent.api("GET", "/sandboxes").json_body().size() == 3);  // refused provisions left nothing
}

TEST_CASE("network none: loopback only inside, while exec, files and the sandbox's URLs still work", "[network]") {
  TestAgent agent;
  agent.start();
  auto refused =
      agent.api("POST", "/sandboxes/provision", json{{"task_id", unique_name("net")}, {"network", "bridge"}}.dump());
  CHECK(refused.status == 422);
  CHECK(loc_of(refused) == R"(["body","network"])");

  WebSandbox box(agent, {{"network", "none"}, {"ports", {8000}}});
  CHECK(box.sandbox()["network"] == "none");
  CHECK(box.sh("ls /sys/class/net") == "lo\n");
  // No route anywhere: connecting out fails at once with "network is unreachable", to the host (slirp's
  // 10.0.2.2) as to the internet.
  const std::string connect_out =
      "python3 -c 'import socket,sys\n"
      "for host in (\"10.0.2.2\", \"1.1.1.1\"):\n"
      "  s = socket.socket(); s.settimeout(3)\n"
      "  try: s.connect((host, 80)); print(host, \"connected\")\n"
      "  except OSError as e: print(host, e.errno)\n'";
  CHECK(box.sh(connect_out) == "10.0.2.2 101\n1.1.1.1 101\n");

  // A sandbox with the default network has more than loopback, so the check above means something.
  json plain = agent.provision_running(unique_name("plain"), {{"ttl_seconds", 120}});
  auto interfaces =
      agent.api("POST", "/sandboxes/exec", json{{"task_id", plain["name"]}, {"command", "ls /sys/class/net"}}.dump());
  CHECK(interfaces.json_body()["stdout"] != "lo\n");

  // Files go through the helper's socket, as exec does.
  LocalDir local;
  auto file = write_random_file(local.path / "f.txt", 1000);
  auto uploaded = run_command({"curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                               box.bearer(), "-F", "file=@" + file.string(), box.url() + "/modbox/api/files/upload"});
  CHECK(uploaded.out == "200");
  // Relays connect from inside the sandbox's own network namespace, whose loopback is there: a server
  // in the sandbox is still reached through its URLs, and a port where nothing listens is a 502.
  box.start_server(8000);
  CHECK(box.wait_until_proxied(box.port_url(8000)) == 200);
  auto nothing = curl(box.url() + "/echo", {"-H", box.bearer()});
  CHECK(nothing.status == 502);
  CHECK(nothing.body.find("8080") != std::string::npos);
}

TEST_CASE("retention: an agent started with --retention-days 0 prunes destroyed records", "[retention]") {
  TestAgent agent;
  agent.start({"--retention-days", "0"});
  json gone = agent.provision_running(unique_name("gone"), {{"ttl_seconds", 120}});
  json kept = agent.provision_running(unique_name("kept"), {{"ttl_seconds", 120}});
  const std::string gone_id = gone["id"], kept_id = kept["id"];
  REQUIRE(agent.api("POST", "/sandboxes/destroy", json{{"task_id", gone["name"]}}.dump()).status == 200);
  agent.stop();
  agent.start({"--retention-days", "0"});
  CHECK(agent.api("GET", "/sandboxes/detail/" + gone_id).status == 404);
  CHECK_FALSE(std::filesystem::exists(agent.paths().sandboxes_dir() / (gone_id + ".json")));
  CHECK(detail(agent, kept_id)["status"] == "running");
  // The task_id is free for a new sandbox, found by it.
  json again = agent.provision_running(gone["name"], {{"ttl_seconds", 120}});
  CHECK(detail(agent, gone["name"])["id"] == again["id"]);
}
