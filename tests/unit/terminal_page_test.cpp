// The terminal's page (agent/terminal/terminal_page.h): the files of a fixed list only, with their
// types and validators, a redirect to /terminal/, and a 503 that names what is missing.

#include "agent/terminal/terminal_page.h"

#include <catch2/catch.hpp>

#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;

namespace {

struct PageDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / ("terminal-page-" + std::to_string(::getpid()));
  explicit PageDir(bool complete = true) {
    std::filesystem::create_directories(path);
    for (const auto& name : terminal_page_files())
      if (complete || name != "xterm.js") REQUIRE(write_file_atomic(path / name, "content of " + name, 0644));
    REQUIRE(write_file_atomic(path.parent_path() / "terminal-page-secret", "s3cr3t content", 0600));
  }
  ~PageDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
    std::filesystem::remove(path.parent_path() / "terminal-page-secret", ignored);
  }
};

HttpResponse get(const TerminalPage& page, const std::string& path, std::map<std::string, std::string> headers = {}) {
  HttpRequest request{.method = "GET", .path = path};
  request.headers = std::move(headers);
  return page.serve(request);
}

}  // namespace

TEST_CASE("terminal page: /terminal/ is the page, its files come with their types", "[terminal]") {
  PageDir dir;
  TerminalPage page = TerminalPage::load(dir.path);
  CHECK(page.missing().empty());

  auto index = get(page, "/terminal/");
  CHECK(index.status == 200);
  CHECK(index.body == "content of index.html");
  CHECK(index.content_type == "text/html; charset=utf-8");
  CHECK(index.headers["Cache-Control"] == "no-cache");
  CHECK(index.headers["Content-Security-Policy"].find("default-src 'self'") != std::string::npos);
  CHECK(get(page, "/terminal/xterm.js").content_type == "text/javascript; charset=utf-8");
  CHECK(get(page, "/terminal/xterm.css").content_type == "text/css; charset=utf-8");
  CHECK(get(page, "/terminal/addon-fit.js").body == "content of addon-fit.js");

  auto redirect = get(page, "/terminal");
  CHECK(redirect.status == 301);
  CHECK(redirect.headers["Location"] == "/terminal/");

  HttpRequest post{.method = "POST", .path = "/terminal/"};
  CHECK(page.serve(post).status == 405);
}

TEST_CASE("terminal page: an unchanged file is a 304", "[terminal]") {
  PageDir dir;
  TerminalPage page = TerminalPage::load(dir.path);
  auto first = get(page, "/terminal/terminal.js");
  REQUIRE(!first.headers["ETag"].empty());
  auto again = get(page, "/terminal/terminal.js", {{"if-none-match", first.headers["ETag"]}});
  CHECK(again.status == 304);
  CHECK(again.body.empty());
  CHECK(get(page, "/terminal/terminal.js", {{"if-none-match", "\"other\""}}).status == 200);
  CHECK(get(page, "/terminal/xterm.js").headers["ETag"] != first.headers["ETag"]);
}

TEST_CASE("terminal page: nothing but the page's files is served", "[terminal]") {
  PageDir dir;
  TerminalPage page = TerminalPage::load(dir.path);
  for (const char* path :
       {"/terminal/../terminal-page-secret", "/terminal/..%2fterminal-page-secret", "/terminal//etc/passwd",
        "/terminal/xterm.js/", "/terminal/./xterm.js", "/terminal/index.html.bak", "/terminal/ws", "/terminalx"}) {
    INFO(path);
    auto response = get(page, path);
    CHECK(response.status == 404);
    CHECK(response.body.find("s3cr3t") == std::string::npos);
  }
}

TEST_CASE("terminal page: missing files are a 503 that names them", "[terminal]") {
  PageDir dir(false);
  TerminalPage page = TerminalPage::load(dir.path);
  CHECK(page.missing() == std::vector<std::string>{"xterm.js"});
  auto response = get(page, "/terminal/xterm.js");
  CHECK(response.status == 503);
  CHECK(response.body.find("xterm.js") != std::string::npos);
  CHECK(response.body.find("--terminal-assets") != std::string::npos);
  CHECK(get(page, "/terminal/").status == 200);

  TerminalPage nothing = TerminalPage::load(dir.path / "absent");
  CHECK(nothing.missing().size() == terminal_page_files().size());
  CHECK(get(nothing, "/terminal/").status == 503);
}
