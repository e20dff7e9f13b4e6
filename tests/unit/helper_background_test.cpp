// Streamed exec and background processes in the real modbox-helper binary (run on the host),
// driven through the agent's helper client: output as it comes, with no cap on a stream; processes
// that outlive their request, their kept output read late and followed, stdin, signals that reach
// the whole tree, and the table's bounds.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "common/system.h"
#include "tests/unit/helper_process.h"

using namespace modbox;
using namespace modbox::testing;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct ReadResult {
  std::vector<helper::Output> pieces;
  std::optional<helper::ProcessInfo> end;
  std::string stream(helper::Stream which) const {
    std::string text;
    for (const auto& piece : pieces)
      if (piece.stream == which) text += piece.data;
    return text;
  }
  std::string out() const { return stream(helper::Stream::stdout_stream); }
  std::string err() const { return stream(helper::Stream::stderr_stream); }
};

/// A whole read of a process's output (following it until it exits when `follow`), within `timeout`: a
/// deadline, not a speed claim (1 MiB read back in small pieces takes long under ASan on a loaded machine).
ReadResult read_all(HelperProcess& helper, std::uint32_t id, bool follow, std::chrono::milliseconds timeout = 120s) {
  auto output = expect_value(helper.client().read_process(helper.socket(), {id, follow}));
  ReadResult result;
  auto deadline = Clock::now() + timeout;
  while (!result.end && Clock::now() < deadline) {
    auto step = expect_value(output->next(100ms));
    if (step.output) result.pieces.push_back(std::move(*step.output));
    if (step.end) result.end = std::move(*step.end);
  }
  REQUIRE(result.end.has_value());
  return result;
}

helper::ProcessInfo start(HelperProcess& helper, const std::string& command, std::vector<std::string> env = {},
                          const std::string& cwd = "/") {
  return expect_value(helper.client().start_process(helper.socket(), {command, cwd, std::move(env)}));
}

std::optional<helper::ProcessInfo> listed(HelperProcess& helper, std::uint32_t id) {
  for (auto& info : expect_value(helper.client().list_processes(helper.socket())))
    if (info.id == id) return info;
  return std::nullopt;
}

bool has_exited(HelperProcess& helper, std::uint32_t id) {
  auto info = listed(helper, id);
  return info && info->state == helper::ProcessState::exited;
}

}  // namespace

TEST_CASE("a streamed exec hands over each piece of output as it is written", "[helper-background]") {
  // The command writes, then waits for the test: the first piece must arrive while it waits (no
  // time window to miss on a loaded machine), the second only after the test lets it go on.
  HelperProcess helper;
  TempDir dir;
  std::string go = (dir / "go").string();
  auto stream = expect_value(helper.client().exec_stream(
      helper.socket(), {"echo a; while [ ! -f " + go + " ]; do sleep 0.02; done; echo b >&2", 30000, "/"}));
  std::vector<helper::Output> pieces;
  std::optional<ExecResult> result;
  auto deadline = Clock::now() + 20s;
  while (pieces.empty() && !result && Clock::now() < deadline) {
    auto step = expect_value(stream->next(50ms));
    if (step.output) pieces.push_back(*step.output);
    if (step.result) result = step.result;
  }
  REQUIRE(pieces.size() == 1);
  REQUIRE_FALSE(result.has_value());  // the command is still waiting for `go`
  CHECK(pieces[0].data == "a\n");
  CHECK(pieces[0].stream == helper::Stream::stdout_stream);
  { std::ofstream(go) << "go"; }
  while (!result && Clock::now() < deadline) {
    auto step = expect_value(stream->next(50ms));
    if (step.output) pieces.push_back(*step.output);
    if (step.result) result = step.result;
  }
  REQUIRE(result.has_value());
  REQUIRE(pieces.size() == 2);
  CHECK(pieces[1].data == "b\n");
  CHECK(pieces[1].stream == helper::Stream::stderr_stream);
  CHECK(result->exit_code == 0);
  CHECK(result->stdout_text.empty());
  CHECK_FALSE(result->truncated);
}

TEST_CASE("a streamed exec has no 1 MiB cap, and going away cancels its command", "[helper-background]") {
  HelperProcess helper;
  {
    auto stream = expect_value(helper.client().exec_stream(helper.socket(), {"head -c 3000000 /dev/zero", 20000, "/"}));
    std::size_t received = 0;
    std::optional<ExecResult> result;
    while (!result) {
      auto step = expect_value(stream->next(1s));
      if (step.output) received += step.output->data.size();
      if (step.result) result = step.result;
    }
    CHECK(received == 3000000);
    CHECK_FALSE(result->truncated);
  }
  auto stream = expect_value(helper.client().exec_stream(helper.socket(), {"sleep 999 & echo $!; wait", 20000, "/"}));
  std::string text;
  while (pids_in(text).empty()) {
    auto step = expect_value(stream->next(1s));
    if (step.output) text += step.output->data;
  }
  auto background = pids_in(text);
  KillLeftovers leftovers{background};
  stream.reset();
  CHECK(eventually([&] { return all_gone(background); }, 5s));
}

