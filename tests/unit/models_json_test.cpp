// The JSON mapping of the models: the error model both sides share, the store's records, the
// API view of a sandbox and the exec result.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/models.h"

using namespace modbox;
using nlohmann::json;

namespace {

TimePoint at_millisecond(std::int64_t milliseconds) { return TimePoint(std::chrono::milliseconds(milliseconds)); }

/// A sandbox with every optional field set.
Sandbox full_sandbox() {
  Sandbox sandbox;
  sandbox.id = "0b0e7a4c-2f7e-4c4e-9a53-5f0b6a1d2e3f";
  sandbox.name = "build-42";
  sandbox.workspace_id = "team-a";
  sandbox.status = SandboxStatus::running;
  sandbox.sandbox_url = "http://127.0.0.1:40123";
  sandbox.image = "localhost/modbox/sandbox-lite:latest";
  sandbox.image_id = "img-1";
  sandbox.created_by = "alice";
  sandbox.created_at = at_millisecond(1'779'444'000'123);
  sandbox.destroyed_at = at_millisecond(1'779'444'100'456);
  sandbox.ttl_seconds = 600;
  sandbox.error = "ttl expired";
  sandbox.env_vars = {{"SANDBOX_API_KEY", "very-secret-key"}, {"OTHER", "other-value"}};
  sandbox.container_id = "c0ffee1234567890";
  sandbox.gateway_port = 40123;
  sandbox.ports = {8000, 5173};
  sandbox.port_gateways = {{8000, 41001}, {5173, 41002}};
  sandbox.readiness_port = 9222;
  sandbox.idle_timeout_seconds = 120;
  sandbox.tags = {{"team", "ml"}, {"run", "7"}};
  sandbox.network = "none";
  sandbox.destroy_reason = DestroyReason::idle;
  return sandbox;
}

}  // namespace

TEST_CASE("a validation error is written in FastAPI's shape", "[models][errors]") {
  Error error{ErrorKind::validation, "ignored", {{{"body", "task_id"}, "Field required", "missing"},
                                                 {{"body", "ttl_seconds"}, "Input should be a valid integer", "int_type"}}};
  json body = json::parse(error_to_json(error));
  REQUIRE(body["detail"].is_array());
  REQUIRE(body["detail"].size() == 2);
  CHECK(body["detail"][0] == json{{"loc", {"body", "task_id"}}, {"msg", "Field required"}, {"type", "missing"}});
  CHECK(body["detail"][1]["loc"] == json{"body", "ttl_seconds"});
}

TEST_CASE("any other error is written as {\"detail\": sentence}", "[models][errors]") {
  json body = json::parse(error_to_json(Error{ErrorKind::conflict, "task_id 't' is already running", {}}));
  CHECK(body == json{{"detail", "task_id 't' is already running"}});
}

TEST_CASE("an error survives the trip from agent to CLI", "[models][errors]") {
  SECTION("a sentence") {
    Error sent{ErrorKind::not_found, "no sandbox with task_id 'x'", {}};
    Error received = error_from_response(http_status(sent.kind), error_to_json(sent));
    CHECK(received.kind == ErrorKind::not_found);
    CHECK(received.message == sent.message);
    CHECK(received.fields.empty());
  }
  SECTION("field errors") {
    Error sent{ErrorKind::validation, "", {{{"body", "env_vars", "1X"}, "bad name", "value_error"}}};
    Error received = error_from_response(422, error_to_json(sent));
    CHECK(received.kind == ErrorKind::validation);
    REQUIRE(received.fields.size() == 1);
    CHECK(received.fields[0].loc == std::vector<std::string>{"body", "env_vars", "1X"});
    CHECK(received.fields[0].msg == "bad name");
    CHECK(received.fields[0].type == "value_error");
    CHECK(received.message == "body.env_vars.1X: bad name");
  }
  SECTION("a body that is not ours still yields the status's kind") {
    Error received = error_from_response(503, "<html>bad gateway</html>");
    CHECK(received.kind == ErrorKind::unavailable);
    CHECK(received.message.find("503") != std::string::npos);
  }
  SECTION("numeric loc parts, as FastAPI writes list indexes") {
    Error received = error_from_response(422, R"({"detail": [{"loc": ["body", "items", 0], "msg": "m", "type": "t"}]})");
    REQUIRE(received.fields.size() == 1);
    CHECK(received.fields[0].loc == std::vector<std::string>{"body", "items", "0"});
  }
}

