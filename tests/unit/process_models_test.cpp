// The background processes API's requests and answers: validation into FastAPI-shaped 422s (a
// signal that does not exist among them), and the JSON that the CLI reads back.

#include "common/process_models.h"

#include <catch2/catch.hpp>
#include <signal.h>

using namespace modbox;

namespace {

std::vector<std::string> loc_of(const Error& error) {
  REQUIRE(error.kind == ErrorKind::validation);
  REQUIRE_FALSE(error.fields.empty());
  return error.fields.front().loc;
}

}  // namespace

TEST_CASE("a process start needs a command; cwd is absolute; env holds variables", "[process-models]") {
  auto parsed = parse_process_start_request(R"({"command":"sleep 1","cwd":"/tmp","env":{"A":"1"}})");
  REQUIRE(parsed.has_value());
  CHECK(parsed->command == "sleep 1");
  CHECK(parsed->cwd == "/tmp");
  CHECK(parsed->env == std::map<std::string, std::string>{{"A", "1"}});
  CHECK(parse_process_start_request(R"({"command":"x"})")->cwd == "/");
  CHECK(loc_of(parse_process_start_request("{}").error()) == std::vector<std::string>{"body", "command"});
  CHECK(loc_of(parse_process_start_request(R"({"command":"x","cwd":"tmp"})").error()) ==
        std::vector<std::string>{"body", "cwd"});
  CHECK(loc_of(parse_process_start_request(R"({"command":"x","env":{"1A":"x"}})").error()) ==
        std::vector<std::string>{"body", "env", "1A"});
  CHECK(loc_of(parse_process_start_request(R"({"command":"x","env":[]})").error()) ==
        std::vector<std::string>{"body", "env"});
  CHECK(parse_process_start_request("[1]").error().kind == ErrorKind::validation);
}

TEST_CASE("signals by name, short name, any case or number; others are 422 at body.signal", "[process-models]") {
  CHECK(parse_signal("SIGTERM") == SIGTERM);
  CHECK(parse_signal("TERM") == SIGTERM);
  CHECK(parse_signal("kill") == SIGKILL);
  CHECK(parse_signal("9") == SIGKILL);
  CHECK(parse_signal("SIGRTMIN+2") == 36);
  CHECK_FALSE(parse_signal("SIGNOPE").has_value());
  CHECK_FALSE(parse_signal("0").has_value());
  CHECK_FALSE(parse_signal("65").has_value());
  CHECK_FALSE(parse_signal("99999999999999999999").has_value());
  CHECK_FALSE(parse_signal("").has_value());
  CHECK(parse_process_signal_request(R"({"signal":"SIGINT"})")->signal == SIGINT);
  CHECK(parse_process_signal_request(R"({"signal":15})")->signal == SIGTERM);
  for (const char* body : {R"({"signal":"SIGNOPE"})", R"({"signal":0})", R"({"signal":true})", "{}"}) {
    INFO(body);
    auto refused = parse_process_signal_request(body);
    REQUIRE_FALSE(refused.has_value());
    CHECK(loc_of(refused.error()) == std::vector<std::string>{"body", "signal"});
  }
}

TEST_CASE("stdin takes text or base64, and close", "[process-models]") {
  CHECK(parse_process_stdin_request(R"({"data":"hi\n"})")->data == "hi\n");
  auto binary = parse_process_stdin_request(R"({"data_base64":"AP8=","close":true})");
  REQUIRE(binary.has_value());
  CHECK(binary->data == std::string("\0\xff", 2));
  CHECK(binary->close);
  CHECK(parse_process_stdin_request(R"({"close":true})")->data.empty());
  CHECK(loc_of(parse_process_stdin_request(R"({"data_base64":"A"})").error()) ==
        std::vector<std::string>{"body", "data_base64"});
  CHECK(loc_of(parse_process_stdin_request(R"({"data":"a","data_base64":"YQ=="})").error()) ==
        std::vector<std::string>{"body"});
  CHECK(loc_of(parse_process_stdin_request("{}").error()) == std::vector<std::string>{"body"});
  CHECK(loc_of(parse_process_stdin_request(R"({"data":1})").error()) == std::vector<std::string>{"body", "data"});
}

TEST_CASE("a process's JSON reads back", "[process-models]") {
  BackgroundProcess process;
  process.id = 3;
  process.command = "sleep 1";
  process.cwd = "/";
  process.state = ProcessState::exited;
  process.exit_code = 143;
  process.signal = "SIGTERM";
  process.started_at = TimePoint(std::chrono::milliseconds(1'700'000'000'000));
  process.ended_at = TimePoint(std::chrono::milliseconds(1'700'000'001'500));
  process.stdout_bytes = 12;
  auto back = background_process_from_json(background_process_to_json(process));
  REQUIRE(back.has_value());
  CHECK(back->id == 3);
  CHECK(back->state == ProcessState::exited);
  CHECK(back->exit_code == 143);
  CHECK(back->signal == "SIGTERM");
  CHECK(back->ended_at == process.ended_at);
  CHECK(back->stdout_bytes == 12);
  auto listed = background_processes_from_json(background_processes_to_json({process, BackgroundProcess{.id = 4}}));
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 2);
  CHECK((*listed)[1].state == ProcessState::running);
  CHECK_FALSE((*listed)[1].exit_code.has_value());
  auto end = process_read_end_from_json(process_read_end_to_json({process, true}));
  REQUIRE(end.has_value());
  CHECK(end->truncated);
  CHECK(end->process.id == 3);
}
