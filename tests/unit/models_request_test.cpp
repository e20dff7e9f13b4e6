// Validation of request bodies and queries: what the agent accepts, and the FastAPI-shaped
// errors (loc, msg, type) it answers for everything else.

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/models.h"

using namespace modbox;

namespace {

using Loc = std::vector<std::string>;

/// The field errors of a failed parse; fails the test if the parse succeeded.
template <class T>
std::vector<FieldError> field_errors(const Result<T>& result) {
  REQUIRE_FALSE(result.has_value());
  REQUIRE(result.error().kind == ErrorKind::validation);
  return result.error().fields;
}

/// The single field error of a failed parse.
template <class T>
FieldError only_field_error(const Result<T>& result) {
  auto errors = field_errors(result);
  REQUIRE(errors.size() == 1);
  return errors.front();
}

bool has_error(const std::vector<FieldError>& errors, const Loc& loc, const std::string& type) {
  for (const auto& error : errors)
    if (error.loc == loc && error.type == type) return true;
  return false;
}

}  // namespace

TEST_CASE("a complete provision body is parsed field by field", "[models][provision]") {
  auto request = parse_provision_request(
      R"({"task_id": "build-42", "image": "localhost/busybox", "ttl_seconds": 600,
          "env_vars": {"SANDBOX_API_KEY": "secret", "_X1": ""}})");
  REQUIRE(request.has_value());
  CHECK(request->task_id == "build-42");
  CHECK(request->image == "localhost/busybox");
  CHECK_FALSE(request->image_id.has_value());
  CHECK(request->ttl_seconds == 600);
  CHECK(request->env_vars == std::map<std::string, std::string>{{"SANDBOX_API_KEY", "secret"}, {"_X1", ""}});
}

TEST_CASE("a minimal provision body leaves the optional fields empty", "[models][provision]") {
  auto request = parse_provision_request(R"({"task_id": "t", "ttl_seconds": null})");
  REQUIRE(request.has_value());
  CHECK(request->task_id == "t");
  CHECK_FALSE(request->image.has_value());
  CHECK_FALSE(request->ttl_seconds.has_value());
  CHECK(request->env_vars.empty());
}

TEST_CASE("a body that is not JSON is a json_invalid error at loc [body]", "[models][provision]") {
  auto error = only_field_error(parse_provision_request("{\"task_id\": "));
  CHECK(error.loc == Loc{"body"});
  CHECK(error.type == "json_invalid");
  CHECK_FALSE(error.msg.empty());
}

TEST_CASE("a body that is JSON but not an object is refused at loc [body]", "[models][provision]") {
  for (const char* body : {"[]", "\"task\"", "42", "null"}) {
    INFO("body: " << body);
    auto error = only_field_error(parse_provision_request(body));
    CHECK(error.loc == Loc{"body"});
    CHECK(error.type == "model_attributes_type");
  }
}

TEST_CASE("an oversized body is too_large, not a validation error", "[models][provision]") {
  std::string body = R"({"task_id": "t", "pad": ")" + std::string(limits::request_body_max_bytes, 'x') + "\"}";
  auto request = parse_provision_request(body);
  REQUIRE_FALSE(request.has_value());
  CHECK(request.error().kind == ErrorKind::too_large);
}

TEST_CASE("a missing task_id is reported as missing", "[models][provision]") {
  auto error = only_field_error(parse_provision_request("{}"));
  CHECK(error.loc == Loc{"body", "task_id"});
  CHECK(error.type == "missing");
  CHECK(error.msg == "Field required");
}

TEST_CASE("ttl_seconds must be a JSON integer", "[models][provision]") {
  for (const char* value : {R"("5")", "true", "1.5", "[5]", "{}"}) {
    INFO("ttl_seconds: " << value);
    auto error = only_field_error(parse_provision_request(std::string(R"({"task_id": "t", "ttl_seconds": )") + value + "}"));
    CHECK(error.loc == Loc{"body", "ttl_seconds"});
    CHECK(error.type == "int_type");
  }
}

