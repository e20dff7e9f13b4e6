// Interactive sessions of the real modbox-helper binary, run on the host and driven through the
// agent's helper client: a shell on a terminal (prompt, input, size, resize, exit status), a
// command on pipes (stdin streamed in, stdout and stderr apart), the session's whole tree killed
// when the agent goes away, the bound on sessions, and output delivered complete before Exit.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/unit/helper_process.h"

using namespace modbox;
using namespace modbox::testing;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto patience = std::chrono::seconds(10);

/// The agent's end of a session: sends frames, gathers Output until a condition or Exit holds.
class SessionClient {
 public:
  SessionClient(HelperProcess& helper, helper::SessionOpen request) {
    auto session = expect_value(helper.client().open_session(helper.socket(), request));
    connection_ = std::move(session.connection);
    pid_ = static_cast<pid_t>(session.pid);
  }

  void send(const helper::Message& message) {
    std::string bytes = helper::encode(message);
    REQUIRE(::send(connection_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  void type(const std::string& text) { send(helper::Data{text}); }

  /// Reads until stdout holds `text` after what earlier waits consumed; false at the deadline or Exit.
  bool wait_for(const std::string& text) {
    return read_until([&] { return stdout_.find(text, consumed_) != std::string::npos; }) &&
           (consumed_ = stdout_.find(text, consumed_) + text.size(), true);
  }
  /// Reads until `pattern` matches stdout after what earlier waits consumed: the first group.
  std::optional<std::string> wait_for_match(const std::string& pattern) {
    std::regex expression(pattern);
    std::smatch match;
    auto search = [&] {
      std::string rest = stdout_.substr(consumed_);
      return std::regex_search(rest, match, expression);
    };
    if (!read_until(search)) return std::nullopt;
    std::string rest = stdout_.substr(consumed_);
    std::regex_search(rest, match, expression);
    consumed_ += static_cast<std::size_t>(match.position(0) + match.length(0));
    return match.size() > 1 ? match[1].str() : match[0].str();
  }
  /// Reads until Exit.
  helper::Exit wait_exit() {
    read_until([] { return false; });
    REQUIRE(exit_.has_value());
    return *exit_;
  }
  void close() { connection_.reset(); }

  pid_t pid() const { return pid_; }
  const std::string& out() const { return stdout_; }
  const std::string& err() const { return stderr_; }
  std::size_t output_frames() const { return output_frames_; }

 private:
  template <class Condition>
  bool read_until(Condition done) {
    auto deadline = Clock::now() + patience;
    while (!done()) {
      if (exit_) return false;
      auto message = decoder_.next();
      REQUIRE(message.has_value());
      if (*message) {
        take(**message);
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd entry{connection_.get(), POLLIN, 0};
      if (::poll(&entry, 1, static_cast<int>(left)) <= 0) continue;
      char buffer[65536];
      ssize_t got = ::recv(connection_.get(), buffer, sizeof buffer, 0);
      if (got <= 0) return false;
      decoder_.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
    }
    return true;
  }
  void take(const helper::Message& message) {
    if (auto* output = std::get_if<helper::Output>(&message)) {
      ++output_frames_;
      CHECK(output->data.size() <= helper::output_chunk_max);
      (output->stream == helper::Stream::stdout_stream ? stdout_ : stderr_) += output->data;
    } else if (auto* exit = std::get_if<helper::Exit>(&message)) {
      exit_ = *exit;
    } else {
      FAIL("unexpected frame in a session");
    }
  }

  UniqueFd connection_;
  pid_t pid_ = -1;
  helper::FrameDecoder decoder_;
  std::string stdout_;
  std::string stderr_;
  std::size_t consumed_ = 0;
  std::size_t output_frames_ = 0;
  std::optional<helper::Exit> exit_;
};

helper::SessionOpen terminal(std::uint16_t cols = 80, std::uint16_t rows = 24, std::string command = "") {
  return {true, cols, rows, std::move(command), "", {}};
}

helper::SessionOpen piped(std::string command) {
  return {false, 0, 0, std::move(command), "", {}};
}

/// Every "pid=N" in `text`.
std::vector<pid_t> printed_pids(const std::string& text) {
  std::vector<pid_t> pids;
  std::regex pattern("pid=([0-9]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern); it != std::sregex_iterator(); ++it)
    pids.push_back(std::stoi((*it)[1].str()));
  return pids;
}

bool has_child_named(pid_t parent, const std::string& name) {
  std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
  for (pid_t child = 0; children >> child;) {
    std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
    std::string command;
    if (std::getline(comm, command) && command == name) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("session: a shell on a terminal prompts, runs what is typed, and follows resizes", "[session]") {
  HelperProcess helper;
  SessionClient shell(helper, terminal(80, 24));
  // bash -i's default prompt ends in "$ " ("# " as root).
  REQUIRE(shell.wait_for_match("[$#] $").has_value());
  shell.type("echo $((6*7))\n");
  // What the shell prints: the echoed input has no 42 (readline adds escapes around the line).
  CHECK(shell.wait_for("42\r\n"));
  shell.type("stty size; echo \"term=$TERM shell=$$ greeting=$GREETING\"\n");
  CHECK(shell.wait_for("24 80\r\n"));
  CHECK(shell.wait_for("term=xterm-256color shell=" + std::to_string(shell.pid()) + " greeting=hi there"));
  shell.send(helper::SessionResize{120, 40});
  shell.type("stty size\n");
  CHECK(shell.wait_for("40 120\r\n"));
  // Out of range: ignored, and the session goes on with its size.
  shell.send(helper::SessionResize{0, 40});
  shell.send(helper::SessionResize{5000, 5000});
  shell.type("stty size; tty\n");
  CHECK(shell.wait_for("40 120\r\n"));
  CHECK(shell.wait_for("/dev/pts/"));
  shell.type("exit 3\n");
  auto exit = shell.wait_exit();
  CHECK(exit.exit_code == 3);
  CHECK(exit.signal.empty());
  CHECK(exit.shell.find("bash") != std::string::npos);
  CHECK(eventually([&] { return process_gone(shell.pid()); }));
}

TEST_CASE("session: a signal reaches the terminal's foreground job, not the shell", "[session]") {
  HelperProcess helper;
  SessionClient shell(helper, terminal());
  REQUIRE(shell.wait_for_match("[$#] $").has_value());
  shell.type("sleep 1000\n");
  // bash hands a job the terminal before it execs: a child named sleep is the foreground job.
  REQUIRE(eventually([&] { return has_child_named(shell.pid(), "sleep"); }));
  shell.send(helper::SessionSignal{SIGINT});
  shell.type("echo \"after=$?\"\n");
  CHECK(shell.wait_for("after=130"));
  shell.type("echo alive-$((1+1))\n");
  CHECK(shell.wait_for("alive-2\r\n"));
  // End writes the terminal's EOF character: the shell at an empty prompt exits. (Typed before
  // readline has set the terminal up, ^D would be the line discipline's, and lost on the switch.)
  REQUIRE(shell.wait_for_match("[$#] $").has_value());
  shell.send(helper::End{});
  CHECK(shell.wait_exit().exit_code == 0);
}

TEST_CASE("session: a command on a terminal gets the request's cwd and env, and its exit", "[session]") {
  HelperProcess helper;
  helper::SessionOpen request = terminal(100, 30, "pwd; echo \"$FOO\"; stty size; exit 7");
  request.cwd = "/tmp";
  request.env = {"FOO=bar baz", "TERM=vt100"};
  SessionClient command(helper, request);
  auto exit = command.wait_exit();
  CHECK(exit.exit_code == 7);
  CHECK(command.out() == "/tmp\r\nbar baz\r\n30 100\r\n");
  SessionClient terminal_type(helper, {true, 80, 24, "echo $TERM", "", {"TERM=vt100"}});
  terminal_type.wait_exit();
  CHECK(terminal_type.out() == "vt100\r\n");
  SessionClient nowhere(helper, {false, 0, 0, "pwd", "/no/such/dir", {}});
  CHECK(nowhere.wait_exit().exit_code == 1);
  CHECK_THAT(nowhere.err(), Catch::Contains("/no/such/dir"));
}

TEST_CASE("session: without a terminal, stdin streams in, End closes it, stdout and stderr stay apart", "[session]") {
  HelperProcess helper;
  SessionClient cat(helper, piped("cat; echo done >&2; exit 4"));
  cat.type("hello\n");
  CHECK(cat.wait_for("hello\n"));
  cat.type("world");
  CHECK(cat.wait_for("world"));
  cat.send(helper::End{});
  auto exit = cat.wait_exit();
  CHECK(exit.exit_code == 4);
  CHECK(cat.out() == "hello\nworld");
  CHECK(cat.err() == "done\n");
}

TEST_CASE("session: a signal on pipes goes to the command's process group", "[session]") {
  HelperProcess helper;
  SessionClient sleeper(helper, piped("sleep 1000"));
  sleeper.send(helper::SessionSignal{SIGTERM});
  auto exit = sleeper.wait_exit();
  CHECK(exit.exit_code == 128 + SIGTERM);
  CHECK(exit.signal == "SIGTERM");
}

TEST_CASE("session: the agent going away kills the session's whole tree", "[session]") {
  HelperProcess helper;
  KillLeftovers leftovers;
  SECTION("on a terminal, a job, a setsid'd process and the foreground job") {
    SessionClient shell(helper, terminal());
    REQUIRE(shell.wait_for_match("[$#] $").has_value());
    shell.type("sleep 1000 & echo pid=$!\n");
    shell.type("(setsid sleep 1000 & echo pid=$!)\n");
    REQUIRE(shell.wait_for_match("pid=[0-9]+\r\n").has_value());
    REQUIRE(shell.wait_for_match("pid=[0-9]+\r\n").has_value());
    shell.type("sleep 1000\n");
    auto pids = printed_pids(shell.out());
    REQUIRE(pids.size() == 2);
    pids.push_back(shell.pid());
    leftovers.pids = pids;
    for (pid_t pid : pids) CHECK_FALSE(process_gone(pid));
    REQUIRE(eventually([&] { return has_child_named(shell.pid(), "sleep"); }));
    shell.close();
    CHECK(eventually([&] { return all_gone(pids); }));
  }
  SECTION("on pipes") {
    SessionClient command(helper, piped("sleep 1000 & echo pid=$!; setsid sleep 1000 & echo pid=$!; cat"));
    REQUIRE(command.wait_for_match("pid=[0-9]+\n").has_value());
    REQUIRE(command.wait_for_match("pid=[0-9]+\n").has_value());
    auto pids = printed_pids(command.out());
    REQUIRE(pids.size() == 2);
    pids.push_back(command.pid());
    leftovers.pids = pids;
    for (pid_t pid : pids) CHECK_FALSE(process_gone(pid));
    command.close();
    CHECK(eventually([&] { return all_gone(pids); }));
  }
  // The helper serves on: its workers were reaped.
  CHECK(helper.run("echo ok").stdout_text == "ok\n");
}

TEST_CASE("session: output is complete and in bounded frames before Exit", "[session]") {
  HelperProcess helper;
  std::string expected;
  for (int i = 1; i <= 100000; ++i) expected += std::to_string(i) + "\n";
  SECTION("on pipes") {
    SessionClient seq(helper, piped("seq 1 100000"));
    CHECK(seq.wait_exit().exit_code == 0);
    CHECK(seq.out() == expected);
  }
  SECTION("on a terminal, which turns newlines into CRLF") {
    std::string crlf = std::regex_replace(expected, std::regex("\n"), "\r\n");
    SessionClient seq(helper, terminal(80, 24, "seq 1 100000"));
    CHECK(seq.wait_exit().exit_code == 0);
    CHECK(seq.out().size() == crlf.size());
    CHECK(seq.out() == crlf);
  }
  SECTION("from an interactive shell that exits right after printing") {
    SessionClient shell(helper, terminal());
    REQUIRE(shell.wait_for_match("[$#] $").has_value());
    shell.type("seq 1 100000; exit 5\n");
    CHECK(shell.wait_exit().exit_code == 5);
    CHECK(shell.out().find("\r\n99999\r\n100000\r\n") != std::string::npos);
  }
}

TEST_CASE("session: past the bound a session is refused with a sentence, and the others go on", "[session]") {
  HelperProcess helper;
  std::vector<std::unique_ptr<SessionClient>> sessions;
  for (int i = 0; i < 64; ++i) sessions.push_back(std::make_unique<SessionClient>(helper, piped("exec cat")));
  auto refused = helper.client().open_session(helper.socket(), piped("exec cat"));
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().kind == ErrorKind::unavailable);
  CHECK_THAT(refused.error().message, Catch::Contains("64 sessions"));
  sessions.front()->type("still here\n");
  CHECK(sessions.front()->wait_for("still here\n"));
  sessions.clear();
  // Once their workers are reaped, sessions open again.
  CHECK(eventually([&] { return helper.client().open_session(helper.socket(), piped("true")).has_value(); }));
}

namespace {

/// A field of /proc/PID/stat after the command name: 0 is the state, 1 the parent.
std::string stat_field(pid_t pid, int index) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string field;
  for (int i = 0; i <= index; ++i) fields >> field;
  return field;
}

/// Resident memory of `pid` in KiB, from /proc/PID/status.
long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

TEST_CASE("session: an agent that stops reading stops the command, not the worker's memory", "[session]") {
  HelperProcess helper;
  SessionClient yes(helper, piped("exec yes"));
  // Blocked on its full pipe: the worker stopped reading it (a worker that did not would let
  // `yes` run on, and grow).
  CHECK(eventually([&] { return stat_field(yes.pid(), 0) == "S"; }));
  pid_t worker = std::stoi(stat_field(yes.pid(), 1));
  CHECK(resident_kib(worker) < 16 * 1024);
  std::string lines;
  for (int i = 0; i < (64 << 10); ++i) lines += "y\n";
  CHECK(yes.wait_for(lines));
}

TEST_CASE("session: input for a command that does not read is held back at the agent", "[session]") {
  HelperProcess helper;
  auto session = expect_value(helper.client().open_session(helper.socket(), piped("exec sleep 1000")));
  ::fcntl(session.connection.get(), F_SETFL, O_NONBLOCK);
  std::string frame = helper::encode(helper::Data{std::string(64 << 10, 'x')});
  std::size_t accepted = 0;
  // Sends until the socket pushes back; bounded so that a worker without a bound fails the test.
  auto deadline = Clock::now() + patience;
  while (accepted < (64u << 20) && Clock::now() < deadline) {
    std::size_t at = accepted % frame.size();
    ssize_t sent = ::send(session.connection.get(), frame.data() + at, frame.size() - at, MSG_NOSIGNAL);
    if (sent > 0) {
      accepted += static_cast<std::size_t>(sent);
      continue;
    }
    REQUIRE(errno == EAGAIN);
    // Pushed back: give the worker the chance to take more, which it must not do for long.
    pollfd entry{session.connection.get(), POLLOUT, 0};
    if (::poll(&entry, 1, 500) == 0) break;
  }
  // The pipe (64 KiB), the worker's backlog and the socket buffers, not the 64 MiB offered.
  CHECK(accepted < (16u << 20));
  // Hanging up with the backlog full still ends the command (and leaves nothing behind on the host).
  auto sleeper = static_cast<pid_t>(session.pid);
  session.connection.reset();
  CHECK(eventually([&] { return process_gone(sleeper); }));
}
