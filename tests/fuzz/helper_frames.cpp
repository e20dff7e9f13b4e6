// The agent's decoder of helper frames (common/helper_protocol.h): what a sandbox's helper sends is
// untrusted, since the sandbox's code can replace the helper. Properties: the decoder gives the same
// messages and the same verdict however the stream is cut into reads; every message it accepts
// encodes back to a frame that decodes to the same message; it never holds a frame larger than the
// limit of its type.

#include <cstdint>
#include <string>
#include <vector>

#include "common/helper_protocol.h"
#include "tests/fuzz/fuzz_check.h"

namespace helper = modbox::helper;

namespace {

struct Decoded {
  std::vector<std::string> frames;  // each message, encoded again
  bool failed = false;
};

Decoded decode_stream(std::string_view stream, std::size_t piece) {
  Decoded decoded;
  helper::FrameDecoder decoder;
  for (std::size_t at = 0; at < stream.size() && !decoded.failed; at += piece) {
    decoder.feed(stream.substr(at, piece));
    for (;;) {
      auto next = decoder.next();
      if (!next) {
        FUZZ_CHECK(!next.error().message.empty());
        decoded.failed = true;
        break;
      }
      if (!*next) {
        // Waiting for more: the frame it waits for is within its type's limit.
        FUZZ_CHECK(decoder.missing() > 0);
        if (decoder.pending() >= helper::header_size) {
          auto type = static_cast<helper::FrameType>(static_cast<unsigned char>(decoder.unread()[0]));
          FUZZ_CHECK(decoder.pending() + decoder.missing() <= helper::header_size + helper::max_payload(type));
        }
        break;
      }
      decoded.frames.push_back(helper::encode(**next));
    }
  }
  return decoded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto [piece, stream] = modbox::fuzz::cut(data, size);
  Decoded whole = decode_stream(stream, stream.size() + 1);
  Decoded cut = decode_stream(stream, piece);
  FUZZ_CHECK(whole.failed == cut.failed);
  FUZZ_CHECK(whole.frames == cut.frames);
  for (const std::string& frame : whole.frames) {
    FUZZ_CHECK(frame.size() >= helper::header_size);
    auto type = static_cast<helper::FrameType>(static_cast<unsigned char>(frame[0]));
    std::string_view payload = std::string_view(frame).substr(helper::header_size);
    FUZZ_CHECK(payload.size() <= helper::max_payload(type));
    auto again = helper::decode(type, payload);
    FUZZ_CHECK(again.has_value());
    FUZZ_CHECK(helper::encode(*again) == frame);
  }
  // One payload straight to decode() under each type, as a conversation hands it over.
  if (!stream.empty()) {
    auto type = static_cast<helper::FrameType>(static_cast<unsigned char>(stream[0]));
    if (helper::max_payload(type) >= stream.size() - 1) (void)helper::decode(type, stream.substr(1));
  }
  return 0;
}
