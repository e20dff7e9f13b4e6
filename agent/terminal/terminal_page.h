#pragma once
// The web terminal's page at {sandbox_url}/terminal/: our page and script with xterm.js and its fit
// addon (from npm, unpacked at build time; agent/terminal/CMakeLists.txt), served by the agent for
// every image. The files are read once, when the agent starts, into memory: only the names of a
// fixed list are ever served, so no path reaches the disk. The page's WebSocket, /terminal/ws, is
// the front's (agent/front/terminal_bridge.h).

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "agent/http.h"

namespace modbox {

class TerminalPage {
 public:
  /// Reads the page's files from `directory`. Files that are missing are named in the 503 the page
  /// answers then (missing() tells them), so that the agent runs without them.
  static TerminalPage load(const std::filesystem::path& directory);

  /// GET or HEAD /terminal (a redirect to /terminal/), /terminal/ (the page) or /terminal/FILE.
  HttpResponse serve(const HttpRequest& request) const;

  /// The files the page needs that could not be read.
  const std::vector<std::string>& missing() const { return missing_; }
  const std::filesystem::path& directory() const { return directory_; }

 private:
  struct File {
    std::string content_type;
    std::string bytes;
    std::string etag;
  };
  std::filesystem::path directory_;
  std::map<std::string, File, std::less<>> files_;
  std::vector<std::string> missing_;
};

/// The files the page is made of, as installed in the assets directory.
const std::vector<std::string>& terminal_page_files();

/// Where an installed agent finds the page: share/modbox/terminal beside the directory of the
/// running executable (PREFIX/bin/modboxd → PREFIX/share/modbox/terminal; build/bin likewise).
std::filesystem::path default_terminal_assets_dir();

}  // namespace modbox
