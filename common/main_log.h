#pragma once
// The output of a sandbox's main process (its stdout and stderr, interleaved as written: they share
// one pipe) in a bounded ring file. The in-sandbox helper writes it in its host-mounted directory
// (helper::main_log_name); the agent reads it there while the sandbox lives and keeps a copy next to
// the sandbox's record once it has ended. Defined once for both ends; the static helper compiles this
// file alone (no JSON, no filesystem library).
//
// Layout: [magic: 8 bytes "mbxlog01"][written: 8 bytes, little-endian][ring: main_log_capacity bytes].
// `written` counts every byte ever appended: the byte at stream position p (0-based) lives at
// header_size + p % capacity, for the last `capacity` positions. A position names the same byte for
// the whole life of the log, so a reader that follows it keeps its place across wrap-arounds and
// across the copy the agent makes when the sandbox ends.
//
// The file is in a directory the sandbox can write to: a reader treats every byte as untrusted
// (bounded reads, no symlinks, FIFOs or devices, a `written` that goes backwards reads as a new log).

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace modbox::main_log {

/// How much of the output is kept: the last 1 MiB.
inline constexpr std::uint64_t capacity = 1 << 20;
inline constexpr std::size_t header_size = 16;
inline constexpr std::string_view magic = "mbxlog01";

/// The helper's end: appends to a ring file it created. Not thread-safe (the helper has one thread).
class Writer {
 public:
  /// Creates (or truncates) the file at `path`, mode 0600, not following a symlink there.
  static Result<Writer> create(const std::string& path);
  /// Appends `bytes` (only the last `capacity` of them when more). A failed write is reported once
  /// and the log goes on: the main process must never block on its log.
  Result<void> append(std::string_view bytes);
  std::uint64_t written() const { return written_; }

 private:
  explicit Writer(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  std::uint64_t written_ = 0;
};

/// Output read from a log: `bytes` are stream positions [start, end).
struct Chunk {
  std::string bytes;
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

/// What the log at `path` holds from stream position `from` on (from the oldest byte kept when
/// `from` is older, or when the log is newer than `from`: a `written` below `from`). A missing file is
/// ErrorKind::not_found; a file that is not a regular file, or not a log, is ErrorKind::bad_request.
Result<Chunk> read(const std::string& path, std::uint64_t from = 0);

/// The same from an open file (the agent's copy, or a test's).
Result<Chunk> read(int fd, std::uint64_t from);

/// The content of a log file that reads back as `chunk` (same stream positions): what the agent
/// keeps once the sandbox has ended. `chunk` spans at most `capacity` bytes.
std::string snapshot(const Chunk& chunk);

/// The part of `chunk` that holds its last `lines` lines (a last line without its newline counts);
/// every line when it has fewer.
Chunk last_lines(const Chunk& chunk, std::size_t lines);

}  // namespace modbox::main_log
