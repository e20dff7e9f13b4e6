// The desktop sandbox (modbox/sandbox, seed 001) through its sandbox URL, against the real agent and real
// (rootless) Podman, with the clients people use: playwright-core's connectOverCDP driving the sandbox's
// own Chromium to a page served inside the sandbox (title, screenshot); the host's Chromium opening the
// desktop with ?token=KEY and noVNC showing what the sandbox's browser shows (its canvas's pixels); the
// MCP SDK's client on the browser MCP server over both transports; every route refused without the key;
// and README.md's desktop examples, run as written. One sandbox serves it all (each costs ~600 MB).

#include <catch2/catch.hpp>
#include <fstream>

#include "common/system.h"
#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;

namespace {

constexpr const char* kDesktopImageId = "8d0f3c9e-5b2a-4e47-9a61-2f4c7d1e0b53";
// What the sandbox's browser shows for noVNC to carry: a colour no part of a desktop or a browser has.
constexpr const char* kColour = "e0109a";

/// Width and height of a PNG file (from its IHDR chunk); nullopt when it is no PNG.
std::optional<std::pair<int, int>> png_size(const std::filesystem::path& path) {
  auto bytes = modbox::read_file(path, 64 << 20);
  if (!bytes.has_value() || bytes->size() < 33 || bytes->compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 ||
      bytes->compare(12, 4, "IHDR") != 0)
    return std::nullopt;
  auto number = [&](std::size_t at) {
    int value = 0;
    for (std::size_t i = 0; i < 4; ++i) value = value << 8 | static_cast<unsigned char>((*bytes)[at + i]);
    return value;
  };
  return std::pair{number(16), number(20)};
}

/// A running desktop sandbox with a key, destroyed with the object.
class Desktop {
 public:
  explicit Desktop(TestAgent& agent) : agent_(agent) {
    json listed = agent_.api("GET", "/sandbox-images").json_body();
    REQUIRE(listed.is_array());
    std::string id;
    for (const auto& image : listed)
      if (image["image"] == "modbox/sandbox") id = image["id"];
    REQUIRE(id == kDesktopImageId);
    json body = {
        {"task_id", task_}, {"image_id", id}, {"ttl_seconds", 1800}, {"env_vars", {{"SANDBOX_API_KEY", key_}}}};
    auto provisioned = agent_.api("POST", "/sandboxes/provision", body.dump());
    INFO(provisioned.body);
    REQUIRE(provisioned.status == 200);
    // Xvfb, x11vnc, websockify, Chromium, the MCP server and nginx start on a loaded machine: minutes at most.
    auto waited =
        agent_.api("POST", "/sandboxes/wait", json{{"task_id", task_}, {"timeout", 240}}.dump(), std::nullopt, 260s);
    INFO(waited.body);
    REQUIRE(waited.status == 200);
    url_ = waited.json_body()["sandbox_url"];
    REQUIRE(url_.starts_with("http://127.0.0.1:"));
  }
  ~Desktop() { agent_.api("POST", "/sandboxes/destroy", json{{"task_id", task_}}.dump()); }
  Desktop(const Desktop&) = delete;
  Desktop& operator=(const Desktop&) = delete;

  const std::string& url() const { return url_; }
  std::string host() const { return url_.substr(std::string("http://").size()); }
  const std::string& key() const { return key_; }
  std::string bearer() const { return "Authorization: Bearer " + key_; }

  /// The control API's exec (no key): its stdout; REQUIREs exit 0.
  std::string sh(const std::string& command) const {
    auto reply = agent_.api("POST", "/sandboxes/exec", json{{"task_id", task_}, {"command", command}}.dump());
    INFO("exec: " << command << "\nanswer: " << reply.body);
    REQUIRE(reply.status == 200);
    REQUIRE(reply.json_body()["exitCode"] == 0);
    return reply.json_body()["stdout"];
  }

 private:
  TestAgent& agent_;
  std::string task_ = unique_name("desk");
  std::string key_ = unique_name("key");
  std::string url_;
};

/// REQUIREs the clients' packages (run_client checks ws alone).
void require_clients() {
  INFO("images/prepare-host --install --tests runs npm ci in tests/integration/clients");
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "playwright-core"));
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "@modelcontextprotocol" / "sdk"));
}

