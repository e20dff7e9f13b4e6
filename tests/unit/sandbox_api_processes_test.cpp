// The sandbox URL's streamed exec and background processes over fake helpers: the event stream's
// shape, the routes' statuses (201, 404 for an unknown id, 405, 409 for an older helper, 422 for bad
// bodies and queries), and what reaches the helper.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "agent/sandbox_api.h"
#include "common/output_events.h"
#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;
using nlohmann::json;

namespace {

struct ProcessApi {
  ServiceHarness harness;
  SandboxApi api{*harness.service, "owner-token"};
  Sandbox sandbox = harness.provision_running("procs", std::nullopt, std::nullopt, {{"SANDBOX_API_KEY", "k1"}});

  std::filesystem::path socket() { return harness.service->helper_access(sandbox)->socket; }

  HttpResponse call(const std::string& method, const std::string& target, const std::string& body = "",
                    std::map<std::string, std::string> headers = {}) {
    HttpRequest request{.method = method, .path = target.substr(0, target.find('?'))};
    if (auto question = target.find('?'); question != std::string::npos)
      request.query = parse_query(target.substr(question + 1));
    request.body = body;
    request.headers = std::move(headers);
    request.headers["authorization"] = "Bearer k1";
    return api.serve(sandbox.id, request);
  }
  HttpResponse events(const std::string& method, const std::string& target, const std::string& body = "") {
    return call(method, target, body, {{"accept", "text/event-stream"}});
  }
};

/// Everything a streamed answer writes.
std::string body_of(HttpResponse& response) {
  REQUIRE(response.stream);
  REQUIRE(response.stream_chunked);
  std::string text;
  CHECK(response.stream(0, 0, [&](std::string_view bytes) {
    text.append(bytes);
    return true;
  }));
  return text;
}

std::vector<EventReader::Event> events_in(const std::string& text) {
  EventReader reader;
  reader.feed(text);
  std::vector<EventReader::Event> events;
  while (auto event = reader.next()) events.push_back(*event);
  return events;
}

std::vector<std::string> loc_of(const HttpResponse& response) {
  REQUIRE(response.status == 422);
  json body = json::parse(response.body);
  std::vector<std::string> loc;
  for (const auto& part : body["detail"][0]["loc"]) loc.push_back(part.get<std::string>());
  return loc;
}

helper::ProcessInfo exited_process(std::uint32_t id, int code) {
  helper::ProcessInfo info;
  info.id = id;
  info.state = helper::ProcessState::exited;
  info.exit_code = code;
  info.command = "make";
  info.cwd = "/";
  info.started_ms = 1'700'000'000'000;
  info.ended_ms = 1'700'000'002'000;
  info.stdout_bytes = 2'000'000;
  info.stdout_dropped = 951'424;
  return info;
}

}  // namespace

TEST_CASE("exec with Accept: text/event-stream answers the output as events, then exit", "[sandbox-api][processes]") {
  ProcessApi api;
  api.harness.helpers.set_exec_result(ExecResult{.exit_code = 3, .stdout_text = "caf\xc3\xa9\n", .stderr_text = "\xff"});
  api.harness.helpers.set_stream_piece(4);  // cuts "é" in two
  auto response = api.events("POST", "/modbox/api/exec", R"({"command":"make","timeout":5000})");
  REQUIRE(response.status == 200);
  CHECK(response.content_type == "text/event-stream");
  CHECK(response.headers["Cache-Control"] == "no-cache");
  auto events = events_in(body_of(response));
  REQUIRE(events.size() == 4);
  CHECK(events[0].name == "stdout");
  CHECK(events[0].data == R"({"data":"caf"})");
  CHECK(events[1].data == "{\"data\":\"\xc3\xa9\\n\"}");
  CHECK(events[2].name == "stderr");
  CHECK(events[2].data == R"({"data_base64":"/w=="})");
  CHECK(events[3].name == "exit");
  auto exit = json::parse(events[3].data);
  CHECK(exit["exitCode"] == 3);
  CHECK(exit["stdout"] == "");
  CHECK(exit["killed"] == false);
  CHECK(exit.contains("durationMs"));
  CHECK(api.harness.helpers.execs().back().second.timeout_ms == 5000);
}

TEST_CASE("exec without Accept: text/event-stream stays JSON; a bad body is 422 either way", "[sandbox-api][processes]") {
  ProcessApi api;
  api.harness.helpers.set_exec_result(ExecResult{.exit_code = 0, .stdout_text = "hi\n"});
  auto plain = api.call("POST", "/modbox/api/exec", R"({"command":"echo hi"})");
  CHECK(plain.status == 200);
  CHECK_FALSE(plain.stream);
  CHECK(json::parse(plain.body)["stdout"] == "hi\n");
  CHECK(loc_of(api.events("POST", "/modbox/api/exec", R"({"command":"x","timeout":99999})")) ==
        std::vector<std::string>{"body", "timeout"});
  // A helper that cannot start the command is an error status, not a stream that says so.
  api.harness.helpers.set_exec_result(fail(ErrorKind::unavailable, "the sandbox's helper is gone"));
  CHECK(api.events("POST", "/modbox/api/exec", R"({"command":"x"})").status == 503);
}

