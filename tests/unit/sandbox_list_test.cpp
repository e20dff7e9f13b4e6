// `modbox list`: which sandboxes it shows and in what order, and the table with relative times.

#include "cli/sandbox_list.h"

#include <catch2/catch.hpp>
#include <chrono>

#include "cli/table.h"

using namespace modbox;
using namespace std::chrono_literals;

namespace {

const TimePoint now = TimePoint{} + std::chrono::hours(24 * 20000);

Sandbox sandbox(std::string name, SandboxStatus status, std::chrono::seconds age) {
  Sandbox made;
  made.id = "id-" + name;
  made.name = std::move(name);
  made.status = status;
  made.created_at = now - age;
  return made;
}

std::vector<std::string> names(const std::vector<Sandbox>& sandboxes, const std::vector<std::size_t>& listed) {
  std::vector<std::string> shown;
  for (std::size_t index : listed) shown.push_back(sandboxes[index].name);
  return shown;
}

}  // namespace

TEST_CASE("list shows the live sandboxes, -a the ended ones too, newest first", "[cli][list]") {
  // As GET /sandboxes answers: oldest first.
  std::vector<Sandbox> sandboxes{
      sandbox("old-gone", SandboxStatus::destroyed, 3600s), sandbox("old-up", SandboxStatus::running, 1800s),
      sandbox("broken", SandboxStatus::failed, 600s), sandbox("starting", SandboxStatus::provisioning, 5s)};
  CHECK(names(sandboxes, listed_sandboxes(sandboxes, {})) == std::vector<std::string>{"starting", "old-up"});
  CHECK(names(sandboxes, listed_sandboxes(sandboxes, {.all = true})) ==
        std::vector<std::string>{"starting", "broken", "old-up", "old-gone"});
  // --status: the agent filtered already, and an ended status is shown without -a.
  std::vector<Sandbox> destroyed{sandbox("a", SandboxStatus::destroyed, 60s),
                                 sandbox("b", SandboxStatus::destroyed, 1s)};
  CHECK(names(destroyed, listed_sandboxes(destroyed, {.status_given = true})) == std::vector<std::string>{"b", "a"});
  CHECK(listed_sandboxes(destroyed, {}).empty());
}

TEST_CASE("times in tables are relative to now", "[cli][list]") {
  CHECK(relative_time(now, now) == "just now");
  CHECK(relative_time(now - 1s, now) == "1 second ago");
  CHECK(relative_time(now - 59s, now) == "59 seconds ago");
  CHECK(relative_time(now - 180s, now) == "3 minutes ago");
  CHECK(relative_time(now - 3599s, now) == "59 minutes ago");
  CHECK(relative_time(now - 3600s, now) == "1 hour ago");
  CHECK(relative_time(now - 49h, now) == "2 days ago");
  CHECK(relative_time(now + 120s, now) == "in 2 minutes");
}

TEST_CASE("the sandbox table says how an ended sandbox ended, in columns as wide as their cells", "[cli][list]") {
  Sandbox running = sandbox("web", SandboxStatus::running, 180s);
  running.sandbox_url = "http://127.0.0.1:40001";
  Sandbox exited = sandbox("job-with-a-long-name", SandboxStatus::destroyed, 7200s);
  exited.destroy_reason = DestroyReason::exited;
  exited.exit_code = 3;
  exited.destroyed_at = now - 300s;
  Sandbox expired = sandbox("short", SandboxStatus::destroyed, 90000s);
  expired.destroy_reason = DestroyReason::ttl;
  expired.destroyed_at = now - 3600s;

  CHECK(status_cell(running, now) == "running");
  CHECK(status_cell(exited, now) == "exited (3) 5 minutes ago");
  CHECK(status_cell(expired, now) == "destroyed (ttl) 1 hour ago");
  CHECK(sandbox_table({running, exited, expired}, now) ==
        "NAME                  STATUS                      CREATED        URL                     ID\n"
        "web                   running                     3 minutes ago  http://127.0.0.1:40001  id-web\n"
        "job-with-a-long-name  exited (3) 5 minutes ago    2 hours ago    -                       "
        "id-job-with-a-long-name\n"
        "short                 destroyed (ttl) 1 hour ago  1 day ago      -                       id-short\n");
}