TEST_CASE("every error kind maps to its own status and back", "[models][errors]") {
  for (auto kind : {ErrorKind::bad_request, ErrorKind::unauthorized, ErrorKind::forbidden, ErrorKind::not_found,
                    ErrorKind::conflict, ErrorKind::timeout, ErrorKind::too_large, ErrorKind::validation,
                    ErrorKind::bad_gateway, ErrorKind::unavailable, ErrorKind::internal}) {
    INFO("status " << http_status(kind));
    CHECK(error_kind_for_status(http_status(kind)) == kind);
  }
  CHECK(error_kind_for_status(418) == ErrorKind::bad_request);
  CHECK(error_kind_for_status(502) == ErrorKind::bad_gateway);
  CHECK(error_kind_for_status(504) == ErrorKind::internal);
}

TEST_CASE("a sandbox record keeps every field through the store's JSON", "[models][record]") {
  Sandbox original = full_sandbox();
  auto restored = sandbox_record_from_json(sandbox_record_to_json(original));
  REQUIRE(restored.has_value());
  CHECK(restored->id == original.id);
  CHECK(restored->name == original.name);
  CHECK(restored->workspace_id == original.workspace_id);
  CHECK(restored->status == original.status);
  CHECK(restored->sandbox_url == original.sandbox_url);
  CHECK(restored->image == original.image);
  CHECK(restored->image_id == original.image_id);
  CHECK(restored->created_by == original.created_by);
  CHECK(restored->created_at == original.created_at);
  CHECK(restored->destroyed_at == original.destroyed_at);
  CHECK(restored->ttl_seconds == original.ttl_seconds);
  CHECK(restored->error == original.error);
  CHECK(restored->env_vars == original.env_vars);
  CHECK(restored->container_id == original.container_id);
  CHECK(restored->gateway_port == original.gateway_port);
  CHECK(restored->ports == original.ports);
  CHECK(restored->port_gateways == original.port_gateways);
  CHECK(restored->readiness_port == original.readiness_port);
  CHECK(restored->idle_timeout_seconds == original.idle_timeout_seconds);
  CHECK(restored->tags == original.tags);
  CHECK(restored->network == original.network);
  CHECK(restored->destroy_reason == original.destroy_reason);
}

TEST_CASE("the API view shows tags, network and idle timeout; older records load without them",
          "[models][sandbox][tags][network]") {
  json view = json::parse(sandbox_to_json(full_sandbox()));
  CHECK(view["tags"] == json{{"team", "ml"}, {"run", "7"}});
  CHECK(view["network"] == "none");
  CHECK(view["idle_timeout_seconds"] == 120);
  CHECK(view["destroy_reason"] == "idle");
  json plain = json::parse(sandbox_to_json(Sandbox{}));
  CHECK(plain["tags"] == json::object());
  CHECK(plain["network"].is_null());

  json old = json::parse(sandbox_record_to_json(full_sandbox()));
  old.erase("tags");
  old.erase("network");
  auto restored = sandbox_record_from_json(old.dump());
  REQUIRE(restored.has_value());
  CHECK(restored->tags.empty());
  CHECK_FALSE(restored->network.has_value());
}

TEST_CASE("a record written before per-port URLs still loads, without ports", "[models][record][ports]") {
  json old = json::parse(sandbox_record_to_json(full_sandbox()));
  for (const char* field : {"ports", "port_gateways", "readiness_port"}) {
    REQUIRE(old.contains(field));
    old.erase(field);
  }
  auto restored = sandbox_record_from_json(old.dump());
  REQUIRE(restored.has_value());
  CHECK(restored->ports.empty());
  CHECK(restored->port_gateways.empty());
  CHECK_FALSE(restored->readiness_port.has_value());
  CHECK(proxied_port(*restored) == 8080);
  CHECK(restored->gateway_port == 40123);
  CHECK(json::parse(sandbox_to_json(*restored))["port_urls"].is_null());
}

