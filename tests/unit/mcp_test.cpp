// The MCP server of /mcp/terminal/: the JSON-RPC layer (initialize and version negotiation, tools,
// errors, batches) over a fake exec; the tools' shell commands run by real local shells (dash and
// busybox sh, as in a busybox-only image); and the HTTP transports' session rules, streams included.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/mcp/endpoint.h"
#include "agent/mcp/server.h"
#include "agent/mcp/tools.h"
#include "agent/sandbox_api.h"
#include "common/encoding.h"
#include "tests/unit/service_harness.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::mcp;
using namespace modbox::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// An exec that answers from a list and records what it was asked.
struct FakeExec {
  std::vector<ExecRequest> requests;
  Result<ExecResult> answer = ExecResult{};

  ExecFunction function() {
    return [this](const ExecRequest& request) {
      requests.push_back(request);
      return answer;
    };
  }
};

json request(const json& id, std::string_view method, json params = json::object()) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}};
}

json initialize_params(std::string_view version) {
  return {{"protocolVersion", version},
          {"capabilities", json::object()},
          {"clientInfo", {{"name", "test"}, {"version", "1"}}}};
}

SessionState session(std::string_view version) {
  return SessionState{.version = std::string(version), .initialized = true};
}

json body_of(const Reply& reply) {
  return json::parse(reply.body);
}

/// A tool call's result in a session of `version`.
json call(const Server& server, std::string_view tool, json arguments, std::string_view version = "2025-11-25") {
  Reply reply = server.handle(request(7, "tools/call", {{"name", tool}, {"arguments", std::move(arguments)}}).dump(),
                              session(version));
  REQUIRE(reply.kind == Reply::Kind::responses);
  json response = body_of(reply);
  INFO(response.dump());
  REQUIRE(response.contains("result"));
  return response["result"];
}

std::string text_of(const json& result) {
  return result["content"][0]["text"];
}

/// Runs commands as the sandbox's exec would, with a local shell: execve(shell..., "-c", COMMAND) in
/// cwd, so that the command is one argument, bounded as in the sandbox.
ExecFunction local_shell(std::vector<std::string> shell, const std::filesystem::path& scratch) {
  return [shell, scratch](const ExecRequest& request) -> Result<ExecResult> {
    auto out = scratch / "stdout", err = scratch / "stderr";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, request.cwd.c_str());
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<std::string> words = shell;
    words.push_back("-c");
    words.push_back(request.command);
    std::vector<char*> argv;
    for (auto& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) return fail(ErrorKind::internal, std::string("posix_spawn: ") + std::strerror(spawned));
    int status = 0;
    ::waitpid(pid, &status, 0);
    auto read = [](const std::filesystem::path& path) {
      std::ifstream in(path, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    ExecResult result;
    result.stdout_text = read(out);
    result.stderr_text = read(err);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (result.stdout_text.size() > limits::exec_output_cap_bytes) {
      result.stdout_text.resize(limits::exec_output_cap_bytes);
      result.truncated = true;
    }
    return result;
  };
}

}  // namespace

// ---- the protocol ----------------------------------------------------------------------------

TEST_CASE("mcp: initialize answers the client's version when supported, else the latest", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  for (std::string_view version : {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}) {
    Reply reply = server.handle(request(1, "initialize", initialize_params(version)).dump(), std::nullopt);
    REQUIRE(reply.kind == Reply::Kind::responses);
    CHECK(reply.negotiated_version == std::string(version));
    json result = body_of(reply)["result"];
    CHECK(result["protocolVersion"] == version);
    CHECK(result["serverInfo"]["name"] == "modbox-terminal");
    CHECK(result["capabilities"] == json{{"tools", json::object()}});
  }
  Reply future = server.handle(request("a", "initialize", initialize_params("2099-01-01")).dump(), std::nullopt);
  CHECK(body_of(future)["result"]["protocolVersion"] == latest_protocol_version);
  CHECK(body_of(future)["id"] == "a");
  CHECK(latest_protocol_version == "2025-11-25");

  Reply no_version = server.handle(request(2, "initialize", json::object()).dump(), std::nullopt);
  CHECK(body_of(no_version)["error"]["code"] == codes::invalid_params);
  CHECK_FALSE(no_version.negotiated_version);
  // A session initializes once.
  Reply again = server.handle(request(3, "initialize", initialize_params("2025-11-25")).dump(), session("2025-11-25"));
  CHECK(body_of(again)["error"]["code"] == codes::invalid_request);
}

