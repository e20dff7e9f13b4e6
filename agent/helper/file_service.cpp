#include "agent/helper/file_service.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "agent/helper/os.h"
#include "agent/helper/watch_service.h"

namespace modbox::helper {

namespace {

/// One conversation with the agent on a blocking-by-poll socket, bounded by an idle timeout.
class Channel {
 public:
  Channel(int fd, FrameDecoder decoder) : fd_(fd), decoder_(std::move(decoder)) {}

  bool send(const Message& message) {
    std::string bytes = encode(message);
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t now = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (now > 0) {
        sent += static_cast<std::size_t>(now);
        continue;
      }
      if (now < 0 && errno == EINTR) continue;
      if (now < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
      pollfd entry{fd_, POLLOUT, 0};
      if (::poll(&entry, 1, file_idle_timeout_ms) <= 0) return false;
    }
    return true;
  }

  /// The next message; nullopt when the agent closed, stalled or broke the protocol.
  std::optional<Message> receive() {
    for (;;) {
      auto message = decoder_.next();
      if (!message) return std::nullopt;
      if (*message) return std::move(**message);
      pollfd entry{fd_, POLLIN, 0};
      int ready = ::poll(&entry, 1, file_idle_timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      ssize_t got = ::read(fd_, buffer_.data(), buffer_.size());
      if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (got <= 0) return std::nullopt;
      decoder_.feed(std::string_view(buffer_.data(), static_cast<std::size_t>(got)));
    }
  }

  int refuse(FailureKind kind, const std::string& message) {
    send(Failure{message, kind});
    return 1;
  }
  int fail_errno(const std::string& what, int errno_value) {
    FailureKind kind = errno_value == ENOENT                            ? FailureKind::not_found
                       : errno_value == ENOSPC || errno_value == EDQUOT ? FailureKind::no_space
                                                                        : FailureKind::error;
    return refuse(kind, what + ": " + std::strerror(errno_value));
  }

 private:
  int fd_;
  FrameDecoder decoder_;
  std::vector<char> buffer_ = std::vector<char>(data_chunk_max + header_size);  // reused for every read
};

std::int64_t milliseconds_of(const struct timespec& time) {
  return static_cast<std::int64_t>(time.tv_sec) * 1000 + time.tv_nsec / 1'000'000;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string describe_type(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

/// Opens `path` as a directory, component by component from the container's root, creating the
/// missing ones when `create` is set. Symlinks are followed: they resolve inside the container.
Result<UniqueFd> open_directory(const std::string& path, bool create) {
  UniqueFd current(::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!current.valid()) return std::unexpected(os_error("open", "/", errno));
  std::size_t start = 1;
  while (start < path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    std::string component = path.substr(start, slash - start);
    start = slash + 1;
    if (component.empty() || component == ".") continue;
    int next = ::openat(current.get(), component.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(current.get(), component.c_str(), 0755) != 0 && errno != EEXIST)
        return std::unexpected(os_error("mkdir", path, errno));
      next = ::openat(current.get(), component.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    }
    if (next < 0) {
      Error error = os_error("open", path, errno);
      if (errno == ENOENT) error.kind = ErrorKind::not_found;
      return std::unexpected(error);
    }
    current = UniqueFd(next);
  }
  return current;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return true;
}

/// Removes a half-written upload unless it was committed.
struct TemporaryFile {
  int directory;
  std::string name;
  bool committed = false;
  ~TemporaryFile() {
    if (!committed) ::unlinkat(directory, name.c_str(), 0);
  }
};

/// A listing of `directory` (which stays open for the caller); null with errno set on failure.
DIR* open_listing(int directory) {
  int listing_fd = ::dup(directory);
  if (listing_fd < 0) return nullptr;
  DIR* listing = ::fdopendir(listing_fd);
  if (listing == nullptr) {
    int error = errno;
    ::close(listing_fd);
    errno = error;
  }
  return listing;
}

/// Removes what workers that were killed mid-upload (SIGKILL leaves no time to clean up) left:
/// temporary files named after a pid that no longer runs, or that is this worker's own.
void remove_stale_uploads(int directory) {
  DIR* listing = open_listing(directory);
  if (listing == nullptr) return;
  while (dirent* entry = ::readdir(listing)) {
    std::string_view name = entry->d_name;
    if (!name.starts_with(upload_temp_prefix)) continue;
    long pid = std::strtol(entry->d_name + upload_temp_prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH))
      ::unlinkat(directory, entry->d_name, 0);
  }
  ::closedir(listing);
}

int serve_upload(Channel& channel, const UploadRequest& request) {
  std::int64_t started_ms = now_ms();
  auto directory = open_directory(request.directory, true);
  if (!directory) return channel.refuse(FailureKind::error, "cannot store the upload: " + directory.error().message);
  remove_stale_uploads(directory->get());
  TemporaryFile temporary{directory->get(), std::string(upload_temp_prefix) + std::to_string(::getpid())};
  UniqueFd file(
      ::openat(directory->get(), temporary.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!file.valid()) return channel.fail_errno("cannot create a file in " + request.directory, errno);
  for (;;) {
    auto message = channel.receive();
    if (!message) return 1;  // the agent went away: the upload is abandoned, the file removed
    if (auto* data = std::get_if<Data>(&*message)) {
      if (!write_all(file.get(), data->bytes)) return channel.fail_errno("cannot write the upload", errno);
      continue;
    }
    if (std::holds_alternative<End>(*message)) break;
    return channel.refuse(FailureKind::error, "bad request: expected data or end");
  }
  struct stat info {};
  if (::fstat(file.get(), &info) != 0) return channel.fail_errno("cannot read back the upload", errno);
  // The next free millisecond: two uploads of one name in the same millisecond both keep their file.
  for (std::int64_t stamp = started_ms; stamp < started_ms + 1000; ++stamp) {
    std::string name = std::to_string(stamp) + "-" + request.name;
    if (!is_plain_file_name(name)) return channel.refuse(FailureKind::refused, "the file name is too long");
    if (::renameat2(directory->get(), temporary.name.c_str(), directory->get(), name.c_str(), RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) continue;
      // A filesystem without RENAME_NOREPLACE: link(2) refuses an existing name just the same.
      if (errno != EINVAL && errno != ENOSYS) return channel.fail_errno("cannot store the upload", errno);
      if (::linkat(directory->get(), temporary.name.c_str(), directory->get(), name.c_str(), 0) != 0) {
        if (errno == EEXIST) continue;
        return channel.fail_errno("cannot store the upload", errno);
      }
    } else {
      temporary.committed = true;
    }
    channel.send(FileInfo{name, static_cast<std::uint64_t>(info.st_size), milliseconds_of(info.st_mtim)});
    return 0;
  }
  return channel.refuse(FailureKind::error, "no free file name for the upload");
}

int serve_download(Channel& channel, const DownloadRequest& request) {
  auto directory = open_directory(request.directory, false);
  if (!directory) {
    auto kind = directory.error().kind == ErrorKind::not_found ? FailureKind::not_found : FailureKind::error;
    return channel.refuse(kind, kind == FailureKind::not_found ? "no file " + request.name : directory.error().message);
  }
  struct stat before {};
  if (::fstatat(directory->get(), request.name.c_str(), &before, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? channel.refuse(FailureKind::not_found, "no file " + request.name)
                           : channel.fail_errno("cannot read " + request.name, errno);
  if (!S_ISREG(before.st_mode))
    return channel.refuse(FailureKind::refused,
                          request.name + " is " + describe_type(before.st_mode) + "; only regular files are served");
  // O_NONBLOCK: should the name turn into a FIFO between the check and the open, opening it
  // does not wait for a writer; the check after the open then refuses it.
  UniqueFd file(
      ::openat(directory->get(), request.name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!file.valid()) return channel.fail_errno("cannot open " + request.name, errno);
  struct stat opened {};
  if (::fstat(file.get(), &opened) != 0 || !S_ISREG(opened.st_mode) || opened.st_ino != before.st_ino ||
      opened.st_dev != before.st_dev)
    return channel.refuse(FailureKind::refused, request.name + " changed while it was being opened");
  int flags = ::fcntl(file.get(), F_GETFL);
  if (flags >= 0) ::fcntl(file.get(), F_SETFL, flags & ~O_NONBLOCK);
  if (!channel.send(
          FileInfo{request.name, static_cast<std::uint64_t>(opened.st_size), milliseconds_of(opened.st_mtim)}))
    return 1;
  // Exactly the announced size, so the agent's Content-Length holds; a file that shrank ends early.
  std::uint64_t remaining = static_cast<std::uint64_t>(opened.st_size);
  std::string buffer(data_chunk_max, '\0');
  while (remaining > 0) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, buffer.size()));
    ssize_t got = ::read(file.get(), buffer.data(), want);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    remaining -= static_cast<std::uint64_t>(got);
    if (!channel.send(Data{buffer.substr(0, static_cast<std::size_t>(got))})) return 1;
  }
  channel.send(End{});
  return 0;
}

int serve_list(Channel& channel, const ListRequest& request) {
  auto directory = open_directory(request.directory, false);
  if (!directory) {
    // No uploads directory yet is an empty list.
    if (directory.error().kind == ErrorKind::not_found) return channel.send(End{}) ? 0 : 1;
    return channel.refuse(FailureKind::error, directory.error().message);
  }
  DIR* listing = open_listing(directory->get());
  if (listing == nullptr) return channel.fail_errno("cannot list " + request.directory, errno);
  std::vector<FileInfo> files;
  while (dirent* entry = ::readdir(listing)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == ".." || name.starts_with(upload_temp_prefix)) continue;
    if (!request.search.empty() && name.find(request.search) == std::string_view::npos) continue;
    struct stat info {};
    if (::fstatat(directory->get(), entry->d_name, &info, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(info.st_mode)) continue;
    files.push_back({std::string(name), static_cast<std::uint64_t>(info.st_size), milliseconds_of(info.st_mtim)});
    // The first `limit` by name, out of at most list_scan_max: a directory is not read for ever.
    if (files.size() >= list_scan_max) break;
  }
  ::closedir(listing);
  std::sort(files.begin(), files.end(), [](const FileInfo& a, const FileInfo& b) { return a.name < b.name; });
  if (files.size() > request.limit) files.resize(request.limit);
  for (const auto& file : files)
    if (!channel.send(file)) return 1;
  return channel.send(End{}) ? 0 : 1;
}

int serve_remove(Channel& channel, const RemoveRequest& request) {
  auto directory = open_directory(request.directory, false);
  if (!directory)
    return directory.error().kind == ErrorKind::not_found
               ? channel.refuse(FailureKind::not_found, "no file " + request.name)
               : channel.refuse(FailureKind::error, directory.error().message);
  struct stat info {};
  if (::fstatat(directory->get(), request.name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? channel.refuse(FailureKind::not_found, "no file " + request.name)
                           : channel.fail_errno("cannot remove " + request.name, errno);
  if (S_ISDIR(info.st_mode)) return channel.refuse(FailureKind::refused, request.name + " is a directory");
  // unlinkat removes a symlink itself, never what it points to.
  if (::unlinkat(directory->get(), request.name.c_str(), 0) != 0)
    return channel.fail_errno("cannot remove " + request.name, errno);
  return channel.send(End{}) ? 0 : 1;
}

}  // namespace

bool is_file_request(const Message& message) {
  return std::holds_alternative<UploadRequest>(message) || std::holds_alternative<DownloadRequest>(message) ||
         std::holds_alternative<ListRequest>(message) || std::holds_alternative<RemoveRequest>(message) ||
         std::holds_alternative<WatchOpen>(message);
}

int serve_file_request(int connection, const Message& request, FrameDecoder decoder) {
  Channel channel(connection, std::move(decoder));
  if (auto* upload = std::get_if<UploadRequest>(&request)) return serve_upload(channel, *upload);
  if (auto* download = std::get_if<DownloadRequest>(&request)) return serve_download(channel, *download);
  if (auto* list = std::get_if<ListRequest>(&request)) return serve_list(channel, *list);
  if (auto* remove = std::get_if<RemoveRequest>(&request)) return serve_remove(channel, *remove);
  if (auto* watch = std::get_if<WatchOpen>(&request)) return serve_watch(connection, *watch);
  return channel.refuse(FailureKind::error, "bad request: not a file request");
}

Result<pid_t> spawn_file_worker(UniqueFd connection, const Message& request, const FrameDecoder& decoder,
                                const SandboxUser* user) {
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(os_error("fork", "file worker", errno));
  if (pid > 0) return pid;
  int fd = become_worker(std::move(connection));
  if (user != nullptr) {
    if (auto became = become_user(*user); !became) {
      Channel(fd, decoder).refuse(FailureKind::error, "cannot act as the sandbox's user: " + became.error().message);
      ::_exit(1);
    }
  }
  ::_exit(serve_file_request(fd, request, decoder));
}

}  // namespace modbox::helper
