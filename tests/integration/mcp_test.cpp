// The MCP server at {sandbox_url}/mcp/terminal/, against the real agent and real (rootless) Podman:
// @modelcontextprotocol/sdk's own Client over Streamable HTTP and over the legacy HTTP+SSE transport
// (tools listed, `uname -a`, a file written, read back and listed, a bad argument, an unknown tool),
// refused without credentials; raw requests for the protocol's and the transport's errors; a
// busybox-only image; streams that end with their sandbox; and a session as the sandbox's activity.

#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;
using Clock = std::chrono::steady_clock;

namespace {

/// A running sandbox with a key, destroyed with the object.
class McpSandbox {
 public:
  explicit McpSandbox(TestAgent& agent, json extra = json::object()) : agent_(agent) {
    extra["env_vars"]["SANDBOX_API_KEY"] = key_;
    if (!extra.contains("ttl_seconds")) extra["ttl_seconds"] = 900;
    sandbox_ = agent_.provision_running(task_, extra);
    url_ = sandbox_["sandbox_url"];
  }
  ~McpSandbox() { agent_.api("POST", "/sandboxes/destroy", json{{"task_id", task_}}.dump()); }
  McpSandbox(const McpSandbox&) = delete;
  McpSandbox& operator=(const McpSandbox&) = delete;

  const std::string& task() const { return task_; }
  const std::string& id() const { return sandbox_["id"].get_ref<const std::string&>(); }
  const std::string& key() const { return key_; }
  std::string endpoint() const { return url_ + "/mcp/terminal/"; }
  std::string bearer() const { return "Authorization: Bearer " + key_; }

  /// A JSON-RPC message POSTed to the endpoint as an MCP client sends it; `extra` are more curl arguments.
  CurlReply post(const std::string& body, const std::vector<std::string>& extra = {}) const {
    // From a file: one argument of curl's may not hold more than 128 KiB.
    LocalDir scratch;
    std::ofstream(scratch.path / "body", std::ios::binary) << body;
    std::vector<std::string> args = {"-X", "POST", "-H", "Content-Type: application/json", "-H",
                                     "Accept: application/json, text/event-stream", "--data-binary",
                                     "@" + (scratch.path / "body").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return curl(endpoint(), args);
  }
  /// Initializes a Streamable HTTP session with the key; its id.
  std::string initialize() const {
    json message = {{"jsonrpc", "2.0"},
                    {"id", 0},
                    {"method", "initialize"},
                    {"params",
                     {{"protocolVersion", "2025-11-25"},
                      {"capabilities", json::object()},
                      {"clientInfo", {{"name", "curl"}, {"version", "1"}}}}}};
    CurlReply reply = post(message.dump(), {"-H", bearer()});
    INFO(reply.head << reply.body);
    REQUIRE(reply.status == 200);
    std::string id = reply.header("Mcp-Session-Id");
    REQUIRE(!id.empty());
    REQUIRE(post(json{{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}.dump(),
                 {"-H", bearer(), "-H", "Mcp-Session-Id: " + id})
                .status == 202);
    return id;
  }
  /// The sandbox's own exec (the control API, no key): its stdout.
  std::string sh(const std::string& command) const {
    auto reply = agent_.api("POST", "/sandboxes/exec", json{{"task_id", task_}, {"command", command}}.dump());
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    return reply.json_body()["stdout"];
  }

 private:
  TestAgent& agent_;
  std::string task_ = unique_name("mcp");
  std::string key_ = unique_name("key");
  json sandbox_;
  std::string url_;
};

json tool_call(int id, const std::string& tool, json arguments) {
  return {{"jsonrpc", "2.0"},
          {"id", id},
          {"method", "tools/call"},
          {"params", {{"name", tool}, {"arguments", std::move(arguments)}}}};
}

/// Reads what `stream` prints until it ends; whether it ended within `timeout`.
bool ends_within(BackgroundProcess& stream, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!stream.output_ended() && Clock::now() < deadline) stream.next_line(50ms);
  return stream.output_ended();
}

void require_sdk() {
  INFO("images/prepare-host --install --tests runs npm ci in tests/integration/clients");
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "@modelcontextprotocol" / "sdk"));
}

