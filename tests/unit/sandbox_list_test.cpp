// `modbox list`: which sandboxes it shows and in what order, and the table with relative times.

#include <catch2/catch.hpp>
#include <chrono>

#include "cli/sandbox_list.h"
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
  std::vector<Sandbox> sandboxes{sandbox("old-gone", SandboxStatus::destroyed, 3600s),
                                 sandbox("old-up", SandboxStatus::running, 1800s),
                                 sandbox("broken", SandboxStatus::failed, 600s),
                                 sandbox("starting", SandboxStatus::provisioning, 5s)};
  CHECK(names(sandboxes, listed_sandboxes(sandboxes, {})) == std::vector<std::string>{"starting", "old-up"});
  CHECK(names(sandboxes, listed_sandboxes(sandboxes, {.all = true})) ==
        std::vector<std::string>{"starting", "broken", "old-up", "old-gone"});
  // --status: the agent filtered already, and an ended status is shown without -a.
  std::vector<Sandbox> destroyed{sandbox("a", SandboxStatus::destroyed, 60s), sandbox("b", SandboxStatus::destroyed, 1s)};
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
        "job-with-a-long-name  exited (3) 5 minutes ago    2 hours ago    -                       id-job-with-a-long-name\n"
        "short                 destroyed (ttl) 1 hour ago  1 day ago      -                       id-short\n");
}