/// Runs a client script; REQUIREs that it held, showing what it printed when not.
json client_ok(const std::string& script, const std::vector<std::string>& args) {
  auto run = run_client(script, args, 180s);
  INFO(script << ": " << run.out << run.err);
  REQUIRE(run.exit_code == 0);
  REQUIRE(run.result["ok"] == true);
  return run.result;
}

/// Replaces every `from` in `text` with `to`.
std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

const std::vector<std::string> kWebSocketUpgrade = {
    "-H", "Connection: Upgrade",       "-H", "Upgrade: websocket",
    "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="};

/// Without the key (or with a wrong one) every route of the desktop is refused before it reaches nginx.
void check_refused_without_key(const Desktop& desk) {
  struct Route {
    std::string path;
    std::vector<std::string> args;
  };
  const std::vector<Route> routes = {
      {"/", {}},
      {"/vnc/", {}},
      {"/vnc/vnc.html", {}},
      {"/vnc/websockify", kWebSocketUpgrade},
      {"/cdp/json/version", {}},
      {"/cdp/json/list", {}},
      {"/devtools/browser/x", {}},
      {"/devtools/browser/x", kWebSocketUpgrade},
      {"/mcp/cdp/",
       {"-X", "POST", "-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream",
        "--data-binary", R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})"}},
      {"/mcp/cdp/sse", {"-H", "Accept: text/event-stream", "--max-time", "10"}},
  };
  for (const auto& route : routes) {
    for (const std::vector<std::string>& credential :
         {std::vector<std::string>{}, std::vector<std::string>{"-H", "Authorization: Bearer wrong-key"},
          std::vector<std::string>{"-H", "Authorization: Bearer " + desk.key() + "x"}}) {
      auto args = route.args;
      args.insert(args.end(), credential.begin(), credential.end());
      CurlReply refused = curl(desk.url() + route.path, args);
      INFO(route.path << (route.args == kWebSocketUpgrade ? " (WebSocket)" : "") << " with "
                      << (credential.empty() ? "no key" : credential[1]) << ": " << refused.head << refused.body);
      CHECK(refused.status == 401);
    }
  }
  CHECK(curl(desk.url() + "/?token=wrong-key").status == 401);
  CHECK(curl(desk.url() + "/vnc/vnc.html?token=wrong-key").status == 401);
  for (const std::string transport : {"streamable", "sse"}) {
    for (const std::vector<std::string>& credential :
         {std::vector<std::string>{}, std::vector<std::string>{"--header", "Authorization: Bearer wrong-key"}}) {
      std::vector<std::string> args = {desk.url() + "/mcp/cdp/", "--transport", transport, "--expect-refused"};
      args.insert(args.end(), credential.begin(), credential.end());
      auto run = run_client("mcp-client.mjs", args);
      INFO(transport << ": " << run.out << run.err);
      CHECK(run.exit_code == 0);
      CHECK(run.result["refused_status"] == 401);
    }
  }
}

/// With the key the routes answer as seed 001 has them, CDP's WebSocket URLs naming the sandbox URL's host.
void check_routes_with_key(const Desktop& desk) {
  CurlReply root = curl(desk.url() + "/", {"-H", desk.bearer()});
  CHECK(root.status == 302);
  CHECK(root.header("Location") == "/vnc/");
  CurlReply vnc = curl(desk.url() + "/vnc/", {"-H", desk.bearer()});
  CHECK(vnc.status == 302);
  CHECK(vnc.header("Location").starts_with("/vnc/vnc.html?autoconnect=true"));
  CurlReply viewer = curl(desk.url() + "/vnc/vnc.html", {"-H", desk.bearer()});
  CHECK(viewer.status == 200);
  CHECK(viewer.body.find("noVNC") != std::string::npos);
  CurlReply version = curl(desk.url() + "/cdp/json/version", {"-H", desk.bearer()});
  INFO(version.head << version.body);
  REQUIRE(version.status == 200);
  CHECK(version.json_body()["webSocketDebuggerUrl"].get<std::string>().starts_with("ws://" + desk.host() +
                                                                                   "/devtools/browser/"));
  CurlReply list = curl(desk.url() + "/cdp/json/list", {"-H", desk.bearer()});
  INFO(list.body);
  REQUIRE(list.status == 200);
  REQUIRE(list.json_body().is_array());
  for (const auto& target : list.json_body())
    if (target.contains("webSocketDebuggerUrl"))
      CHECK(target["webSocketDebuggerUrl"].get<std::string>().starts_with("ws://" + desk.host() + "/devtools/"));
}