TEST_CASE("mcp: without a session only initialize is handled", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  Reply reply = server.handle(
      request(1, "tools/call", {{"name", "run_command"}, {"arguments", {{"command", "true"}}}}).dump(), std::nullopt);
  CHECK(reply.kind == Reply::Kind::needs_session);
  CHECK(exec.requests.empty());
  CHECK(server.handle(R"({"jsonrpc":"2.0","method":"notifications/initialized"})", std::nullopt).kind ==
        Reply::Kind::needs_session);
}

TEST_CASE("mcp: malformed JSON is a parse error, an invalid message an invalid request", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  for (std::string_view body : {"{", "", "not json", R"({"jsonrpc":"2.0","id":1,"method":"ping")", "\xff\xfe"}) {
    INFO(body);
    Reply reply = server.handle(body, session("2025-11-25"));
    CHECK(reply.kind == Reply::Kind::refused);
    json error = body_of(reply);
    CHECK(error["jsonrpc"] == "2.0");
    CHECK(error["id"].is_null());
    CHECK(error["error"]["code"] == codes::parse_error);
  }
  struct Case {
    std::string body;
    json id;
  };
  for (const Case& invalid : std::vector<Case>{{R"({"id":1,"method":"ping"})", 1},
                                               {R"({"jsonrpc":"1.0","id":"x","method":"ping"})", "x"},
                                               {R"({"jsonrpc":"2.0","id":null,"method":"ping"})", nullptr},
                                               {R"({"jsonrpc":"2.0","id":{},"method":"ping"})", nullptr},
                                               {R"({"jsonrpc":"2.0","id":2,"method":5})", 2},
                                               {R"({"jsonrpc":"2.0","id":3})", 3},
                                               {"42", nullptr},
                                               {"\"ping\"", nullptr},
                                               {std::string(1000, '[') + std::string(1000, ']'), nullptr}}) {
    INFO(invalid.body);
    Reply reply = server.handle(invalid.body, session("2025-11-25"));
    CHECK(reply.kind == Reply::Kind::refused);
    CHECK(body_of(reply)["error"]["code"] == codes::invalid_request);
    CHECK(body_of(reply)["id"] == invalid.id);
  }
}

TEST_CASE("mcp: an unknown method is method-not-found; ping answers; notifications are accepted", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  Reply unknown = server.handle(request(9, "resources/list").dump(), session("2025-11-25"));
  REQUIRE(unknown.kind == Reply::Kind::responses);
  CHECK(body_of(unknown)["error"]["code"] == codes::method_not_found);
  CHECK(body_of(unknown)["id"] == 9);

  Reply ping = server.handle(request(10, "ping").dump(), session("2025-11-25"));
  CHECK(body_of(ping) == json{{"jsonrpc", "2.0"}, {"id", 10}, {"result", json::object()}});

  Reply initialized =
      server.handle(R"({"jsonrpc":"2.0","method":"notifications/initialized"})", SessionState{.version = "2025-11-25"});
  CHECK(initialized.kind == Reply::Kind::accepted);
  CHECK(initialized.body.empty());
  CHECK(initialized.initialized_notification);
  CHECK(server
            .handle(R"({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}})",
                    session("2025-11-25"))
            .kind == Reply::Kind::accepted);
  // A response from the client (the server asks nothing, but it is a valid message).
  CHECK(server.handle(R"({"jsonrpc":"2.0","id":4,"result":{}})", session("2025-11-25")).kind == Reply::Kind::accepted);
  Reply params = server.handle(R"({"jsonrpc":"2.0","id":5,"method":"ping","params":[1]})", session("2025-11-25"));
  CHECK(body_of(params)["error"]["code"] == codes::invalid_params);
}