TEST_CASE("a background process outlives its request, and its output is kept in order", "[helper-background]") {
  HelperProcess helper;
  // Paced: what lands in both pipes between two reads of the helper's has no order between them.
  std::string command = "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exit 4";
  auto info = start(helper, command);
  CHECK(info.id == 1);
  CHECK(info.state == helper::ProcessState::running);
  CHECK(info.command == command);
  CHECK(info.started_ms > 0);
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }));
  auto ended = *listed(helper, info.id);
  CHECK(ended.exit_code == 4);
  CHECK(ended.signal.empty());
  CHECK(ended.ended_ms >= ended.started_ms);
  CHECK(ended.stdout_bytes == 10);
  CHECK(ended.stderr_bytes == 4);
  CHECK_FALSE(ended.stdin_open);

  auto read = read_all(helper, info.id, false);
  REQUIRE(read.pieces.size() == 3);
  CHECK(read.pieces[0].data == "one\n");
  CHECK(read.pieces[1].data == "two\n");
  CHECK(read.pieces[1].stream == helper::Stream::stderr_stream);
  CHECK(read.pieces[2].data == "three\n");
  CHECK(read.end->state == helper::ProcessState::exited);
  CHECK(read.end->stdout_dropped == 0);
  // Read again: the same, as many times as asked.
  CHECK(read_all(helper, info.id, false).out() == "one\nthree\n");
}

TEST_CASE("an exec whose caller stops wanting it is given up and killed", "[helper-background]") {
  HelperProcess helper;
  TempDir dir;
  std::string pid_file = (dir / "pid").string();
  std::atomic<bool> wanted = true;
  std::thread caller_leaves([&] {
    // Once the command runs, the caller hangs up.
    eventually([&] { return std::filesystem::exists(pid_file); }, 20s);
    wanted = false;
  });
  auto started = Clock::now();
  auto result = helper.client().exec(helper.socket(), {"echo $$ > " + pid_file + "; sleep 30", 30000, "/"},
                                     [&] { return wanted.load(); });
  caller_leaves.join();
  REQUIRE_FALSE(result.has_value());
  CHECK(result.error().message == "the caller hung up; the command was killed");
  CHECK(Clock::now() - started < 20s);
  auto pid = std::stoi(read_file(pid_file).value_or("0"));
  REQUIRE(pid > 0);
  CHECK(eventually([&] { return ::kill(pid, 0) != 0; }, 10s));  // the helper killed the shell
}

TEST_CASE("following a process gives its output as it comes, then its exit", "[helper-background]") {
  // As above: the first line must come while the process waits for the test.
  HelperProcess helper;
  TempDir dir;
  std::string go = (dir / "go").string();
  auto info = start(helper, "echo line 1; while [ ! -f " + go + " ]; do sleep 0.02; done; echo line 2; echo line 3");
  auto output = expect_value(helper.client().read_process(helper.socket(), {info.id, true}));
  std::string text;
  std::optional<helper::ProcessInfo> end;
  auto deadline = Clock::now() + 20s;
  while (text.empty() && !end && Clock::now() < deadline) {
    auto step = expect_value(output->next(100ms));
    if (step.output) text += step.output->data;
    if (step.end) end = step.end;
  }
  CHECK(text == "line 1\n");
  REQUIRE_FALSE(end.has_value());  // still running, waiting for `go`
  { std::ofstream(go) << "go"; }
  while (!end && Clock::now() < deadline) {
    auto step = expect_value(output->next(100ms));
    if (step.output) text += step.output->data;
    if (step.end) end = step.end;
  }
  REQUIRE(end.has_value());
  CHECK(text == "line 1\nline 2\nline 3\n");
  CHECK(end->state == helper::ProcessState::exited);
  CHECK(end->exit_code == 0);
}

TEST_CASE("a reader that goes away leaves the process running", "[helper-background]") {
  HelperProcess helper;
  auto info = start(helper, "echo start; read line; echo got $line");
  {
    auto output = expect_value(helper.client().read_process(helper.socket(), {info.id, true}));
    auto step = expect_value(output->next(2s));
    REQUIRE(step.output);
  }
  CHECK_FALSE(has_exited(helper, info.id));
  REQUIRE(helper.client().write_process_stdin(helper.socket(), {info.id, "hello\n", true}));
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }));
  CHECK(read_all(helper, info.id, true).out() == "start\ngot hello\n");
}

TEST_CASE("stdin takes bytes in pieces and closes on request", "[helper-background]") {
  HelperProcess helper;
  auto info = start(helper, "cat; echo done");
  CHECK(listed(helper, info.id)->stdin_open);
  REQUIRE(helper.client().write_process_stdin(helper.socket(), {info.id, "abc", false}));
  REQUIRE(helper.client().write_process_stdin(helper.socket(), {info.id, std::string("d\0e\n", 4), false}));
  REQUIRE(helper.client().write_process_stdin(helper.socket(), {info.id, "", true}));
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }));
  CHECK(read_all(helper, info.id, false).out() == std::string("abcd\0e\ndone\n", 12));
  auto closed = helper.client().write_process_stdin(helper.socket(), {info.id, "more", false});
  CHECK(error_kind(closed) == ErrorKind::conflict);
}