/// A site inside the sandbox on 127.0.0.1:8000, served by a background process started through the sandbox
/// URL's processes API: index.html with `title` and `text`, and colour.html, all of kColour.
void serve_site(const Desktop& desk, const std::string& title, const std::string& text) {
  desk.sh("mkdir -p /tmp/site && printf '%s' '<!doctype html><html><head><title>" + title +
          "</title></head><body><h1>" + text +
          "</h1></body></html>' > /tmp/site/index.html && printf '%s' "
          "'<!doctype html><html style=\"background:#" +
          kColour +
          "\"><head><title>colour</title></head>"
          "<body style=\"margin:0;background:#" +
          kColour + "\"></body></html>' > /tmp/site/colour.html");
  CurlReply started =
      curl(desk.url() + "/modbox/api/processes",
           {"-H", desk.bearer(), "-H", "Content-Type: application/json", "--data-binary",
            json{{"command", "exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp/site"}}.dump()});
  INFO(started.body);
  REQUIRE(started.status == 201);
  REQUIRE(eventually(
      [&] { return desk.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/ || true") == "200"; }, 30s,
      200ms));
}

/// README's Playwright example, as written, in a directory of its own whose node_modules are the clients':
/// it prints the page's title and saves page.png, whose size it returns.
std::pair<int, int> run_readme_playwright(const Desktop& desk, const std::string& title) {
  LocalDir example;
  std::ofstream(example.path / "example.mjs") << readme_example("playwright-cdp");
  std::filesystem::create_directory_symlink(test_clients_dir() / "node_modules", example.path / "node_modules");
  auto run = run_command({"env", "-C", example.path.string(), "node", "example.mjs"},
                         {{"SANDBOX_URL", desk.url()}, {"SANDBOX_API_KEY", desk.key()}}, 120s);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out == title + "\n");
  auto png = png_size(example.path / "page.png");
  REQUIRE(png.has_value());
  return *png;
}

/// README's MCP configuration with the sandbox's URL and key filled in, as a client reads it.
json readme_mcp_config(const Desktop& desk) {
  std::string text = readme_example("mcp-config");
  text = replace_all(replace_all(text, "{sandbox_url}", desk.url()), "{SANDBOX_API_KEY}", desk.key());
  json config = json::parse(text, nullptr, false);
  INFO(text);
  REQUIRE(config.is_object());
  REQUIRE(config["mcpServers"].size() == 2);
  return config["mcpServers"];
}

/// A configured MCP server's URL and headers as the clients' arguments.
std::vector<std::string> server_arguments(const json& server, const std::string& transport) {
  std::vector<std::string> args = {server["url"].get<std::string>(), "--transport", transport};
  for (const auto& [name, value] : server["headers"].items()) {
    args.push_back("--header");
    args.push_back(name + ": " + value.get<std::string>());
  }
  return args;
}

/// README's way of opening the desktop, run as written with an xdg-open that writes down the URL it is given:
/// that URL.
std::string run_readme_open_desktop(const Desktop& desk) {
  LocalDir shims;
  auto opened = shims.path / "opened";
  std::ofstream(shims.path / "xdg-open") << "#!/bin/sh\nprintf '%s' \"$@\" > '" << opened.string() << "'\n";
  std::filesystem::permissions(shims.path / "xdg-open", std::filesystem::perms::owner_all);
  const char* path = std::getenv("PATH");
  auto run = run_command({"bash", "-euo", "pipefail", "-c", readme_example("open-desktop")},
                         {{"SANDBOX_URL", desk.url()},
                          {"SANDBOX_API_KEY", desk.key()},
                          {"PATH", shims.path.string() + ":" + (path != nullptr ? path : "/usr/bin:/bin")}},
                         30s);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  auto url = modbox::read_file(opened);
  REQUIRE(url.has_value());
  return *url;
}

}  // namespace

