#pragma once
// The Connect protocol's JSON flavour, as E2B's envd speaks it and the `e2b` SDK expects it
// (connectrpc.com/docs/protocol): enveloped messages for streams, the end-of-stream message, the
// error JSON with its HTTP status, and the proto3-JSON value rules (base64 bytes, int64 as strings,
// enums by name). Transport-free, so it is tested without sockets.

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace modbox::connect {

/// The largest envelope payload accepted from a client (resource_exhausted beyond).
inline constexpr std::uint32_t envelope_payload_max = 4u << 20;
inline constexpr std::size_t envelope_header_size = 5;

enum EnvelopeFlags : std::uint8_t {
  message = 0x00,
  compressed = 0x01,
  end_stream = 0x02,
};

struct Envelope {
  std::uint8_t flags = message;
  std::string payload;
};

/// Connect's error codes, spelled as on the wire.
enum class Code {
  canceled,
  unknown,
  invalid_argument,
  deadline_exceeded,
  not_found,
  already_exists,
  permission_denied,
  resource_exhausted,
  failed_precondition,
  aborted,
  out_of_range,
  unimplemented,
  internal,
  unavailable,
  data_loss,
  unauthenticated,
};

struct ConnectError {
  Code code = Code::unknown;
  std::string message;
};

/// "invalid_argument" for Code::invalid_argument.
std::string_view code_name(Code code);
/// The HTTP status a unary error answers with (Connect's codeToHttpStatus).
int http_status(Code code);
/// The code for one of modbox's errors (not_found → not_found, conflict → failed_precondition, ...).
Code code_for(ErrorKind kind);
inline ConnectError connect_error_for(const Error& error) {
  return {code_for(error.kind), error.message};
}

/// `{"code":"not_found","message":"..."}`: the body of a unary error.
std::string error_json(const ConnectError& error);
/// The end-of-stream payload: `{}`, or `{"error":{...}}`.
std::string end_stream_json(const std::optional<ConnectError>& error);

/// One envelope: flags, the payload's length (big-endian), the payload.
std::string encode_envelope(std::uint8_t flags, std::string_view payload);
inline std::string message_envelope(std::string_view json) {
  return encode_envelope(message, json);
}
inline std::string end_stream_envelope(const std::optional<ConnectError>& error) {
  return encode_envelope(end_stream, end_stream_json(error));
}

/// Splits a request body into envelopes, however the bytes were cut. Refuses a payload longer than
/// `payload_max` from its header alone, before buffering it, and compressed envelopes (no
/// compression is ever negotiated).
class EnvelopeParser {
 public:
  explicit EnvelopeParser(std::uint32_t payload_max = envelope_payload_max) : payload_max_(payload_max) {}
  /// Adds bytes; fails (and stays failed) on an oversized or compressed envelope.
  Result<void> feed(std::string_view bytes);
  /// The next complete envelope, or nullopt while more bytes are needed.
  std::optional<Envelope> next();
  /// Bytes held that are not a complete envelope yet: non-zero at the end of a body means it was
  /// cut short.
  std::size_t pending() const { return buffer_.size() - offset_; }

 private:
  Result<void> check_header() const;

  std::uint32_t payload_max_;
  std::string buffer_;
  std::size_t offset_ = 0;
  std::optional<Error> failed_;
};

/// The one message of a server-streaming request body: exactly one message envelope, nothing else.
/// invalid_argument for anything else, resource_exhausted for an oversized one.
std::expected<std::string, ConnectError> single_request_message(std::string_view body);

// proto3-JSON values, read leniently as protobuf-es writes them and accepts them.

/// bytes: standard or URL-safe base64, padded or not. nullopt when it is neither.
std::optional<std::string> decode_bytes(std::string_view text);
/// int64/uint64 fields: a JSON number or a decimal string. nullopt otherwise.
std::optional<std::int64_t> read_int64(const nlohmann::json& value);
/// An unsigned 32-bit field (a pid): a non-negative JSON number, or a decimal string, that fits.
std::optional<std::uint32_t> read_uint32(const nlohmann::json& value);
/// int64 as proto3 JSON writes it: a decimal string.
inline std::string int64_json(std::int64_t value) {
  return std::to_string(value);
}

}  // namespace modbox::connect
