#include "agent/e2b/connect_codec.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "common/encoding.h"

namespace modbox::connect {

using nlohmann::json;

std::string_view code_name(Code code) {
  switch (code) {
    case Code::canceled:
      return "canceled";
    case Code::unknown:
      return "unknown";
    case Code::invalid_argument:
      return "invalid_argument";
    case Code::deadline_exceeded:
      return "deadline_exceeded";
    case Code::not_found:
      return "not_found";
    case Code::already_exists:
      return "already_exists";
    case Code::permission_denied:
      return "permission_denied";
    case Code::resource_exhausted:
      return "resource_exhausted";
    case Code::failed_precondition:
      return "failed_precondition";
    case Code::aborted:
      return "aborted";
    case Code::out_of_range:
      return "out_of_range";
    case Code::unimplemented:
      return "unimplemented";
    case Code::internal:
      return "internal";
    case Code::unavailable:
      return "unavailable";
    case Code::data_loss:
      return "data_loss";
    case Code::unauthenticated:
      return "unauthenticated";
  }
  return "unknown";
}

int http_status(Code code) {
  switch (code) {
    case Code::invalid_argument:
    case Code::failed_precondition:
    case Code::out_of_range:
      return 400;
    case Code::unauthenticated:
      return 401;
    case Code::permission_denied:
      return 403;
    case Code::not_found:
      return 404;
    case Code::already_exists:
    case Code::aborted:
      return 409;
    case Code::resource_exhausted:
      return 429;
    case Code::canceled:
      return 499;
    case Code::unimplemented:
      return 501;
    case Code::unavailable:
      return 503;
    case Code::deadline_exceeded:
      return 504;
    case Code::unknown:
    case Code::internal:
    case Code::data_loss:
      return 500;
  }
  return 500;
}

Code code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::bad_request:
    case ErrorKind::validation:
      return Code::invalid_argument;
    case ErrorKind::unauthorized:
      return Code::unauthenticated;
    case ErrorKind::forbidden:
      return Code::permission_denied;
    case ErrorKind::not_found:
      return Code::not_found;
    case ErrorKind::conflict:
      return Code::failed_precondition;
    case ErrorKind::timeout:
      return Code::deadline_exceeded;
    case ErrorKind::too_large:
    case ErrorKind::insufficient_storage:
      return Code::resource_exhausted;
    case ErrorKind::bad_gateway:
    case ErrorKind::unavailable:
      return Code::unavailable;
    case ErrorKind::internal:
      return Code::internal;
  }
  return Code::unknown;
}

std::string error_json(const ConnectError& error) {
  return json{{"code", code_name(error.code)}, {"message", error.message}}.dump(-1, ' ', false,
                                                                                json::error_handler_t::replace);
}

std::string end_stream_json(const std::optional<ConnectError>& error) {
  if (!error) return "{}";
  json body = {{"error", {{"code", code_name(error->code)}, {"message", error->message}}}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_envelope(std::uint8_t flags, std::string_view payload) {
  std::string bytes;
  bytes.reserve(envelope_header_size + payload.size());
  auto length = static_cast<std::uint32_t>(payload.size());
  bytes.push_back(static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((length >> shift) & 0xff));
  bytes.append(payload);
  return bytes;
}

Result<void> EnvelopeParser::check_header() const {
  if (pending() < envelope_header_size) return {};
  auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(buffer_[offset_ + i]); };
  std::uint8_t flags = byte(0);
  if (flags & compressed) return fail(ErrorKind::bad_request, "compressed envelopes are not supported");
  if (flags & ~(compressed | end_stream)) return fail(ErrorKind::bad_request, "unknown envelope flags");
  std::uint32_t length = (std::uint32_t{byte(1)} << 24) | (std::uint32_t{byte(2)} << 16) |
                         (std::uint32_t{byte(3)} << 8) | std::uint32_t{byte(4)};
  if (length > payload_max_) {
    return fail(ErrorKind::too_large, "message of " + std::to_string(length) + " bytes is larger than the " +
                                          std::to_string(payload_max_) + " bytes allowed");
  }
  return {};
}

Result<void> EnvelopeParser::feed(std::string_view bytes) {
  if (failed_) return std::unexpected(*failed_);
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  buffer_.append(bytes);
  auto checked = check_header();
  if (!checked) failed_ = checked.error();
  return checked;
}

std::optional<Envelope> EnvelopeParser::next() {
  if (failed_ || pending() < envelope_header_size || !check_header()) return std::nullopt;
  auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(buffer_[offset_ + i]); };
  std::uint32_t length = (std::uint32_t{byte(1)} << 24) | (std::uint32_t{byte(2)} << 16) |
                         (std::uint32_t{byte(3)} << 8) | std::uint32_t{byte(4)};
  if (pending() < envelope_header_size + length) return std::nullopt;
  Envelope envelope{byte(0), buffer_.substr(offset_ + envelope_header_size, length)};
  offset_ += envelope_header_size + length;
  if (auto checked = check_header(); !checked) failed_ = checked.error();
  return envelope;
}

std::expected<std::string, ConnectError> single_request_message(std::string_view body) {
  EnvelopeParser parser;
  if (auto fed = parser.feed(body); !fed) return std::unexpected(connect_error_for(fed.error()));
  auto envelope = parser.next();
  if (!envelope || envelope->flags != message) {
    return std::unexpected(ConnectError{Code::invalid_argument, "the request body is not one enveloped message"});
  }
  if (parser.pending() > 0 || parser.next()) {
    return std::unexpected(ConnectError{Code::invalid_argument, "the request body holds more than one message"});
  }
  return std::move(envelope->payload);
}

std::optional<std::string> decode_bytes(std::string_view text) {
  std::string standard(text);
  for (char& c : standard) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (standard.size() % 4 != 0) standard.push_back('=');
  return base64_decode(standard);
}

namespace {
template <class T>
std::optional<T> parse_decimal(std::string_view text) {
  T value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}
}  // namespace

std::optional<std::int64_t> read_int64(const json& value) {
  if (value.is_number_integer()) return value.get<std::int64_t>();
  if (value.is_string()) return parse_decimal<std::int64_t>(value.get_ref<const std::string&>());
  return std::nullopt;
}

std::optional<std::uint32_t> read_uint32(const json& value) {
  if (value.is_number_unsigned()) {
    auto number = value.get<std::uint64_t>();
    if (number <= UINT32_MAX) return static_cast<std::uint32_t>(number);
    return std::nullopt;
  }
  if (value.is_number_integer()) {
    auto number = value.get<std::int64_t>();
    if (number >= 0 && number <= UINT32_MAX) return static_cast<std::uint32_t>(number);
    return std::nullopt;
  }
  if (value.is_string()) return parse_decimal<std::uint32_t>(value.get_ref<const std::string&>());
  return std::nullopt;
}

}  // namespace modbox::connect
