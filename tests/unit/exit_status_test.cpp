// modbox's exit statuses: what each error exits with, that --help and man/modbox.1 list every one,
// and that an unknown command names the nearest one.

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cli/command_suggestion.h"
#include "cli/exit_codes.h"
#include "common/models.h"
#include "common/system.h"

using namespace modbox;

namespace {

Error error_of(ErrorKind kind) {
  return Error{kind, "message", {}};
}

struct Documented {
  int status;
  const char* meaning;  // a word the documentation of that status uses
};

const std::vector<Documented> statuses{{exit_status::success, "success"},
                                       {exit_status::error, "error"},
                                       {exit_status::usage, "usage"},
                                       {exit_status::agent_unavailable, "unavailable"},
                                       {exit_status::not_found, "not found"},
                                       {exit_status::timeout, "time"}};

}  // namespace

TEST_CASE("each kind of error has its exit status", "[cli][exit]") {
  CHECK(exit_status::for_error(error_of(ErrorKind::not_found)) == 4);
  CHECK(exit_status::for_error(error_of(ErrorKind::timeout)) == 5);
  CHECK(exit_status::for_error(error_of(ErrorKind::unavailable)) == 3);
  for (auto kind : {ErrorKind::bad_request, ErrorKind::conflict, ErrorKind::validation, ErrorKind::internal,
                    ErrorKind::forbidden, ErrorKind::bad_gateway}) {
    INFO(http_status(kind));
    CHECK(exit_status::for_error(error_of(kind)) == 1);
  }
  // An error the agent answered maps by its HTTP status: 404, 408 and 503.
  CHECK(exit_status::for_error(error_from_response(404, R"({"detail":"no sandbox"})")) == exit_status::not_found);
  CHECK(exit_status::for_error(error_from_response(408, R"({"detail":"still provisioning"})")) == exit_status::timeout);
  CHECK(exit_status::for_error(error_from_response(503, R"({"detail":"podman down"})")) ==
        exit_status::agent_unavailable);
  // All six are distinct.
  for (std::size_t i = 0; i < statuses.size(); ++i)
    for (std::size_t j = i + 1; j < statuses.size(); ++j) CHECK(statuses[i].status != statuses[j].status);
}

TEST_CASE("a command on several names exits with their failures' status when they agree", "[cli][exit]") {
  CHECK(combined_exit_status({}) == 0);
  CHECK(combined_exit_status({4}) == 4);
  CHECK(combined_exit_status({4, 4}) == 4);
  CHECK(combined_exit_status({4, 3}) == 1);
}

TEST_CASE("modbox --help and man/modbox.1 list every exit status", "[cli][exit][man]") {
  CommandTree tree;
  std::string footer = tree.app.get_footer();
  std::string help = tree.app.help();
  auto page = read_file(std::filesystem::path(MODBOX_SOURCE_DIR) / "man/modbox.1");
  REQUIRE(page.has_value());
  auto chapter = page->find(".SH EXIT STATUS\n");
  REQUIRE(chapter != std::string::npos);
  std::string exit_status_section = page->substr(chapter, page->find(".SH ", chapter + 1) - chapter);
  for (const auto& [status, meaning] : statuses) {
    INFO("exit status " << status << " (" << meaning << ")");
    std::string line = "\n  " + std::to_string(status) + "  ";
    auto listed = footer.find(line);
    REQUIRE(listed != std::string::npos);
    CHECK(footer.substr(listed, footer.find('\n', listed + 1) - listed).find(meaning) != std::string::npos);
    CHECK(exit_status_section.find("\n.B " + std::to_string(status) + "\n") != std::string::npos);
  }
  CHECK(help.find(footer) != std::string::npos);
  CHECK(footer.find("exec, shell") != std::string::npos);
}

TEST_CASE("edit distance counts insertions, deletions and substitutions", "[cli][exit]") {
  CHECK(edit_distance("provison", "provision") == 1);
  CHECK(edit_distance("lsit", "list") == 2);
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("same", "same") == 0);
}

TEST_CASE("an unknown command says so and names the nearest one", "[cli][exit]") {
  CommandTree tree;
  auto message = [&](std::vector<std::string> args) { return unknown_command_message(tree.app, args); };
  CHECK(message({"provison"}) == R"(unknown command "provison"; did you mean "provision"?)");
  CHECK(message({"--json", "-w", "ci", "lisst", "--all"}) == R"(unknown command "lisst"; did you mean "list"?)");
  CHECK(message({"--workspace=ci", "destory", "x"}) == R"(unknown command "destory"; did you mean "destroy"?)");
  CHECK(message({"agent", "stats"}) == R"(unknown command "agent stats"; did you mean "agent status"?)");
  CHECK(message({"images", "buil"}) == R"(unknown command "images buil"; did you mean "images build"?)");
  CHECK(message({"frobnicate"}) == R"(unknown command "frobnicate"; see 'modbox --help')");
  // Known commands, and words that are arguments, are not unknown commands.
  CHECK(message({"list", "--all"}) == std::nullopt);
  CHECK(message({"ls"}) == std::nullopt);
  CHECK(message({"exec", "demo", "--", "provison"}) == std::nullopt);
  CHECK(message({"files", "demo"}) == std::nullopt);
  CHECK(message({"-w", "provison", "list"}) == std::nullopt);  // the workspace is called provison
  CHECK(message({}) == std::nullopt);
}
