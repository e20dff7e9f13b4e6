// The interactive session frames of the helper protocol: each survives a round trip, and what the
// helper must never act on (a zero-sized terminal at open, a signal that does not exist, a
// malformed environment) is refused by the decoder.

#include <catch2/catch.hpp>

#include "common/helper_protocol.h"

using namespace modbox;
using namespace modbox::helper;

namespace {

Message round_trip(const Message& message) {
  FrameDecoder decoder;
  decoder.feed(encode(message));
  auto decoded = decoder.next();
  INFO((decoded ? std::string() : decoded.error().message));
  REQUIRE(decoded.has_value());
  REQUIRE(decoded->has_value());
  CHECK(decoder.pending() == 0);
  return **decoded;
}

bool refused(const Message& message) {
  FrameDecoder decoder;
  decoder.feed(encode(message));
  return !decoder.next().has_value();
}

/// A frame of `type` whose payload is the 4-byte big-endian `values`.
std::string frame_of_integers(FrameType type, std::initializer_list<std::uint32_t> values) {
  std::string bytes(1, static_cast<char>(type));
  auto size = static_cast<std::uint32_t>(4 * values.size());
  for (std::uint32_t value : {size})
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((value >> shift) & 0xff));
  for (std::uint32_t value : values)
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((value >> shift) & 0xff));
  return bytes;
}

bool decodes(const std::string& bytes) {
  FrameDecoder decoder;
  decoder.feed(bytes);
  auto decoded = decoder.next();
  return decoded && *decoded;
}

}  // namespace

TEST_CASE("session frames survive a round trip", "[session][helper-protocol]") {
  SessionOpen terminal{true, 120, 40, "", "/workspace", {"A=1", "EMPTY=", "TERM=vt100"}};
  auto open = std::get<SessionOpen>(round_trip(terminal));
  CHECK(open.tty);
  CHECK(open.cols == 120);
  CHECK(open.rows == 40);
  CHECK(open.command.empty());
  CHECK(open.cwd == "/workspace");
  CHECK(open.env == std::vector<std::string>{"A=1", "EMPTY=", "TERM=vt100"});

  auto piped = std::get<SessionOpen>(round_trip(SessionOpen{false, 0, 0, "cat\nexit 3", "", {}}));
  CHECK_FALSE(piped.tty);
  CHECK(piped.command == "cat\nexit 3");
  CHECK(piped.cwd.empty());
  CHECK(piped.env.empty());

  CHECK(std::get<SessionReady>(round_trip(SessionReady{4242})).pid == 4242);
  auto resize = std::get<SessionResize>(round_trip(SessionResize{1000, 1}));
  CHECK(resize.cols == 1000);
  CHECK(resize.rows == 1);
  CHECK(std::get<SessionSignal>(round_trip(SessionSignal{2})).signal == 2);
  CHECK(std::get<SessionSignal>(round_trip(SessionSignal{36})).signal == 36);
}

TEST_CASE("a terminal's size must be 1 to 1000 at open; without a terminal it is ignored",
          "[session][helper-protocol]") {
  CHECK(refused(SessionOpen{true, 0, 24, "", "", {}}));
  CHECK(refused(SessionOpen{true, 80, 0, "", "", {}}));
  CHECK(refused(SessionOpen{true, 1001, 24, "", "", {}}));
  CHECK(refused(SessionOpen{true, 80, 1001, "", "", {}}));
  CHECK_FALSE(refused(SessionOpen{true, 1, 1000, "", "", {}}));
  auto piped = std::get<SessionOpen>(round_trip(SessionOpen{false, 5000, 0, "cat", "", {}}));
  CHECK(piped.cols == 0);
  CHECK(piped.rows == 0);
  CHECK(is_window_size(80, 24));
  CHECK_FALSE(is_window_size(0, 24));
  CHECK_FALSE(is_window_size(80, 1001));
}

TEST_CASE("session opens with a bad cwd, command or environment are refused", "[session][helper-protocol]") {
  CHECK(refused(SessionOpen{false, 0, 0, "true", "relative", {}}));
  CHECK(refused(SessionOpen{false, 0, 0, std::string("a\0b", 3), "", {}}));
  CHECK(refused(SessionOpen{false, 0, 0, "", std::string("/a\0b", 4), {}}));
  CHECK(refused(SessionOpen{false, 0, 0, "", "", {"NOEQUALS"}}));
  CHECK(refused(SessionOpen{false, 0, 0, "", "", {"=value"}}));
  CHECK(refused(SessionOpen{false, 0, 0, "", "", {std::string("A=b\0c", 5)}}));
  CHECK(refused(SessionOpen{false, 0, 0, "", "", std::vector<std::string>(session_env_max + 1, "A=1")}));
  std::vector<std::string> large(4, "A=" + std::string(session_env_bytes_max / 4, 'x'));
  CHECK(refused(SessionOpen{false, 0, 0, "", "", large}));
  CHECK_FALSE(refused(SessionOpen{false, 0, 0, "", "", std::vector<std::string>(session_env_max, "A=1")}));
  // A tty byte that is neither 0 nor 1.
  std::string bytes = encode(SessionOpen{false, 0, 0, "", "", {}});
  bytes[header_size] = 2;
  CHECK_FALSE(decodes(bytes));
}

TEST_CASE("a resize of any 16-bit size decodes, so the helper can ignore it; wider ones are refused",
          "[session][helper-protocol]") {
  CHECK(decodes(frame_of_integers(FrameType::session_resize, {0, 0})));
  CHECK(decodes(frame_of_integers(FrameType::session_resize, {65535, 24})));
  CHECK_FALSE(decodes(frame_of_integers(FrameType::session_resize, {65536, 24})));
  CHECK_FALSE(decodes(frame_of_integers(FrameType::session_resize, {80})));
}

TEST_CASE("signals that do not exist and pids of 0 are refused", "[session][helper-protocol]") {
  CHECK(refused(SessionSignal{0}));
  CHECK(refused(SessionSignal{32}));  // glibc's own, between SIGSYS and SIGRTMIN
  CHECK(refused(SessionSignal{65}));
  CHECK(refused(SessionSignal{-9}));
  CHECK(refused(SessionReady{0}));
  CHECK_FALSE(decodes(frame_of_integers(FrameType::session_signal, {9, 9})));
}