TEST_CASE("ttl_seconds accepts a float without a fractional part, as pydantic does", "[models][provision]") {
  auto request = parse_provision_request(R"({"task_id": "t", "ttl_seconds": 60.0})");
  REQUIRE(request.has_value());
  CHECK(request->ttl_seconds == 60);
}

TEST_CASE("ttl_seconds beyond every integer range is out of bounds, not undefined", "[models][provision]") {
  // Converting 1e300 to an integer is undefined behaviour unless it is clamped first
  // (-fsanitize=float-cast-overflow reports it; -fsanitize=undefined does not include that check).
  auto ttl_error = [](const char* value) {
    INFO("ttl_seconds: " << value);
    return only_field_error(parse_provision_request(std::string(R"({"task_id": "t", "ttl_seconds": )") + value + "}"));
  };
  CHECK(ttl_error("1e300").type == "less_than_equal");
  CHECK(ttl_error("9223372036854775808.0").type == "less_than_equal");
  CHECK(ttl_error("18446744073709551615").type == "less_than_equal");
  CHECK(ttl_error("-1e300").type == "greater_than_equal");
  CHECK(ttl_error("-9223372036854775808").type == "greater_than_equal");
  CHECK(ttl_error("1e300").loc == Loc{"body", "ttl_seconds"});
}

TEST_CASE("ttl_seconds is bounded to 1 .. 86400", "[models][provision]") {
  auto ttl_body = [](int ttl) { return R"({"task_id": "t", "ttl_seconds": )" + std::to_string(ttl) + "}"; };
  SECTION("the bounds themselves are accepted") {
    CHECK(parse_provision_request(ttl_body(1))->ttl_seconds == 1);
    CHECK(parse_provision_request(ttl_body(86400))->ttl_seconds == 86400);
  }
  SECTION("0 is below the minimum") {
    auto error = only_field_error(parse_provision_request(ttl_body(0)));
    CHECK(error.loc == Loc{"body", "ttl_seconds"});
    CHECK(error.type == "greater_than_equal");
  }
  SECTION("86401 is above the maximum") {
    auto error = only_field_error(parse_provision_request(ttl_body(86401)));
    CHECK(error.loc == Loc{"body", "ttl_seconds"});
    CHECK(error.type == "less_than_equal");
  }
}

TEST_CASE("task_id must be 1..63 characters of [A-Za-z0-9._-]", "[models][provision]") {
  auto task_body = [](const std::string& task_id) { return R"({"task_id": ")" + task_id + "\"}"; };
  SECTION("63 characters and every allowed character are accepted") {
    CHECK(parse_provision_request(task_body(std::string(63, 'a'))).has_value());
    CHECK(parse_provision_request(task_body("Az09._-")).has_value());
  }
  SECTION("empty") {
    auto error = only_field_error(parse_provision_request(task_body("")));
    CHECK(error.loc == Loc{"body", "task_id"});
    CHECK(error.type == "string_too_short");
  }
  SECTION("64 characters") {
    auto error = only_field_error(parse_provision_request(task_body(std::string(64, 'a'))));
    CHECK(error.type == "string_too_long");
  }
  SECTION("characters outside the pattern") {
    for (const char* task_id : {"a b", "../x", "a/b", "tab\\t", "é"}) {
      INFO("task_id: " << task_id);
      auto error = only_field_error(parse_provision_request(task_body(task_id)));
      CHECK(error.loc == Loc{"body", "task_id"});
      CHECK(error.type == "string_pattern_mismatch");
    }
  }
  SECTION("not a string") {
    auto error = only_field_error(parse_provision_request(R"({"task_id": 7})"));
    CHECK(error.type == "string_type");
  }
}

