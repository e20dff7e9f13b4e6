#include "common/system.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace modbox {

Error system_error(std::string_view call, const std::string& subject, int errno_value) {
  std::string message = std::string(call) + "(" + subject + "): " + std::strerror(errno_value);
  if (errno_value == ENOSPC || errno_value == EDQUOT)
    return Error{ErrorKind::insufficient_storage, message + "; free space on that disk and try again", {}};
  return Error{ErrorKind::internal, message, {}};
}

namespace {

Result<void> write_all(int fd, std::string_view data, const std::string& subject) {
  while (!data.empty()) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(system_error("write", subject, errno));
    }
    data.remove_prefix(static_cast<std::size_t>(written));
  }
  return {};
}

Result<void> fsync_directory(const std::filesystem::path& directory) {
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(system_error("open", directory, errno));
  if (::fsync(fd.get()) != 0) return std::unexpected(system_error("fsync", directory, errno));
  return {};
}

}  // namespace

Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  const std::filesystem::path directory = path.parent_path().empty() ? "." : path.parent_path();
  std::string temp_name = (directory / ("." + path.filename().string() + ".tmp-" + random_hex(6))).string();
  UniqueFd fd(::open(temp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return std::unexpected(system_error("open", temp_name, errno));
  auto cleanup_on_error = [&](Error error) -> Result<void> {
    ::unlink(temp_name.c_str());
    return std::unexpected(std::move(error));
  };
  if (auto written = write_all(fd.get(), content, temp_name); !written) return cleanup_on_error(written.error());
  if (::fsync(fd.get()) != 0) return cleanup_on_error(system_error("fsync", temp_name, errno));
  fd = UniqueFd();
  if (::rename(temp_name.c_str(), path.c_str()) != 0) return cleanup_on_error(system_error("rename", temp_name, errno));
  return fsync_directory(directory);
}

Result<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    Error error = system_error("open", path, errno);
    if (errno == ENOENT) error.kind = ErrorKind::not_found;
    return std::unexpected(error);
  }
  std::string content;
  char buffer[8192];
  for (;;) {
    ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(system_error("read", path, errno));
    }
    if (got == 0) break;
    content.append(buffer, static_cast<std::size_t>(got));
    if (content.size() > max_bytes) return fail(ErrorKind::too_large, path.string() + " is larger than expected");
  }
  return content;
}

Result<std::string> read_untrusted_file(const std::filesystem::path& path, std::size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    Error error = system_error("open", path, errno);
    if (errno == ENOENT) error.kind = ErrorKind::not_found;
    return std::unexpected(error);
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return std::unexpected(system_error("fstat", path, errno));
  if (!S_ISREG(info.st_mode)) return fail(ErrorKind::bad_request, path.string() + " is not a regular file");
  std::string content(max_bytes, '\0');
  std::size_t filled = 0;
  while (filled < max_bytes) {
    ssize_t got = ::read(fd.get(), content.data() + filled, max_bytes - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return std::unexpected(system_error("read", path, errno));
    if (got == 0) break;
    filled += static_cast<std::size_t>(got);
  }
  content.resize(filled);
  return content;
}

Result<void> make_directories(const std::filesystem::path& path, unsigned mode) {
  std::error_code error;
  std::filesystem::create_directories(path.parent_path(), error);
  if (error) return fail(ErrorKind::internal, "creating " + path.parent_path().string() + ": " + error.message());
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return std::unexpected(system_error("mkdir", path, errno));
  return {};
}

Result<bool> file_lock_held(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return false;
    return std::unexpected(system_error("open", path, errno));
  }
  int locked = 0;
  do locked = ::flock(fd.get(), LOCK_EX | LOCK_NB);
  while (locked != 0 && errno == EINTR);
  if (locked != 0) {
    if (errno == EWOULDBLOCK) return true;
    return std::unexpected(system_error("flock", path, errno));
  }
  // Closing the descriptor would release it too; unlocking first keeps the window minimal.
  ::flock(fd.get(), LOCK_UN);
  return false;
}

