// The image's USER as the helper reads it: Docker's specs resolved against an image's /etc/passwd
// and /etc/group (fixture files here), and the switch to the user in a child process.

#include "agent/helper/user.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::helper;
using namespace modbox::testing;

namespace {

/// An image's root with the /etc/passwd and /etc/group of a small Debian system plus a user.
struct ImageRoot {
  TempDir root;
  ImageRoot() {
    std::filesystem::create_directories(root / "etc");
    std::ofstream(root / "etc" / "passwd") << "root:x:0:0:root:/root:/bin/bash\n"
                                              "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                                              "# a comment, and lines that are not entries\n"
                                              "broken-line\n"
                                              "odd:x:not-a-number:1::/odd:/bin/sh\n"
                                              "sandbox:x:1234:1234:Sandbox:/home/sandbox:/bin/bash\n"
                                              "nohome:x:1300:1300::\n"
                                              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    std::ofstream(root / "etc" / "group") << "root:x:0:\n"
                                             "adm:x:4:daemon,sandbox\n"
                                             "users:x:100:\n"
                                             "docker:x:999:sandbox\n"
                                             "sandbox:x:1234:\n"
                                             "nogroup:x:65534:\n";
  }
  Result<SandboxUser> resolve(std::string_view spec) const { return resolve_user(spec, root.path()); }
};

}  // namespace

TEST_CASE("a user name resolves to its passwd entry and the groups that list it", "[helper][user]") {
  ImageRoot image;
  auto user = expect_value(image.resolve("sandbox"));
  CHECK(user.uid == 1234);
  CHECK(user.gid == 1234);
  CHECK(user.name == "sandbox");
  CHECK(user.home == "/home/sandbox");
  CHECK(user.groups == std::vector<gid_t>{4, 999});
  // A uid with an entry is the same user.
  auto by_uid = expect_value(image.resolve("1234"));
  CHECK(by_uid.name == "sandbox");
  CHECK(by_uid.groups == user.groups);
  // An entry without a home has /.
  CHECK(expect_value(image.resolve("nohome")).home == "/");
}

TEST_CASE("a numeric uid without a passwd entry runs with group 0 and home /", "[helper][user]") {
  ImageRoot image;
  auto user = expect_value(image.resolve("4321"));
  CHECK(user.uid == 4321);
  CHECK(user.gid == 0);
  CHECK(user.name.empty());
  CHECK(user.home == "/");
  CHECK(user.groups.empty());
}

TEST_CASE("an explicit group replaces the primary group and leaves no supplementary ones", "[helper][user]") {
  ImageRoot image;
  SECTION("name:group") {
    auto user = expect_value(image.resolve("sandbox:users"));
    CHECK(user.uid == 1234);
    CHECK(user.gid == 100);
    CHECK(user.home == "/home/sandbox");
    CHECK(user.groups.empty());
  }
  SECTION("uid:gid, neither in the files") {
    auto user = expect_value(image.resolve("4321:4322"));
    CHECK(user.uid == 4321);
    CHECK(user.gid == 4322);
    CHECK(user.groups.empty());
  }
  SECTION("name:gid with a group entry") {
    CHECK(expect_value(image.resolve("sandbox:999")).gid == 999);
  }
  SECTION(":group is root's entry with that group") {
    auto user = expect_value(image.resolve(":adm"));
    CHECK(user.uid == 0);
    CHECK(user.gid == 4);
    CHECK(user.home == "/root");
  }
}

TEST_CASE("unknown names fail as Podman says it, numbers out of range fail", "[helper][user]") {
  ImageRoot image;
  auto unknown = image.resolve("nobody-such");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().message == "unable to find user nobody-such: no matching entries in passwd file");
  auto unknown_group = image.resolve("sandbox:wheel");
  REQUIRE_FALSE(unknown_group.has_value());
  CHECK(unknown_group.error().message == "unable to find group wheel: no matching entries in group file");
  CHECK_THAT(image.resolve("2147483648").error().message, Catch::Contains("out of range"));
  CHECK_THAT(image.resolve("1:99999999999").error().message, Catch::Contains("out of range"));
  // Not a number, so a name: "not-a-number" is a field of a broken line, not a user.
  CHECK_FALSE(image.resolve("odd").has_value());
}

TEST_CASE("an image without /etc/passwd knows numbers only", "[helper][user]") {
  TempDir empty_root;
  CHECK(expect_value(resolve_user("1000:1000", empty_root.path())).uid == 1000);
  CHECK_FALSE(resolve_user("sandbox", empty_root.path()).has_value());
}

TEST_CASE("become_user switches ids and groups and sets HOME, USER and LOGNAME", "[helper][user]") {
  SandboxUser user{.uid = 1234, .gid = 1235, .groups = {4, 999}, .name = "sandbox", .home = "/home/sandbox"};
  // In a child, as the contract says; it reports back through its exit status.
  auto in_child = [&](const char* home) {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (home != nullptr) ::setenv("HOME", home, 1);
      auto became = become_user(user);
      if (!became) ::_exit(became.error().message.find("setgroups") != std::string::npos ? 10 : 11);
      gid_t groups[8];
      int count = ::getgroups(8, groups);
      bool ids = ::getuid() == 1234 && ::geteuid() == 1234 && ::getgid() == 1235 && ::getegid() == 1235;
      bool group_list = count == 2 && groups[0] == 4 && groups[1] == 999;
      auto env = [](const char* name) { return std::string(std::getenv(name) ? std::getenv(name) : ""); };
      std::string env_home = env("HOME");
      bool names = env("USER") == "sandbox" && env("LOGNAME") == "sandbox";
      ::_exit(!ids                          ? 1
              : !group_list                 ? 2
              : !names                      ? 3
              : env_home == "/home/sandbox" ? 0
              : env_home == "/custom"       ? 4
                                            : 5);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  if (::geteuid() == 0) {
    CHECK(in_child("/root") == 0);    // Podman's HOME for root becomes the user's
    CHECK(in_child(nullptr) == 0);    // so does no HOME at all
    CHECK(in_child("/custom") == 4);  // a HOME the image or the sandbox set stays
  } else {
    // Without the privilege the switch fails at its first step, and says which.
    CHECK(in_child("/root") == 10);
  }
}
