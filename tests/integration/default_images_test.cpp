// The built-in default images, built by images/build (tests/run builds them all before the tests): a
// sandbox of each, provisioned by its image_id, runs the image's smoke command.

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

struct DefaultImage {
  std::string image;    // as the images API shows it
  std::string command;  // must exit 0
  std::string expect;   // in its stdout
};

const std::vector<DefaultImage>& default_images() {
  static const std::vector<DefaultImage> images = {
      {"modbox/sandbox-lite", "python3 -V && ps -p 1 >/dev/null", "Python 3"},
      {"modbox/code-exec",
       "python3 -V && node -v && go version && npm -v >/dev/null && cd /tmp && printf 'package main\\nimport \"fmt\"\\n"
       "func main() { fmt.Println(\"go runs\") }\\n' > main.go && go run main.go",
       "go runs"},
      // The desktop is running once nginx answers, which it does after Chromium's CDP and websockify:
      // every program of supervisord's runs, and the routes answer on 8080.
      {"modbox/sandbox",
       "supervisorctl status && curl -sf http://127.0.0.1:8080/cdp/json/version | grep -q Browser && "
       "curl -sf -o /dev/null http://127.0.0.1:8080/vnc/vnc.html && echo desktop up",
       "desktop up"},
      {"modbox/ubuntu", ". /etc/os-release && echo \"$NAME $VERSION_ID\"", "Ubuntu 24.04"},
  };
  return images;
}

}  // namespace

TEST_CASE("a sandbox of each default image runs its smoke command", "[default-images]") {
  TestAgent agent;
  agent.start();
  json listed = agent.api("GET", "/sandbox-images").json_body();
  REQUIRE(listed.is_array());
  for (const auto& expected : default_images()) {
    DYNAMIC_SECTION(expected.image) {
      std::string id;
      for (const auto& image : listed)
        if (image["image"] == expected.image) id = image["id"];
      REQUIRE_FALSE(id.empty());
      const std::string task = unique_name("dflt");
      auto provisioned = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"image_id", id}}.dump());
      REQUIRE(provisioned.status == 200);
      auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 120}}.dump(), std::nullopt, 150s);
      INFO(waited.body);
      REQUIRE(waited.status == 200);
      auto exec = agent.api("POST", "/sandboxes/exec", json{{"task_id", task}, {"command", expected.command}}.dump(),
                            std::nullopt, 90s);
      INFO(exec.body);
      REQUIRE(exec.status == 200);
      CHECK(exec.json_body()["exitCode"] == 0);
      std::string output = exec.json_body()["stdout"].get<std::string>() + exec.json_body()["stderr"].get<std::string>();
      CHECK(output.find(expected.expect) != std::string::npos);
      CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()).status == 200);
    }
  }
}
