#include "agent/terminal/terminal_page.h"

#include <cstdio>

#include "common/models.h"
#include "common/system.h"

namespace modbox {

namespace {

constexpr std::string_view page_path = "/terminal/";
/// The page's own files stay small; xterm.js is about 0.5 MiB.
constexpr std::size_t file_max = 8 << 20;

std::string content_type_of(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  return "application/octet-stream";
}

/// A strong validator of the bytes (FNV-1a, 64 bits): the same file gives the same tag across
/// agent restarts, a changed one another.
std::string etag_of(std::string_view bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  char tag[24];
  std::snprintf(tag, sizeof tag, "\"%016llx\"", static_cast<unsigned long long>(hash));
  return tag;
}

HttpResponse error_answer(ErrorKind kind, std::string sentence) {
  return error_response(Error{kind, std::move(sentence), {}});
}

}  // namespace

const std::vector<std::string>& terminal_page_files() {
  static const std::vector<std::string> files = {"index.html", "terminal.js", "terminal.css",
                                                 "xterm.js",   "xterm.css",   "addon-fit.js"};
  return files;
}

std::filesystem::path default_terminal_assets_dir() {
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "share/modbox/terminal";
  return (self.parent_path().parent_path() / "share" / "modbox" / "terminal").lexically_normal();
}

TerminalPage TerminalPage::load(const std::filesystem::path& directory) {
  TerminalPage page;
  page.directory_ = directory;
  for (const auto& name : terminal_page_files()) {
    auto bytes = read_file(directory / name, file_max);
    if (!bytes) {
      page.missing_.push_back(name);
      continue;
    }
    std::string etag = etag_of(*bytes);
    page.files_.emplace(name, File{content_type_of(name), std::move(*bytes), std::move(etag)});
  }
  return page;
}

HttpResponse TerminalPage::serve(const HttpRequest& request) const {
  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse response = json_response(
        405, error_to_json(Error{ErrorKind::bad_request, request.path + " answers GET, not " + request.method, {}}));
    response.headers["Allow"] = "GET, HEAD";
    return response;
  }
  if (request.path == "/terminal") {
    // The page loads its files by relative URLs, which resolve under /terminal/ only.
    HttpResponse response;
    response.status = 301;
    response.content_type = "text/plain; charset=utf-8";
    response.body = "the terminal is at /terminal/\n";
    response.headers["Location"] = std::string(page_path);
    return response;
  }
  if (!request.path.starts_with(page_path))
    return error_answer(ErrorKind::not_found, "no route " + request.method + " " + request.path + " on this sandbox");
  std::string_view name = std::string_view(request.path).substr(page_path.size());
  if (name.empty()) name = "index.html";
  auto file = files_.find(name);
  if (file == files_.end()) {
    bool known = false;
    for (const auto& wanted : terminal_page_files()) known = known || wanted == name;
    if (!known)
      return error_answer(ErrorKind::not_found, "no route " + request.method + " " + request.path + " on this sandbox");
    std::string list;
    for (const auto& missing : missing_) list += (list.empty() ? "" : ", ") + missing;
    return error_answer(ErrorKind::unavailable, "the terminal's files are not installed (missing in " +
                                                    directory_.string() + ": " + list +
                                                    "); reinstall modbox or start modboxd with --terminal-assets DIR");
  }
  HttpResponse response;
  response.headers["ETag"] = file->second.etag;
  // Revalidated on every load (a 304 when unchanged), so an upgraded agent's page is never mixed
  // with an old one's scripts.
  response.headers["Cache-Control"] = "no-cache";
  response.headers["X-Content-Type-Options"] = "nosniff";
  if (name == "index.html") {
    // xterm.js writes its theme into a <style> element it creates, hence 'unsafe-inline' for styles.
    response.headers["Content-Security-Policy"] =
        "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; object-src 'none'; "
        "base-uri 'none'";
    response.headers["Referrer-Policy"] = "no-referrer";
  }
  if (const std::string* match = request.header("if-none-match"); match != nullptr && *match == file->second.etag) {
    response.status = 304;
    response.content_type.clear();
    return response;
  }
  response.content_type = file->second.content_type;
  response.body = file->second.bytes;
  return response;
}

}  // namespace modbox
