#pragma once
// What a background process wrote, kept for readers that come late: the last `kept` bytes of its
// stdout and of its stderr, with the order in which the two were written. Readers hold a cursor of
// their own and take pieces in that order; one that falls behind what is kept skips to the oldest
// byte still there, and its cursor counts what it missed.

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "common/helper_protocol.h"

namespace modbox::helper {

class OutputRing {
 public:
  explicit OutputRing(std::size_t kept = process_output_kept) : kept_(kept) {}

  /// Where a reader is: for each stream, the position (bytes since the start) of the next byte it
  /// takes, and how many bytes it skipped because they were dropped before it got to them.
  struct Cursor {
    std::array<std::uint64_t, 2> position{0, 0};
    std::array<std::uint64_t, 2> skipped{0, 0};
  };

  void append(Stream stream, std::string_view bytes);
  /// The next piece for `cursor` (at most `max` bytes, all of one stream, never spanning a write
  /// of the other stream), advancing it; nullopt when it has taken everything written so far.
  std::optional<Output> next(Cursor& cursor, std::size_t max) const;

  /// Bytes written to `stream` since the start.
  std::uint64_t written(Stream stream) const { return streams_[index(stream)].end; }
  /// Bytes of `stream` no longer kept.
  std::uint64_t dropped(Stream stream) const { return streams_[index(stream)].begin; }

 private:
  struct Chunk {
    std::uint64_t sequence;  // order among the chunks of both streams
    std::uint64_t start;     // position of its first byte in its stream
    std::string bytes;
  };
  struct Kept {
    std::deque<Chunk> chunks;
    std::uint64_t begin = 0;  // position of the oldest byte kept
    std::uint64_t end = 0;    // position after the newest
  };
  static std::size_t index(Stream stream) { return stream == Stream::stdout_stream ? 0 : 1; }
  /// The chunk of `kept` that holds `position` (which is within [begin, end)).
  static const Chunk& chunk_at(const Kept& kept, std::uint64_t position);
  void trim(Kept& kept);

  std::size_t kept_;
  std::array<Kept, 2> streams_;
  std::uint64_t next_sequence_ = 0;
  std::optional<std::size_t> last_stream_;  // which stream the newest chunk is of
};

}  // namespace modbox::helper
