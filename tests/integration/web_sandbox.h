#pragma once
// What the proxy tests drive: sandboxes that run tests/integration/servers/webapp.py, and the clients that
// reach it through the sandbox's URLs as users do: curl, and the Node scripts of tests/integration/clients
// (WebSocket clients, Chromium through playwright-core).

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace modbox::test {

/// Where webapp.py is: $MODBOX_TEST_SERVERS_DIR (run-as-test-user copies it), else the source tree.
std::filesystem::path test_servers_dir();
/// Where the Node clients and their node_modules are: $MODBOX_TEST_CLIENTS_DIR, else the source tree.
std::filesystem::path test_clients_dir();

/// One answer as curl got it.
struct CurlReply {
  int exit_code = -1;  // curl's: 7 is "could not connect"
  int status = 0;      // 0: no HTTP answer
  std::string head;    // the header block, as received
  std::string body;    // empty when it went to a file
  std::string trace;   // curl's stderr (its trace with -v)

  /// The values of header `name`, in any case.
  std::vector<std::string> header_values(std::string_view name) const;
  /// The first value of header `name`, or "".
  std::string header(std::string_view name) const;
  json json_body() const { return json::parse(body, nullptr, false); }
};

/// `curl -sS --noproxy '*' ARGS URL` (no proxy ever sits between the tests and loopback), keeping the header
/// block and the body (written to `body_file` instead when given).
CurlReply curl(const std::string& url, const std::vector<std::string>& args = {},
               const std::optional<std::filesystem::path>& body_file = std::nullopt,
               std::chrono::seconds timeout = 120s);

/// The sha256 of a local file, in hex.
std::string sha256_of_file(const std::filesystem::path& path);

/// A Set-Cookie header taken apart.
struct SetCookie {
  std::string name;
  std::string value;
  std::vector<std::string> attributes;  // as sent, e.g. "HttpOnly", "SameSite=Lax", "Path=/"
  /// Whether an attribute equals `attribute`, ignoring case.
  bool has(std::string_view attribute) const;
  std::string pair() const { return name + "=" + value; }
};
std::optional<SetCookie> parse_set_cookie(const std::string& header);

/// The agent's owner token as a user gets it: MODBOX_API_TOKEN from `modbox agent env`.
std::string owner_token(const TestAgent& agent);

/// A sandbox with webapp.py in it (at /tmp/webapp.py, not started). Provisioned with a fresh
/// SANDBOX_API_KEY unless `with_key` is false, and `extra` provision fields; destroyed with the object.
class WebSandbox {
 public:
  explicit WebSandbox(TestAgent& agent, json extra = json::object(), bool with_key = true);
  ~WebSandbox();
  WebSandbox(const WebSandbox&) = delete;
  WebSandbox& operator=(const WebSandbox&) = delete;

  const std::string& task() const { return task_; }
  const std::string& key() const { return key_; }
  const std::string& url() const { return url_; }
  const json& sandbox() const { return sandbox_; }
  /// The URL serving the sandbox's port `port` (its `port_urls`), or "" when it has none.
  std::string port_url(int port) const;
  /// "Authorization: Bearer KEY", as a curl -H argument.
  std::string bearer() const { return "Authorization: Bearer " + key_; }

  /// Runs `command` in the sandbox (the control API's exec, which needs no key); its stdout. REQUIREs exit 0.
  std::string sh(const std::string& command) const;
  /// Starts webapp.py on `port` in the background, logging requests to /tmp/webapp-PORT.log, and waits
  /// until it answers inside the sandbox (wait_for_server).
  void start_server(int port) const;
  /// Waits (up to 15 s) until webapp.py answers GET /echo?from=sandbox on `port` inside the sandbox, which
  /// its log then shows. REQUIREs that it does.
  void wait_for_server(int port) const;
  /// The request log of the server on `port`: one "METHOD TARGET" a request.
  std::vector<std::string> server_log(int port) const;
  /// Waits until `base_url` (the sandbox URL or a port URL) stops answering 502 to an authorized GET /echo,
  /// or `timeout` passes; returns the last status (0: no answer).
  int wait_until_proxied(const std::string& base_url, std::chrono::seconds timeout = 15s) const;

 private:
  TestAgent& agent_;
  std::string task_;
  std::string key_;
  json sandbox_;
  std::string url_;
};

/// A Node script of tests/integration/clients, run to its end.
struct ClientRun {
  int exit_code = -1;
  json result;  // the JSON object it printed last (empty when none)
  std::string out;
  std::string err;
};
/// `node CLIENTS_DIR/SCRIPT ARGS` with extra environment `env`; REQUIREs that the clients' node_modules
/// are installed.
ClientRun run_client(const std::string& script, const std::vector<std::string>& args,
                     std::chrono::seconds timeout = 120s, const std::map<std::string, std::string>& env = {});
/// The argv that runs a client script, for BackgroundProcess.
std::vector<std::string> client_command(const std::string& script, const std::vector<std::string>& args);

/// README.md as the tests read it: $MODBOX_TEST_README (run-as-test-user copies it), else the checkout's.
std::filesystem::path readme_path();
/// The fenced code block right after `<!-- example: NAME -->` in README.md: its lines, without the fences.
/// REQUIREs that there is one.
std::string readme_example(const std::string& name);

}  // namespace modbox::test
