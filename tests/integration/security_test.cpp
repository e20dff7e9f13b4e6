// Attacks on the agent's credentials, secrets and files, and races between clients: each refused or
// contained, against the real agent and real Podman.

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

int port_of(const std::string& url) {
  return std::stoi(url.substr(url.rfind(':') + 1));
}

/// A TCP connection to 127.0.0.1:port, closed when destroyed; -1 when the connect failed.
struct RawConnection {
  int fd = -1;
  explicit RawConnection(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~RawConnection() {
    if (fd >= 0) ::close(fd);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  RawConnection(RawConnection&& other) noexcept : fd(std::exchange(other.fd, -1)) {}

  bool send_all(std::string_view bytes) const {
    while (!bytes.empty()) {
      ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (sent <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
    return true;
  }
  /// What arrives until the peer closes, `until` appears in it, or `timeout` passes with nothing new.
  std::string receive(std::chrono::milliseconds timeout, std::string_view until = {}) const {
    std::string text;
    char buffer[65536];
    pollfd waiting{fd, POLLIN, 0};
    while (::poll(&waiting, 1, static_cast<int>(timeout.count())) == 1) {
      ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
      if (got <= 0) break;
      text.append(buffer, static_cast<std::size_t>(got));
      if (!until.empty() && text.find(until) != std::string::npos) break;
    }
    return text;
  }
};

/// The status code of the first answer in `text`, or 0.
int status_of(const std::string& text) {
  return text.starts_with("HTTP/1.1 ") && text.size() >= 12 ? std::atoi(text.c_str() + 9) : 0;
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

TEST_CASE("security: smuggling shapes, oversized heads and odd targets are refused by the front; none reaches the app",
          "[security]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(8080);
  REQUIRE(box.wait_until_proxied(box.url()) == 200);
  const int port = port_of(box.url());
  const std::string auth = "Authorization: Bearer " + box.key() + "\r\n";
  std::size_t logged_before = box.server_log(8080).size();

  struct Attempt {
    std::string what;
    std::string request;
    std::vector<int> statuses;
    bool refused_in_body = false;
  };
  const std::string smuggled = "GET /echo?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<Attempt> attempts = {
      {"Content-Length and Transfer-Encoding",
       "POST /echo HTTP/1.1\r\nHost: x\r\n" + auth +
           "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
       {400}},
      {"two Content-Lengths",
       "POST /echo HTTP/1.1\r\nHost: x\r\n" + auth +
           "Content-Length: 0\r\nContent-Length: " + std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled,
       {400}},
      {"chunked, then identity",
       "POST /echo HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled,
       {400, 501}},
      {"two Transfer-Encodings",
       "POST /echo HTTP/1.1\r\nHost: x\r\n" + auth +
           "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
       {400, 501}},
      {"a chunk size that is not hex",
       "POST /echo HTTP/1.1\r\nHost: x\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled,
       {400},
       true},
      {"a folded header", "GET /echo HTTP/1.1\r\nHost: x\r\n" + auth + "X-A: one\r\n two\r\n\r\n", {400}},
      {"a request line of 10 KiB",
       "GET /echo?" + std::string(10 << 10, 'a') + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
       {414}},
      {"a head of 70 KiB",
       "GET /echo HTTP/1.1\r\nHost: x\r\n" + auth + "X-Big: " + std::string(70 << 10, 'b') + "\r\n\r\n",
       {431}},
      {"..%2f without credentials", "GET /x/..%2f..%2fmodbox/api/files HTTP/1.1\r\nHost: x\r\n\r\n", {401}},
      {"%2e%2e without credentials", "GET /%2e%2e/%2e%2e/echo HTTP/1.1\r\nHost: x\r\n\r\n", {401}},
      {"absolute-form without credentials", "GET http://127.0.0.1:1/echo HTTP/1.1\r\nHost: x\r\n\r\n", {400, 401}},
  };
  for (const auto& attempt : attempts) {
    RawConnection connection(port);
    REQUIRE(connection.fd >= 0);
    connection.send_all(attempt.request);
    std::string answer = connection.receive(5s);
    INFO(attempt.what << ": " << answer.substr(0, 300));
    CHECK(std::find(attempt.statuses.begin(), attempt.statuses.end(), status_of(answer)) != attempt.statuses.end());
    // One answer, and the connection is not reused for what followed the refused head.
    CHECK(answer.find("HTTP/1.1", 1) == std::string::npos);
    auto logged = box.server_log(8080);
    std::string reached;
    for (std::size_t i = logged_before; i < logged.size(); ++i) reached += logged[i] + "\n";
    INFO("reached the app: " << reached);
    if (attempt.refused_in_body) {
      // The front relays a body as it arrives (no request buffering), so a malformed chunk is found
      // after the head went on: the app may have seen that head, never a whole request, and never the
      // request smuggled behind it.
      CHECK(logged.size() - logged_before <= 1);
      CHECK(reached.find("smuggled") == std::string::npos);
    } else {
      CHECK(logged.size() == logged_before);  // a refused head never reaches the app
    }
    logged_before = logged.size();
  }

  // With the key, an absolute-form target goes to the sandbox's app (as its path), never elsewhere.
  {
    RawConnection connection(port);
    connection.send_all("GET http://example.invalid/echo?absolute=1 HTTP/1.1\r\nHost: x\r\n" + auth +
                        "Connection: close\r\n\r\n");
    std::string answer = connection.receive(10s);
    INFO(answer.substr(0, 300));
    CHECK((status_of(answer) == 400 || status_of(answer) == 200));
    if (status_of(answer) == 200) CHECK(answer.find("absolute=1") != std::string::npos);
  }
  // An Upgrade the app refuses stays HTTP: its answer arrives whole, no tunnel opens, and the front
  // closes the connection (the client may have meant to speak the upgraded protocol next), so bytes
  // sent after it never reach the app.
  {
    RawConnection connection(port);
    connection.send_all("GET /echo?upgrade=refused HTTP/1.1\r\nHost: x\r\n" + auth +
                        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    std::string answer = connection.receive(10s);
    INFO(answer.substr(0, 400));
    CHECK(status_of(answer) == 200);
    CHECK(answer.find("Connection: close") != std::string::npos);
    auto body_start = answer.find("\r\n\r\n");
    REQUIRE(body_start != std::string::npos);
    CHECK(json::parse(answer.substr(body_start + 4), nullptr, false).value("query", "") == "upgrade=refused");
    connection.send_all("GET /echo?after=upgrade HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n");
    connection.receive(1s);
    auto log = box.server_log(8080);
    CHECK(std::none_of(log.begin(), log.end(),
                       [](const std::string& line) { return line.find("after=upgrade") != std::string::npos; }));
  }
}

TEST_CASE("security: a slowloris of 1,000 sockets on one sandbox's URL leaves another sandbox's exec answering",
          "[security]") {
  rlimit files{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &files) == 0);
  files.rlim_cur = std::max<rlim_t>(files.rlim_cur, std::min<rlim_t>(files.rlim_max, 4096));
  ::setrlimit(RLIMIT_NOFILE, &files);
  REQUIRE(files.rlim_cur >= 1100);
  TestAgent agent;
  agent.start();
  const std::string key_a = unique_name("key");
  const std::string key_b = unique_name("key");
  json a = agent.provision_running(unique_name("slow"), {{"env_vars", {{"SANDBOX_API_KEY", key_a}}}});
  json b = agent.provision_running(unique_name("slow"), {{"env_vars", {{"SANDBOX_API_KEY", key_b}}}});
  auto exec_b = [&] {
    auto started = std::chrono::steady_clock::now();
    auto reply = http_request(b["sandbox_url"], "POST", "/modbox/api/exec", json{{"command", "echo ok"}}.dump(),
                              {{"Authorization", "Bearer " + key_b}}, 30s);
    CHECK(reply.status == 200);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  };
  auto median_of = [&](int count) {
    std::vector<double> times;
    for (int i = 0; i < count; ++i) times.push_back(exec_b());
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  };
  double unloaded = median_of(20);

  std::vector<RawConnection> held;
  const int port_a = port_of(a["sandbox_url"]);
  for (int i = 0; i < 1000; ++i) {
    RawConnection connection(port_a);
    if (connection.fd < 0) break;
    // Half send nothing, half a head that never ends.
    if (i % 2 == 1) connection.send_all("GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    held.push_back(std::move(connection));
  }
  CHECK(held.size() == 1000);
  double loaded = median_of(20);
  INFO("exec p50 on the other sandbox: " << unloaded << " ms unloaded, " << loaded << " ms with 1,000 sockets held");
  CHECK(loaded < std::max(10 * unloaded, 100.0));
  // The agent still answers its control API, and sandbox A's URL answers a real request.
  CHECK(agent.api("GET", "/agent/status").status == 200);
  auto a_exec = http_request(a["sandbox_url"], "POST", "/modbox/api/exec", json{{"command", "echo a"}}.dump(),
                             {{"Authorization", "Bearer " + key_a}}, 30s);
  CHECK(a_exec.status == 200);
}
