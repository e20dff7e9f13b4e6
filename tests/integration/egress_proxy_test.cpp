// Proxy support (seed 001): HTTP_PROXY, HTTPS_PROXY and NO_PROXY in a sandbox's environment, upper or
// lower case, socks5:// included, reach apt, pip, git, npm and curl in the code-exec and desktop images, and
// Chromium in the desktop one. A logging proxy (servers/logproxy.py: HTTP forwarding, CONNECT and SOCKS5 on
// one port, forwarding nothing) runs inside each sandbox on loopback, and every tool's request must show
// up in its log; a host in NO_PROXY must reach the same server directly instead (it resolves to 127.0.0.1
// through /etc/hosts), which its log shows as a DIRECT request. Nothing leaves the sandbox.
//
// Two sandboxes: each gets one case through its provision's env_vars (the seed's way), and another through
// the environment of a bash started by an exec, which is how the images apply the settings to every
// command (BASH_ENV; see images/common/proxy-env.sh).

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;

namespace {

// Resolved to 127.0.0.1 in the sandbox and listed in NO_PROXY.
const std::string direct_host = "direct.modbox.test";

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string image_id(const TestAgent& agent, const std::string& image) {
  json listed = agent.api("GET", "/sandbox-images").json_body();
  REQUIRE(listed.is_array());
  for (const auto& entry : listed)
    if (entry["image"] == image) return entry["id"];
  FAIL("no image " << image << " registered");
  return "";
}

/// A sandbox of `image` with `env_vars`, destroyed with the object.
class ProxySandbox {
 public:
  ProxySandbox(TestAgent& agent, const std::string& image, const json& env_vars)
      : agent_(agent), task_(unique_name("egress")) {
    json body = {
        {"task_id", task_}, {"image_id", image_id(agent, image)}, {"ttl_seconds", 900}, {"env_vars", env_vars}};
    auto provisioned = agent_.api("POST", "/sandboxes/provision", body.dump());
    INFO(provisioned.body);
    REQUIRE(provisioned.status == 200);
    auto waited =
        agent_.api("POST", "/sandboxes/wait", json{{"task_id", task_}, {"timeout", 240}}.dump(), std::nullopt, 260s);
    if (waited.status != 200) {
      std::string agent_log = read_text(agent_.paths().state_dir.parent_path() / "agent.log");
      if (agent_log.size() > 6000) agent_log = agent_log.substr(agent_log.size() - 6000);
      FAIL("wait answered " << waited.status << ": " << waited.body << "\nthe sandbox now: "
                            << agent_.api("GET", "/sandboxes/detail/" + task_).body << "\nthe agent's log:\n"
                            << agent_log);
    }
  }
  ~ProxySandbox() { agent_.api("POST", "/sandboxes/destroy", json{{"task_id", task_}}.dump()); }
  ProxySandbox(const ProxySandbox&) = delete;
  ProxySandbox& operator=(const ProxySandbox&) = delete;

  /// Runs `command` through exec; its stdout and stderr. REQUIREs exit 0.
  std::string sh(const std::string& command) const {
    auto reply =
        agent_.api("POST", "/sandboxes/exec", json{{"task_id", task_}, {"command", command}, {"timeout", 30000}}.dump(),
                   std::nullopt, 60s);
    INFO("exec: " << command.substr(0, 300) << "\nanswer: " << reply.body);
    REQUIRE(reply.status == 200);
    json result = reply.json_body();
    REQUIRE(result["exitCode"] == 0);
    return result["stdout"].get<std::string>() + result["stderr"].get<std::string>();
  }

  std::string log(int port) const { return sh("cat /tmp/proxy-" + std::to_string(port) + ".log"); }

 private:
  TestAgent& agent_;
  std::string task_;
};

/// The shell text that, run by the first exec of a sandbox, writes logproxy.py and tools.sh, maps
/// direct_host to loopback, starts a logging proxy on each of `ports` and waits until they listen.
std::string setup_script(const std::vector<int>& ports) {
  std::string proxy = read_text(test_servers_dir() / "logproxy.py");
  INFO("logproxy.py is expected in " << test_servers_dir().string() << " ($MODBOX_TEST_SERVERS_DIR)");
  REQUIRE_FALSE(proxy.empty());
  REQUIRE(proxy.find("MODBOX_PROXY_END") == std::string::npos);
  // Every tool's request fails (the proxy forwards nothing; the direct server answers 404): only the
  // proxy's log matters, so the tools' exit statuses are ignored. Each tool is kept from retrying.
  std::string tools = R"(p=$1
case $2 in
apt)
  apt-get -q -o Acquire::Retries=0 update
  echo "deb http://direct.modbox.test:$p/debian bookworm main" >/tmp/direct-$p.list
  apt-get -q -o Acquire::Retries=0 -o Dir::Etc::SourceList=/tmp/direct-$p.list -o Dir::Etc::SourceParts=/nonexistent update ;;
pip)
  pip download --no-deps --retries 0 --timeout 10 -d /tmp/pip-$p six
  pip download --no-deps --retries 0 --timeout 10 -d /tmp/pip-$p --index-url http://direct.modbox.test:$p/simple/ --trusted-host direct.modbox.test six ;;