TEST_CASE("env_vars must be an object of valid names to strings", "[models][provision]") {
  SECTION("not an object") {
    auto error = only_field_error(parse_provision_request(R"({"task_id": "t", "env_vars": ["A=1"]})"));
    CHECK(error.loc == Loc{"body", "env_vars"});
    CHECK(error.type == "dict_type");
  }
  SECTION("a name that starts with a digit") {
    auto error = only_field_error(parse_provision_request(R"({"task_id": "t", "env_vars": {"1X": "v"}})"));
    CHECK(error.loc == Loc{"body", "env_vars", "1X"});
    CHECK(error.type == "value_error");
  }
  SECTION("a name with a character outside [A-Za-z0-9_]") {
    auto error = only_field_error(parse_provision_request(R"({"task_id": "t", "env_vars": {"A-B": "v"}})"));
    CHECK(error.loc == Loc{"body", "env_vars", "A-B"});
  }
  SECTION("a value that is not a string") {
    auto error = only_field_error(parse_provision_request(R"({"task_id": "t", "env_vars": {"A": 1}})"));
    CHECK(error.loc == Loc{"body", "env_vars", "A"});
    CHECK(error.type == "string_type");
  }
  SECTION("a value with a NUL byte") {
    auto error = only_field_error(parse_provision_request(R"({"task_id": "t", "env_vars": {"A": "x\u0000y"}})"));
    CHECK(error.loc == Loc{"body", "env_vars", "A"});
  }
}

TEST_CASE("every problem of a body is reported at once", "[models][provision]") {
  auto errors = field_errors(parse_provision_request(
      R"({"ttl_seconds": "5", "env_vars": {"1X": "v", "OK": 2}, "image": ""})"));
  CHECK(errors.size() == 5);
  CHECK(has_error(errors, {"body", "task_id"}, "missing"));
  CHECK(has_error(errors, {"body", "ttl_seconds"}, "int_type"));
  CHECK(has_error(errors, {"body", "env_vars", "1X"}, "value_error"));
  CHECK(has_error(errors, {"body", "env_vars", "OK"}, "string_type"));
  CHECK(has_error(errors, {"body", "image"}, "string_too_short"));
}

TEST_CASE("wait and destroy bodies validate task_id the same way", "[models][wait][destroy]") {
  auto wait = parse_wait_request(R"({"task_id": "t"})");
  REQUIRE(wait.has_value());
  CHECK(wait->timeout_seconds == limits::wait_timeout_default);
  CHECK(parse_wait_request(R"({"task_id": "t", "timeout": 0})")->timeout_seconds == 0);
  CHECK(only_field_error(parse_wait_request(R"({"task_id": "t", "timeout": 3601})")).loc == Loc{"body", "timeout"});
  CHECK(only_field_error(parse_wait_request(R"({"task_id": "a b"})")).type == "string_pattern_mismatch");

  CHECK(parse_destroy_request(R"({"task_id": "t"})")->task_id == "t");
  CHECK(only_field_error(parse_destroy_request("{}")).type == "missing");
}

TEST_CASE("an extend body needs a task_id and ttl_seconds of 1 .. 86400", "[models][extend]") {
  auto parsed = parse_extend_request(R"({"task_id": "t", "ttl_seconds": 600})");
  REQUIRE(parsed.has_value());
  CHECK(parsed->task_id == "t");
  CHECK(parsed->ttl_seconds == 600);
  CHECK(parse_extend_request(R"({"task_id": "t", "ttl_seconds": 86400})").has_value());

  auto missing = field_errors(parse_extend_request("{}"));
  CHECK(has_error(missing, {"body", "task_id"}, "missing"));
  CHECK(has_error(missing, {"body", "ttl_seconds"}, "missing"));
  CHECK(only_field_error(parse_extend_request(R"({"task_id": "t", "ttl_seconds": 0})")).loc ==
        Loc{"body", "ttl_seconds"});
  CHECK(only_field_error(parse_extend_request(R"({"task_id": "t", "ttl_seconds": 86401})")).type == "less_than_equal");
  CHECK(only_field_error(parse_extend_request(R"({"task_id": "t", "ttl_seconds": "soon"})")).type == "int_type");
  CHECK(only_field_error(parse_extend_request(R"({"task_id": "a b", "ttl_seconds": 5})")).loc ==
        Loc{"body", "task_id"});
  CHECK(only_field_error(parse_extend_request("[1]")).loc == Loc{"body"});
}

