// The terminal's WebSocket protocol (common/terminal_protocol.h): the session's options from the
// query, the client's control messages (and what is refused without ending the session), the
// server's events, and pipe output framing.

#include "common/terminal_protocol.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace modbox;
using namespace modbox::terminal;
using Query = std::multimap<std::string, std::string>;

TEST_CASE("terminal query: defaults are an 80x24 interactive shell on a terminal", "[terminal]") {
  auto options = session_options_from_query({});
  REQUIRE(options.has_value());
  CHECK(options->tty);
  CHECK(options->cols == 80);
  CHECK(options->rows == 24);
  CHECK(options->command.empty());
  CHECK(options->cwd.empty());
  CHECK(options->env.empty());
}

TEST_CASE("terminal query: size, pipes, command, cwd and env are read", "[terminal]") {
  auto options = session_options_from_query({{"cols", "132"},
                                             {"rows", "1000"},
                                             {"tty", "0"},
                                             {"command", "cat -u"},
                                             {"cwd", "/tmp"},
                                             {"env", "A=1"},
                                             {"env", "B=x=y"},
                                             {"other", "ignored"}});
  REQUIRE(options.has_value());
  CHECK(options->cols == 132);
  CHECK(options->rows == 1000);
  CHECK_FALSE(options->tty);
  CHECK(options->command == "cat -u");
  CHECK(options->cwd == "/tmp");
  CHECK(options->env == std::vector<std::string>{"A=1", "B=x=y"});
}

TEST_CASE("terminal query: values out of range are 422 at their parameter", "[terminal]") {
  auto refused_at = [](const Query& query) -> std::string {
    auto options = session_options_from_query(query);
    if (options) return "accepted";
    CHECK(options.error().kind == ErrorKind::validation);
    REQUIRE(!options.error().fields.empty());
    CHECK(options.error().fields.front().loc.front() == "query");
    return options.error().fields.front().loc.back();
  };
  CHECK(refused_at({{"cols", "0"}}) == "cols");
  CHECK(refused_at({{"cols", "1001"}}) == "cols");
  CHECK(refused_at({{"rows", "-1"}}) == "rows");
  CHECK(refused_at({{"rows", "24x"}}) == "rows");
  CHECK(refused_at({{"rows", ""}}) == "rows");
  CHECK(refused_at({{"cols", "99999999999999999999"}}) == "cols");
  CHECK(refused_at({{"tty", "yes"}}) == "tty");
  CHECK(refused_at({{"cwd", "relative/dir"}}) == "cwd");
  CHECK(refused_at({{"env", "=nameless"}}) == "env");
  CHECK(refused_at({{"env", "NOEQUALS"}}) == "env");
  CHECK(refused_at({{"command", std::string("a\0b", 3)}}) == "command");
  CHECK(refused_at({{"cols", "1"}, {"rows", "1"}}) == "accepted");
}

