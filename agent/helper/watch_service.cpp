#include "agent/helper/watch_service.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "common/unique_fd.h"

namespace modbox::helper {

namespace {

constexpr std::uint32_t watched_events = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_DELETE_SELF |
                                         IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR;

bool send_frame(int connection, const Message& message) {
  std::string bytes = encode(message);
  std::string_view rest = bytes;
  while (!rest.empty()) {
    ssize_t sent = ::send(connection, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    rest.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

class Watcher {
 public:
  Watcher(int inotify, std::string root, bool recursive)
      : inotify_(inotify), root_(std::move(root)), recursive_(recursive) {}

  /// Watches `relative` (under the root), and with recursion what lies under it.
  void add(const std::string& relative) {
    if (directories_.size() >= watch_directories_max) return;
    std::string path = relative.empty() ? root_ : root_ + "/" + relative;
    int wd = ::inotify_add_watch(inotify_, path.c_str(), watched_events);
    if (wd < 0) return;
    directories_[wd] = relative;
    if (!recursive_) return;
    std::error_code error;
    for (std::filesystem::directory_iterator
             it(path, std::filesystem::directory_options::skip_permission_denied, error),
         end;
         !error && it != end; it.increment(error)) {
      if (it->is_directory(error) && !it->is_symlink(error))
        add(relative.empty() ? it->path().filename().string() : relative + "/" + it->path().filename().string());
    }
  }

  /// Passes the events of one read on; false when the agent is gone.
  bool forward(std::string_view bytes, int connection) {
    while (bytes.size() >= sizeof(inotify_event)) {
      const auto* event = reinterpret_cast<const inotify_event*>(bytes.data());
      std::size_t size = sizeof(inotify_event) + event->len;
      if (size > bytes.size()) break;
      std::string name = event->len > 0 ? std::string(event->name) : std::string();
      bytes.remove_prefix(size);
      if (event->mask & IN_Q_OVERFLOW) {
        if (!send_frame(connection, WatchEvent{WatchKind::overflow, ""})) return false;
        continue;
      }
      auto directory = directories_.find(event->wd);
      if (directory == directories_.end()) continue;
      if (event->mask & IN_IGNORED) {
        directories_.erase(directory);
        continue;
      }
      std::string relative = directory->second;
      if (!name.empty()) relative = relative.empty() ? name : relative + "/" + name;
      if ((event->mask & IN_DELETE_SELF) && !directory->second.empty()) continue;  // its parent reports it
      std::optional<WatchKind> kind;
      if (event->mask & (IN_CREATE | IN_MOVED_TO))
        kind = WatchKind::create;
      else if (event->mask & (IN_DELETE | IN_DELETE_SELF))
        kind = WatchKind::remove;
      else if (event->mask & IN_MOVED_FROM)
        kind = WatchKind::rename;
      else if (event->mask & IN_MODIFY)
        kind = WatchKind::write;
      else if (event->mask & IN_ATTRIB)
        kind = WatchKind::chmod;
      if (!kind) continue;
      if (recursive_ && (event->mask & IN_ISDIR) && (event->mask & (IN_CREATE | IN_MOVED_TO))) add(relative);
      if (!send_frame(connection, WatchEvent{*kind, relative})) return false;
    }
    return true;
  }

 private:
  int inotify_;
  std::string root_;
  bool recursive_;
  std::map<int, std::string> directories_;
};

}  // namespace

int serve_watch(int connection, const WatchOpen& request) {
  struct stat status {};
  if (::stat(request.path.c_str(), &status) != 0) {
    bool missing = errno == ENOENT || errno == ENOTDIR;
    send_frame(connection, Failure{"cannot watch " + request.path + ": " + std::strerror(errno),
                                   missing ? FailureKind::not_found : FailureKind::error});
    return 1;
  }
  if (!S_ISDIR(status.st_mode)) {
    send_frame(connection, Failure{request.path + " is not a directory", FailureKind::refused});
    return 1;
  }
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify.valid()) {
    send_frame(connection, Failure{std::string("cannot watch files: inotify_init1: ") + std::strerror(errno)});
    return 1;
  }
  std::string root = request.path;
  while (root.size() > 1 && root.ends_with('/')) root.pop_back();
  Watcher watcher(inotify.get(), root, request.recursive);
  watcher.add("");
  if (!send_frame(connection, WatchReady{})) return 1;
  alignas(inotify_event) char buffer[64 << 10];
  for (;;) {
    pollfd entries[2] = {{inotify.get(), POLLIN, 0}, {connection, POLLIN, 0}};
    if (::poll(entries, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    // The agent sends nothing after WatchOpen: readable means it closed (or broke the protocol).
    if (entries[1].revents != 0) return 0;
    if (entries[0].revents & POLLIN) {
      ssize_t got = ::read(inotify.get(), buffer, sizeof buffer);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) return 1;
      if (!watcher.forward(std::string_view(buffer, static_cast<std::size_t>(got)), connection)) return 0;
    }
  }
}

}  // namespace modbox::helper
