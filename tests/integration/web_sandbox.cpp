#include "tests/integration/web_sandbox.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "common/system.h"

namespace modbox::test {

namespace {

std::filesystem::path directory_from_environment(const char* variable, const char* built_in) {
  const char* dir = std::getenv(variable);
  return dir != nullptr && *dir != '\0' ? dir : built_in;
}

bool equals_ignoring_case(std::string_view left, std::string_view right) {
  return std::ranges::equal(left, right, [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

std::string trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return std::string(text);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

std::filesystem::path test_servers_dir() {
  return directory_from_environment("MODBOX_TEST_SERVERS_DIR", MODBOX_TEST_SERVERS_DIR);
}

std::filesystem::path test_clients_dir() {
  return directory_from_environment("MODBOX_TEST_CLIENTS_DIR", MODBOX_TEST_CLIENTS_DIR);
}

std::vector<std::string> CurlReply::header_values(std::string_view name) const {
  std::vector<std::string> values;
  for (const auto& line : split_lines(head)) {
    auto colon = line.find(':');
    if (colon != std::string::npos && equals_ignoring_case(std::string_view(line).substr(0, colon), name))
      values.push_back(trim(std::string_view(line).substr(colon + 1)));
  }
  return values;
}

std::string CurlReply::header(std::string_view name) const {
  auto values = header_values(name);
  return values.empty() ? "" : values.front();
}

CurlReply curl(const std::string& url, const std::vector<std::string>& args,
               const std::optional<std::filesystem::path>& body_file, std::chrono::seconds timeout) {
  LocalDir scratch;
  auto head_path = scratch.path / "head";
  auto body_path = body_file.value_or(scratch.path / "body");
  std::vector<std::string> argv = {
      "curl", "-sS", "--noproxy", "*", "-D", head_path.string(), "-o", body_path.string(), "-w", "%{http_code}"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(url);
  auto run = run_command(argv, {}, timeout);
  CurlReply reply;
  reply.exit_code = run.exit_code;
  reply.status = std::atoi(run.out.c_str());
  reply.trace = run.err;
  reply.head = read_file(head_path).value_or("");
  if (!body_file) reply.body = read_file(body_path, 64 << 20).value_or("");
  return reply;
}

std::string sha256_of_file(const std::filesystem::path& path) {
  auto summed = run_command({"sha256sum", path.string()});
  return summed.out.substr(0, 64);
}

bool SetCookie::has(std::string_view attribute) const {
  return std::ranges::any_of(attributes,
                             [&](const std::string& given) { return equals_ignoring_case(given, attribute); });
}

std::optional<SetCookie> parse_set_cookie(const std::string& header) {
  SetCookie cookie;
  std::istringstream parts(header);
  std::string part;
  if (!std::getline(parts, part, ';')) return std::nullopt;
  auto equals = part.find('=');
  if (equals == std::string::npos) return std::nullopt;
  cookie.name = trim(std::string_view(part).substr(0, equals));
  cookie.value = trim(std::string_view(part).substr(equals + 1));
  while (std::getline(parts, part, ';'))
    if (auto attribute = trim(part); !attribute.empty()) cookie.attributes.push_back(attribute);
  return cookie;
}

std::string owner_token(const TestAgent& agent) {
  auto env = agent.cli({"agent", "env"});
  INFO(env.err);
  REQUIRE(env.exit_code == 0);
  for (const auto& line : split_lines(env.out))
    if (line.starts_with("MODBOX_API_TOKEN=")) return line.substr(17);
  FAIL("modbox agent env printed no MODBOX_API_TOKEN: " << env.out);
  return "";
}

WebSandbox::WebSandbox(TestAgent& agent, json extra, bool with_key)
    : agent_(agent), task_(unique_name("web")), key_(with_key ? unique_name("key") : "") {
  if (with_key) extra["env_vars"]["SANDBOX_API_KEY"] = key_;
  extra["ttl_seconds"] = 900;
  sandbox_ = agent_.provision_running(task_, extra);
  url_ = sandbox_.value("sandbox_url", "");
  REQUIRE(url_.starts_with("http://127.0.0.1:"));
  // Written through exec: the control API needs no key, so keyless sandboxes get the app too.
  auto source = read_file(test_servers_dir() / "webapp.py");
  INFO("webapp.py is expected in " << test_servers_dir().string() << " ($MODBOX_TEST_SERVERS_DIR)");
  REQUIRE(source.has_value());
  REQUIRE(source->find("MODBOX_WEBAPP_END") == std::string::npos);
  sh("cat > /tmp/webapp.py <<'MODBOX_WEBAPP_END'\n" + *source + "MODBOX_WEBAPP_END\n");
}

WebSandbox::~WebSandbox() {
  agent_.api("POST", "/sandboxes/destroy", json{{"task_id", task_}}.dump());
}

std::string WebSandbox::port_url(int port) const {
  const json& urls = sandbox_.contains("port_urls") ? sandbox_["port_urls"] : json::object();
  return urls.is_object() ? urls.value(std::to_string(port), "") : "";
}

std::string WebSandbox::sh(const std::string& command) const {
  auto reply = agent_.api("POST", "/sandboxes/exec", json{{"task_id", task_}, {"command", command}}.dump());
  INFO("exec: " << command.substr(0, 200) << "\nanswer: " << reply.body);
  REQUIRE(reply.status == 200);
  json result = reply.json_body();
  REQUIRE(result["exitCode"] == 0);
  return result["stdout"];
}

void WebSandbox::start_server(int port) const {
  std::string name = "/tmp/webapp-" + std::to_string(port);
  // A background job outlives the exec that started it (as after `docker exec`).
  sh("nohup python3 /tmp/webapp.py --port " + std::to_string(port) + " --log " + name + ".log >" + name +
     ".out 2>&1 &");
  wait_for_server(port);
}

void WebSandbox::wait_for_server(int port) const {
  std::string waited = sh("python3 /tmp/webapp.py --wait-for " + std::to_string(port) + " --timeout 15 || true");
  std::string output = sh("cat /tmp/webapp-" + std::to_string(port) + ".out 2>/dev/null; true");
  INFO("webapp.py on port " << port << " inside the sandbox: " << waited << output);
  REQUIRE(waited == "up\n");
}

std::vector<std::string> WebSandbox::server_log(int port) const {
  return split_lines(sh("cat /tmp/webapp-" + std::to_string(port) + ".log"));
}

int WebSandbox::wait_until_proxied(const std::string& base_url, std::chrono::seconds timeout) const {
  int status = 0;
  eventually(
      [&] {
        status = http_request(base_url, "GET", "/echo?from=wait", "", {{"Authorization", "Bearer " + key_}}, 5s).status;
        return status != 502 && status != 0;
      },
      timeout, 100ms);
  return status;
}

std::vector<std::string> client_command(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"node", (test_clients_dir() / script).string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ClientRun run_client(const std::string& script, const std::vector<std::string>& args, std::chrono::seconds timeout,
                     const std::map<std::string, std::string>& env) {
  INFO(
      "the Node clients need their packages: images/prepare-host --install --tests runs npm ci in "
      "tests/integration/clients ($MODBOX_TEST_CLIENTS_DIR: "
      << test_clients_dir().string() << ")");
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "ws"));
  auto run = run_command(client_command(script, args), env, timeout);
  ClientRun client{run.exit_code, json::object(), run.out, run.err};
  auto lines = split_lines(run.out);
  if (json last = lines.empty() ? json() : json::parse(lines.back(), nullptr, false); last.is_object())
    client.result = last;
  return client;
}

std::filesystem::path readme_path() {
  const char* path = std::getenv("MODBOX_TEST_README");
  return path != nullptr && *path != '\0' ? path : MODBOX_TEST_README;
}

/// The fenced code block right after `<!-- example: NAME -->` in README.md: its lines, without the fences.
std::string readme_example(const std::string& name) {
  auto readme = modbox::read_file(readme_path());
  INFO("README.md is expected at " << readme_path().string() << " ($MODBOX_TEST_README)");
  REQUIRE(readme.has_value());
  std::string marker = "<!-- example: " + name + " -->\n";
  auto at = readme->find(marker);
  INFO("README.md has no " << marker);
  REQUIRE(at != std::string::npos);
  auto fence = at + marker.size();
  REQUIRE(readme->compare(fence, 3, "```") == 0);
  auto body = readme->find('\n', fence) + 1;
  auto end = readme->find("\n```\n", body - 1);
  REQUIRE(end != std::string::npos);
  return readme->substr(body, end + 1 - body);
}

}  // namespace modbox::test