TEST_CASE("an exec body defaults to 30 s in /", "[models][exec]") {
  auto request = parse_exec_request(R"({"command": "echo hi"})");
  REQUIRE(request.has_value());
  CHECK(request->command == "echo hi");
  CHECK(request->timeout_ms == 30000);
  CHECK(request->cwd == "/");
}

TEST_CASE("an exec body is bounded and needs an absolute cwd", "[models][exec]") {
  CHECK(parse_exec_request(R"({"command": "x", "timeout": 1, "cwd": "/tmp"})")->timeout_ms == 1);
  CHECK(parse_exec_request(R"({"command": "x", "timeout": 30000})")->timeout_ms == 30000);
  CHECK(only_field_error(parse_exec_request(R"({"command": "x", "timeout": 0})")).loc == Loc{"body", "timeout"});
  CHECK(only_field_error(parse_exec_request(R"({"command": "x", "timeout": 30001})")).type == "less_than_equal");
  CHECK(only_field_error(parse_exec_request(R"({"command": "x", "cwd": "tmp"})")).loc == Loc{"body", "cwd"});
  CHECK(only_field_error(parse_exec_request(R"({"command": "x", "cwd": ""})")).loc == Loc{"body", "cwd"});
  CHECK(only_field_error(parse_exec_request(R"({"timeout": 5})")).loc == Loc{"body", "command"});
}

TEST_CASE("a sandbox exec body carries a task_id and the exec fields", "[models][exec]") {
  auto request = parse_sandbox_exec_request(R"({"task_id": "t", "command": "ls", "cwd": "/work"})");
  REQUIRE(request.has_value());
  CHECK(request->task_id == "t");
  CHECK(request->exec.command == "ls");
  CHECK(request->exec.cwd == "/work");
  auto errors = field_errors(parse_sandbox_exec_request(R"({"command": "ls", "cwd": "rel"})"));
  CHECK(has_error(errors, {"body", "task_id"}, "missing"));
  CHECK(has_error(errors, {"body", "cwd"}, "value_error"));
}

TEST_CASE("the status query accepts the four statuses only", "[models][query]") {
  CHECK(parse_status_query("provisioning") == SandboxStatus::provisioning);
  CHECK(parse_status_query("running") == SandboxStatus::running);
  CHECK(parse_status_query("failed") == SandboxStatus::failed);
  CHECK(parse_status_query("destroyed") == SandboxStatus::destroyed);
  for (const char* value : {"", "Running", "alive"}) {
    INFO("status: " << value);
    auto error = only_field_error(parse_status_query(value));
    CHECK(error.loc == Loc{"query", "status"});
    CHECK(error.type == "enum");
  }
}

TEST_CASE("check_task_id reports at the location it is given", "[models]") {
  CHECK_FALSE(check_task_id("ok", {"path", "task_id"}).has_value());
  auto problem = check_task_id("no/slash", {"path", "task_id"});
  REQUIRE(problem.has_value());
  CHECK(problem->loc == Loc{"path", "task_id"});
}

TEST_CASE("ports are listed in the order given", "[models][provision][ports]") {
  auto request = parse_provision_request(R"({"task_id": "t", "ports": [8000, 5173, 1, 65535, 8080.0]})");
  REQUIRE(request.has_value());
  CHECK(request->ports == std::vector<int>{8000, 5173, 1, 65535, 8080});
  CHECK(parse_provision_request(R"({"task_id": "t", "ports": []})")->ports.empty());
  CHECK(parse_provision_request(R"({"task_id": "t", "ports": null})")->ports.empty());
  std::string sixteen = "[";
  for (int port = 1; port <= 16; ++port) sixteen += (port == 1 ? "" : ",") + std::to_string(port);
  CHECK(parse_provision_request(R"({"task_id": "t", "ports": )" + sixteen + "]}")->ports.size() == 16);
}

