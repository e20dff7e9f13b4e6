#include "agent/multipart.h"

#include <cctype>

namespace modbox {

namespace {

constexpr std::size_t boundary_max = 70;  // RFC 2046
/// Blanks allowed between a delimiter and its line break (transport padding, RFC 2046).
constexpr std::size_t padding_max = 256;

std::string lower(std::string_view text) {
  std::string lowered(text);
  for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lowered;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

/// Reads `key=value` parameters after a header's first `;`: values are tokens or quoted strings
/// (a backslash escapes the next character). Calls `on_parameter(lowercase key, value)`.
template <typename OnParameter>
bool read_parameters(std::string_view text, OnParameter on_parameter) {
  std::size_t at = text.find(';');
  while (at != std::string_view::npos && at < text.size()) {
    ++at;
    while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
    std::size_t equals = text.find('=', at);
    if (equals == std::string_view::npos) return trim(text.substr(at)).empty();  // a trailing ';' only
    std::string key = lower(trim(text.substr(at, equals - at)));
    std::string value;
    std::size_t next = equals + 1;
    if (next < text.size() && text[next] == '"') {
      ++next;
      bool closed = false;
      for (; next < text.size(); ++next) {
        char c = text[next];
        if (c == '\\' && next + 1 < text.size()) {
          value.push_back(text[++next]);
        } else if (c == '"') {
          closed = true;
          ++next;
          break;
        } else {
          value.push_back(c);
        }
      }
      if (!closed) return false;
      std::size_t semicolon = text.find(';', next);
      if (!trim(text.substr(next, semicolon == std::string_view::npos ? std::string_view::npos : semicolon - next))
               .empty())
        return false;
      at = semicolon;
    } else {
      std::size_t semicolon = text.find(';', next);
      value = std::string(
          trim(text.substr(next, semicolon == std::string_view::npos ? std::string_view::npos : semicolon - next)));
      at = semicolon;
    }
    on_parameter(key, value);
  }
  return true;
}

}  // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  std::size_t semicolon = content_type.find(';');
  if (lower(trim(content_type.substr(0, semicolon))) != "multipart/form-data") return std::nullopt;
  std::optional<std::string> boundary;
  bool parsed = read_parameters(content_type, [&](const std::string& key, const std::string& value) {
    if (key == "boundary") boundary = value;
  });
  if (!parsed || !boundary || boundary->empty() || boundary->size() > boundary_max) return std::nullopt;
  return boundary;
}

MultipartParser::MultipartParser(std::string_view boundary, MultipartPartHandler on_part, BodyChunkHandler on_data)
    : delimiter_("\r\n--" + std::string(boundary)),
      on_part_(std::move(on_part)),
      on_data_(std::move(on_data)),
      // The first delimiter may open the body without a line break before it.
      buffer_("\r\n") {}

bool MultipartParser::fail() {
  state_ = State::failed;
  buffer_.clear();
  return false;
}

bool MultipartParser::feed(std::string_view bytes) {
  if (state_ == State::failed) return false;
  if (state_ == State::epilogue) return true;  // what follows the closing delimiter is ignored
  buffer_.append(bytes);
  for (;;) {
    switch (state_) {
      case State::preamble: {
        std::size_t at = buffer_.find(delimiter_);
        if (at == std::string::npos) {
          // Keep only what could be the start of a delimiter.
          if (buffer_.size() >= delimiter_.size()) buffer_.erase(0, buffer_.size() - (delimiter_.size() - 1));
          return true;
        }
        buffer_.erase(0, at + delimiter_.size());
        state_ = State::after_delimiter;
        continue;
      }
      case State::after_delimiter: {
        // "--" closes the body; otherwise optional spaces or tabs, then a line break, open a part.
        if (buffer_.size() < 2) return true;
        if (buffer_.starts_with("--")) {
          state_ = State::epilogue;
          buffer_.clear();
          return true;
        }
        // At most padding_max blanks, whether they arrive in one read or byte by byte.
        std::size_t text = buffer_.find_first_not_of(" \t");
        if (text == std::string::npos) return buffer_.size() <= padding_max ? true : fail();
        if (text > padding_max) return fail();
        if (buffer_.size() < text + 2) return true;
        if (buffer_.compare(text, 2, "\r\n") != 0) return fail();
        buffer_.erase(0, text + 2);
        state_ = State::headers;
        continue;
      }
      case State::headers: {
        if (buffer_.size() < 2) return true;
        std::size_t end = buffer_.starts_with("\r\n") ? 0 : buffer_.find("\r\n\r\n");
        // Headers of up to headers_max bytes, then "\r\n\r\n": give up only once that cannot come,
        // so that how the body is cut into reads never decides.
        if (end == std::string::npos) return buffer_.size() < headers_max + 4 ? true : fail();
        if (end > headers_max || !parse_headers(std::string_view(buffer_).substr(0, end))) return fail();
        buffer_.erase(0, end == 0 ? 2 : end + 4);
        state_ = State::body;
        continue;
      }
      case State::body: {
        std::size_t at = buffer_.find(delimiter_);
        if (at == std::string::npos) {
          // All but what could be the start of the delimiter is content.
          if (buffer_.size() >= delimiter_.size()) {
            std::size_t content = buffer_.size() - (delimiter_.size() - 1);
            if (!on_data_(std::string_view(buffer_).substr(0, content))) return fail();
            buffer_.erase(0, content);
          }
          return true;
        }
        if (at > 0 && !on_data_(std::string_view(buffer_).substr(0, at))) return fail();
        buffer_.erase(0, at + delimiter_.size());
        state_ = State::after_delimiter;
        continue;
      }
      case State::epilogue:
        buffer_.clear();
        return true;
      case State::failed:
        return false;
    }
  }
}

bool MultipartParser::parse_headers(std::string_view block) {
  MultipartPart part;
  bool disposition = false;
  while (!block.empty()) {
    std::size_t end = block.find("\r\n");
    std::string_view line = block.substr(0, end);
    block = end == std::string_view::npos ? std::string_view() : block.substr(end + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return false;
    std::string name = lower(trim(line.substr(0, colon)));
    std::string_view value = trim(line.substr(colon + 1));
    if (name == "content-disposition") {
      std::size_t semicolon = value.find(';');
      if (lower(trim(value.substr(0, semicolon))) != "form-data") return false;
      disposition = read_parameters(value, [&](const std::string& key, const std::string& parameter) {
        if (key == "name")
          part.name = parameter;
        else if (key == "filename")
          part.filename = parameter;
      });
      if (!disposition) return false;
    } else if (name == "content-type") {
      part.content_type = std::string(value);
    }
  }
  if (!disposition) return false;  // RFC 7578: every part has one
  return on_part_(part);
}

}  // namespace modbox
