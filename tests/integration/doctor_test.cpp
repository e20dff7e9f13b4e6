// modbox doctor on the real host as the test user, modbox config against a real agent over TCP,
// and modbox agent restart / logs.

#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// Stops an agent the CLI started, however the test ends.
struct StopsAgent {
  const TestAgent& agent;
  ~StopsAgent() { agent.cli({"agent", "stop"}); }
};

CommandResult cli_with(const TestAgent& agent, const std::vector<std::string>& args,
                       const std::map<std::string, std::string>& extra) {
  auto env = agent.cli_env();
  for (const auto& [name, value] : extra) env[name] = value;
  std::vector<std::string> argv = {bin_dir() + "/modbox"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, env, 60s);
}

json check_named(const json& report, const std::string& name) {
  for (const auto& check : report["checks"])
    if (check["name"] == name) return check;
  FAIL("no check " << name);
  return {};
}

}  // namespace

TEST_CASE("doctor passes on this host without starting the agent, and says what blocks", "[doctor]") {
  TestAgent agent;  // not started
  auto started = std::chrono::steady_clock::now();
  auto text = agent.cli({"doctor"});
  auto took = std::chrono::steady_clock::now() - started;
  INFO(text.out << text.err);
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("ok       podman") == 0);
  CHECK(text.out.find("problem") == std::string::npos);
  CHECK(text.out.find("fix: modbox agent start") != std::string::npos);
  CHECK(took < 10s);  // typically about a second: two podman calls

  auto report = agent.cli({"doctor", "--json"});
  REQUIRE(report.exit_code == 0);
  json parsed = json::parse(report.out);
  CHECK(parsed["ok"] == true);
  std::vector<std::string> names;
  for (const auto& check : parsed["checks"]) {
    names.push_back(check["name"]);
    CHECK(check["status"] != "problem");
  }
  CHECK(names == std::vector<std::string>{"podman", "cgroups", "subordinate_ids", "tun", "storage", "systemd", "disk",
                                          "images", "agent"});
  CHECK(check_named(parsed, "images")["detail"].get<std::string>().find("sandbox-lite") != std::string::npos);
  CHECK(check_named(parsed, "agent")["status"] == "warning");
  // Doctor never starts the agent.
  CHECK(agent.cli({"agent", "status"}).exit_code == 3);

  // A state directory under a file cannot be created: the agent could not start, so doctor says so.
  auto broken = cli_with(agent, {"doctor"}, {{"MODBOX_STATE_DIR", "/etc/passwd/modbox"}});
  CHECK(broken.exit_code == 1);
  CHECK(broken.out.find("problem  disk") != std::string::npos);
  CHECK(broken.out.find("fix: unset MODBOX_STATE_DIR") != std::string::npos);
  auto broken_json = cli_with(agent, {"doctor", "--json"}, {{"MODBOX_STATE_DIR", "/etc/passwd/modbox"}});
  CHECK(broken_json.exit_code == 1);
  CHECK(json::parse(broken_json.out)["ok"] == false);
}

