// The CLI's progress display (cli/progress.h) with a fake clock and a fake terminal: timestamped
// plain lines off a terminal, one redrawn line on it, nothing with -q.

#include "cli/progress.h"

#include <catch2/catch.hpp>

using namespace modbox;
using namespace std::chrono_literals;

namespace {

struct FakeScreen {
  std::chrono::steady_clock::time_point now{};
  std::string written;

  ProgressOptions options(bool terminal, bool enabled = true, std::size_t width = 80) {
    ProgressOptions options;
    options.enabled = enabled;
    options.terminal = terminal;
    options.width = width;
    options.now = [this] { return now; };
    options.clock_text = [] { return std::string("12:01:03"); };
    options.write = [this](std::string_view bytes) { written.append(bytes); };
    return options;
  }
};

}  // namespace

TEST_CASE("off a terminal, progress is timestamped plain lines", "[cli][progress]") {
  FakeScreen screen;
  {
    Progress progress("building", screen.options(false));
    progress.status("sending the context (4 KiB)");
    progress.line("STEP 1/2: FROM localhost/modbox/sandbox-lite");
    progress.status("STEP 1/2: FROM localhost/modbox/sandbox-lite");  // already the last line: not again
    progress.line("compiled");
    progress.tick();  // nothing to redraw
    screen.now += 75s;
    progress.finish("built image 'app'");
  }
  CHECK(screen.written ==
        "12:01:03 building: sending the context (4 KiB)\n"
        "12:01:03 building: STEP 1/2: FROM localhost/modbox/sandbox-lite\n"
        "12:01:03 building: compiled\n"
        "12:01:03 building: built image 'app' (1m15s)\n");
}

TEST_CASE("on a terminal, progress is one line redrawn with a spinner and the elapsed time", "[cli][progress]") {
  FakeScreen screen;
  Progress progress("waiting", screen.options(true));
  progress.status("demo to be running");
  CHECK(screen.written == "\r\x1b[2K- waiting: demo to be running (0s)");
  screen.written.clear();
  screen.now += 12s;
  progress.tick();
  CHECK(screen.written == "\r\x1b[2K\\ waiting: demo to be running (12s)");
  screen.written.clear();
  // A line to keep goes above the redrawn one.
  progress.line("pulling localhost/app");
  CHECK(screen.written == "\r\x1b[2Kpulling localhost/app\n\r\x1b[2K\\ waiting: demo to be running (12s)");
  screen.written.clear();
  progress.finish("demo is running");
  CHECK(screen.written == "\r\x1b[2Kdemo is running (12s)\n");
}

TEST_CASE("the redrawn line fits the terminal's width", "[cli][progress]") {
  FakeScreen screen;
  Progress progress("building", screen.options(true, true, 30));
  progress.status("STEP 2/5: RUN apt-get install -y a-very-long-list-of-packages");
  std::string line = screen.written.substr(screen.written.rfind('\r') + 5);
  CHECK(line == "- building: STEP 2/5: RU (0s)");
  CHECK(line.size() < 30);
}

TEST_CASE("with -q nothing is shown, and an unfinished line is cleared at the end", "[cli][progress]") {
  FakeScreen screen;
  {
    Progress quiet("building", screen.options(true, false));
    quiet.status("STEP 1/1");
    quiet.line("output");
    quiet.finish("built");
  }
  CHECK(screen.written.empty());
  {
    Progress failed("building", screen.options(true));
    failed.status("STEP 1/1");
  }
  CHECK(screen.written.ends_with("\r\x1b[2K"));
  CHECK(Progress::elapsed_text(3725s) == "62m05s");
}