TEST_CASE("the environment and cwd of a background process", "[helper-background]") {
  HelperProcess helper;
  auto info = start(helper, "echo \"$GREETING/$EXTRA\"; pwd", {"EXTRA=x y", "GREETING=overridden"}, "/tmp");
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }));
  CHECK(read_all(helper, info.id, false).out() == "overridden/x y\n/tmp\n");
}

TEST_CASE("a signal reaches the process's whole tree, also what left its session", "[helper-background]") {
  HelperProcess helper;
  auto info = start(helper, "sleep 999 & echo $!; setsid sleep 998 & echo $!; wait");
  std::vector<pid_t> tree;
  REQUIRE(eventually([&] {
    tree = pids_in(read_all(helper, info.id, false).out());
    return tree.size() == 2;
  }));
  KillLeftovers leftovers{tree};
  REQUIRE(eventually([&] { return session_of(tree[1]) == tree[1]; }));
  REQUIRE(helper.client().signal_process(helper.socket(), {info.id, SIGTERM}));
  CHECK(eventually([&] { return all_gone(tree); }, 5s));
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }));
  auto ended = *listed(helper, info.id);
  CHECK(ended.exit_code == 143);
  CHECK(ended.signal == "SIGTERM");
  auto again = helper.client().signal_process(helper.socket(), {info.id, SIGTERM});
  CHECK(error_kind(again) == ErrorKind::conflict);
}

TEST_CASE("SIGKILL kills the tree as an exec's timeout does, a process that ignores TERM too", "[helper-background]") {
  HelperProcess helper;
  auto info = start(helper, "trap '' TERM; (setsid sleep 997 & echo $!); echo ready; sleep 996 & wait");
  std::vector<pid_t> tree;
  REQUIRE(eventually([&] {
    auto text = read_all(helper, info.id, false).out();
    tree = pids_in(text.substr(0, text.find("ready")));
    return text.find("ready") != std::string::npos;
  }));
  KillLeftovers leftovers{tree};
  REQUIRE(helper.client().signal_process(helper.socket(), {info.id, SIGTERM}));
  CHECK_FALSE(eventually([&] { return has_exited(helper, info.id); }, 300ms));
  REQUIRE(helper.client().signal_process(helper.socket(), {info.id, SIGKILL}));
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }, 5s));
  CHECK(listed(helper, info.id)->exit_code == 137);
  CHECK(eventually([&] { return all_gone(tree); }, 5s));
}

TEST_CASE("an unknown process is not_found for every request", "[helper-background]") {
  HelperProcess helper;
  CHECK(expect_value(helper.client().list_processes(helper.socket())).empty());
  CHECK(error_kind(helper.client().read_process(helper.socket(), {42, false})) == ErrorKind::not_found);
  CHECK(error_kind(helper.client().signal_process(helper.socket(), {42, SIGTERM})) == ErrorKind::not_found);
  CHECK(error_kind(helper.client().write_process_stdin(helper.socket(), {42, "x", false})) == ErrorKind::not_found);
}

TEST_CASE("the last 1 MiB of each stream is kept; a late reader is told what is gone", "[helper-background]") {
  HelperProcess helper;
  auto info = start(helper, "head -c 3000000 /dev/zero | tr '\\0' a; echo end; echo small >&2");
  REQUIRE(eventually([&] { return has_exited(helper, info.id); }));
  auto read = read_all(helper, info.id, false);
  std::string out = read.out();
  CHECK(out.size() == helper::process_output_kept);
  CHECK(out.ends_with("aaaaend\n"));
  CHECK(read.err() == "small\n");
  CHECK(read.end->stdout_dropped == 3000004 - helper::process_output_kept);
  CHECK(read.end->stderr_dropped == 0);
  CHECK(read.end->stdout_bytes == 3000004);
}

TEST_CASE("the table runs 64 processes at most, and keeps the most recent ended ones", "[helper-background]") {
  HelperProcess helper;
  std::vector<std::uint32_t> sleepers;
  for (int i = 0; i < 64; ++i) sleepers.push_back(start(helper, "sleep 999").id);
  auto refused = helper.client().start_process(helper.socket(), {"true", "/", {}});
  CHECK(error_kind(refused) == ErrorKind::conflict);
  for (auto id : sleepers) REQUIRE(helper.client().signal_process(helper.socket(), {id, SIGKILL}));
  auto all_exited = [&] {
    auto all = expect_value(helper.client().list_processes(helper.socket()));
    return std::ranges::all_of(all, [](const auto& info) { return info.state == helper::ProcessState::exited; });
  };
  REQUIRE(eventually(all_exited));
  // Ended ones beyond 64 are forgotten, oldest first.
  std::uint32_t last = 0;
  for (int i = 0; i < 10; ++i) last = start(helper, "true").id;
  REQUIRE(eventually([&] { return has_exited(helper, last) && all_exited(); }));
  auto all = expect_value(helper.client().list_processes(helper.socket()));
  CHECK(all.size() == 64);
  CHECK(all.front().id == sleepers[10]);
  CHECK(all.back().id == last);
}
