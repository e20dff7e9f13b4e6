#pragma once
// What the two halves of envd's service (agent/e2b/envd_service.cpp: processes, and
// agent/e2b/envd_files.cpp: the filesystem) share.

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "agent/e2b/connect_codec.h"
#include "agent/http.h"
#include "common/encoding.h"

namespace modbox::e2b {

/// Starts a command in the user's home, where envd runs commands and resolves relative paths when
/// the request names no directory.
inline std::string home_prefix() {
  return "cd ~ 2>/dev/null; ";
}

/// Sends every byte on a socket (no SIGPIPE); false when the peer is gone.
bool send_all(int fd, std::string_view bytes);

/// A unary Connect call's answers: its error with the code's HTTP status, or 200 with the message.
HttpResponse unary_error(const connect::ConnectError& error);
HttpResponse unary_ok(const nlohmann::json& message);

}  // namespace modbox::e2b
