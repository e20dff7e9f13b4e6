// ScriptImageBuilder runs images/build NAME for a missing default image: here with a stand-in script,
// so the spawning, the log and the failure reports are tested without Podman.

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "agent/image_builder.h"
#include "common/paths.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

TEST_CASE("the script builder builds known defaults and reports failures with the log", "[images][build]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "images");
  {
    std::ofstream script(dir / "images" / "build");
    script << "#!/bin/sh\necho \"building $1\"\necho \"$1\" >> \"$(dirname \"$0\")/built\"\n[ \"$1\" != code-exec ]\n";
  }
  REQUIRE(::chmod((dir / "images" / "build").c_str(), 0755) == 0);
  ScriptImageBuilder builder(dir / "images", dir.path(), {"sandbox-lite", "code-exec"});

  CHECK(builder.buildable("localhost/modbox/sandbox-lite:latest") == "sandbox-lite");
  CHECK_FALSE(builder.buildable("localhost/modbox/sandbox-lite:v2").has_value());
  CHECK_FALSE(builder.buildable("localhost/modbox/chromium:latest").has_value());
  CHECK_FALSE(builder.buildable("ghcr.io/modbox/sandbox-lite:latest").has_value());

  REQUIRE(builder.build("sandbox-lite").has_value());
  CHECK(read_file(dir / "images" / "built").value_or("") == "sandbox-lite\n");
  CHECK(read_file(dir / "build-sandbox-lite.log").value_or("").find("building sandbox-lite") != std::string::npos);

  auto failed = builder.build("code-exec");
  REQUIRE_FALSE(failed.has_value());
  CHECK(failed.error().message.find("images/build code-exec exited with status 1") != std::string::npos);
  CHECK(failed.error().message.find((dir / "build-code-exec.log").string()) != std::string::npos);
}

TEST_CASE("find_images_dir prefers the configured directory when it has a build script", "[images][build]") {
  TempDir dir;
  CHECK(find_images_dir((dir / "nowhere").string()) != std::optional<std::filesystem::path>(dir / "nowhere"));
  {
    std::ofstream script(dir / "build");
    script << "#!/bin/sh\n";
  }
  REQUIRE(::chmod((dir / "build").c_str(), 0755) == 0);
  CHECK(find_images_dir(dir.path().string()) == std::optional<std::filesystem::path>(dir.path()));
}
