#pragma once
// A streaming multipart/form-data parser (RFC 7578) with bounded memory: whatever a client sends,
// it holds at most one part's headers (16 KiB) or a delimiter's length of body at a time, and
// refuses what it cannot parse instead of buffering it.

#include <optional>
#include <string>
#include <string_view>

#include "agent/http.h"

namespace modbox {

/// The boundary parameter of a multipart/form-data Content-Type, or nullopt.
std::optional<std::string> multipart_boundary(std::string_view content_type);

class MultipartParser {
 public:
  static constexpr std::size_t headers_max = 16 << 10;

  MultipartParser(std::string_view boundary, MultipartPartHandler on_part, BodyChunkHandler on_data);

  /// Takes the next bytes of the body, in pieces of any size. False when the body is malformed
  /// or a handler asked to stop; the parser then takes nothing more.
  bool feed(std::string_view bytes);
  /// Whether the closing delimiter has come: a body cut off before it is incomplete.
  bool complete() const { return state_ == State::epilogue; }

 private:
  enum class State { preamble, after_delimiter, headers, body, epilogue, failed };

  bool step();
  bool fail();
  bool parse_headers(std::string_view block);

  std::string delimiter_;  // "\r\n--" + boundary
  MultipartPartHandler on_part_;
  BodyChunkHandler on_data_;
  std::string buffer_;
  State state_ = State::preamble;
};

}  // namespace modbox