TEST_CASE("ports must be 1-65535, unique and at most 16", "[models][provision][ports]") {
  struct Case {
    const char* ports;
    Loc loc;
    const char* type;
  };
  std::string seventeen = "[";
  for (int port = 1; port <= 17; ++port) seventeen += (port == 1 ? "" : ",") + std::to_string(port);
  seventeen += "]";
  const Case cases[] = {
      {"[0]", {"body", "ports", "0"}, "greater_than_equal"},
      {"[8000, 65536]", {"body", "ports", "1"}, "less_than_equal"},
      {"[-1]", {"body", "ports", "0"}, "greater_than_equal"},
      {"[1e300]", {"body", "ports", "0"}, "less_than_equal"},
      {"[8000, 8001, 8000]", {"body", "ports"}, "value_error"},
      {seventeen.c_str(), {"body", "ports"}, "too_long"},
      {R"([8000, "8001"])", {"body", "ports", "1"}, "int_type"},
      {"[80.5]", {"body", "ports", "0"}, "int_type"},
      {"[true]", {"body", "ports", "0"}, "int_type"},
      {"[null]", {"body", "ports", "0"}, "int_type"},
      {"[[8000]]", {"body", "ports", "0"}, "int_type"},
      {R"("8000")", {"body", "ports"}, "list_type"},
      {"8000", {"body", "ports"}, "list_type"},
      {R"({"8000": 1})", {"body", "ports"}, "list_type"},
  };
  for (const auto& item : cases) {
    INFO("ports: " << item.ports);
    auto error =
        only_field_error(parse_provision_request(std::string(R"({"task_id": "t", "ports": )") + item.ports + "}"));
    CHECK(error.loc == item.loc);
    CHECK(error.type == item.type);
    CHECK_FALSE(error.msg.empty());
  }
}

TEST_CASE("every bad port is reported, each at its index", "[models][provision][ports]") {
  auto errors = field_errors(parse_provision_request(R"({"task_id": "t", "ports": [0, 80, "x", 70000]})"));
  CHECK(errors.size() == 3);
  CHECK(has_error(errors, {"body", "ports", "0"}, "greater_than_equal"));
  CHECK(has_error(errors, {"body", "ports", "2"}, "int_type"));
  CHECK(has_error(errors, {"body", "ports", "3"}, "less_than_equal"));
}

TEST_CASE("a provision's readiness_probe is a tcp or an exec probe with an interval", "[models][provision][readiness]") {
  SECTION("tcp, with the default interval") {
    auto request = parse_provision_request(R"({"task_id": "t", "readiness_probe": {"tcp": {"port": 8000}}})");
    REQUIRE(request.has_value());
    REQUIRE(request->readiness_probe.has_value());
    CHECK(request->readiness_probe->kind == ReadinessProbe::Kind::tcp);
    CHECK(request->readiness_probe->port == 8000);
    CHECK(request->readiness_probe->interval_ms == 100);
  }
  SECTION("exec, with interval_ms beside the type") {
    auto request = parse_provision_request(
        R"({"task_id": "t", "readiness_probe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "interval_ms": 50}})");
    REQUIRE(request.has_value());
    REQUIRE(request->readiness_probe.has_value());
    CHECK(request->readiness_probe->kind == ReadinessProbe::Kind::exec);
    CHECK(request->readiness_probe->command == std::vector<std::string>{"test", "-f", "/tmp/ready"});
    CHECK(request->readiness_probe->interval_ms == 50);
  }
  SECTION("null or absent: no probe") {
    CHECK_FALSE(parse_provision_request(R"({"task_id": "t", "readiness_probe": null})")->readiness_probe.has_value());
    CHECK_FALSE(parse_provision_request(R"({"task_id": "t"})")->readiness_probe.has_value());
  }
  SECTION("written back by the client as it was given") {
    auto request = parse_provision_request(
        R"({"task_id": "t", "readiness_probe": {"exec": {"command": ["true"]}, "interval_ms": 10}})");
    REQUIRE(request.has_value());
    auto again = parse_provision_request(provision_request_to_json(*request));
    REQUIRE(again.has_value());
    CHECK(again->readiness_probe == request->readiness_probe);
  }
}