/// The SDK client's whole session over `transport`, with the key; its result, checked.
json sdk_session(const McpSandbox& box, const std::string& transport, const std::string& dir) {
  auto run =
      run_client("mcp-client.mjs", {box.endpoint(), "--transport", transport, "--header", box.bearer(), "--dir", dir});
  INFO(transport << ": " << run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const json& result = run.result;
  CHECK(result["ok"] == true);
  CHECK(result["server"]["name"] == "modbox-terminal");
  // The newest version the client speaks is what it gets.
  CHECK(result["protocol_version"] == result["client_latest_version"]);
  CHECK(result["tools"] == json::array({"run_command", "read_file", "write_file", "list_directory"}));
  CHECK(result["uname"].get<std::string>().find("Linux") != std::string::npos);
  CHECK(result["read_back_equal"] == true);
  CHECK(result["listed"] == json::array({"note's ✓.txt"}));
  CHECK(result["bad_argument_is_error"] == true);
  CHECK(result["unknown_tool_code"] == -32602);
  return result;
}

}  // namespace

TEST_CASE("mcp: the SDK's client uses the tools over Streamable HTTP and over SSE", "[mcp]") {
  require_sdk();
  TestAgent agent;
  agent.start();
  McpSandbox box(agent);

  json streamable = sdk_session(box, "streamable", "/tmp");
  CHECK(streamable["protocol_version"] == "2025-11-25");
  CHECK(streamable["uname_exit_code"] == 0);
  CHECK(streamable["session_deleted"] == true);
  json sse = sdk_session(box, "sse", "/tmp");
  CHECK(sse["protocol_version"] == "2025-11-25");

  // The files are in the sandbox, written as its user, with exactly what was sent.
  CHECK(box.sh("cat \"/tmp/mcp-sse/note's ✓.txt\"") ==
        "written over sse: it's \"quoted\", $HOME stays, ✓\nsecond line\n");
  CHECK(box.sh("stat -c %U \"/tmp/mcp-streamable/note's ✓.txt\"") == box.sh("id -un"));
}

TEST_CASE("mcp: without credentials every MCP request is refused with 401", "[mcp]") {
  require_sdk();
  TestAgent agent;
  agent.start();
  McpSandbox box(agent);

  for (const std::string transport : {"streamable", "sse"}) {
    for (const std::vector<std::string>& credential :
         {std::vector<std::string>{}, std::vector<std::string>{"--header", "Authorization: Bearer wrong-key"}}) {
      std::vector<std::string> args = {box.endpoint(), "--transport", transport, "--expect-refused"};
      args.insert(args.end(), credential.begin(), credential.end());
      auto run = run_client("mcp-client.mjs", args);
      INFO(transport << ": " << run.out << run.err);
      CHECK(run.exit_code == 0);
      CHECK(run.result["refused_status"] == 401);
    }
  }

  // A session opened with the key is no credential: each request of it without the key is refused.
  std::string session = box.initialize();
  std::string in_session = "Mcp-Session-Id: " + session;
  for (const json& message :
       {json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/list"}},
        tool_call(2, "run_command", {{"command", "uname -a > /tmp/refused"}}),
        tool_call(3, "write_file", {{"path", "/tmp/refused"}, {"content", "x"}}),
        tool_call(4, "read_file", {{"path", "/etc/hostname"}}), tool_call(5, "list_directory", {{"path", "/"}})}) {
    CurlReply refused = box.post(message.dump(), {"-H", in_session});
    INFO(message.dump() << " → " << refused.head << refused.body);
    CHECK(refused.status == 401);
    CHECK(refused.header("WWW-Authenticate") == "Bearer");
  }
  CHECK(box.sh("test -e /tmp/refused && echo there || echo absent") == "absent\n");
  CHECK(curl(box.endpoint(), {"-H", in_session, "-H", "Accept: text/event-stream"}).status == 401);
  CHECK(curl(box.endpoint(), {"-X", "DELETE", "-H", in_session}).status == 401);
  CHECK(curl(box.endpoint() + "sse", {"-H", "Accept: text/event-stream"}).status == 401);
  CHECK(curl(box.endpoint() + "messages?sessionId=" + session, {"-X", "POST", "--data-binary", "{}"}).status == 401);
  // The session itself is untouched.
  CHECK(box.post(json{{"jsonrpc", "2.0"}, {"id", 6}, {"method", "ping"}}.dump(), {"-H", box.bearer(), "-H", in_session})
            .status == 200);
}

