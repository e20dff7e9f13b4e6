#include "agent/front/head_checks.h"

#include <algorithm>
#include <cctype>

#include "agent/front/http_text.h"

namespace modbox::front {

namespace {

HeadScan refused(int status, std::string reason) {
  HeadScan scan;
  scan.state = HeadScan::State::refused;
  scan.refusal = {status, std::move(reason)};
  return scan;
}

}  // namespace

HeadScan scan_request_head(std::string_view bytes, const HeadLimits& limits) {
  HeadScan scan;
  while (bytes.substr(scan.skipped).starts_with("\r\n")) scan.skipped += 2;
  // A lone "\r" at the end may be the start of another empty line: wait for more.
  std::string_view head = bytes.substr(scan.skipped);
  std::size_t line_end = head.find("\r\n");
  // Still arriving: a "\r" at the end may be the line's own end, whose "\n" is in the next read.
  std::size_t line_length = line_end != std::string_view::npos ? line_end
                            : head.ends_with('\r')              ? head.size() - 1
                                                                : head.size();
  if (line_length > limits.request_line_max)
    return refused(414, "the request line is longer than " + std::to_string(limits.request_line_max) + " bytes");
  std::size_t end = head.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (head.size() > limits.head_max)
      return refused(431, "the request head is larger than " + std::to_string(limits.head_max) + " bytes");
    return scan;
  }
  if (end + 4 > limits.head_max)
    return refused(431, "the request head is larger than " + std::to_string(limits.head_max) + " bytes");
  scan.state = HeadScan::State::complete;
  scan.head_size = end + 4;
  return scan;
}

std::optional<HeadRefusal> check_request_head(std::string_view head) {
  std::size_t first_line_end = head.find("\r\n");
  if (first_line_end == std::string_view::npos) return HeadRefusal{400, "the request head is malformed"};
  std::string_view fields = head.substr(first_line_end + 2);
  int content_lengths = 0;
  int authorizations = 0;
  bool transfer_encoding = false;
  while (!fields.empty()) {
    std::size_t end = fields.find("\r\n");
    std::string_view line = fields.substr(0, end);
    fields = end == std::string_view::npos ? std::string_view() : fields.substr(end + 2);
    if (line.empty()) break;  // the blank line that ends the head
    if (line.front() == ' ' || line.front() == '\t')
      return HeadRefusal{400, "header lines folded onto several lines (obs-fold) are not accepted"};
    if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos)
      return HeadRefusal{400, "a header line holds a bare line break"};
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return HeadRefusal{400, "a header line has no field name"};
    std::string_view name = line.substr(0, colon);
    if (name.back() == ' ' || name.back() == '\t')
      return HeadRefusal{400, "whitespace between a header name and its colon is not accepted"};
    std::string_view value = trim_blanks(line.substr(colon + 1));
    if (equals_ignoring_case(name, "content-length")) {
      if (++content_lengths > 1) return HeadRefusal{400, "the request has more than one Content-Length"};
      if (value.empty() || value.size() > 18 || value.find_first_not_of("0123456789") != std::string_view::npos)
        return HeadRefusal{400, "the Content-Length is not a number"};
    } else if (equals_ignoring_case(name, "authorization")) {
      // Two credentials leave it to each reader which one counts (the front checks one, an app behind
      // it may read the other), so neither is taken.
      if (++authorizations > 1) return HeadRefusal{400, "the request has more than one Authorization header: send one"};
    } else if (equals_ignoring_case(name, "transfer-encoding")) {
      if (transfer_encoding) return HeadRefusal{400, "the request has more than one Transfer-Encoding"};
      transfer_encoding = true;
      if (!equals_ignoring_case(value, "chunked"))
        return HeadRefusal{
            501, "the only Transfer-Encoding accepted is 'chunked', not '" + std::string(value.substr(0, 100)) + "'"};
    }
  }
  if (content_lengths > 0 && transfer_encoding)
    return HeadRefusal{400, "the request has both Content-Length and Transfer-Encoding"};
  return std::nullopt;
}

}  // namespace modbox::front