TEST_CASE("a process starts with 201, its id and a Location; env and cwd reach the helper", "[sandbox-api][processes]") {
  ProcessApi api;
  auto started = api.call("POST", "/modbox/api/processes", R"({"command":"sleep 9","cwd":"/tmp","env":{"A":"1"}})");
  INFO(started.body);
  REQUIRE(started.status == 201);
  auto process = json::parse(started.body);
  CHECK(process["id"] == 1);
  CHECK(process["state"] == "running");
  CHECK(process["exit_code"].is_null());
  CHECK(process["ended_at"].is_null());
  CHECK(process["command"] == "sleep 9");
  CHECK(process["stdin_open"] == true);
  CHECK(started.headers["Location"] == "/modbox/api/processes/1");
  auto sent = api.harness.helpers.started_processes().at(0);
  CHECK(sent.cwd == "/tmp");
  CHECK(sent.env == std::vector<std::string>{"A=1"});

  CHECK(loc_of(api.call("POST", "/modbox/api/processes", "{}")) == std::vector<std::string>{"body", "command"});
  CHECK(api.call("DELETE", "/modbox/api/processes").status == 405);
}

TEST_CASE("processes are listed and shown; an unknown id is 404 on every route", "[sandbox-api][processes]") {
  ProcessApi api;
  api.harness.helpers.set_processes(api.socket(), {exited_process(4, 2)});
  auto listed = json::parse(api.call("GET", "/modbox/api/processes").body);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["state"] == "exited");
  CHECK(listed[0]["exit_code"] == 2);
  CHECK(listed[0]["ended_at"] == "2023-11-14T22:13:22.000Z");
  CHECK(json::parse(api.call("GET", "/modbox/api/processes/4").body)["id"] == 4);
  for (const char* id : {"5", "abc", "0", "04", "99999999999"}) {
    INFO(id);
    std::string path = std::string("/modbox/api/processes/") + id;
    CHECK(api.call("GET", path).status == 404);
    CHECK(api.call("GET", path + "/output").status == 404);
    CHECK(api.call("POST", path + "/signal", R"({"signal":"TERM"})").status == 404);
    CHECK(api.call("POST", path + "/stdin", R"({"data":"x"})").status == 404);
  }
  CHECK(api.call("GET", "/modbox/api/processes/4/nothing").status == 404);
  CHECK(api.call("POST", "/modbox/api/processes/4").status == 405);
}

TEST_CASE("a process's output: JSON without follow, events with it", "[sandbox-api][processes]") {
  ProcessApi api;
  api.harness.helpers.set_processes(api.socket(), {exited_process(1, 0)});
  api.harness.helpers.set_process_output(
      1, {{helper::Stream::stdout_stream, "a\n"}, {helper::Stream::stderr_stream, "b\n"}, {helper::Stream::stdout_stream, "c\n"}});
  auto plain = api.call("GET", "/modbox/api/processes/1/output");
  REQUIRE(plain.status == 200);
  auto answer = json::parse(plain.body);
  CHECK(answer["stdout"] == "a\nc\n");
  CHECK(answer["stderr"] == "b\n");
  CHECK(answer["truncated"] == true);  // the helper had dropped older bytes
  CHECK(answer["state"] == "exited");

  auto followed = api.call("GET", "/modbox/api/processes/1/output?follow=true");
  REQUIRE(followed.status == 200);
  auto events = events_in(body_of(followed));
  REQUIRE(events.size() == 4);
  CHECK(events[1].name == "stderr");
  CHECK(events[3].name == "exit");
  CHECK(json::parse(events[3].data)["exit_code"] == 0);

  helper::ProcessInfo running = exited_process(2, 0);
  running.state = helper::ProcessState::running;
  api.harness.helpers.set_processes(api.socket(), {running});
  auto snapshot = api.events("GET", "/modbox/api/processes/2/output");
  auto last = events_in(body_of(snapshot)).back();
  CHECK(last.name == "end");
  CHECK(json::parse(last.data)["state"] == "running");

  CHECK(loc_of(api.call("GET", "/modbox/api/processes/2/output?follow=maybe")) ==
        std::vector<std::string>{"query", "follow"});
}

TEST_CASE("stdin and signals reach the helper; a signal that is none is 422", "[sandbox-api][processes]") {
  ProcessApi api;
  api.harness.helpers.set_processes(api.socket(), {exited_process(1, 0)});
  auto written = api.call("POST", "/modbox/api/processes/1/stdin", R"({"data_base64":"AP8=","close":true})");
  REQUIRE(written.status == 200);
  CHECK(json::parse(written.body) == json{{"id", 1}, {"written", 2}, {"closed", true}});
  auto input = api.harness.helpers.process_inputs().at(0);
  CHECK(input.data == std::string("\0\xff", 2));
  CHECK(input.close);
  CHECK(loc_of(api.call("POST", "/modbox/api/processes/1/stdin", "{}")) == std::vector<std::string>{"body"});

  auto signalled = api.call("POST", "/modbox/api/processes/1/signal", R"({"signal":"int"})");
  REQUIRE(signalled.status == 200);
  CHECK(json::parse(signalled.body)["signal"] == "SIGINT");
  CHECK(api.harness.helpers.process_signals().at(0).signal == static_cast<std::uint32_t>(SIGINT));
  CHECK(loc_of(api.call("POST", "/modbox/api/processes/1/signal", R"({"signal":"SIGNOPE"})")) ==
        std::vector<std::string>{"body", "signal"});
  // The body is checked first: a bad signal to an unknown process is 422, as FastAPI would answer.
  CHECK(api.call("POST", "/modbox/api/processes/7/signal", R"({"signal":"SIGNOPE"})").status == 422);
}

TEST_CASE("a sandbox whose helper predates background processes says to provision it again", "[sandbox-api][processes]") {
  ProcessApi api;
  api.harness.helpers.set_processes_error(
      Error{ErrorKind::conflict, "this sandbox's helper has no background processes: provision it again", {}});
  auto refused = api.call("POST", "/modbox/api/processes", R"({"command":"true"})");
  CHECK(refused.status == 409);
  CHECK(json::parse(refused.body)["detail"].get<std::string>().find("provision") != std::string::npos);
  CHECK(api.call("GET", "/modbox/api/processes").status == 409);
}