TEST_CASE("the API view shows each asked port's URL on the sandbox URL's host", "[models][sandbox][ports]") {
  Sandbox sandbox = full_sandbox();
  json body = json::parse(sandbox_to_json(sandbox));
  CHECK(body["ports"] == json{8000, 5173});
  CHECK(body["port_urls"] == json{{"8000", "http://127.0.0.1:41001"}, {"5173", "http://127.0.0.1:41002"}});
  for (const char* internal : {"port_gateways", "readiness_port", "gateway_port"}) {
    INFO(internal);
    CHECK_FALSE(body.contains(internal));
  }
  SECTION("null unless running, as sandbox_url") {
    for (auto status : {SandboxStatus::provisioning, SandboxStatus::failed, SandboxStatus::destroyed}) {
      sandbox.status = status;
      INFO("status " << to_string(status));
      json other = json::parse(sandbox_to_json(sandbox));
      CHECK(other["port_urls"].is_null());
      CHECK(other["ports"] == json{8000, 5173});
    }
  }
  SECTION("null, and ports empty, for a sandbox that asked for none") {
    sandbox.ports.clear();
    sandbox.port_gateways.clear();
    json other = json::parse(sandbox_to_json(sandbox));
    CHECK(other["port_urls"].is_null());
    CHECK(other["ports"] == json::array());
  }
  SECTION("the CLI reads the same URLs back") {
    auto read = sandbox_from_json(sandbox_to_json(sandbox));
    REQUIRE(read.has_value());
    CHECK(read->ports == sandbox.ports);
    CHECK(port_urls(*read) == port_urls(sandbox));
    CHECK(port_urls(*read) ==
          std::map<int, std::string>{{8000, "http://127.0.0.1:41001"}, {5173, "http://127.0.0.1:41002"}});
  }
  SECTION("an agent's answer without the fields reads as no ports") {
    body.erase("ports");
    body.erase("port_urls");
    auto read = sandbox_from_json(body.dump());
    REQUIRE(read.has_value());
    CHECK(read->ports.empty());
    CHECK(port_urls(*read).empty());
  }
}

TEST_CASE("the proxied port is the image's readiness_port, else 8080", "[models][sandbox][ports]") {
  Sandbox sandbox = full_sandbox();
  CHECK(proxied_port(sandbox) == 9222);
  sandbox.readiness_port.reset();
  CHECK(proxied_port(sandbox) == limits::default_proxied_port);
  CHECK(limits::default_proxied_port == 8080);
}

TEST_CASE("a record keeps the URL of a sandbox that is not running", "[models][record]") {
  Sandbox original = full_sandbox();
  original.status = SandboxStatus::provisioning;
  auto restored = sandbox_record_from_json(sandbox_record_to_json(original));
  REQUIRE(restored.has_value());
  CHECK(restored->sandbox_url == original.sandbox_url);
}

TEST_CASE("a record with the optional fields absent round-trips as absent", "[models][record]") {
  Sandbox original;
  original.id = "id-1";
  original.name = "t";
  original.created_at = at_millisecond(0);
  auto restored = sandbox_record_from_json(sandbox_record_to_json(original));
  REQUIRE(restored.has_value());
  CHECK_FALSE(restored->workspace_id.has_value());
  CHECK_FALSE(restored->sandbox_url.has_value());
  CHECK_FALSE(restored->destroyed_at.has_value());
  CHECK_FALSE(restored->ttl_seconds.has_value());
  CHECK_FALSE(restored->error.has_value());
  CHECK(restored->env_vars.empty());
}

TEST_CASE("a damaged record is an error, not an exception", "[models][record]") {
  for (const char* text : {"", "{", "[]", R"({"id": "x"})", R"({"id": 1, "name": "t"})"}) {
    INFO("record: " << text);
    CHECK_FALSE(sandbox_record_from_json(text).has_value());
  }
  json unknown_status = json::parse(sandbox_record_to_json(full_sandbox()));
  unknown_status["status"] = "exploded";
  CHECK_FALSE(sandbox_record_from_json(unknown_status.dump()).has_value());
}

TEST_CASE("the API view of a sandbox leaves out secrets and agent internals", "[models][sandbox]") {
  Sandbox sandbox = full_sandbox();
  std::string text = sandbox_to_json(sandbox);
  json body = json::parse(text);
  CHECK_FALSE(body.contains("env_vars"));
  CHECK_FALSE(body.contains("container_id"));
  CHECK(text.find("very-secret-key") == std::string::npos);
  CHECK(text.find("other-value") == std::string::npos);
  CHECK(text.find(sandbox.container_id) == std::string::npos);
  CHECK(body["api_key_set"] == true);
  CHECK(body["name"] == "build-42");
  CHECK(body["workspace_id"] == "team-a");
  CHECK(body["created_at"] == "2026-05-22T10:00:00.123Z");
  CHECK(body["expires_at"] == "2026-05-22T10:10:00.123Z");
}

TEST_CASE("sandbox_url is null unless the sandbox is running", "[models][sandbox]") {
  Sandbox sandbox = full_sandbox();
  CHECK(json::parse(sandbox_to_json(sandbox))["sandbox_url"] == "http://127.0.0.1:40123");
  for (auto status : {SandboxStatus::provisioning, SandboxStatus::failed, SandboxStatus::destroyed}) {
    sandbox.status = status;
    INFO("status " << to_string(status));
    CHECK(json::parse(sandbox_to_json(sandbox))["sandbox_url"].is_null());
  }
}