TEST_CASE("a bad readiness_probe is a 422 naming where it is wrong", "[models][provision][readiness]") {
  struct Case {
    const char* probe;
    Loc loc;
    const char* type;
  };
  const Loc probe{"body", "readiness_probe"};
  auto at = [&](std::initializer_list<std::string> more) {
    Loc loc = probe;
    loc.insert(loc.end(), more);
    return loc;
  };
  std::vector<Case> cases = {
      {R"("tcp")", probe, "dict_type"},
      {R"({})", probe, "value_error"},
      {R"({"grpc": {"port": 1}})", at({"grpc"}), "extra_forbidden"},
      {R"({"http": {"port": 8000}})", at({"http"}), "extra_forbidden"},
      {R"({"tcp": {"port": 1}, "exec": {"command": ["true"]}})", probe, "value_error"},
      {R"({"tcp": 8000})", at({"tcp"}), "dict_type"},
      {R"({"tcp": {}})", at({"tcp", "port"}), "missing"},
      {R"({"tcp": {"port": 0}})", at({"tcp", "port"}), "greater_than_equal"},
      {R"({"tcp": {"port": 65536}})", at({"tcp", "port"}), "less_than_equal"},
      {R"({"tcp": {"port": "8000"}})", at({"tcp", "port"}), "int_type"},
      {R"({"tcp": {"port": 80, "host": "x"}})", at({"tcp", "host"}), "extra_forbidden"},
      {R"({"tcp": {"port": 80}, "interval_ms": 9})", at({"interval_ms"}), "greater_than_equal"},
      {R"({"tcp": {"port": 80}, "interval_ms": 60001})", at({"interval_ms"}), "less_than_equal"},
      {R"({"exec": {"command": "test -f /tmp/ready"}})", at({"exec", "command"}), "list_type"},
      {R"({"exec": {"command": []}})", at({"exec", "command"}), "too_short"},
      {R"({"exec": {"command": ["test", 1]}})", at({"exec", "command", "1"}), "string_type"},
      {R"({"exec": {}})", at({"exec", "command"}), "missing"},
      {R"({"exec": {"command": ["a\u0000b"]}})", at({"exec", "command", "0"}), "value_error"},
  };
  for (const auto& [text, loc, type] : cases) {
    INFO(text);
    auto error = only_field_error(parse_provision_request(std::string(R"({"task_id": "t", "readiness_probe": )") + text + "}"));
    CHECK(error.loc == loc);
    CHECK(error.type == type);
  }
}

TEST_CASE("a provision's idle timeout, tags and network are parsed", "[models][provision][idle][tags][network]") {
  auto request = parse_provision_request(
      R"({"task_id": "t", "idle_timeout_seconds": 300, "tags": {"team": "ml", "run": ""}, "network": "none"})");
  REQUIRE(request.has_value());
  CHECK(request->idle_timeout_seconds == 300);
  CHECK(request->tags == std::map<std::string, std::string>{{"team", "ml"}, {"run", ""}});
  CHECK(request->network == "none");
  auto plain = parse_provision_request(R"({"task_id": "t", "tags": null, "network": null})");
  REQUIRE(plain.has_value());
  CHECK_FALSE(plain->idle_timeout_seconds.has_value());
  CHECK(plain->tags.empty());
  CHECK_FALSE(plain->network.has_value());
}

