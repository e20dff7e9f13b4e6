// What a background process wrote, kept for late readers: the order across its two streams, the
// last bytes of each kept within the bound, and readers that fall behind told what they missed.

#include "agent/helper/output_ring.h"

#include <catch2/catch.hpp>

using namespace modbox::helper;

namespace {

/// Everything a reader takes from `cursor` on, as "o:" / "e:" tagged pieces.
std::vector<std::string> drain(const OutputRing& ring, OutputRing::Cursor& cursor, std::size_t max = 1 << 20) {
  std::vector<std::string> pieces;
  while (auto piece = ring.next(cursor, max))
    pieces.push_back((piece->stream == Stream::stdout_stream ? "o:" : "e:") + piece->data);
  return pieces;
}

}  // namespace

TEST_CASE("a reader gets both streams in the order they were written", "[output-ring]") {
  OutputRing ring(100);
  ring.append(Stream::stdout_stream, "a");
  ring.append(Stream::stdout_stream, "b");  // joins the chunk before: no write of stderr between
  ring.append(Stream::stderr_stream, "c");
  ring.append(Stream::stdout_stream, "d");
  OutputRing::Cursor cursor;
  CHECK(drain(ring, cursor) == std::vector<std::string>{"o:ab", "e:c", "o:d"});
  CHECK(drain(ring, cursor).empty());
  // More to the newest chunk reaches a reader that had caught up.
  ring.append(Stream::stdout_stream, "e");
  ring.append(Stream::stderr_stream, "f");
  CHECK(drain(ring, cursor) == std::vector<std::string>{"o:e", "e:f"});
  CHECK(ring.written(Stream::stdout_stream) == 4);
  CHECK(ring.written(Stream::stderr_stream) == 2);
}

TEST_CASE("pieces are cut at the reader's maximum", "[output-ring]") {
  OutputRing ring(100);
  ring.append(Stream::stdout_stream, "abcdefg");
  OutputRing::Cursor cursor;
  CHECK(drain(ring, cursor, 3) == std::vector<std::string>{"o:abc", "o:def", "o:g"});
}

TEST_CASE("each stream keeps its last bytes; a reader behind skips and counts what is gone", "[output-ring]") {
  OutputRing ring(4);
  OutputRing::Cursor slow;
  ring.append(Stream::stdout_stream, "12");
  ring.append(Stream::stderr_stream, "x");
  ring.append(Stream::stdout_stream, "3456");  // "12" is gone; stderr keeps its byte
  CHECK(ring.dropped(Stream::stdout_stream) == 2);
  CHECK(ring.dropped(Stream::stderr_stream) == 0);
  OutputRing::Cursor late;
  CHECK(drain(ring, late) == std::vector<std::string>{"e:x", "o:3456"});
  CHECK(late.skipped[0] == 2);
  CHECK(late.skipped[1] == 0);
  ring.append(Stream::stdout_stream, "78");  // cuts into the kept chunk: "56" + "78"
  CHECK(drain(ring, late) == std::vector<std::string>{"o:78"});
  CHECK(drain(ring, slow) == std::vector<std::string>{"e:x", "o:5678"});
  CHECK(slow.skipped[0] == 4);
}

TEST_CASE("a chatty stream does not push the other out", "[output-ring]") {
  OutputRing ring(8);
  ring.append(Stream::stderr_stream, "err");
  for (int i = 0; i < 100; ++i) ring.append(Stream::stdout_stream, "0123456789");
  OutputRing::Cursor cursor;
  auto pieces = drain(ring, cursor);
  REQUIRE(pieces.size() == 2);
  CHECK(pieces[0] == "e:err");
  CHECK(pieces[1] == "o:23456789");
  CHECK(cursor.skipped[0] == 992);
}
