// The plain HTTP types' helpers: response builders and the few pieces of HTTP that handlers and the
// front share (byte ranges, URL decoding), without any HTTP library.

#include "agent/http.h"

#include <cctype>

#include "common/models.h"

namespace modbox {

HttpResponse json_response(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse error_response(const Error& error) {
  return json_response(http_status(error.kind), error_to_json(error));
}

HttpResponse refuse_method(const HttpRequest& request, const char* allowed) {
  HttpResponse response = json_response(
      405, error_to_json(
               Error{ErrorKind::bad_request, request.path + " answers " + allowed + ", not " + request.method, {}}));
  response.headers["Allow"] = allowed;
  return response;
}

bool wants_event_stream(const HttpRequest& request) {
  const std::string* accept = request.header("accept");
  return accept != nullptr && accept->find("text/event-stream") != std::string::npos;
}

HttpResponse event_stream_response(std::function<bool(const BodyWriter& write)> produce) {
  HttpResponse response;
  response.content_type = "text/event-stream";
  response.headers["Cache-Control"] = "no-cache";
  response.stream_chunked = true;
  response.stream = [produce = std::move(produce)](std::uint64_t, std::uint64_t, const BodyWriter& write) {
    return produce(write);
  };
  return response;
}

std::optional<ByteRange> single_byte_range(std::string_view header, std::uint64_t size) {
  constexpr std::string_view prefix = "bytes=";
  if (!header.starts_with(prefix)) return std::nullopt;
  std::string_view spec = header.substr(prefix.size());
  std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos || spec.find_first_not_of("0123456789-") != std::string_view::npos ||
      spec.find('-', dash + 1) != std::string_view::npos)
    return std::nullopt;
  auto number = [](std::string_view digits) -> std::optional<std::uint64_t> {
    if (digits.empty() || digits.size() > 18) return std::nullopt;
    return std::stoull(std::string(digits));
  };
  auto first = number(spec.substr(0, dash));
  auto last = number(spec.substr(dash + 1));
  if (!first && !last) return std::nullopt;
  if (!first) {  // the last N bytes
    if (*last == 0 || size == 0) return std::nullopt;
    return ByteRange{size - std::min(*last, size), size - 1};
  }
  if (*first >= size) return std::nullopt;
  if (!last) return ByteRange{*first, size - 1};
  if (*last < *first || *last >= size) return std::nullopt;
  return ByteRange{*first, *last};
}

std::string url_decode(std::string_view text, bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string decoded;
  decoded.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int high = hex(text[i + 1]);
      int low = hex(text[i + 2]);
      if (high >= 0 && low >= 0) {
        decoded.push_back(static_cast<char>(high * 16 + low));
        i += 2;
        continue;
      }
    }
    decoded.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return decoded;
}

std::multimap<std::string, std::string> parse_query(std::string_view query) {
  std::multimap<std::string, std::string> parameters;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t equals = pair.find('=');
    std::string name = url_decode(pair.substr(0, equals), true);
    std::string value = equals == std::string_view::npos ? std::string() : url_decode(pair.substr(equals + 1), true);
    parameters.emplace(std::move(name), std::move(value));  // after any of the same name: order is kept
  }
  return parameters;
}

}  // namespace modbox