TEST_CASE("mcp: batches are answered in versions that have them, refused in later ones", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  json batch = json::array(
      {request(1, "ping"), {{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}, request(2, "nope"), json(5)});
  Reply answered = server.handle(batch.dump(), session("2025-03-26"));
  REQUIRE(answered.kind == Reply::Kind::responses);
  json responses = body_of(answered);
  REQUIRE(responses.size() == 3);
  CHECK(responses[0]["id"] == 1);
  CHECK(responses[1]["error"]["code"] == codes::method_not_found);
  CHECK(responses[2]["error"]["code"] == codes::invalid_request);
  CHECK(answered.initialized_notification);

  Reply notifications_only = server.handle(
      json::array({{{"jsonrpc", "2.0"}, {"method", "notifications/cancelled"}}}).dump(), session("2025-03-26"));
  CHECK(notifications_only.kind == Reply::Kind::accepted);

  Reply refused = server.handle(batch.dump(), session("2025-11-25"));
  CHECK(refused.kind == Reply::Kind::refused);
  CHECK(body_of(refused)["error"]["code"] == codes::invalid_request);
  CHECK(server.handle("[]", session("2025-03-26")).kind == Reply::Kind::refused);
  Reply with_initialize =
      server.handle(json::array({request(1, "initialize", initialize_params("2025-03-26"))}).dump(), std::nullopt);
  CHECK(with_initialize.kind == Reply::Kind::refused);
  CHECK_FALSE(with_initialize.negotiated_version);
}

TEST_CASE("mcp: tools/list describes four tools with JSON schemas, shaped by the version", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  json tools = body_of(server.handle(request(1, "tools/list").dump(), session("2025-11-25")))["result"]["tools"];
  REQUIRE(tools.size() == 4);
  std::vector<std::string> names;
  for (const json& tool : tools) {
    names.push_back(tool["name"]);
    CHECK(tool["inputSchema"]["type"] == "object");
    CHECK(tool["inputSchema"]["additionalProperties"] == false);
    CHECK(tool["outputSchema"]["type"] == "object");
    CHECK(tool["title"].is_string());
    CHECK(tool["annotations"]["readOnlyHint"].is_boolean());
    CHECK(!tool["description"].get<std::string>().empty());
  }
  CHECK(names == std::vector<std::string>{"run_command", "read_file", "write_file", "list_directory"});
  CHECK(tools[0]["inputSchema"]["required"] == json::array({"command"}));
  CHECK(tools[0]["inputSchema"]["properties"]["timeout_seconds"]["maximum"] == 30);
  CHECK(tools[2]["inputSchema"]["required"] == json::array({"path", "content"}));

  json old = body_of(server.handle(request(1, "tools/list").dump(), session("2024-11-05")))["result"]["tools"];
  CHECK_FALSE(old[0].contains("outputSchema"));
  CHECK_FALSE(old[0].contains("annotations"));
  CHECK_FALSE(old[0].contains("title"));
  json middle = body_of(server.handle(request(1, "tools/list").dump(), session("2025-03-26")))["result"]["tools"];
  CHECK(middle[0].contains("annotations"));
  CHECK_FALSE(middle[0].contains("outputSchema"));
}

TEST_CASE("mcp: run_command runs through exec and answers its result", "[mcp]") {
  FakeExec exec;
  exec.answer = ExecResult{.exit_code = 3, .stdout_text = "out\n", .stderr_text = "err\n", .duration_ms = 12};
  Server server(exec.function());
  json result = call(server, "run_command",
                     {{"command", "echo out; echo err >&2; exit 3"}, {"cwd", "/tmp"}, {"timeout_seconds", 2.5}});
  REQUIRE(exec.requests.size() == 1);
  CHECK(exec.requests[0].command == "echo out; echo err >&2; exit 3");
  CHECK(exec.requests[0].cwd == "/tmp");
  CHECK(exec.requests[0].timeout_ms == 2500);
  // A non-zero exit is the command's result, not a failure of the tool.
  CHECK(result["isError"] == false);
  std::string text = text_of(result);
  CHECK(text.find("exit code: 3") != std::string::npos);
  CHECK(text.find("out\n") != std::string::npos);
  CHECK(text.find("err\n") != std::string::npos);
  CHECK(result["structuredContent"] == json{{"exitCode", 3},
                                            {"stdout", "out\n"},
                                            {"stderr", "err\n"},
                                            {"killed", false},
                                            {"signal", nullptr},
                                            {"durationMs", 12},
                                            {"truncated", false}});
  // Defaults are exec's: 30 s, in /.
  call(server, "run_command", {{"command", "true"}});
  CHECK(exec.requests[1].timeout_ms == 30000);
  CHECK(exec.requests[1].cwd == "/");
  // Versions before 2025-06-18 have no structured content.
  CHECK_FALSE(call(server, "run_command", {{"command", "true"}}, "2025-03-26").contains("structuredContent"));

  exec.answer = fail(ErrorKind::unavailable, "the sandbox's helper is gone");
  json failed = call(server, "run_command", {{"command", "true"}});
  CHECK(failed["isError"] == true);
  CHECK(text_of(failed).find("helper is gone") != std::string::npos);
  CHECK_FALSE(failed.contains("structuredContent"));
}

TEST_CASE("mcp: a bad argument is a tool error with a sentence; an unknown tool invalid params", "[mcp]") {
  FakeExec exec;
  Server server(exec.function());
  struct Case {
    std::string tool;
    json arguments;
    std::string says;
  };
  for (const Case& bad : std::vector<Case>{
           {"run_command", json::object(), "needs 'command'"},
           {"run_command", {{"command", 5}}, "'command' must be a string, not a number"},
           {"run_command", {{"command", ""}}, "must not be empty"},
           {"run_command", {{"command", "ls"}, {"timeout_seconds", 31}}, "at most 30"},
           {"run_command", {{"command", "ls"}, {"timeout_seconds", "5"}}, "must be a number"},
           {"run_command", {{"command", "ls"}, {"cwd", "tmp"}}, "absolute path"},
           {"run_command", {{"command", "ls"}, {"shell", "zsh"}}, "no argument 'shell'"},
           {"read_file", json::object(), "needs 'path'"},
           {"read_file", {{"path", ""}}, "must not be empty"},
           {"read_file", {{"path", std::string("a\0b", 3)}}, "NUL"},
           {"write_file", {{"path", "/x"}}, "needs 'content'"},
           {"write_file", {{"path", "/x"}, {"content", json::array()}}, "must be a string, not an array"},
           {"list_directory", {{"path", true}}, "must be a string, not a boolean"},
       }) {
    INFO(bad.tool << " " << bad.arguments.dump());
    json result = call(server, bad.tool, bad.arguments);
    CHECK(result["isError"] == true);
    CHECK_THAT(text_of(result), Catch::Contains(bad.says));
  }
  CHECK(exec.requests.empty());

  auto error_of = [&](json params) {
    return body_of(server.handle(request(1, "tools/call", std::move(params)).dump(), session("2025-11-25")))["error"];
  };
  CHECK(error_of({{"name", "format_disk"}})["code"] == codes::invalid_params);
  CHECK_THAT(error_of({{"name", "format_disk"}})["message"].get<std::string>(), Catch::Contains("format_disk"));
  CHECK(error_of(json::object())["code"] == codes::invalid_params);
  CHECK(error_of({{"name", "run_command"}, {"arguments", "ls"}})["code"] == codes::invalid_params);
}

// ---- the tools' shell commands, run by real shells --------------------------------------------

TEST_CASE("mcp: the file tools work in dash and in busybox sh", "[mcp]") {
  std::vector<std::vector<std::string>> shells = {{"/bin/sh"}};
  if (std::filesystem::exists("/bin/busybox")) shells.push_back({"/bin/busybox", "sh"});
  for (const auto& shell : shells) {
    INFO("shell: " << shell.back());
    TempDir scratch, sandbox;
    Server server(local_shell(shell, scratch.path()));
    std::string root = sandbox.path().string();

    // Quotes, newlines, non-ASCII, a leading dash, and parents that do not exist yet.
    std::string text = "it's \"quoted\" $HOME `x` \\n\nline 2 ✓\n-n\n";
    json wrote = call(server, "write_file", {{"path", root + "/new/dir/it's.txt"}, {"content", text}});
    INFO(wrote.dump());
    REQUIRE(wrote["isError"] == false);
    CHECK(wrote["structuredContent"]["bytesWritten"] == text.size());
    json read = call(server, "read_file", {{"path", root + "/new/dir/it's.txt"}});
    CHECK(read["isError"] == false);
    CHECK(text_of(read) == text);
    CHECK(read["structuredContent"]["encoding"] == "utf-8");

    // Larger than one command may carry: written in several appends.
    std::string large;
    for (int i = 0; large.size() < 300'000; ++i) large += "line " + std::to_string(i) + " with a ' quote\n";
    json wrote_large = call(server, "write_file", {{"path", root + "/large.txt"}, {"content", large}});
    INFO(text_of(wrote_large));
    REQUIRE(wrote_large["isError"] == false);
    CHECK(call(server, "read_file", {{"path", root + "/large.txt"}})["structuredContent"]["content"] == large);
    // Writing again replaces; an empty content empties.
    REQUIRE(call(server, "write_file", {{"path", root + "/large.txt"}, {"content", ""}})["isError"] == false);
    CHECK(std::filesystem::file_size(sandbox / "large.txt") == 0);

    // Bytes that are not UTF-8 come back in base64.
    std::ofstream(sandbox / "binary.bin", std::ios::binary) << std::string("\xff\x00\x01z", 4);
    json binary = call(server, "read_file", {{"path", root + "/binary.bin"}});
    CHECK(binary["structuredContent"]["encoding"] == "base64");
    CHECK(binary["structuredContent"]["content"] == "/wABeg==");

    json directory = call(server, "read_file", {{"path", root + "/new"}});
    CHECK(directory["isError"] == true);
    CHECK_THAT(text_of(directory), Catch::Contains("is a directory"));
    json missing = call(server, "read_file", {{"path", root + "/nope.txt"}});
    CHECK(missing["isError"] == true);
    CHECK_THAT(text_of(missing), Catch::Contains("no such file"));
    json into_file = call(server, "write_file", {{"path", root + "/binary.bin/x"}, {"content", "x"}});
    CHECK(into_file["isError"] == true);

    std::filesystem::create_symlink("large.txt", sandbox / "link");
    std::ofstream(sandbox / ".hidden") << "h";
    std::ofstream(sandbox / "with space") << "s";
    json listed = call(server, "list_directory", {{"path", root}});
    REQUIRE(listed["isError"] == false);
    CHECK(listed["structuredContent"]["entries"] == json::array({{{"name", ".hidden"}, {"type", "file"}},
                                                                 {{"name", "binary.bin"}, {"type", "file"}},
                                                                 {{"name", "large.txt"}, {"type", "file"}},
                                                                 {{"name", "link"}, {"type", "symlink"}},
                                                                 {{"name", "new"}, {"type", "directory"}},
                                                                 {{"name", "with space"}, {"type", "file"}}}));
    CHECK_THAT(text_of(listed), Catch::Contains("\nnew/\n") && Catch::Contains("\nlink@\n"));
    json empty = call(server, "list_directory", {{"path", root + "/new/dir/.."}});
    CHECK(empty["structuredContent"]["entries"].size() == 1);
    CHECK(call(server, "list_directory", {{"path", root + "/nope"}})["isError"] == true);
    CHECK_THAT(text_of(call(server, "list_directory", {{"path", root + "/binary.bin"}})),
               Catch::Contains("not a directory"));
  }
}

TEST_CASE("mcp: a write is split into commands that each fit in one argument", "[mcp]") {
  std::string content(10'000, '\'');
  auto steps = write_file_commands("/a/b", content, 4096);
  REQUIRE(steps.size() > 1);
  std::size_t total = 0;
  for (const auto& step : steps) {
    CHECK(step.command.size() <= 4096);
    total += step.bytes;
  }
  CHECK(total == content.size());
  CHECK(steps[0].command.starts_with("mkdir -p '/a' && printf '%s' "));
  CHECK(steps[0].command.ends_with(" > '/a/b'"));
  CHECK(steps[1].command.ends_with(" >> '/a/b'"));
  CHECK(write_file_commands("/x", "", 4096).size() == 1);
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(is_utf8("plain ✓"));
  CHECK_FALSE(is_utf8("\xc0\xaf"));      // overlong
  CHECK_FALSE(is_utf8("\xed\xa0\x80"));  // a surrogate
  CHECK_FALSE(is_utf8("\xe2\x9c"));      // cut short
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("ab") == "YWI=");
  CHECK(base64_encode("abc") == "YWJj");
}

// ---- the HTTP transports ------------------------------------------------------------------------

namespace {

/// A stream's answer, run as the front runs it: on a thread of its own, its writes collected.
class StreamReader {
 public:
  explicit StreamReader(HttpResponse response) {
    REQUIRE(response.status == 200);
    REQUIRE(response.stream_chunked);
    REQUIRE(response.content_type == "text/event-stream");
    thread_ = std::thread([this, stream = std::move(response.stream)] {
      bool complete = stream(0, 0, [this](std::string_view bytes) {
        std::lock_guard lock(mutex_);
        text_ += bytes;
        return !gone_;
      });
      std::lock_guard lock(mutex_);
      result_ = complete;
    });
  }
  ~StreamReader() {
    leave();
    thread_.join();
  }
  std::string text() const {
    std::lock_guard lock(mutex_);
    return text_;
  }
  bool has(std::string_view needle) const {
    return eventually([&] { return text().find(needle) != std::string::npos; }, 5s);
  }
  /// The client hangs up: the next write fails.
  void leave() {
    std::lock_guard lock(mutex_);
    gone_ = true;
  }
  /// How the stream ended: true when the server ended it, false when its client left.
  std::optional<bool> ended() const {
    std::lock_guard lock(mutex_);
    return result_;
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
  bool gone_ = false;
  std::optional<bool> result_;
  std::thread thread_;
};

struct EndpointHarness {
  FakeExec exec;
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
  std::size_t holds = 0;
  std::shared_ptr<SandboxActivity> activity =
      std::make_shared<SandboxActivity>([] { return std::chrono::system_clock::now(); });
  Endpoint endpoint;
  Sandbox sandbox{.id = "sb-1"};

  explicit EndpointHarness(EndpointOptions options = {})
      : endpoint([this](const Sandbox&, const ExecRequest& request) { return exec.function()(request); },
                 [this](const std::string&) {
                   ++holds;
                   return activity->hold();
                 },
                 with_clock(std::move(options))) {}

  EndpointOptions with_clock(EndpointOptions options) {
    options.now = [this] { return now; };
    options.presence_check = 5ms;
    return options;
  }

  HttpResponse send(std::string method, std::string path, std::string body = "",
                    std::map<std::string, std::string> headers = {}) {
    HttpRequest request{.method = std::move(method), .path = std::move(path)};
    request.body = std::move(body);
    request.headers = std::move(headers);
    request.headers.emplace("host", "127.0.0.1:4000");
    if (auto question = request.path.find('?'); question != std::string::npos) {
      request.query = parse_query(request.path.substr(question + 1));
      request.path.resize(question);
    }
    return endpoint.serve(sandbox, request);
  }
  HttpResponse post(const json& message, std::optional<std::string> session = std::nullopt,
                    std::map<std::string, std::string> headers = {}) {
    headers.emplace("content-type", "application/json");
    headers.emplace("accept", "application/json, text/event-stream");
    if (session) headers["mcp-session-id"] = *session;
    return send("POST", "/mcp/terminal/", message.dump(), headers);
  }
  std::string initialize() {
    HttpResponse response = post(request(0, "initialize", initialize_params("2025-11-25")));
    INFO(response.body);
    REQUIRE(response.status == 200);
    REQUIRE(response.headers.count("Mcp-Session-Id") == 1);
    return response.headers["Mcp-Session-Id"];
  }
};

json error_of(const HttpResponse& response) {
  INFO(response.body);
  json body = json::parse(response.body);
  CHECK(body["id"].is_null());
  return body["error"];
}

}  // namespace

TEST_CASE("mcp endpoint: initialize opens a session that later requests must carry", "[mcp]") {
  EndpointHarness mcp;
  HttpResponse initialized = mcp.post(request(0, "initialize", initialize_params("2025-11-25")));
  REQUIRE(initialized.status == 200);
  CHECK(initialized.content_type == "application/json");
  CHECK(json::parse(initialized.body)["result"]["protocolVersion"] == "2025-11-25");
  std::string id = initialized.headers["Mcp-Session-Id"];
  CHECK(id.size() == 32);
  CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(mcp.endpoint.session_count("sb-1") == 1);

  HttpResponse notified = mcp.post({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}, id);
  CHECK(notified.status == 202);
  CHECK(notified.body.empty());
  HttpResponse listed = mcp.post(request(1, "tools/list"), id, {{"mcp-protocol-version", "2025-11-25"}});
  REQUIRE(listed.status == 200);
  CHECK(json::parse(listed.body)["result"]["tools"].size() == 4);

  HttpResponse missing = mcp.post(request(2, "tools/list"));
  CHECK(missing.status == 400);
  CHECK(error_of(missing)["code"] == codes::transport_error);
  HttpResponse unknown = mcp.post(request(3, "tools/list"), "0123456789abcdef0123456789abcdef");
  CHECK(unknown.status == 404);
  CHECK(error_of(unknown)["code"] == codes::session_not_found);
  // Another sandbox's URL does not know the session.
  mcp.sandbox.id = "sb-2";
  CHECK(mcp.post(request(4, "tools/list"), id).status == 404);
  mcp.sandbox.id = "sb-1";
  // Each request counts as the sandbox's activity.
  CHECK(mcp.holds >= 4);

  CHECK(mcp.send("DELETE", "/mcp/terminal").status == 400);
  HttpResponse deleted = mcp.send("DELETE", "/mcp/terminal", "", {{"mcp-session-id", id}});
  CHECK(deleted.status == 200);
  CHECK(mcp.post(request(5, "tools/list"), id).status == 404);
  CHECK(mcp.send("DELETE", "/mcp/terminal/", "", {{"mcp-session-id", id}}).status == 404);
  CHECK(mcp.endpoint.session_count("sb-1") == 0);
}

TEST_CASE("mcp endpoint: bad messages and headers are refused with JSON-RPC errors, never a 500", "[mcp]") {
  EndpointHarness mcp;
  std::string id = mcp.initialize();
  std::map<std::string, std::string> json_headers = {{"content-type", "application/json"}, {"mcp-session-id", id}};
  HttpResponse malformed = mcp.send("POST", "/mcp/terminal/", "{\"jsonrpc\": \"2.0\", ", json_headers);
  CHECK(malformed.status == 400);
  CHECK(error_of(malformed)["code"] == codes::parse_error);
  HttpResponse malformed_first = mcp.send("POST", "/mcp/terminal/", "}{", {{"content-type", "application/json"}});
  CHECK(malformed_first.status == 400);
  CHECK(error_of(malformed_first)["code"] == codes::parse_error);
  HttpResponse invalid = mcp.send("POST", "/mcp/terminal/", R"({"jsonrpc":"2.0"})", json_headers);
  CHECK(invalid.status == 400);
  CHECK(error_of(invalid)["code"] == codes::invalid_request);
  HttpResponse unknown_method = mcp.post(request(1, "sampling/createMessage"), id);
  CHECK(unknown_method.status == 200);
  CHECK(json::parse(unknown_method.body)["error"]["code"] == codes::method_not_found);

  CHECK(mcp.post(request(1, "ping"), id, {{"mcp-protocol-version", "1999-01-01"}}).status == 400);
  CHECK(mcp.post(request(1, "ping"), id, {{"origin", "http://evil.example:4000"}}).status == 403);
  CHECK(mcp.post(request(1, "ping"), id, {{"origin", "http://127.0.0.1:4000"}}).status == 200);
  CHECK(mcp.post(request(1, "ping"), id, {{"accept", "text/html"}}).status == 406);
  CHECK(mcp.post(request(1, "ping"), id, {{"accept", "*/*"}}).status == 200);
  CHECK(mcp.send("POST", "/mcp/terminal/", request(1, "ping").dump(),
                 {{"content-type", "text/plain"}, {"mcp-session-id", id}})
            .status == 415);
  HttpResponse put = mcp.send("PUT", "/mcp/terminal/");
  CHECK(put.status == 405);
  CHECK(put.headers["Allow"] == "GET, POST, DELETE");
  CHECK(mcp.send("GET", "/mcp/terminal/nothing-here").status == 404);
  CHECK(mcp.send("POST", "/mcp/terminal/sse").status == 405);
}

TEST_CASE("mcp endpoint: the session's GET stream stays open until the session ends", "[mcp]") {
  EndpointHarness mcp;
  std::string id = mcp.initialize();
  CHECK(mcp.send("GET", "/mcp/terminal/").status == 400);
  CHECK(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", "feed"}}).status == 404);
  CHECK(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", id}, {"accept", "application/json"}}).status == 406);
  {
    StreamReader stream(
        mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", id}, {"accept", "text/event-stream"}}));
    CHECK(stream.has(": stream open"));
    CHECK(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", id}}).status == 409);
    // While it is open the session never expires, and the sandbox is in use.
    mcp.now += std::chrono::hours(2);
    CHECK(mcp.post(request(1, "ping"), id).status == 200);
    CHECK(mcp.activity->under_way() == 1);
    REQUIRE(mcp.send("DELETE", "/mcp/terminal/", "", {{"mcp-session-id", id}}).status == 200);
    CHECK(eventually([&] { return stream.ended().has_value(); }, 5s));
    CHECK(stream.ended() == true);
  }
  CHECK(eventually([&] { return mcp.activity->under_way() == 0; }, 5s));

  // A client that leaves ends its stream; the session stays for another.
  std::string other = mcp.initialize();
  {
    StreamReader stream(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", other}}));
    CHECK(stream.has(": stream open"));
    stream.leave();
    CHECK(eventually([&] { return stream.ended().has_value(); }, 5s));
    CHECK(stream.ended() == false);
  }
  StreamReader again(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", other}}));
  CHECK(again.has(": stream open"));
  mcp.endpoint.close_sandbox("sb-1");
  CHECK(eventually([&] { return again.ended().has_value(); }, 5s));
  CHECK(mcp.post(request(1, "ping"), other).status == 404);
}

TEST_CASE("mcp endpoint: the legacy SSE stream names its messages URL and carries the responses", "[mcp]") {
  EndpointHarness mcp;
  auto stream = std::make_unique<StreamReader>(mcp.send("GET", "/mcp/terminal/sse"));
  REQUIRE(stream->has("event: endpoint\ndata: /mcp/terminal/messages?sessionId="));
  std::string text = stream->text();
  std::size_t at = text.find("sessionId=") + 10;
  std::string id = text.substr(at, text.find('\n', at) - at);
  REQUIRE(id.size() == 32);
  std::string messages = "/mcp/terminal/messages?sessionId=" + id;
  std::map<std::string, std::string> json_type = {{"content-type", "application/json"}};

  HttpResponse accepted =
      mcp.send("POST", messages, request(1, "initialize", initialize_params("2024-11-05")).dump(), json_type);
  CHECK(accepted.status == 202);
  CHECK(stream->has("event: message\ndata: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{"));
  CHECK(stream->text().find("\"protocolVersion\":\"2024-11-05\"") != std::string::npos);
  CHECK(mcp.send("POST", messages, R"({"jsonrpc":"2.0","method":"notifications/initialized"})", json_type).status ==
        202);
  mcp.exec.answer = ExecResult{.stdout_text = "Linux\n"};
  CHECK(mcp.send("POST", messages,
                 request(2, "tools/call", {{"name", "run_command"}, {"arguments", {{"command", "uname"}}}}).dump(),
                 json_type)
            .status == 202);
  CHECK(stream->has("\"id\":2"));
  CHECK(stream->text().find("Linux\\n") != std::string::npos);
  // Malformed JSON is answered on the POST itself: no id to put it on the stream with.
  HttpResponse malformed = mcp.send("POST", messages, "{nope", json_type);
  CHECK(malformed.status == 400);
  CHECK(error_of(malformed)["code"] == codes::parse_error);

  CHECK(mcp.send("POST", "/mcp/terminal/messages", "{}", json_type).status == 400);
  CHECK(mcp.send("POST", "/mcp/terminal/messages?sessionId=nope", "{}", json_type).status == 404);
  // Its id is no Streamable HTTP session.
  CHECK(mcp.post(request(3, "ping"), id).status == 404);

  // The session lives as long as its stream.
  stream.reset();
  CHECK(mcp.send("POST", messages, request(4, "ping").dump(), json_type).status == 404);
  CHECK(mcp.endpoint.session_count("sb-1") == 0);
}

TEST_CASE("mcp endpoint: sessions are bounded per sandbox and expire when idle", "[mcp]") {
  EndpointHarness mcp({.sessions_per_sandbox = 2, .streams_max = 3});
  std::string first = mcp.initialize();
  mcp.now += 1s;
  std::string second = mcp.initialize();
  mcp.now += 1s;
  // A third replaces the one idle longest.
  std::string third = mcp.initialize();
  CHECK(mcp.post(request(1, "ping"), first).status == 404);
  CHECK(mcp.post(request(1, "ping"), second).status == 200);
  CHECK(mcp.endpoint.session_count("sb-1") == 2);

  // When each has its stream open, a new one is refused with a sentence.
  StreamReader one(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", second}}));
  StreamReader two(mcp.send("GET", "/mcp/terminal/", "", {{"mcp-session-id", third}}));
  REQUIRE(one.has("open"));
  REQUIRE(two.has("open"));
  HttpResponse refused = mcp.post(request(0, "initialize", initialize_params("2025-11-25")));
  CHECK(refused.status == 503);
  CHECK_THAT(error_of(refused)["message"].get<std::string>(), Catch::Contains("2 MCP sessions"));
  HttpResponse legacy_refused = mcp.send("GET", "/mcp/terminal/sse");
  CHECK(legacy_refused.status == 503);
  // Another sandbox has sessions of its own, but the agent's streams are bounded too.
  mcp.sandbox.id = "sb-2";
  StreamReader three(mcp.send("GET", "/mcp/terminal/sse"));
  REQUIRE(three.has("endpoint"));
  CHECK(mcp.send("GET", "/mcp/terminal/sse").status == 503);
  mcp.sandbox.id = "sb-1";

  // Nobody used it for 30 minutes: gone; an open stream keeps its session.
  mcp.now += 31min;
  CHECK(mcp.post(request(1, "ping"), second).status == 200);
  mcp.endpoint.close_sandbox("sb-1");
  CHECK(eventually([&] { return one.ended().has_value() && two.ended().has_value(); }, 5s));
  std::string fourth = mcp.initialize();
  mcp.now += 31min;
  CHECK(mcp.post(request(1, "ping"), fourth).status == 404);
}

TEST_CASE("mcp: the sandbox URL serves it with the sandbox's exec, and ends its sessions with it", "[mcp]") {
  ServiceHarness harness;
  SandboxApi api(*harness.service, "owner-token");
  Sandbox sandbox = harness.provision_running("mcp", std::nullopt, std::nullopt, {{"SANDBOX_API_KEY", "k1"}});
  harness.helpers.set_exec_result(ExecResult{.stdout_text = "Linux sandbox\n"});
  auto send = [&](const json& message, const std::string& session) {
    HttpRequest request{.method = "POST", .path = "/mcp/terminal"};
    request.headers = {{"content-type", "application/json"}};
    if (!session.empty()) request.headers["mcp-session-id"] = session;
    request.body = message.dump();
    return api.serve_web(sandbox.id, request);
  };
  HttpResponse initialized = send(request(0, "initialize", initialize_params("2025-11-25")), "");
  REQUIRE(initialized.status == 200);
  std::string session = initialized.headers["Mcp-Session-Id"];
  HttpResponse ran =
      send(request(1, "tools/call", {{"name", "run_command"}, {"arguments", {{"command", "uname -a"}}}}), session);
  REQUIRE(ran.status == 200);
  CHECK(json::parse(ran.body)["result"]["structuredContent"]["stdout"] == "Linux sandbox\n");
  auto execs = harness.helpers.execs();
  REQUIRE(execs.size() == 1);
  CHECK(execs[0].second.command == "uname -a");
  CHECK(execs[0].first == harness.service->helper_access(sandbox)->socket);

  api.close_sandbox(sandbox.id);
  CHECK(send(request(2, "ping"), session).status == 404);
}
