#pragma once
// What the front refuses in a request head before any parser sees it: the size limits and the shapes
// that let two HTTP parsers disagree about where a request ends (request smuggling). Pure functions
// over bytes, so every case is unit-tested without sockets.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace modbox::front {

struct HeadLimits {
  std::size_t request_line_max = 8 << 10;  // 414 beyond
  std::size_t head_max = 64 << 10;         // 431 beyond (request line and header fields together)
};

/// Why a head is refused: the status to answer (400, 414, 431, 501) and a sentence.
struct HeadRefusal {
  int status = 400;
  std::string reason;
};

/// How far a request head has arrived in `bytes` (what the connection has read so far).
struct HeadScan {
  enum class State { incomplete, complete, refused };
  State state = State::incomplete;
  std::size_t skipped = 0;    // empty lines before the request line, which are ignored (RFC 9112 2.2)
  std::size_t head_size = 0;  // when complete: from the request line to the end of the blank line
  HeadRefusal refusal;        // when refused
};
HeadScan scan_request_head(std::string_view bytes, const HeadLimits& limits = {});

/// Checks a complete head (request line to blank line): refuses obs-fold, both Content-Length and
/// Transfer-Encoding, more than one Content-Length, a Content-Length that is not a number, a
/// Transfer-Encoding other than `chunked`, and more than one Authorization. nullopt: the head may be parsed.
std::optional<HeadRefusal> check_request_head(std::string_view head);

}  // namespace modbox::front
