// Attacks on the agent's credentials, secrets and files, and races between clients: each refused or
// contained, against the real agent and real Podman.

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;

namespace {

std::string text_of(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// MODBOX_API_URL as `modbox agent env` prints it: the agent's loopback TCP control API.
std::string control_url(const TestAgent& agent) {
  auto env = agent.cli({"agent", "env"});
  REQUIRE(env.exit_code == 0);
  std::istringstream lines(env.out);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("MODBOX_API_URL=")) return line.substr(15);
  FAIL("modbox agent env printed no MODBOX_API_URL: " << env.out);
  return "";
}

mode_t mode_of(const std::filesystem::path& path) {
  struct stat info {};
  REQUIRE(::lstat(path.c_str(), &info) == 0);
  return info.st_mode & 07777;
}

}  // namespace

TEST_CASE("security: near misses of a sandbox's key are refused, and no key opens more than its sandbox",
          "[security]") {
  TestAgent agent;
  agent.start();
  const std::string key = unique_name("key-a");
  const std::string other_key = unique_name("key-b");
  json sandbox = agent.provision_running(unique_name("sec"), {{"env_vars", {{"SANDBOX_API_KEY", key}}}});
  json other = agent.provision_running(unique_name("sec"), {{"env_vars", {{"SANDBOX_API_KEY", other_key}}}});
  const std::string exec_url = sandbox["sandbox_url"].get<std::string>() + "/modbox/api/exec";
  const std::string body = json{{"command", "echo ran"}}.dump();

  std::string same_length = key;
  same_length.back() = same_length.back() == 'x' ? 'y' : 'x';
  struct Attempt {
    std::string what;
    std::vector<std::string> headers;
  };
  std::vector<Attempt> attempts = {
      {"a wrong key of the right length", {"Authorization: Bearer " + same_length}},
      {"the key's prefix", {"Authorization: Bearer " + key.substr(0, key.size() - 1)}},
      {"an empty Bearer", {"Authorization: Bearer "}},
      {"two Authorization headers, the right one first", {"Authorization: Bearer " + key, "Authorization: Bearer x"}},
      {"two Authorization headers, the right one last", {"Authorization: Bearer x", "Authorization: Bearer " + key}},
      {"two Authorization headers, both right", {"Authorization: Bearer " + key, "Authorization: Bearer " + key}},
      {"another sandbox's key", {"Authorization: Bearer " + other_key}},
  };
  for (const auto& attempt : attempts) {
    std::vector<std::string> args = {"-X", "POST", "--data-binary", body, "-H", "Content-Type: application/json"};
    for (const auto& header : attempt.headers) args.insert(args.end(), {"-H", header});
    auto reply = curl(exec_url, args);
    INFO(attempt.what << ": " << reply.status << " " << reply.body);
    CHECK((reply.status == 401 || reply.status == 400));
    CHECK(reply.body.find("ran") == std::string::npos);
  }
  auto allowed = curl(exec_url, {"-X", "POST", "--data-binary", body, "-H", "Content-Type: application/json", "-H",
                                 "Authorization: Bearer " + key});
  CHECK(allowed.status == 200);
  CHECK(allowed.json_body().value("stdout", "") == "ran\n");

  // A sandbox's key is not a credential for the control API; the agent's token is.
  const std::string control = control_url(agent);
  for (const auto& credential : {key, other_key, std::string()}) {
    auto listed = curl(control + "/sandboxes", {"-H", "Authorization: Bearer " + credential});
    INFO("control API with '" << credential << "': " << listed.status << " " << listed.body);
    CHECK(listed.status == 401);
    CHECK(listed.body.find(sandbox["id"].get<std::string>()) == std::string::npos);
  }
  CHECK(curl(control + "/sandboxes", {"-H", "Authorization: Bearer " + owner_token(agent)}).status == 200);
}