Result<bool> unix_socket_listening(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof address.sun_path)
    return std::unexpected(system_error("connect", path, ENAMETOOLONG));
  std::memcpy(address.sun_path, path.c_str(), path.native().size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return std::unexpected(system_error("socket", path, errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return true;
  switch (errno) {
    case ENOENT:
    case ECONNREFUSED: return false;
    case EAGAIN: return true;  // a full backlog: someone listens, and is busy
    default: return std::unexpected(system_error("connect", path, errno));
  }
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  std::size_t filled = 0;
  while (filled < bytes) {
    ssize_t got = ::getrandom(raw.data() + filled, bytes - filled, 0);
    if (got > 0) filled += static_cast<std::size_t>(got);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes * 2);
  for (unsigned char byte : raw) {
    hex.push_back(digits[byte >> 4]);
    hex.push_back(digits[byte & 0xf]);
  }
  return hex;
}

std::string new_uuid() {
  std::string hex = random_hex(16);
  hex[12] = '4';                                        // version 4
  hex[16] = "89ab"[std::stoi(hex.substr(16, 1), nullptr, 16) & 3];  // RFC 4122 variant
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

bool constant_time_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (std::size_t i = 0; i < a.size(); ++i) difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  return difference == 0;
}

std::string current_user_name() {
  uid_t uid = ::geteuid();
  struct passwd entry {};
  struct passwd* found = nullptr;
  char buffer[4096];
  if (::getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found != nullptr) return found->pw_name;
  return std::to_string(uid);
}

std::string percent_encode(std::string_view text) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string encoded;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      encoded.push_back(static_cast<char>(c));
    } else {
      encoded.push_back('%');
      encoded.push_back(digits[c >> 4]);
      encoded.push_back(digits[c & 15]);
    }
  }
  return encoded;
}

std::string describe_duration(std::chrono::milliseconds duration) {
  auto ms = duration.count();
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + (ms == 60000 ? " minute" : " minutes");
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

std::string format_timestamp(TimePoint time) {
  auto milliseconds = std::chrono::floor<std::chrono::milliseconds>(time).time_since_epoch().count();
  std::time_t seconds = static_cast<std::time_t>(milliseconds / 1000);
  if (milliseconds % 1000 < 0) --seconds;
  std::tm parts{};
  ::gmtime_r(&seconds, &parts);
  char text[40];
  std::size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
  std::snprintf(text + length, sizeof text - length, ".%03dZ", static_cast<int>(((milliseconds % 1000) + 1000) % 1000));
  return text;
}

Result<TimePoint> parse_timestamp(std::string_view text) {
  // Accepts what format_timestamp writes, with or without fractional seconds.
  std::tm parts{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, consumed = 0;
  std::string copy(text);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute, &second,
                  &consumed) != 6)
    return fail(ErrorKind::bad_request, "not a timestamp: " + copy);
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  TimePoint result = std::chrono::system_clock::from_time_t(::timegm(&parts));
  std::string_view rest = text.substr(static_cast<std::size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    int millis = 0, digits = 0;
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
      if (digits < 3) millis = millis * 10 + (rest.front() - '0'), ++digits;
      rest.remove_prefix(1);
    }
    while (digits < 3) millis *= 10, ++digits;
    result += std::chrono::milliseconds(millis);
  }
  if (rest != "Z" && rest != "+00:00") return fail(ErrorKind::bad_request, "timestamp is not in UTC: " + copy);
  return result;
}

std::optional<std::string> find_in_path(const std::string& name) {
  if (name.find('/') != std::string::npos)
    return ::access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  const char* path = std::getenv("PATH");
  std::string directories = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  std::size_t start = 0;
  while (start <= directories.size()) {
    std::size_t colon = directories.find(':', start);
    if (colon == std::string::npos) colon = directories.size();
    std::string candidate = directories.substr(start, colon - start) + "/" + name;
    if (colon > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return std::nullopt;
}


}  // namespace modbox
