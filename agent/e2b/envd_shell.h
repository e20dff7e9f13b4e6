#pragma once
// Shell text for the commands envd's calls run in the sandbox (agent/e2b/envd_service.h).

#include <string>
#include <string_view>

namespace modbox::e2b {

/// `text` as one word of a POSIX shell command, quoted.
inline std::string shell_quote(std::string_view text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'')
      quoted += "'\\''";
    else
      quoted += c;
  }
  return quoted + "'";
}

/// Starts a command in the user's home, where envd runs commands and resolves relative paths when
/// the request names no directory.
inline std::string home_prefix() {
  return "cd ~ 2>/dev/null; ";
}

/// Sends every byte on a socket (no SIGPIPE); false when the peer is gone.
bool send_all(int fd, std::string_view bytes);

}  // namespace modbox::e2b