TEST_CASE("security: the token, keys, env values and registry passwords stay out of the log and the sandboxes",
          "[security]") {
  TestAgent agent;
  agent.start();
  const std::string token = owner_token(agent);
  REQUIRE(token.size() >= 16);
  const std::string key = unique_name("secret-key");
  const std::string value = unique_name("secret-value");
  const std::string password = unique_name("secret-password");
  const std::string task = unique_name("sec");

  auto registry = agent.api(
      "POST", "/registries",
      json{{"name", unique_name("reg")}, {"server", "127.0.0.1:1"}, {"username", "u"}, {"password", password}}.dump());
  REQUIRE(registry.status == 201);
  CHECK(registry.body.find(password) == std::string::npos);
  json sandbox = agent.provision_running(task, {{"env_vars", {{"SANDBOX_API_KEY", key}, {"DB_PASSWORD", value}}}});
  // Requests that fail, are refused or run commands give the agent every chance to log what it was sent.
  auto environ =
      agent.api("POST", "/sandboxes/exec",
                json{{"task_id", task}, {"command", "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"}}.dump());
  REQUIRE(environ.status == 200);
  std::string inside = environ.json_body().value("stdout", "");
  CHECK(inside.find("DB_PASSWORD=" + value) != std::string::npos);  // the control: the sandbox's own env is there
  CHECK(inside.find(token) == std::string::npos);
  CHECK(curl(sandbox["sandbox_url"].get<std::string>() + "/modbox/api/exec",
             {"-X", "POST", "--data-binary", "{}", "-H", "Authorization: Bearer " + key + "x"})
            .status == 401);
  CHECK(
      agent
          .api("POST", "/sandboxes/provision", json{{"task_id", task}, {"env_vars", {{"SANDBOX_API_KEY", key}}}}.dump())
          .status == 409);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);

  const std::string log = text_of(agent.log_path());
  REQUIRE(log.find(sandbox["id"].get<std::string>()) != std::string::npos);  // the control: the log is the right one
  for (const auto& [what, secret] : std::map<std::string, std::string>{{"the agent's token", token},
                                                                       {"a sandbox key", key},
                                                                       {"an env_vars value", value},
                                                                       {"a registry password", password}}) {
    INFO(what << " in the agent's log");
    CHECK(log.find(secret) == std::string::npos);
  }
}

TEST_CASE("security: the agent's files and directories have the modes DESIGN.md gives them", "[security]") {
  TestAgent agent;
  agent.start();
  json sandbox = agent.provision_running(unique_name("sec"));
  auto registry = agent.api(
      "POST", "/registries",
      json{{"name", unique_name("reg")}, {"server", "127.0.0.1:1"}, {"username", "u"}, {"password", "p"}}.dump());
  REQUIRE(registry.status == 201);
  const auto& paths = agent.paths();
  CHECK(mode_of(paths.runtime_dir) == 0700);
  CHECK(mode_of(paths.agent_socket()) == 0600);
  CHECK(mode_of(paths.token_file()) == 0600);
  CHECK(mode_of(paths.sandboxes_dir() / (sandbox["id"].get<std::string>() + ".json")) == 0600);
  CHECK(mode_of(paths.registries_dir() / (registry.json_body()["id"].get<std::string>() + ".json")) == 0600);
  // Nothing the agent keeps is readable by other users.
  std::error_code error;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(paths.state_dir, error)) {
    if (entry.is_symlink()) continue;
    INFO(entry.path().string() << " mode " << std::oct << mode_of(entry.path()));
    CHECK((mode_of(entry.path()) & 0077) == 0);
  }
}

TEST_CASE("races: concurrent provisions of one task_id: exactly one wins, the others get 409", "[races]") {
  TestAgent agent;
  agent.start();
  for (int round = 0; round < 5; ++round) {
    const std::string task = unique_name("race");
    constexpr int clients = 4;
    std::vector<int> statuses(clients, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i)
      threads.emplace_back([&, i] {
        statuses[i] =
            agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"ttl_seconds", 300}}.dump()).status;
      });
    for (auto& thread : threads) thread.join();
    INFO("round " << round << ": " << statuses[0] << " " << statuses[1] << " " << statuses[2] << " " << statuses[3]);
    CHECK(std::count(statuses.begin(), statuses.end(), 200) == 1);
    CHECK(std::count(statuses.begin(), statuses.end(), 409) == clients - 1);
    auto listed = agent.api("GET", "/sandboxes").json_body();
    CHECK(std::count_if(listed.begin(), listed.end(), [&](const json& s) { return s["name"] == task; }) == 1);
    CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
  }
}