TEST_CASE("a table narrower than the terminal is cut in its flexible columns, with an ellipsis", "[cli][table]") {
  std::vector<std::vector<std::string>> rows{{"NAME", "STATUS", "ID"},
                                             {"web", "running", "0123456789abcdef"},
                                             {"a-much-longer-name", "failed", "fedcba9876543210"}};
  // As wide as it is: 18 + 2 + 7 + 2 + 16 = 45 columns.
  std::string whole = format_columns(rows);
  CHECK(whole.find("\nweb                 running  0123456789abcdef\n") != std::string::npos);
  CHECK(format_columns(rows, {.output = {.width = 45}, .flexible = {2, 0}}) == whole);
  CHECK(format_columns(rows, {.output = {.width = 0}, .flexible = {2, 0}}) == whole);

  SECTION("the widest flexible column gives way first, then they share the cut") {
    // 5 columns too many: NAME (18) is the widest flexible column, cut until it is as narrow as ID (16),
    // then both a column at a time.
    std::string fitted = format_columns(rows, {.output = {.width = 40}, .flexible = {2, 0}});
    CHECK(fitted ==
          "NAME             STATUS   ID\n"
          "web              running  0123456789abc…\n"
          "a-much-longer-…  failed   fedcba9876543…\n");
    std::string narrower = format_columns(rows, {.output = {.width = 30}, .flexible = {2, 0}});
    CHECK(narrower ==
          "NAME        STATUS   ID\n"
          "web         running  01234567…\n"
          "a-much-lo…  failed   fedcba98…\n");
    for (std::size_t start = 0; start < narrower.size();) {
      std::size_t end = narrower.find('\n', start);
      CHECK(display_width(std::string_view(narrower).substr(start, end - start)) <= 30);
      start = end + 1;
    }
  }
  SECTION("never below the header, and columns that are not flexible stay whole") {
    CHECK(format_columns(rows, {.output = {.width = 10}, .flexible = {2, 0}}) ==
          "NAME  STATUS   ID\n"
          "web   running  01…\n"
          "a-m…  failed   fe…\n");
    CHECK(format_columns(rows, {.output = {.width = 10}}) == whole);
  }
  SECTION("widths count characters, not bytes") {
    CHECK(display_width("naïve…") == 6);
    CHECK(truncate_to_width("naïve-name", 4) == "naï…");
    CHECK(truncate_to_width("short", 5) == "short");
  }
}

TEST_CASE("statuses are coloured only on a terminal that welcomes colour", "[cli][table]") {
  auto on_tty = [](std::optional<std::string> no_color, std::optional<std::string> term = "xterm") {
    return terminal_output({.is_tty = true, .tty_columns = 80, .no_color = no_color, .term = term});
  };
  CHECK(on_tty(std::nullopt).colour);
  CHECK(on_tty(std::nullopt).width == 80);
  CHECK_FALSE(on_tty("1").colour);
  CHECK(on_tty("").colour);  // NO_COLOR= (empty) does not count, as no-color.org says
  CHECK_FALSE(on_tty(std::nullopt, "dumb").colour);
  CHECK_FALSE(terminal_output({.is_tty = false, .tty_columns = 0}).colour);
  CHECK(terminal_output({.is_tty = false}).width == 0);

  SECTION("COLUMNS is the width when it is a positive number, on a terminal or not") {
    CHECK(terminal_output({.is_tty = true, .tty_columns = 80, .columns = "50"}).width == 50);
    CHECK(terminal_output({.is_tty = false, .columns = "50"}).width == 50);
    CHECK(terminal_output({.is_tty = true, .tty_columns = 80, .columns = "wide"}).width == 80);
    CHECK(terminal_output({.is_tty = true, .tty_columns = 80, .columns = "0"}).width == 80);
  }

  Sandbox running = sandbox("web", SandboxStatus::running, 180s);
  Sandbox failed = sandbox("bad", SandboxStatus::failed, 180s);
  std::string table = sandbox_table({running, failed}, now, {.colour = true});
  CHECK(table ==
        "NAME  STATUS   CREATED        URL  ID\n"
        "web   \x1b[32mrunning\x1b[0m  3 minutes ago  -    id-web\n"
        "bad   \x1b[31mfailed\x1b[0m   3 minutes ago  -    id-bad\n");
  CHECK(sandbox_table({running}, now).find('\x1b') == std::string::npos);
  CHECK(status_colour("exited (0) 1 minute ago").empty());
  CHECK(status_colour("exited (2) 1 minute ago") == "31");
  CHECK(status_colour("provisioning") == "33");
  CHECK(status_colour("destroyed (ttl) 1 hour ago").empty());
}