TEST_CASE("config: flags, environment, then the file; the file reaches a real agent over TCP", "[doctor]") {
  TestAgent agent;
  agent.start();
  auto config = agent.cli_env().at("MODBOX_CONFIG");

  auto unknown = agent.cli({"config", "set", "colour", "red"});
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("api_url, api_token, workspace") != std::string::npos);
  CHECK(agent.cli({"config", "set", "api_url", "localhost:1"}).exit_code == 2);
  CHECK(agent.cli({"config", "get", "workspace"}).exit_code == 1);  // unset

  REQUIRE(agent.cli({"config", "set", "workspace", "from-file"}).exit_code == 0);
  struct stat info {};
  REQUIRE(::stat(config.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  CHECK(agent.cli({"config", "get", "workspace"}).out == "from-file\n");
  auto from_env = cli_with(agent, {"config", "list", "--json"}, {{"MODBOX_WORKSPACE", "from-env"}});
  json listed = json::parse(from_env.out);
  REQUIRE(listed.size() == 3);
  CHECK(listed[2]["key"] == "workspace");
  CHECK(listed[2]["value"] == "from-env");
  CHECK(listed[2]["origin"] == "env MODBOX_WORKSPACE");
  auto from_flag = cli_with(agent, {"--workspace", "from-flag", "config", "list"}, {{"MODBOX_WORKSPACE", "from-env"}});
  CHECK(from_flag.out.find("from-flag") != std::string::npos);
  CHECK(from_flag.out.find("--workspace") != std::string::npos);
  CHECK(agent.cli({"config", "list"}).out.find("file " + config) != std::string::npos);

  // The workspace from the file scopes what the CLI provisions.
  const std::string task = unique_name("cfg");
  REQUIRE(agent.cli({"provision", task, "--ttl", "120"}).exit_code == 0);
  auto detail = agent.api("GET", "/sandboxes/detail/" + task, "", "from-file");
  CHECK(detail.status == 200);
  CHECK(agent.api("GET", "/sandboxes/detail/" + task).status == 404);
  CHECK(agent.cli({"destroy", task}).exit_code == 0);
  REQUIRE(agent.cli({"config", "unset", "workspace"}).exit_code == 0);

  // The agent's TCP URL and token from the file, with no unix socket to fall back on.
  std::string url;
  std::string token;
  auto env_lines = agent.cli({"agent", "env"}).out;
  for (std::size_t at = 0; at < env_lines.size();) {
    auto end = env_lines.find('\n', at);
    auto line = env_lines.substr(at, end - at);
    if (line.starts_with("MODBOX_API_URL=")) url = line.substr(15);
    if (line.starts_with("MODBOX_API_TOKEN=")) token = line.substr(17);
    at = end == std::string::npos ? env_lines.size() : end + 1;
  }
  REQUIRE(!url.empty());
  REQUIRE(agent.cli({"config", "set", "api_url", url}).exit_code == 0);
  REQUIRE(agent.cli({"config", "set", "api_token", token}).exit_code == 0);
  auto listed_tokens = agent.cli({"config", "list"}).out;
  CHECK(listed_tokens.find(token) == std::string::npos);  // masked
  CHECK(agent.cli({"config", "get", "api_token"}).out == token + "\n");
  auto elsewhere = cli_with(agent, {"list", "-q"}, {{"MODBOX_RUNTIME_DIR", "/nonexistent/run"}});
  INFO(elsewhere.err);
  CHECK(elsewhere.exit_code == 0);
  auto doctor = agent.cli({"doctor", "--json"});
  CHECK(check_named(json::parse(doctor.out), "agent")["status"] == "ok");

  // A URL where nothing answers: doctor names the setting to remove.
  REQUIRE(agent.cli({"config", "set", "api_url", "http://127.0.0.1:1"}).exit_code == 0);
  auto unreachable = agent.cli({"doctor"});
  CHECK(unreachable.exit_code == 1);
  CHECK(unreachable.out.find("fix: modbox config unset api_url") != std::string::npos);
  auto refused = agent.cli({"list"});
  CHECK(refused.exit_code == 3);
  CHECK(refused.err.find("file " + config) != std::string::npos);
  // A config file that is not JSON is an error naming it, for every command.
  REQUIRE(modbox::write_file_atomic(config, "{oops"));
  auto garbled = agent.cli({"list"});
  CHECK(garbled.exit_code == 1);
  CHECK(garbled.err.find(config) != std::string::npos);
}

TEST_CASE("agent restart starts a new agent, and agent logs shows its log", "[doctor]") {
  TestAgent agent;  // the CLI starts and restarts it
  StopsAgent stops{agent};
  REQUIRE(agent.cli({"agent", "start"}).exit_code == 0);
  auto first = json::parse(agent.cli({"agent", "status", "--json"}).out);
  auto restarted = agent.cli({"agent", "restart", "--json"});
  INFO(restarted.err);
  REQUIRE(restarted.exit_code == 0);
  auto second = json::parse(restarted.out);
  CHECK(second["pid"] != first["pid"]);
  CHECK(second["podman_ready"] == true);

  auto logs = agent.cli({"agent", "logs"});
  REQUIRE(logs.exit_code == 0);
  CHECK(!logs.out.empty());
  auto tail = agent.cli({"agent", "logs", "--tail", "2"});
  REQUIRE(tail.exit_code == 0);
  CHECK(std::count(tail.out.begin(), tail.out.end(), '\n') == 2);
  CHECK(logs.out.ends_with(tail.out));
  auto elsewhere = cli_with(agent, {"agent", "logs"}, {{"MODBOX_RUNTIME_DIR", "/nonexistent/run"}});
  CHECK(elsewhere.exit_code == 4);
  CHECK(elsewhere.err.find("no agent log at /nonexistent/run/agent.log") != std::string::npos);
}
