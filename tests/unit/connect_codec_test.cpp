// The Connect codec of the E2B envd front: envelopes parse the same however the bytes are cut,
// oversized and compressed envelopes are refused from their header, errors carry Connect's codes
// and statuses, and proto3-JSON values read as protobuf-es writes them.

#include "agent/e2b/connect_codec.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace modbox;
using namespace modbox::connect;

TEST_CASE("Envelopes round-trip whatever the cut of the bytes", "[connect]") {
  std::string stream = message_envelope(R"({"a":1})") + message_envelope("{}") + end_stream_envelope(std::nullopt);
  for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
    EnvelopeParser parser;
    std::vector<Envelope> envelopes;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
      REQUIRE(parser.feed(std::string_view(stream).substr(at, piece)));
      while (auto envelope = parser.next()) envelopes.push_back(*envelope);
    }
    REQUIRE(envelopes.size() == 3);
    CHECK(envelopes[0].flags == message);
    CHECK(envelopes[0].payload == R"({"a":1})");
    CHECK(envelopes[1].payload == "{}");
    CHECK(envelopes[2].flags == end_stream);
    CHECK(envelopes[2].payload == "{}");
    CHECK(parser.pending() == 0);
  }
}

TEST_CASE("An envelope header is big-endian flags then length", "[connect]") {
  std::string bytes = encode_envelope(end_stream, "xyz");
  REQUIRE(bytes.size() == 8);
  CHECK(bytes[0] == 2);
  CHECK(bytes.substr(1, 4) == std::string("\0\0\0\3", 4));
  CHECK(bytes.substr(5) == "xyz");
}

TEST_CASE("An oversized envelope is refused from its header alone", "[connect]") {
  EnvelopeParser parser;
  std::string header = std::string("\0", 1) + std::string("\0\x40\0\x01", 4);  // 4 MiB + 1
  auto fed = parser.feed(header);
  REQUIRE_FALSE(fed);
  CHECK(fed.error().kind == ErrorKind::too_large);
  CHECK_FALSE(parser.next());
  CHECK_FALSE(parser.feed("{}"));  // stays failed

  auto single = single_request_message(header + "{}");
  REQUIRE_FALSE(single);
  CHECK(single.error().code == Code::resource_exhausted);

  std::string exactly(envelope_payload_max, ' ');
  CHECK(single_request_message(message_envelope(exactly)).value().size() == envelope_payload_max);
}

TEST_CASE("Compressed and unknown flags are refused", "[connect]") {
  EnvelopeParser parser;
  CHECK_FALSE(parser.feed(encode_envelope(compressed, "{}")));
  EnvelopeParser other;
  CHECK_FALSE(other.feed(encode_envelope(0x80, "{}")));
}

TEST_CASE("A streaming request body is exactly one message envelope", "[connect]") {
  CHECK(single_request_message(message_envelope(R"({"path":"/"})")).value() == R"({"path":"/"})");
  for (std::string body : {std::string(), std::string("{\"path\":\"/\"}"), std::string("\0\0\0", 3),
                           message_envelope("{}") + "x", message_envelope("{}") + message_envelope("{}"),
                           end_stream_envelope(std::nullopt), message_envelope("{}").substr(0, 6)}) {
    auto single = single_request_message(body);
    REQUIRE_FALSE(single);
    CHECK(single.error().code == Code::invalid_argument);
  }
}

TEST_CASE("Errors carry Connect's codes and statuses", "[connect]") {
  CHECK(http_status(Code::invalid_argument) == 400);
  CHECK(http_status(Code::unauthenticated) == 401);
  CHECK(http_status(Code::not_found) == 404);
  CHECK(http_status(Code::already_exists) == 409);
  CHECK(http_status(Code::resource_exhausted) == 429);
  CHECK(http_status(Code::unimplemented) == 501);
  CHECK(http_status(Code::unavailable) == 503);
  CHECK(http_status(Code::deadline_exceeded) == 504);
  auto body = nlohmann::json::parse(error_json({Code::not_found, "no such file"}));
  CHECK(body == nlohmann::json{{"code", "not_found"}, {"message", "no such file"}});
  auto end = nlohmann::json::parse(end_stream_json(ConnectError{Code::unavailable, "gone"}));
  CHECK(end["error"]["code"] == "unavailable");
  CHECK(end_stream_json(std::nullopt) == "{}");
  CHECK(code_for(ErrorKind::not_found) == Code::not_found);
  CHECK(code_for(ErrorKind::unavailable) == Code::unavailable);
  CHECK(code_for(ErrorKind::validation) == Code::invalid_argument);
}

TEST_CASE("proto3-JSON values read as protobuf-es writes them", "[connect]") {
  CHECK(decode_bytes("aGkK").value() == "hi\n");
  CHECK(decode_bytes("aGk").value() == "hi");
  CHECK(decode_bytes("-_8").value() == "\xfb\xff");
  CHECK(decode_bytes("+/8=").value() == "\xfb\xff");
  CHECK_FALSE(decode_bytes("a$=="));
  using nlohmann::json;
  CHECK(read_int64(json("12")).value() == 12);
  CHECK(read_int64(json(-3)).value() == -3);
  CHECK_FALSE(read_int64(json("12x")));
  CHECK_FALSE(read_int64(json(1.5)));
  CHECK(read_uint32(json(7)).value() == 7);
  CHECK(read_uint32(json("4294967295")).value() == 4294967295u);
  CHECK_FALSE(read_uint32(json(-1)));
  CHECK_FALSE(read_uint32(json(4294967296ll)));
  CHECK(int64_json(42) == "42");
}
