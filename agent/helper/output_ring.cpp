#include "agent/helper/output_ring.h"

#include <algorithm>

namespace modbox::helper {

namespace {
/// Consecutive writes to one stream share a chunk up to this size: a process printing a line at a
/// time costs a few chunks, not one per line.
constexpr std::size_t chunk_size_max = 64 << 10;
}  // namespace

void OutputRing::append(Stream stream, std::string_view bytes) {
  if (bytes.empty()) return;
  std::size_t which = index(stream);
  Kept& kept = streams_[which];
  bool extend = last_stream_ == which && !kept.chunks.empty() && kept.chunks.back().bytes.size() < chunk_size_max;
  if (extend)
    kept.chunks.back().bytes.append(bytes);
  else
    kept.chunks.push_back({next_sequence_++, kept.end, std::string(bytes)});
  last_stream_ = which;
  kept.end += bytes.size();
  trim(kept);
}

void OutputRing::trim(Kept& kept) {
  while (kept.end - kept.begin > kept_) {
    Chunk& oldest = kept.chunks.front();
    std::size_t excess = static_cast<std::size_t>(kept.end - kept.begin - kept_);
    if (oldest.bytes.size() <= excess) {
      kept.begin += oldest.bytes.size();
      kept.chunks.pop_front();
      continue;
    }
    oldest.bytes.erase(0, excess);
    oldest.start += excess;
    kept.begin += excess;
  }
}

const OutputRing::Chunk& OutputRing::chunk_at(const Kept& kept, std::uint64_t position) {
  auto after = std::upper_bound(kept.chunks.begin(), kept.chunks.end(), position,
                                [](std::uint64_t at, const Chunk& chunk) { return at < chunk.start; });
  return *std::prev(after);
}

std::optional<Output> OutputRing::next(Cursor& cursor, std::size_t max) const {
  const Chunk* chosen = nullptr;
  std::size_t chosen_stream = 0;
  for (std::size_t which = 0; which < 2; ++which) {
    const Kept& kept = streams_[which];
    std::uint64_t& position = cursor.position[which];
    if (position < kept.begin) {
      cursor.skipped[which] += kept.begin - position;
      position = kept.begin;
    }
    if (position >= kept.end) continue;
    const Chunk& chunk = chunk_at(kept, position);
    if (chosen == nullptr || chunk.sequence < chosen->sequence) {
      chosen = &chunk;
      chosen_stream = which;
    }
  }
  if (chosen == nullptr) return std::nullopt;
  std::uint64_t& position = cursor.position[chosen_stream];
  auto offset = static_cast<std::size_t>(position - chosen->start);
  std::string piece = chosen->bytes.substr(offset, max);
  position += piece.size();
  return Output{chosen_stream == 0 ? Stream::stdout_stream : Stream::stderr_stream, std::move(piece)};
}

}  // namespace modbox::helper
