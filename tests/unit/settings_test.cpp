// The CLI's settings: precedence flag > environment > config file > default, and the file itself.

#include "cli/settings.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "cli/agent_log.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using modbox::testing::TempDir;

namespace {
std::function<std::optional<std::string>(const char*)> environment_of(std::map<std::string, std::string> values) {
  return [values](const char* name) -> std::optional<std::string> {
    auto it = values.find(name);
    return it == values.end() ? std::nullopt : std::optional(it->second);
  };
}
}  // namespace

TEST_CASE("each setting comes from the flag, then the environment, then the file, then the default", "[config]") {
  ConfigFile file{"/home/ada/.config/modbox/config.json",
                  {{"api_url", "http://file:1"}, {"api_token", "file-token"}, {"workspace", "from-file"}}};
  auto environment = environment_of({{"MODBOX_API_URL", "http://env:2"}, {"MODBOX_WORKSPACE", ""}});
  Settings settings = resolve_settings({{"workspace", "from-flag"}, {"api_url", ""}}, environment, file);
  CHECK(settings.workspace.value == "from-flag");
  CHECK(settings.workspace.origin == "--workspace");
  CHECK(settings.api_url.value == "http://env:2");
  CHECK(settings.api_url.origin == "env MODBOX_API_URL");
  CHECK(settings.api_token.value == "file-token");
  CHECK(settings.api_token.origin == "file /home/ada/.config/modbox/config.json");

  Settings defaults = resolve_settings({}, environment_of({}), ConfigFile{});
  for (const auto& setting : defaults.all()) {
    CHECK_FALSE(setting.value);
    CHECK(setting.origin == "default");
  }
  Settings flagged = resolve_settings({{"api_url", "http://flag:3"}}, environment, file);
  CHECK(flagged.api_url.origin == "--api-url");
}

TEST_CASE("the config file is written atomically with mode 0600, keeping keys it does not know", "[config]") {
  TempDir dir;
  auto path = dir / "nested/config.json";
  auto empty = load_config_file(path);
  REQUIRE(empty);
  CHECK(empty->values.empty());
  ConfigFile file{path, {{"api_token", "secret"}, {"future_key", "kept"}}};
  REQUIRE(save_config_file(file));
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  auto loaded = load_config_file(path);
  REQUIRE(loaded);
  CHECK(loaded->values == file.values);

  REQUIRE(write_file_atomic(path, "{not json"));
  auto broken = load_config_file(path);
  REQUIRE_FALSE(broken);
  CHECK(broken.error().message.find(path.string()) != std::string::npos);
  REQUIRE(write_file_atomic(path, R"({"workspace": 3})"));
  CHECK_FALSE(load_config_file(path));
}

TEST_CASE("config values are checked, and unknown keys are named with the known ones", "[config]") {
  CHECK(check_setting_value("api_url", "http://127.0.0.1:8080"));
  CHECK_FALSE(check_setting_value("api_url", "127.0.0.1:8080"));
  CHECK_FALSE(check_setting_value("workspace", ""));
  auto unknown = check_setting_value("colour", "red");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message == "unknown key 'colour'; the keys are: api_url, api_token, workspace");
  CHECK(masked_secret("0123456789abcdef") == "****cdef");
  CHECK(masked_secret("short") == "*****");
}

TEST_CASE("agent logs: the last lines, and what is appended while following", "[config]") {
  CHECK(start_of_last_lines("a\nb\nc\n", 2) == 2);
  CHECK(start_of_last_lines("a\nb\nc", 2) == 2);
  CHECK(start_of_last_lines("a\nb\n", 5) == 0);
  CHECK(start_of_last_lines("a\nb\n", 0) == 4);

  TempDir dir;
  auto log = dir / "agent.log";
  auto missing = read_agent_log(log, {}, [](std::string_view) {});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().kind == ErrorKind::not_found);

  REQUIRE(write_file_atomic(log, "one\ntwo\nthree\n"));
  std::string out;
  auto collect = [&out](std::string_view data) { out.append(data); };
  REQUIRE(read_agent_log(log, {.tail = 2}, collect));
  CHECK(out == "two\nthree\n");

  out.clear();
  int polls = 0;
  LogOptions follow{.tail = 1, .follow = true, .poll_interval = std::chrono::milliseconds(1)};
  follow.keep_following = [&] {
    if (++polls == 2) {
      FILE* file = std::fopen(log.c_str(), "a");
      std::fputs("four\n", file);
      std::fclose(file);
    }
    return out.find("four\n") == std::string::npos && polls < 1000;
  };
  REQUIRE(read_agent_log(log, follow, collect));
  CHECK(out == "three\nfour\n");
}
