// modboxd's systemd user unit: the text install-unit writes (the packaged unit is the same with no
// environment), what the CLI reads back from systemctl, and when the unit's agent is the CLI's own.

#include "cli/user_unit.h"

#include <catch2/catch.hpp>
#include <string>

#include "common/system.h"

using namespace modbox;

TEST_CASE("the packaged unit is the one install-unit writes, without its environment", "[user-unit]") {
  auto packaged = read_file(std::string(MODBOX_SOURCE_DIR) + "/packaging/modboxd.service.in");
  REQUIRE(packaged);
  CHECK(agent_unit_text({.modboxd = "@MODBOXD@", .environment = {}}) == *packaged);
}

TEST_CASE("the unit runs modboxd as Type=notify with the agent's directories, quoted for systemd", "[user-unit]") {
  std::string text = agent_unit_text(
      {.modboxd = "/opt/mod box/bin/modboxd",
       .environment = {{"MODBOX_STATE_DIR", "/home/u/100%/state"}, {"MODBOX_RUNTIME_DIR", "/run/user/1000/modbox"}}});
  CHECK(text.find("Type=notify\n") != std::string::npos);
  CHECK(text.find("KillMode=process\n") != std::string::npos);
  CHECK(text.find("WantedBy=default.target\n") != std::string::npos);
  CHECK(text.find("Environment=\"MODBOX_STATE_DIR=/home/u/100%%/state\"\n"
                  "Environment=\"MODBOX_RUNTIME_DIR=/run/user/1000/modbox\"\n"
                  "ExecStart=\"/opt/mod box/bin/modboxd\"\n") != std::string::npos);
}

TEST_CASE("systemctl show's answer gives the unit's state and environment", "[user-unit]") {
  auto unit = parse_agent_unit_show(
      "LoadState=loaded\nUnitFileState=enabled\nActiveState=active\n"
      "Environment=MODBOX_STATE_DIR=/home/u/.local/share/modbox MODBOX_RUNTIME_DIR=/run/user/1000/modbox\n");
  CHECK(unit.loaded);
  CHECK(unit.enabled);
  CHECK(unit.active);
  CHECK(unit.environment.at("MODBOX_STATE_DIR") == "/home/u/.local/share/modbox");
  CHECK(unit.environment.at("MODBOX_RUNTIME_DIR") == "/run/user/1000/modbox");

  auto missing = parse_agent_unit_show("LoadState=not-found\nUnitFileState=\nActiveState=inactive\nEnvironment=\n");
  CHECK_FALSE(missing.loaded);
  CHECK_FALSE(missing.enabled);
  CHECK_FALSE(missing.active);
  CHECK(missing.environment.empty());
}

TEST_CASE("the unit's agent is the CLI's only when it keeps the same state and runtime directories", "[user-unit]") {
  AgentPaths paths{.state_dir = "/home/u/.local/share/modbox", .runtime_dir = "/run/user/1000/modbox"};
  AgentUnitState unit{.loaded = true,
                      .enabled = true,
                      .active = false,
                      .environment = {{"MODBOX_STATE_DIR", "/home/u/.local/share/modbox"},
                                      {"MODBOX_RUNTIME_DIR", "/run/user/1000/modbox/"}}};
  CHECK(agent_unit_serves(unit, paths));
  unit.environment["MODBOX_STATE_DIR"] = "/tmp/other-state";
  CHECK_FALSE(agent_unit_serves(unit, paths));
}
