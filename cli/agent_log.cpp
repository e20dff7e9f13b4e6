#include "cli/agent_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <thread>

#include "common/system.h"
#include "common/unique_fd.h"

namespace modbox {

std::size_t start_of_last_lines(std::string_view text, std::size_t lines) {
  if (lines == 0) return text.size();
  std::size_t end = text.size();
  if (end > 0 && text[end - 1] == '\n') --end;  // the last line's own newline
  std::size_t found = 0;
  while (end > 0) {
    std::size_t newline = text.rfind('\n', end - 1);
    if (newline == std::string_view::npos) return 0;
    if (++found == lines) return newline + 1;
    end = newline;
  }
  return 0;
}

namespace {

Result<UniqueFd> open_log(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.valid()) return fd;
  Error error = system_error("open", path.string(), errno);
  if (errno == ENOENT) {
    error.kind = ErrorKind::not_found;
    error.message = "no agent log at " + path.string() +
                    ": modbox has not started an agent with this runtime directory (an agent run by a systemd "
                    "unit logs to its journal: journalctl --user -u modboxd)";
  }
  return std::unexpected(error);
}

Result<std::string> read_range(int fd, off_t from, off_t to, const std::filesystem::path& path) {
  std::string data(static_cast<std::size_t>(to - from), '\0');
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t got = ::pread(fd, data.data() + done, data.size() - done, from + static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return std::unexpected(system_error("read", path.string(), errno));
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  data.resize(done);
  return data;
}

/// Where the last `lines` lines of the file start: reads backwards in growing blocks, so a long log
/// is not read whole for its end.
Result<off_t> tail_offset(int fd, off_t size, std::size_t lines, const std::filesystem::path& path) {
  off_t block = 64 << 10;
  for (;;) {
    off_t from = std::max<off_t>(0, size - block);
    auto data = read_range(fd, from, size, path);
    if (!data) return std::unexpected(data.error());
    std::size_t start = start_of_last_lines(*data, lines);
    if (start > 0 || from == 0) return from + static_cast<off_t>(start);
    block *= 4;
  }
}

/// Hands [from, to) to `out` in pieces; where it stopped.
Result<off_t> copy_range(int fd, off_t from, off_t to, const std::filesystem::path& path,
                         const std::function<void(std::string_view)>& out) {
  constexpr off_t piece = 256 << 10;
  while (from < to) {
    auto data = read_range(fd, from, std::min(to, from + piece), path);
    if (!data) return std::unexpected(data.error());
    if (data->empty()) break;
    out(*data);
    from += static_cast<off_t>(data->size());
  }
  return from;
}

}  // namespace

Result<void> read_agent_log(const std::filesystem::path& path, const LogOptions& options,
                            const std::function<void(std::string_view)>& out) {
  auto fd = open_log(path);
  if (!fd) return std::unexpected(fd.error());
  struct stat info {};
  if (::fstat(fd->get(), &info) != 0) return std::unexpected(system_error("stat", path.string(), errno));
  off_t offset = 0;
  if (options.tail) {
    auto start = tail_offset(fd->get(), info.st_size, *options.tail, path);
    if (!start) return std::unexpected(start.error());
    offset = *start;
  }
  auto copied = copy_range(fd->get(), offset, info.st_size, path, out);
  if (!copied) return std::unexpected(copied.error());
  offset = *copied;
  while (options.follow && options.keep_following()) {
    std::this_thread::sleep_for(options.poll_interval);
    struct stat now {};
    if (::stat(path.c_str(), &now) == 0 && (now.st_ino != info.st_ino || now.st_dev != info.st_dev)) {
      // Replaced (a new runtime directory, a rotation): read the new file from its start.
      auto reopened = open_log(path);
      if (!reopened) continue;
      *fd = std::move(*reopened);
      if (::fstat(fd->get(), &info) != 0) continue;
      offset = 0;
    }
    if (::fstat(fd->get(), &info) != 0) return std::unexpected(system_error("stat", path.string(), errno));
    if (info.st_size < offset) offset = 0;  // truncated
    auto more = copy_range(fd->get(), offset, info.st_size, path, out);
    if (!more) return std::unexpected(more.error());
    offset = *more;
  }
  return {};
}

}  // namespace modbox