TEST_CASE("mcp: malformed JSON is a JSON-RPC error; unknown and deleted sessions are 404", "[mcp][bad-input]") {
  TestAgent agent;
  agent.start();
  McpSandbox box(agent);
  std::string session = box.initialize();
  std::vector<std::string> with_session = {"-H", box.bearer(), "-H", "Mcp-Session-Id: " + session};

  for (const std::string& body :
       {std::string("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": "), std::string("\xff"), std::string(100000, '[')}) {
    CurlReply malformed = box.post(body, with_session);
    INFO(malformed.head << malformed.body);
    CHECK(malformed.exit_code == 0);
    CHECK(malformed.status == 400);
    json error = malformed.json_body();
    CHECK(error["jsonrpc"] == "2.0");
    CHECK(error["id"].is_null());
    CHECK((error["error"]["code"] == -32700 || error["error"]["code"] == -32600));
  }
  CurlReply unknown_method = box.post(json{{"jsonrpc", "2.0"}, {"id", 7}, {"method", "nope"}}.dump(), with_session);
  CHECK(unknown_method.status == 200);
  CHECK(unknown_method.json_body()["error"]["code"] == -32601);
  CurlReply bad_argument = box.post(tool_call(8, "read_file", {{"path", 5}}).dump(), with_session);
  CHECK(bad_argument.status == 200);
  CHECK(bad_argument.json_body()["result"]["isError"] == true);

  CurlReply no_session = box.post(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "ping"}}.dump(), {"-H", box.bearer()});
  CHECK(no_session.status == 400);
  CurlReply unknown = box.post(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", "ping"}}.dump(),
                               {"-H", box.bearer(), "-H", "Mcp-Session-Id: 00000000000000000000000000000000"});
  CHECK(unknown.status == 404);
  CHECK(unknown.json_body()["error"]["code"] == -32001);

  // DELETE ends the session, and its open stream with it.
  BackgroundProcess stream({"curl", "-sS", "-N", "--noproxy", "*", "-H", box.bearer(), "-H",
                            "Mcp-Session-Id: " + session, "-H", "Accept: text/event-stream", box.endpoint()});
  auto opened = stream.next_line(10s);
  INFO(stream.errors());
  REQUIRE(opened.has_value());
  CHECK(opened->text == ": stream open");
  CurlReply deleted = curl(box.endpoint(), {"-X", "DELETE", "-H", box.bearer(), "-H", "Mcp-Session-Id: " + session});
  CHECK(deleted.status == 200);
  CHECK(ends_within(stream, 3s));
  CHECK(box.post(json{{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}}.dump(), with_session).status == 404);
  CHECK(curl(box.endpoint(), {"-X", "DELETE", "-H", box.bearer(), "-H", "Mcp-Session-Id: " + session}).status == 404);
}