git)
  export GIT_TERMINAL_PROMPT=0
  git ls-remote https://git.modbox.test/r.git
  git ls-remote http://git.modbox.test/r.git
  git ls-remote http://direct.modbox.test:$p/r.git ;;
npm)
  npm view is-number version --fetch-retries=0 --fetch-timeout=10000
  npm view is-number version --fetch-retries=0 --fetch-timeout=10000 --registry http://direct.modbox.test:$p/ ;;
curl)
  curl -sS http://curl.modbox.test/
  curl -sS https://curl.modbox.test/ ;;
esac
true
)";
  std::string script = "set -e\ncat >/tmp/logproxy.py <<'MODBOX_PROXY_END'\n" + proxy + "MODBOX_PROXY_END\n" +
                       "cat >/tmp/tools.sh <<'MODBOX_PROXY_END'\n" + tools + "MODBOX_PROXY_END\n" + "echo '127.0.0.1 " +
                       direct_host + "' >>/etc/hosts\n";
  for (int port : ports) {
    std::string name = "/tmp/proxy-" + std::to_string(port);
    script += "nohup python3 /tmp/logproxy.py --port " + std::to_string(port) + " --log " + name + ".log >" + name +
              ".out 2>&1 &\n";
  }
  // Each prints "ready" once it listens: wait for that, 15 s at most.
  for (int port : ports) {
    std::string out = "/tmp/proxy-" + std::to_string(port) + ".out";
    script += "for i in $(seq 150); do grep -q ready " + out +
              " 2>/dev/null && break; sleep 0.1; done; grep -q ready " + out + " || { cat " + out + "; exit 1; }\n";
  }
  script += "set +e\n";
  return script;
}

/// The environment of one case: `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` in the given case.
json proxy_env(const std::string& scheme, int port, bool upper) {
  std::string proxy = scheme + "://127.0.0.1:" + std::to_string(port);
  if (upper) return {{"HTTP_PROXY", proxy}, {"HTTPS_PROXY", proxy}, {"NO_PROXY", "localhost," + direct_host}};
  return {{"http_proxy", proxy}, {"https_proxy", proxy}, {"no_proxy", "localhost," + direct_host}};
}

const std::vector<std::string> tool_names = {"apt", "pip", "git", "npm", "curl"};

