#pragma once
// `modbox shell` and `modbox exec -i/-t`: a session in a sandbox over its terminal WebSocket
// ({sandbox_url}/terminal/ws, common/terminal_protocol.h), wired to this process's stdin, stdout and
// stderr, as `docker exec -it` does.
//
// On a terminal (tty) the local terminal is put in raw mode for the session, so every key goes to
// the sandbox (^C included), and restored whatever ends it: the command's exit, an error, the
// connection dropping, or SIGINT, SIGTERM or SIGHUP sent to modbox. Its size follows the local
// window (SIGWINCH). On pipes the command's stdout and stderr come back apart. stdin (when forwarded)
// is read by a thread of its own, since a file or /dev/null cannot wait in an event loop; everything
// else runs on one thread.

#include <string>

#include "common/result.h"
#include "common/terminal_protocol.h"

namespace modbox {

struct InteractiveOptions {
  std::string sandbox_url;  // http://HOST:PORT
  std::string token;        // a credential the sandbox URL accepts (the owner token)
  /// What runs, and how. On a terminal its size is taken from the local terminal when there is one.
  terminal::SessionOptions session;
  /// Send stdin to the command, then the end of input (-i). Without, the command's stdin stays open
  /// and empty.
  bool forward_stdin = true;
};

/// Runs the session until its command exits; its exit status (0–255), or 128+n when signal n made
/// modbox give up on it (the session is then ended too). An error when the session cannot start (its
/// refusal's sentence) or the connection ends before the command's exit.
Result<int> run_interactive_session(const InteractiveOptions& options);

}  // namespace modbox