TEST_CASE("a sandbox list is read back by the CLI", "[models][sandbox]") {
  Sandbox first = full_sandbox();
  Sandbox second = full_sandbox();
  second.id = "second";
  second.status = SandboxStatus::destroyed;
  second.ttl_seconds.reset();
  auto list = sandboxes_from_json(sandboxes_to_json({first, second}));
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].sandbox_url == first.sandbox_url);
  CHECK((*list)[0].created_at == first.created_at);
  CHECK((*list)[1].id == "second");
  CHECK((*list)[1].status == SandboxStatus::destroyed);
  CHECK_FALSE((*list)[1].sandbox_url.has_value());
  CHECK((*list)[1].env_vars.empty());
}

TEST_CASE("an exec result uses the seed's field names exactly", "[models][exec]") {
  ExecResult result{.exit_code = 3, .stdout_text = "out", .stderr_text = "err", .killed = true,
                    .signal = "SIGKILL", .duration_ms = 1234, .truncated = true};
  json body = json::parse(exec_result_to_json(result));
  CHECK(body == json{{"exitCode", 3}, {"stdout", "out"}, {"stderr", "err"}, {"killed", true},
                     {"signal", "SIGKILL"}, {"durationMs", 1234}, {"truncated", true}});
  auto restored = exec_result_from_json(body.dump());
  REQUIRE(restored.has_value());
  CHECK(restored->exit_code == 3);
  CHECK(restored->signal == "SIGKILL");
  CHECK(restored->duration_ms == 1234);
  CHECK(restored->truncated);
}

TEST_CASE("an exec result without a signal writes null", "[models][exec]") {
  json body = json::parse(exec_result_to_json(ExecResult{}));
  CHECK(body["signal"].is_null());
  CHECK_FALSE(exec_result_from_json(body.dump())->signal.has_value());
}

TEST_CASE("command output that is not UTF-8 is written, not thrown", "[models][exec]") {
  ExecResult result;
  result.stdout_text = std::string("ok \xff\xfe end", 9);
  result.stderr_text = "\xc3";  // a truncated two-byte sequence
  std::string text;
  REQUIRE_NOTHROW(text = exec_result_to_json(result));
  json body = json::parse(text);
  CHECK(body["stdout"].get<std::string>().starts_with("ok "));
  CHECK(body["stdout"].get<std::string>().ends_with(" end"));
}

TEST_CASE("requests written by the CLI are parsed back by the agent", "[models][roundtrip]") {
  ProvisionRequest provision{.task_id = "t1", .image = "busybox", .ttl_seconds = 60, .env_vars = {{"A", "b"}}};
  auto parsed = parse_provision_request(provision_request_to_json(provision));
  REQUIRE(parsed.has_value());
  CHECK(parsed->task_id == "t1");
  CHECK(parsed->image == "busybox");
  CHECK(parsed->ttl_seconds == 60);
  CHECK(parsed->env_vars == provision.env_vars);
  CHECK(parsed->ports.empty());
  provision.ports = {8000, 5173};
  CHECK(parse_provision_request(provision_request_to_json(provision))->ports == provision.ports);
  provision.idle_timeout_seconds = 30;
  provision.tags = {{"team", "ml"}};
  provision.network = "none";
  auto extended = parse_provision_request(provision_request_to_json(provision));
  REQUIRE(extended.has_value());
  CHECK(extended->idle_timeout_seconds == 30);
  CHECK(extended->tags == provision.tags);
  CHECK(extended->network == "none");

  CHECK(parse_wait_request(wait_request_to_json({"t1", 7}))->timeout_seconds == 7);
  CHECK(parse_destroy_request(destroy_request_to_json({"t1"}))->task_id == "t1");
  auto exec = parse_sandbox_exec_request(sandbox_exec_request_to_json({"t1", {"ls -l", 500, "/tmp"}}));
  REQUIRE(exec.has_value());
  CHECK(exec->exec.command == "ls -l");
  CHECK(exec->exec.timeout_ms == 500);
  CHECK(exec->exec.cwd == "/tmp");
}

TEST_CASE("the agent status round-trips", "[models][status]") {
  AgentStatus status{.version = "0.1.0", .pid = 42, .user = "alice", .state_dir = "/s", .socket_path = "/r/a.sock",
                     .api_url = "http://127.0.0.1:7000", .podman_ready = true, .podman_detail = "ok",
                     .runtime = "runc", .live_sandboxes = 3};
  auto restored = agent_status_from_json(agent_status_to_json(status));
  REQUIRE(restored.has_value());
  CHECK(restored->pid == 42);
  CHECK(restored->api_url == status.api_url);
  CHECK(restored->podman_ready);
  CHECK(restored->live_sandboxes == 3);
}