/// Runs each tool of tools.sh, each in its own exec (one lasts 30 s at most). With `env`, in a new bash
/// whose environment holds only those proxy variables, as a sandbox provisioned with them would have;
/// without, in the exec's own shell (the sandbox's environment). The tools' output goes to
/// /tmp/tools-PORT.out.
void run_tools(const ProxySandbox& sandbox, int port, const std::optional<json>& env = std::nullopt) {
  std::string run = ". /tmp/tools.sh";
  if (env) {
    run = "env";
    for (const char* name :
         {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"})
      run += std::string(" -u ") + name;
    for (const auto& [name, value] : env->items()) run += " " + name + "=" + value.get<std::string>();
    run += " bash /tmp/tools.sh";
  }
  for (const auto& tool : tool_names)
    sandbox.sh(run + " " + std::to_string(port) + " " + tool + " >>/tmp/tools-" + std::to_string(port) +
               ".out 2>&1; true");
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::vector<std::string>& lines, const std::string& prefix, const std::string& contains = "") {
  for (const auto& line : lines)
    if (line.starts_with(prefix) && line.find(contains) != std::string::npos) return true;
  return false;
}

/// Checks the log of the proxy on `port` after tools.sh ran with it as an http:// (or a socks5://) proxy.
void check_tools_log(const std::string& log, int port, bool socks) {
  INFO("the log of the proxy on port " << port << ":\n" << log);
  auto lines = lines_of(log);
  const std::string direct = "host=" + direct_host + ":" + std::to_string(port);
  if (socks) {
    CHECK(has_line(lines, "SOCKS5 deb.debian.org:80"));  // apt
    CHECK(has_line(lines, "SOCKS5 pypi.org:443"));       // pip
    CHECK(has_line(lines, "SOCKS5 git.modbox.test:443"));
    CHECK(has_line(lines, "SOCKS5 git.modbox.test:80"));
    CHECK(has_line(lines, "SOCKS5 registry.npmjs.org:443"));
    CHECK(has_line(lines, "SOCKS5 curl.modbox.test:80"));
    CHECK(has_line(lines, "SOCKS5 curl.modbox.test:443"));
  } else {
    CHECK(has_line(lines, "HTTP GET http://deb.debian.org", "/debian/dists/bookworm/"));  // apt
    CHECK(has_line(lines, "CONNECT pypi.org:443"));                                       // pip
    CHECK(has_line(lines, "CONNECT git.modbox.test:443"));
    CHECK(has_line(lines, "HTTP GET http://git.modbox.test/r.git/info/refs"));  // git ignores HTTP_PROXY by itself
    CHECK(has_line(lines, "CONNECT registry.npmjs.org:443"));
    CHECK(has_line(lines, "HTTP GET http://curl.modbox.test/"));
    CHECK(has_line(lines, "CONNECT curl.modbox.test:443"));
  }
  // NO_PROXY: each tool reached the direct host itself, never through the proxy.
  CHECK(has_line(lines, "DIRECT GET /debian/dists/bookworm/", direct));
  CHECK(has_line(lines, "DIRECT GET /simple/six/", direct));
  CHECK(has_line(lines, "DIRECT GET /r.git/info/refs", direct));
  CHECK(has_line(lines, "DIRECT GET /is-number", direct));
  for (const auto& line : lines)
    if (!line.starts_with("DIRECT ")) CHECK(line.find(direct_host) == std::string::npos);
}

}  // namespace

TEST_CASE("proxy settings reach apt, pip, git, npm and curl in a code-exec sandbox", "[egress-proxy]") {
  TestAgent agent;
  agent.start();
  // Provisioned with upper-case variables, which apt, curl and git read only in part.
  ProxySandbox sandbox(agent, "modbox/code-exec", proxy_env("http", 3128, true));

  // The first exec after wait already has the working settings: nothing is written at start.
  std::string first = sandbox.sh(setup_script({3128, 3129, 1080}) +
                                 "echo \"lower=$http_proxy,$https_proxy,$no_proxy\"\n"
                                 ". /tmp/tools.sh 3128 git >/tmp/tools-3128.out 2>&1; true\n");
  CHECK(first.find("lower=http://127.0.0.1:3128,http://127.0.0.1:3128,localhost," + direct_host) != std::string::npos);
  CHECK(has_line(lines_of(sandbox.log(3128)), "CONNECT git.modbox.test:443"));
  run_tools(sandbox, 3128);
  check_tools_log(sandbox.log(3128), 3128, false);

  // Lower-case variables; socks5:// in upper case.
  run_tools(sandbox, 3129, proxy_env("http", 3129, false));
  check_tools_log(sandbox.log(3129), 3129, false);
  run_tools(sandbox, 1080, proxy_env("socks5", 1080, true));
  check_tools_log(sandbox.log(1080), 1080, true);
}

TEST_CASE("proxy settings reach Chromium and the tools in a desktop sandbox", "[egress-proxy]") {
  TestAgent agent;
  agent.start();
  // Provisioned with lower-case socks5:// variables: Chromium gets them as flags when supervisord starts it.
  ProxySandbox sandbox(agent, "modbox/sandbox", proxy_env("socks5", 1080, false));

  std::string first = sandbox.sh(setup_script({1080, 3128}) +
                                 "echo \"upper=$HTTP_PROXY,$HTTPS_PROXY,$NO_PROXY\"\n"
                                 ". /tmp/tools.sh 1080 git >/tmp/tools-1080.out 2>&1; true\n");
  CHECK(has_line(lines_of(sandbox.log(1080)), "SOCKS5 git.modbox.test:443"));
  run_tools(sandbox, 1080);
  CHECK(first.find("upper=socks5h://127.0.0.1:1080,socks5h://127.0.0.1:1080,localhost," + direct_host) !=
        std::string::npos);
  check_tools_log(sandbox.log(1080), 1080, true);

  // Chromium opens a tab on a proxied host and one on the NO_PROXY host (CDP's /json/new takes PUT).
  for (const std::string& url :
       std::vector<std::string>{"http://chromium.modbox.test/", "http://" + direct_host + ":1080/from-chromium"})
    sandbox.sh("curl -sSf --noproxy '*' -X PUT 'http://127.0.0.1:9222/json/new?" + url + "' >/dev/null");
  std::string log;
  bool seen = eventually(
      [&] {
        log = sandbox.log(1080);
        auto lines = lines_of(log);
        return has_line(lines, "SOCKS5 chromium.modbox.test:80") &&
               has_line(lines, "DIRECT GET /from-chromium", "host=" + direct_host + ":1080");
      },
      30s, 250ms);
  INFO("the log of the proxy on port 1080:\n" << log);
  CHECK(seen);

  // Upper-case http:// variables.
  run_tools(sandbox, 3128, proxy_env("http", 3128, true));
  check_tools_log(sandbox.log(3128), 3128, false);
}