TEST_CASE("desktop: Playwright over CDP, noVNC, the browser MCP server and README's examples, with the key only",
          "[desktop]") {
  require_clients();
  TestAgent agent;
  agent.start();
  Desktop desk(agent);
  const std::string title = unique_name("desktop-title");
  const std::string text = unique_name("desktop-text");
  check_refused_without_key(desk);
  check_routes_with_key(desk);
  serve_site(desk, title, text);
  LocalDir scratch;

  // Playwright over CDP: the desktop's own window opens the sandbox's page; its title, and a screenshot of the
  // viewport's size. README's example does the same.
  json cdp = client_ok("desktop-cdp.mjs", {desk.url(), "--header", desk.bearer(), "--goto", "http://localhost:8000/",
                                           "--screenshot", (scratch.path / "cdp.png").string()});
  CHECK(cdp["title"] == title);
  CHECK(cdp["contexts"] == 1);
  CHECK(cdp["viewport"]["width"] == 1920);
  CHECK(cdp["viewport"]["height"].get<int>() > 800);
  auto cdp_png = png_size(scratch.path / "cdp.png");
  REQUIRE(cdp_png.has_value());
  CHECK(*cdp_png == std::pair{cdp["png"]["width"].get<int>(), cdp["png"]["height"].get<int>()});
  CHECK(std::filesystem::file_size(scratch.path / "cdp.png") > 2000);
  CHECK(run_readme_playwright(desk, title) == *cdp_png);
  // Disconnecting left the browser as it was: CDP still answers, with the page still open.
  CurlReply after = curl(desk.url() + "/cdp/json/list", {"-H", desk.bearer()});
  REQUIRE(after.status == 200);
  CHECK(after.body.find(title) != std::string::npos);

  // README's MCP configuration, as written, for the SDK's client: both servers over both transports; the
  // browser's navigates to the sandbox's page and reads it back.
  json servers = readme_mcp_config(desk);
  CHECK(servers["sandbox-terminal"]["url"] == desk.url() + "/mcp/terminal/");
  CHECK(servers["sandbox-browser"]["url"] == desk.url() + "/mcp/cdp/");
  for (const std::string transport : {"streamable", "sse"}) {
    auto terminal = server_arguments(servers["sandbox-terminal"], transport);
    terminal.insert(terminal.end(), {"--dir", "/tmp"});
    CHECK(client_ok("mcp-client.mjs", terminal)["server"]["name"] == "modbox-terminal");
    auto browser = server_arguments(servers["sandbox-browser"], transport);
    browser.insert(browser.end(), {"--goto", "http://localhost:8000/?over=" + transport, "--expect-text", text});
    json session = client_ok("mcp-browser.mjs", browser);
    INFO(session.dump());
    CHECK(session["snapshot"].get<std::string>().find(title) != std::string::npos);
  }

  // noVNC: the sandbox's browser shows the colour page in front; README's way of opening the desktop hands
  // the host's Chromium the URL, and noVNC's canvas shows the colour.
  json colour = client_ok("desktop-cdp.mjs",
                          {desk.url(), "--header", desk.bearer(), "--goto", "http://localhost:8000/colour.html"});
  CHECK(colour["title"] == "colour");
  std::string url = run_readme_open_desktop(desk);
  CHECK(url == desk.url() + "/?token=" + desk.key());
  auto screenshot = scratch.path / "novnc.png";
  json novnc = client_ok("novnc-page.mjs", {url, "--colour", kColour, "--screenshot", screenshot.string(),
                                            "--min-share", "0.6", "--timeout-ms", "90000"});
  INFO(novnc.dump());
  CHECK(novnc["connected"] == true);
  CHECK(novnc["share"].get<double>() >= 0.6);
  CHECK(novnc["final_url"].get<std::string>().starts_with(desk.url() + "/vnc/vnc.html?autoconnect=true"));
  REQUIRE(novnc["redirects"].size() == 3);
  CHECK(novnc["redirects"][0]["status"] == 302);  // the front's: the token becomes a cookie
  CHECK(novnc["redirects"][1]["location"] == "/vnc/");
  CHECK(novnc["redirects"][2]["location"].get<std::string>().starts_with("/vnc/vnc.html?"));
  auto novnc_png = png_size(screenshot);
  REQUIRE(novnc_png.has_value());
  CHECK(*novnc_png == std::pair{1280, 720});
}