TEST_CASE("idle_timeout_seconds is bounded to 1 .. 86400", "[models][provision][idle]") {
  auto zero = only_field_error(parse_provision_request(R"({"task_id": "t", "idle_timeout_seconds": 0})"));
  CHECK(zero.loc == Loc{"body", "idle_timeout_seconds"});
  CHECK(zero.type == "greater_than_equal");
  auto big = only_field_error(parse_provision_request(R"({"task_id": "t", "idle_timeout_seconds": 86401})"));
  CHECK(big.type == "less_than_equal");
  auto text = only_field_error(parse_provision_request(R"({"task_id": "t", "idle_timeout_seconds": "5"})"));
  CHECK(text.type == "int_type");
  CHECK(parse_provision_request(R"({"task_id": "t", "idle_timeout_seconds": 86400})").has_value());
}

TEST_CASE("tags are at most 64 strings, keys and values at most 256 bytes", "[models][provision][tags]") {
  auto not_object = only_field_error(parse_provision_request(R"({"task_id": "t", "tags": ["a"]})"));
  CHECK(not_object.loc == Loc{"body", "tags"});
  CHECK(not_object.type == "dict_type");

  std::string many = R"({"task_id": "t", "tags": {)";
  for (int i = 0; i < 65; ++i) many += (i ? "," : "") + ("\"k" + std::to_string(i) + "\": \"v\"");
  auto too_many = only_field_error(parse_provision_request(many + "}}"));
  CHECK(too_many.loc == Loc{"body", "tags"});
  CHECK(too_many.type == "too_long");

  std::string long_text(257, 'x');
  auto long_value =
      only_field_error(parse_provision_request(R"({"task_id": "t", "tags": {"k": ")" + long_text + "\"}}"));
  CHECK(long_value.loc == Loc{"body", "tags", "k"});
  CHECK(long_value.type == "string_too_long");
  auto long_key =
      only_field_error(parse_provision_request(R"({"task_id": "t", "tags": {")" + long_text + "\": \"v\"}}"));
  CHECK(long_key.loc == Loc{"body", "tags", long_text});

  auto errors = field_errors(parse_provision_request(R"({"task_id": "t", "tags": {"n": 1, "": "v", "a=b": "v"}})"));
  CHECK(has_error(errors, {"body", "tags", "n"}, "string_type"));
  CHECK(has_error(errors, {"body", "tags", ""}, "value_error"));
  CHECK(has_error(errors, {"body", "tags", "a=b"}, "value_error"));

  std::string exactly = R"({"task_id": "t", "tags": {)";
  for (int i = 0; i < 64; ++i) exactly += (i ? "," : "") + ("\"k" + std::to_string(i) + "\": \"v\"");
  CHECK(parse_provision_request(exactly + "}}").has_value());
  CHECK(parse_provision_request(R"({"task_id": "t", "tags": {")" + std::string(256, 'k') + R"(": ")" +
                                std::string(256, 'v') + "\"}}")
            .has_value());
}

TEST_CASE("network accepts only \"none\"", "[models][provision][network]") {
  for (const char* body : {R"({"task_id": "t", "network": "bridge"})", R"({"task_id": "t", "network": ""})",
                           R"({"task_id": "t", "network": "host"})"}) {
    auto error = only_field_error(parse_provision_request(body));
    CHECK(error.loc == Loc{"body", "network"});
    CHECK(error.type == "literal_error");
  }
  auto number = only_field_error(parse_provision_request(R"({"task_id": "t", "network": 1})"));
  CHECK(number.type == "string_type");
}