TEST_CASE("mcp: the tools work in an image with no libc and no bash, a static busybox alone", "[mcp]") {
  require_sdk();
  TestAgent agent;
  agent.start();
  INFO("the image is built from the host's /bin/busybox (images/prepare-host --tests installs busybox-static)");
  REQUIRE(std::filesystem::exists("/bin/busybox"));
  std::string tag = "localhost/modbox-test/busybox:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag,
              "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
              {{"busybox", "/bin/busybox"}});
  McpSandbox box(agent, {{"image", tag}});
  CHECK(box.sh("test -e /bin/bash || echo no bash") == "no bash\n");
  sdk_session(box, "streamable", "/tmp");
  sdk_session(box, "sse", "/tmp");
  // A write larger than one shell command can carry, in a shell without bash.
  std::string session = box.initialize();
  std::string content;
  for (int i = 0; content.size() < 400'000; ++i) content += "line " + std::to_string(i) + " it's ✓\n";
  CurlReply wrote = box.post(tool_call(1, "write_file", {{"path", "/tmp/large.txt"}, {"content", content}}).dump(),
                             {"-H", box.bearer(), "-H", "Mcp-Session-Id: " + session});
  INFO(wrote.body.substr(0, 500));
  REQUIRE(wrote.status == 200);
  CHECK(wrote.json_body()["result"]["isError"] == false);
  CHECK(box.sh("wc -c < /tmp/large.txt") == std::to_string(content.size()) + "\n");
  CurlReply read = box.post(tool_call(2, "read_file", {{"path", "/tmp/large.txt"}}).dump(),
                            {"-H", box.bearer(), "-H", "Mcp-Session-Id: " + session});
  REQUIRE(read.status == 200);
  CHECK(read.json_body()["result"]["structuredContent"]["content"] == content);
}

TEST_CASE("mcp: destroying the sandbox ends its MCP streams and sessions", "[mcp]") {
  TestAgent agent;
  agent.start();
  McpSandbox box(agent);
  std::string session = box.initialize();
  BackgroundProcess legacy({"curl", "-sS", "-N", "--noproxy", "*", "-H", box.bearer(), box.endpoint() + "sse"});
  BackgroundProcess streamable(
      {"curl", "-sS", "-N", "--noproxy", "*", "-H", box.bearer(), "-H", "Mcp-Session-Id: " + session, box.endpoint()});
  auto endpoint_event = legacy.next_line(10s);
  INFO(legacy.errors());
  REQUIRE(endpoint_event.has_value());
  CHECK(endpoint_event->text == "event: endpoint");
  REQUIRE(streamable.next_line(10s).has_value());

  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task()}}.dump());
  REQUIRE(destroyed.status == 200);
  // The front closes the sandbox's connections at once; the streams' handlers notice within a second.
  for (BackgroundProcess* stream : {&legacy, &streamable}) CHECK(ends_within(*stream, 2s));
}

TEST_CASE("mcp: an open MCP stream keeps the sandbox from idling; a closed one does not", "[mcp]") {
  TestAgent agent;
  agent.start();
  McpSandbox box(agent, {{"idle_timeout_seconds", 3}});
  std::string session = box.initialize();
  {
    BackgroundProcess stream({"curl", "-sS", "-N", "--noproxy", "*", "-H", box.bearer(), "-H",
                              "Mcp-Session-Id: " + session, box.endpoint()});
    REQUIRE(stream.next_line(10s).has_value());
    // Twice the idle timeout with nothing but the open stream.
    auto until = Clock::now() + 6s;
    while (Clock::now() < until) {
      auto detail = agent.api("GET", "/sandboxes/detail/" + box.id()).json_body();
      REQUIRE(detail["status"] == "running");
      std::this_thread::sleep_for(500ms);
    }
  }
  // The client is gone: the session alone keeps nothing alive.
  CHECK(eventually(
      [&] { return agent.api("GET", "/sandboxes/detail/" + box.id()).json_body()["status"] == "destroyed"; }, 15s));
  CHECK(agent.api("GET", "/sandboxes/detail/" + box.id()).json_body()["destroy_reason"] == "idle");
}
