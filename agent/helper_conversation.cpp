#include "agent/helper_conversation.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/system.h"

namespace modbox {

namespace {

int remaining_ms(HelperClock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - HelperClock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 3'600'000));
}

}  // namespace

std::unexpected<Error> helper_unavailable(const std::string& what) {
  return fail(ErrorKind::unavailable, "the sandbox's helper " + what);
}

std::string sanitize(std::string_view text, std::size_t max) {
  std::string clean;
  for (char c : text.substr(0, max)) clean.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return clean;
}

Result<Conversation> Conversation::open(const std::filesystem::path& socket, HelperClock::time_point deadline) {
  // The directory is the sandbox's to write in: refuse anything but a socket there, so a
  // symlink planted by the sandbox cannot point the agent at another socket on the host.
  struct stat info {};
  if (::lstat(socket.c_str(), &info) != 0)
    return helper_unavailable(errno == ENOENT ? "is not listening (no socket at " + socket.string() + ")"
                                              : "socket cannot be read: " + std::string(std::strerror(errno)));
  if (!S_ISSOCK(info.st_mode)) return helper_unavailable("socket " + socket.string() + " is not a socket any more");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket.string().size() >= sizeof address.sun_path)
    return fail(ErrorKind::internal, "helper socket path is too long for a unix socket: " + socket.string());
  std::memcpy(address.sun_path, socket.c_str(), socket.string().size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return std::unexpected(system_error("socket", socket.string(), errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (errno != EAGAIN && errno != EINPROGRESS)
      return helper_unavailable("is not answering (" + std::string(std::strerror(errno)) + ")");
    // A full backlog: wait for the helper to accept.
    pollfd entry{fd.get(), POLLOUT, 0};
    if (::poll(&entry, 1, remaining_ms(deadline)) <= 0) return helper_unavailable("did not accept the connection in time");
  }
  return Conversation(std::move(fd), deadline);
}

Result<void> Conversation::send(const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t now = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (now > 0) {
      sent += static_cast<std::size_t>(now);
      continue;
    }
    if (now < 0 && errno == EINTR) continue;
    if (now < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return helper_unavailable("closed the connection (" + std::string(std::strerror(errno)) + ")");
    pollfd entry{fd_.get(), POLLOUT, 0};
    if (::poll(&entry, 1, remaining_ms(deadline_)) <= 0) return helper_unavailable("is not reading its socket");
  }
  return {};
}

Result<helper::Message> Conversation::receive() {
  auto message = receive_until(deadline_);
  if (!message) return std::unexpected(message.error());
  if (!*message) return helper_unavailable("did not answer in time");
  return std::move(**message);
}

Result<std::optional<helper::Message>> Conversation::receive_until(HelperClock::time_point until) {
  for (;;) {
    auto message = decoder_.next();
    if (!message) return helper_unavailable("sent a malformed reply (" + message.error().message + ")");
    if (*message) return std::move(*message);
    pollfd entry{fd_.get(), POLLIN, 0};
    int ready = ::poll(&entry, 1, remaining_ms(std::min(until, deadline_)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      if (HelperClock::now() >= deadline_) return helper_unavailable("did not answer in time");
      return std::optional<helper::Message>();
    }
    char buffer[64 << 10];
    std::size_t want = exactly_ ? std::min(decoder_.missing(), sizeof buffer) : sizeof buffer;
    ssize_t got = ::recv(fd_.get(), buffer, want, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return helper_unavailable("closed the connection before answering (was it killed?)");
    decoder_.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
  }
}

Result<helper::Hello> Conversation::receive_hello() {
  auto message = receive();
  if (!message) return std::unexpected(message.error());
  auto* hello = std::get_if<helper::Hello>(&*message);
  if (hello == nullptr) return helper_unavailable("did not greet with a hello frame");
  if (hello->version < helper::oldest_protocol_version || hello->version > helper::protocol_version)
    return helper_unavailable("speaks protocol version " + std::to_string(hello->version) + ", the agent " +
                              std::to_string(helper::oldest_protocol_version) + " to " +
                              std::to_string(helper::protocol_version));
  hello->shell = sanitize(hello->shell);
  return *hello;
}

}  // namespace modbox