TEST_CASE("the API view shows the readiness probe, how it goes, and when the sandbox became ready",
          "[models][sandbox][readiness]") {
  Sandbox sandbox = full_sandbox();
  SECTION("no probe: null fields") {
    json view = json::parse(sandbox_to_json(sandbox));
    CHECK(view["readiness_probe"].is_null());
    CHECK(view["readiness"].is_null());
    CHECK(view["ready_at"].is_null());
    CHECK(view["startup_ms"].is_null());
  }
  SECTION("an exec probe still failing") {
    sandbox.status = SandboxStatus::provisioning;
    sandbox.readiness_probe = ReadinessProbe{.kind = ReadinessProbe::Kind::exec, .command = {"test", "-f", "/x"}, .interval_ms = 50};
    sandbox.readiness = {.phase = ReadinessState::Phase::probing, .attempts = 3, .last_passed = false, .last_error = "exited with 1"};
    json view = json::parse(sandbox_to_json(sandbox));
    CHECK(view["readiness_probe"] == json{{"exec", {{"command", {"test", "-f", "/x"}}}}, {"interval_ms", 50}});
    CHECK(view["readiness"] ==
          json{{"state", "probing"}, {"attempts", 3}, {"last_result", "failed"}, {"last_error", "exited with 1"}});
    CHECK(view["ready_at"].is_null());
  }
  SECTION("the image's HTTP probe, passed; the record keeps the probe and the times, not how it went") {
    sandbox.readiness_probe = ReadinessProbe{.kind = ReadinessProbe::Kind::http, .port = 9222};
    sandbox.readiness = {.phase = ReadinessState::Phase::passed, .attempts = 1, .last_passed = true};
    sandbox.ready_at = at_millisecond(1'779'444'001'123);
    sandbox.startup_ms = 1000;
    json view = json::parse(sandbox_to_json(sandbox));
    CHECK(view["readiness_probe"] == json{{"http", {{"port", 9222}}}, {"interval_ms", 100}});
    CHECK(view["readiness"]["state"] == "passed");
    CHECK(view["readiness"]["last_result"] == "passed");
    CHECK(view["ready_at"] == "2026-05-22T10:00:01.123Z");
    CHECK(view["startup_ms"] == 1000);
    auto restored = sandbox_record_from_json(sandbox_record_to_json(sandbox));
    REQUIRE(restored.has_value());
    CHECK(restored->readiness_probe == sandbox.readiness_probe);
    CHECK(restored->ready_at == sandbox.ready_at);
    CHECK(restored->startup_ms == 1000);
    CHECK(restored->readiness == ReadinessState{});
    auto client_view = sandbox_from_json(sandbox_to_json(sandbox));
    REQUIRE(client_view.has_value());
    CHECK(client_view->readiness == sandbox.readiness);
  }
}

TEST_CASE("a sandbox's command and how it exited go through the record and the API view",
          "[models][record][entrypoint]") {
  Sandbox sandbox = full_sandbox();
  sandbox.command = {"sh", "-c", "exit 3"};
  sandbox.status = SandboxStatus::destroyed;
  sandbox.destroy_reason = DestroyReason::exited;
  sandbox.exit_code = 137;
  sandbox.oom_killed = true;
  auto restored = sandbox_record_from_json(sandbox_record_to_json(sandbox));
  REQUIRE(restored.has_value());
  CHECK(restored->command == sandbox.command);
  CHECK(restored->exit_code == 137);
  CHECK(restored->oom_killed == true);
  json view = json::parse(sandbox_to_json(sandbox));
  CHECK(view["command"] == json{"sh", "-c", "exit 3"});
  CHECK(view["exit_code"] == 137);
  CHECK(view["oom_killed"] == true);
  CHECK(view["destroy_reason"] == "exited");
  auto read_back = sandbox_from_json(view.dump());
  REQUIRE(read_back.has_value());
  CHECK(read_back->exit_code == 137);

  // A sandbox without a command, and records from before commands, show nulls.
  json plain = json::parse(sandbox_to_json(full_sandbox()));
  CHECK(plain["command"].is_null());
  CHECK(plain["exit_code"].is_null());
  CHECK(plain["oom_killed"].is_null());
  json old = json::parse(sandbox_record_to_json(full_sandbox()));
  for (const char* field : {"command", "exit_code", "oom_killed"}) old.erase(field);
  auto loaded = sandbox_record_from_json(old.dump());
  REQUIRE(loaded.has_value());
  CHECK(loaded->command.empty());
  CHECK_FALSE(loaded->exit_code.has_value());
}
