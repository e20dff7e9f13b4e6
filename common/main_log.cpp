#include "common/main_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace modbox::main_log {

namespace {

Error io_error(const char* call, int errno_value) {
  return Error{ErrorKind::internal, std::string("main log: ") + call + ": " + std::strerror(errno_value), {}};
}

void put_u64(char* out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

std::uint64_t get_u64(const char* in) {
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return value;
}

/// Writes all of `bytes` at `offset`.
bool write_at(int fd, std::string_view bytes, std::uint64_t offset) {
  while (!bytes.empty()) {
    ssize_t wrote = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(wrote));
    offset += static_cast<std::uint64_t>(wrote);
  }
  return true;
}

/// Reads up to `length` bytes at `offset`; fewer when the file is shorter.
std::string read_at(int fd, std::uint64_t offset, std::size_t length) {
  std::string bytes(length, '\0');
  std::size_t got = 0;
  while (got < length) {
    ssize_t n = ::pread(fd, bytes.data() + got, length - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

/// The `written` count of the header, or nullopt when the file does not start with one.
std::optional<std::uint64_t> read_written(int fd) {
  std::string header = read_at(fd, 0, header_size);
  if (header.size() != header_size || std::string_view(header).substr(0, magic.size()) != magic) return std::nullopt;
  return get_u64(header.data() + 8);
}

/// Ring bytes of stream positions [start, end), end - start <= capacity.
std::string read_positions(int fd, std::uint64_t start, std::uint64_t end) {
  std::string bytes;
  while (start < end) {
    std::uint64_t at = start % capacity;
    auto length = static_cast<std::size_t>(std::min(end - start, capacity - at));
    std::string piece = read_at(fd, header_size + at, length);
    bytes += piece;
    if (piece.size() < length) break;  // a file cut short (by the sandbox): what is there
    start += length;
  }
  return bytes;
}

}  // namespace

Result<Writer> Writer::create(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return std::unexpected(io_error("open", errno));
  char header[header_size];
  std::memcpy(header, magic.data(), magic.size());
  put_u64(header + 8, 0);
  if (!write_at(fd.get(), std::string_view(header, header_size), 0)) return std::unexpected(io_error("write", errno));
  return Writer(std::move(fd));
}

Result<void> Writer::append(std::string_view bytes) {
  if (bytes.size() > capacity) {
    written_ += bytes.size() - capacity;
    bytes = bytes.substr(bytes.size() - capacity);
  }
  // The bytes first, then the count: a reader never counts bytes that are not there yet.
  while (!bytes.empty()) {
    std::uint64_t at = written_ % capacity;
    auto length = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), capacity - at));
    if (!write_at(fd_.get(), bytes.substr(0, length), header_size + at))
      return std::unexpected(io_error("write", errno));
    bytes.remove_prefix(length);
    written_ += length;
  }
  char count[8];
  put_u64(count, written_);
  if (!write_at(fd_.get(), std::string_view(count, 8), 8)) return std::unexpected(io_error("write", errno));
  return {};
}

Result<Chunk> read(int fd, std::uint64_t from) {
  auto written = read_written(fd);
  if (!written) return fail(ErrorKind::bad_request, "not a modbox log");
  std::uint64_t oldest = *written > capacity ? *written - capacity : 0;
  // A count below `from` is another log (or one the sandbox rewrote): read it from its start.
  std::uint64_t start = from > *written ? oldest : std::max(from, oldest);
  std::string bytes = read_positions(fd, start, *written);
  // The helper may have wrapped around meanwhile: bytes older than the oldest it now keeps may have
  // been overwritten while they were read, so they are dropped.
  if (auto after = read_written(fd); after && *after > *written) {
    std::uint64_t still_kept = *after > capacity ? *after - capacity : 0;
    if (still_kept > start) {
      auto lost = static_cast<std::size_t>(std::min<std::uint64_t>(still_kept - start, bytes.size()));
      bytes.erase(0, lost);
      start += lost;
    }
  }
  std::uint64_t end = start + bytes.size();
  return Chunk{std::move(bytes), start, end};
}

Result<Chunk> read(const std::string& path, std::uint64_t from) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return fail(ErrorKind::not_found, "no log at " + path);
    return std::unexpected(io_error("open", errno));
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return std::unexpected(io_error("fstat", errno));
  if (!S_ISREG(info.st_mode)) return fail(ErrorKind::bad_request, path + " is not a regular file");
  return read(fd.get(), from);
}

std::string snapshot(const Chunk& chunk) {
  std::string file(header_size + static_cast<std::size_t>(std::min(chunk.end, capacity)), '\0');
  std::memcpy(file.data(), magic.data(), magic.size());
  put_u64(file.data() + 8, chunk.end);
  std::uint64_t position = chunk.start;
  std::string_view bytes = std::string_view(chunk.bytes).substr(0, static_cast<std::size_t>(capacity));
  while (!bytes.empty()) {
    std::uint64_t at = position % capacity;
    auto length = static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), capacity - at));
    std::memcpy(file.data() + header_size + at, bytes.data(), length);
    bytes.remove_prefix(length);
    position += length;
  }
  return file;
}

Chunk last_lines(const Chunk& chunk, std::size_t lines) {
  std::string_view bytes = chunk.bytes;
  std::size_t keep_from = bytes.size();
  std::size_t found = 0;
  // A newline that ends the output ends the last line; it does not start an empty one.
  std::size_t search_end = !bytes.empty() && bytes.back() == '\n' ? bytes.size() - 1 : bytes.size();
  while (found < lines) {
    if (search_end == 0) {
      keep_from = 0;
      break;
    }
    std::size_t newline = bytes.rfind('\n', search_end - 1);
    ++found;
    if (newline == std::string_view::npos) {
      keep_from = 0;
      break;
    }
    keep_from = newline + 1;
    search_end = newline;
  }
  if (lines == 0) keep_from = bytes.size();
  Chunk tail;
  tail.bytes = std::string(bytes.substr(keep_from));
  tail.start = chunk.start + keep_from;
  tail.end = chunk.end;
  return tail;
}

}  // namespace modbox::main_log