TEST_CASE("tag filters are key=value, repeated and ANDed", "[models][query][tags]") {
  auto filters = parse_tag_queries({"team=ml", "run=", "url=a=b"});
  REQUIRE(filters.has_value());
  CHECK(*filters == std::vector<TagFilter>{{"team", "ml"}, {"run", ""}, {"url", "a=b"}});
  for (const std::string& bad :
       std::vector<std::string>{"noequals", "=value", std::string(257, 'k') + "=v", "k=" + std::string(257, 'v')}) {
    auto error = only_field_error(parse_tag_queries({"team=ml", bad}));
    CHECK(error.loc == Loc{"query", "tag"});
  }

  Sandbox sandbox;
  sandbox.status = SandboxStatus::running;
  sandbox.tags = {{"team", "ml"}, {"run", "7"}};
  CHECK(matches(sandbox, {}));
  CHECK(matches(sandbox, {.status = std::nullopt, .tags = {{"team", "ml"}}}));
  CHECK(matches(sandbox, {.status = SandboxStatus::running, .tags = {{"team", "ml"}, {"run", "7"}}}));
  CHECK_FALSE(matches(sandbox, {.status = std::nullopt, .tags = {{"team", "ml"}, {"run", "8"}}}));
  CHECK_FALSE(matches(sandbox, {.status = std::nullopt, .tags = {{"missing", ""}}}));
  CHECK_FALSE(matches(sandbox, {.status = SandboxStatus::destroyed, .tags = {}}));
}

TEST_CASE("a provision's command is a non-empty list of strings", "[models][provision][entrypoint]") {
  auto request = parse_provision_request(R"({"task_id": "t", "command": ["sh", "-c", "echo hi; exit 3"]})");
  REQUIRE(request.has_value());
  CHECK(request->command == std::vector<std::string>{"sh", "-c", "echo hi; exit 3"});
  CHECK(parse_provision_request(R"({"task_id": "t", "command": null})")->command.empty());
  CHECK(parse_provision_request(R"({"task_id": "t"})")->command.empty());

  auto not_list = only_field_error(parse_provision_request(R"({"task_id": "t", "command": "echo hi"})"));
  CHECK(not_list.loc == Loc{"body", "command"});
  CHECK(not_list.type == "list_type");
  auto empty = only_field_error(parse_provision_request(R"({"task_id": "t", "command": []})"));
  CHECK(empty.loc == Loc{"body", "command"});
  CHECK(empty.type == "too_short");
  auto errors = field_errors(parse_provision_request(R"({"task_id": "t", "command": ["ok", 3, "a\u0000b"]})"));
  CHECK(has_error(errors, {"body", "command", "1"}, "string_type"));
  CHECK(has_error(errors, {"body", "command", "2"}, "value_error"));
  // The request round-trips through the JSON the CLI sends.
  auto again = parse_provision_request(provision_request_to_json(*request));
  REQUIRE(again.has_value());
  CHECK(again->command == request->command);
}

TEST_CASE("the logs query: follow a boolean, tail a count of lines", "[models][logs]") {
  auto plain = parse_logs_query({});
  REQUIRE(plain.has_value());
  CHECK_FALSE(plain->follow);
  CHECK_FALSE(plain->tail.has_value());
  auto both = parse_logs_query({{"follow", "true"}, {"tail", "20"}});
  REQUIRE(both.has_value());
  CHECK(both->follow);
  CHECK(both->tail == 20u);
  CHECK(parse_logs_query({{"follow", "0"}, {"tail", "0"}})->tail == 0u);
  CHECK(only_field_error(parse_logs_query({{"follow", "maybe"}})).loc == Loc{"query", "follow"});
  CHECK(only_field_error(parse_logs_query({{"tail", "-1"}})).type == "greater_than_equal");
  CHECK(only_field_error(parse_logs_query({{"tail", "ten"}})).type == "int_parsing");
  CHECK(only_field_error(parse_logs_query({{"tail", "1000001"}})).type == "less_than_equal");
  CHECK(only_field_error(parse_logs_query({{"tail", "99999999999"}})).loc == Loc{"query", "tail"});
}