TEST_CASE("terminal query: what a client asks for reads back the same", "[terminal]") {
  SessionOptions asked{.tty = false,
                       .cols = 100,
                       .rows = 40,
                       .command = "printf '%s\\n' \"a b\" && echo ü&x=1",
                       .cwd = "/work space",
                       .env = {"TERM=screen", "X=a&b"}};
  std::string query = session_query(asked);
  CHECK(query.find(' ') == std::string::npos);
  CHECK(query.find("&x=1") == std::string::npos);
  // The front decodes the query as parse_query does: %XX escapes, repeated names kept.
  Query decoded;
  std::string_view rest(query);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto equals = pair.find('=');
    std::string value;
    for (std::size_t i = equals + 1; i < pair.size(); ++i) {
      if (pair[i] == '%') {
        value += static_cast<char>(std::stoi(std::string(pair.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        value += pair[i];
      }
    }
    decoded.emplace(std::string(pair.substr(0, equals)), value);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
  }
  auto read = session_options_from_query(decoded);
  REQUIRE(read.has_value());
  CHECK_FALSE(read->tty);
  CHECK(read->command == asked.command);
  CHECK(read->cwd == asked.cwd);
  CHECK(read->env == asked.env);
}

TEST_CASE("terminal control: resize, signal, eof, input, pause and resume", "[terminal]") {
  auto resize = parse_control(R"({"type":"resize","cols":120,"rows":40})");
  REQUIRE(resize.has_value());
  REQUIRE(std::holds_alternative<Resize>(*resize));
  CHECK(std::get<Resize>(*resize).cols == 120);
  CHECK(std::get<Resize>(*resize).rows == 40);

  for (const char* name : {"SIGINT", "INT", "int"}) {
    auto signal = parse_control(std::string(R"({"type":"signal","signal":")") + name + "\"}");
    REQUIRE(signal.has_value());
    CHECK(std::get<Signal>(*signal).number == 2);
  }
  CHECK(std::holds_alternative<EndOfInput>(*parse_control(R"({"type":"eof"})")));
  CHECK(std::holds_alternative<Pause>(*parse_control(R"({"type":"pause"})")));
  CHECK(std::holds_alternative<Resume>(*parse_control(R"({"type":"resume"})")));
  auto input = parse_control(R"({"type":"input","data":"ls\r"})");
  REQUIRE(input.has_value());
  CHECK(std::get<Input>(*input).bytes == "ls\r");
}

TEST_CASE("terminal control: what is refused says why", "[terminal]") {
  for (const char* text : {R"({"type":"resize","cols":0,"rows":24})", R"({"type":"resize","cols":80,"rows":0})",
                           R"({"type":"resize","cols":1001,"rows":24})", R"({"type":"resize","cols":-5,"rows":24})",
                           R"({"type":"resize","cols":80.5,"rows":24})", R"({"type":"resize","cols":"80","rows":24})",
                           R"({"type":"resize"})"}) {
    INFO(text);
    auto refused = parse_control(text);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().message.find("1 to 1000") != std::string::npos);
  }
  for (const char* text :
       {"", "not json", "[1,2]", R"({"no":"type"})", R"({"type":3})", R"({"type":"explode"})",
        R"({"type":"signal","signal":"SIGNOPE"})", R"({"type":"signal","signal":9})", R"({"type":"input","data":7})"}) {
    INFO(text);
    auto refused = parse_control(text);
    REQUIRE_FALSE(refused.has_value());
    CHECK_FALSE(refused.error().message.empty());
  }
}

TEST_CASE("terminal control: a client's messages parse back", "[terminal]") {
  for (const Control& control :
       std::vector<Control>{Resize{100, 30}, Signal{15}, EndOfInput{}, Input{"echo hi\r"}, Pause{}, Resume{}}) {
    auto back = parse_control(control_message(control));
    REQUIRE(back.has_value());
    CHECK(back->index() == control.index());
  }
  CHECK(std::get<Signal>(*parse_control(control_message(Signal{15}))).number == 15);
}

TEST_CASE("terminal events: ready, exit and error, and what a client refuses", "[terminal]") {
  CHECK(nlohmann::json::parse(event_message(Ready{42})) == nlohmann::json{{"type", "ready"}, {"pid", 42}});
  CHECK(nlohmann::json::parse(event_message(Exited{3, ""})) == nlohmann::json{{"type", "exit"}, {"exit_code", 3}});
  CHECK(nlohmann::json::parse(event_message(Exited{137, "SIGKILL"})) ==
        nlohmann::json{{"type", "exit"}, {"exit_code", 137}, {"signal", "SIGKILL"}});
  CHECK(nlohmann::json::parse(event_message(Failed{"bad"})) == nlohmann::json{{"type", "error"}, {"message", "bad"}});

  auto exited = parse_event(event_message(Exited{137, "SIGKILL"}));
  REQUIRE(exited.has_value());
  CHECK(std::get<Exited>(*exited).exit_code == 137);
  CHECK(std::get<Exited>(*exited).signal == "SIGKILL");
  CHECK(std::get<Ready>(*parse_event(event_message(Ready{7}))).pid == 7);
  CHECK(std::get<Failed>(*parse_event(event_message(Failed{"why"}))).message == "why");
  for (const char* text : {"", "{}", R"({"type":"exit"})", R"({"type":"ready","pid":-1})", R"({"type":"nope"})"})
    CHECK_FALSE(parse_event(text).has_value());
  // Bytes that are not UTF-8 in a sentence cannot break the JSON.
  CHECK(nlohmann::json::parse(event_message(Failed{"\xff\xfe"}), nullptr, false).is_object());
}

TEST_CASE("terminal output on pipes starts with its stream's byte", "[terminal]") {
  CHECK(pipe_output_message(OutputStream::stdout_stream, "out") == std::string("\x01out"));
  CHECK(pipe_output_message(OutputStream::stderr_stream, "") == std::string("\x02"));
}
