// StreamDemultiplexer: Docker's multiplexed attach stream into stdout and stderr, whatever the
// network does to frame boundaries, with a cap per stream.

#include <catch2/catch.hpp>
#include <string>

#include "agent/podman.h"

using namespace modbox;

namespace {

/// One frame: stream byte, three zero bytes, big-endian length, payload.
std::string frame(int stream, const std::string& payload) {
  std::size_t size = payload.size();
  std::string header = {static_cast<char>(stream), 0, 0, 0, static_cast<char>((size >> 24) & 0xff),
                        static_cast<char>((size >> 16) & 0xff), static_cast<char>((size >> 8) & 0xff),
                        static_cast<char>(size & 0xff)};
  return header + payload;
}

const std::string sample_stream = frame(1, "hello ") + frame(2, "warning\n") + frame(1, "") + frame(1, "world\n") +
                                  frame(2, std::string("bin\0ary", 7));

void feed(StreamDemultiplexer& demultiplexer, const std::string& bytes) { demultiplexer.feed(bytes.data(), bytes.size()); }

}  // namespace

TEST_CASE("frames are sorted into stdout and stderr", "[demultiplexer]") {
  StreamDemultiplexer demultiplexer(1 << 20);
  feed(demultiplexer, sample_stream);
  CHECK(demultiplexer.output().stdout_text == "hello world\n");
  CHECK(demultiplexer.output().stderr_text == std::string("warning\nbin\0ary", 15));
  CHECK_FALSE(demultiplexer.output().truncated);
}

TEST_CASE("a stream split at any byte boundary gives the same output", "[demultiplexer]") {
  for (std::size_t split = 0; split <= sample_stream.size(); ++split) {
    INFO("split at " << split);
    StreamDemultiplexer demultiplexer(1 << 20);
    feed(demultiplexer, sample_stream.substr(0, split));
    feed(demultiplexer, sample_stream.substr(split));
    CHECK(demultiplexer.output().stdout_text == "hello world\n");
    CHECK(demultiplexer.output().stderr_text == std::string("warning\nbin\0ary", 15));
  }
}

TEST_CASE("a stream fed one byte at a time gives the same output", "[demultiplexer]") {
  StreamDemultiplexer demultiplexer(1 << 20);
  for (char byte : sample_stream) demultiplexer.feed(&byte, 1);
  CHECK(demultiplexer.output().stdout_text == "hello world\n");
  CHECK(demultiplexer.output().stderr_text == std::string("warning\nbin\0ary", 15));
}

TEST_CASE("frame lengths use all four bytes, big-endian", "[demultiplexer]") {
  std::string large(70'000, 'x');  // needs the third length byte
  StreamDemultiplexer demultiplexer(1 << 20);
  feed(demultiplexer, frame(1, large) + frame(2, "after"));
  CHECK(demultiplexer.output().stdout_text == large);
  CHECK(demultiplexer.output().stderr_text == "after");
}

TEST_CASE("stdin frames (stream 0) count as stdout", "[demultiplexer]") {
  StreamDemultiplexer demultiplexer(1 << 20);
  feed(demultiplexer, frame(0, "zero"));
  CHECK(demultiplexer.output().stdout_text == "zero");
}

TEST_CASE("output beyond the cap is dropped and marked truncated", "[demultiplexer]") {
  StreamDemultiplexer demultiplexer(4);
  feed(demultiplexer, frame(1, "abc") + frame(2, "12") + frame(1, "defgh") + frame(2, "34"));
  CHECK(demultiplexer.output().stdout_text == "abcd");
  CHECK(demultiplexer.output().stderr_text == "1234");
  CHECK(demultiplexer.output().truncated);

  SECTION("frames after the cap are still parsed, not mistaken for headers") {
    feed(demultiplexer, frame(2, "5") + frame(1, "i"));
    CHECK(demultiplexer.output().stdout_text == "abcd");
    CHECK(demultiplexer.output().stderr_text == "1234");
  }
}

TEST_CASE("output exactly at the cap is not truncated", "[demultiplexer]") {
  StreamDemultiplexer demultiplexer(4);
  feed(demultiplexer, frame(1, "ab") + frame(1, "cd") + frame(2, "wxyz"));
  CHECK(demultiplexer.output().stdout_text == "abcd");
  CHECK(demultiplexer.output().stderr_text == "wxyz");
  CHECK_FALSE(demultiplexer.output().truncated);
}
