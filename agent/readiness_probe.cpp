#include "agent/readiness_probe.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "common/encoding.h"

namespace modbox {

namespace {

using Clock = std::chrono::steady_clock;

/// Sends all of `bytes` (MSG_NOSIGNAL: a server that hung up is an error, not SIGPIPE).
Result<void> send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return std::unexpected(system_error("send", "the readiness probe's request", errno));
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return {};
}

/// Reads an answer's head: until its blank line, the connection's end or `limit` bytes, by `deadline`.
Result<std::string> read_head(int fd, Clock::time_point deadline, std::size_t limit = 16 * 1024) {
  std::string received;
  char buffer[1024];
  while (received.find("\r\n\r\n") == std::string::npos && received.size() < limit) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return fail(ErrorKind::timeout, "no HTTP answer within " +
                                                       std::to_string(limits::readiness_attempt_timeout_ms) + " ms");
    pollfd waiting{.fd = fd, .events = POLLIN, .revents = 0};
    int ready = ::poll(&waiting, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return std::unexpected(system_error("poll", "the readiness probe's answer", errno));
    if (ready == 0) continue;
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return std::unexpected(system_error("recv", "the readiness probe's answer", errno));
    if (got == 0) break;
    received.append(buffer, static_cast<std::size_t>(got));
    // Something that is not HTTP said its first line: no head of headers follows.
    if (received.find('\n') != std::string::npos && !received.starts_with("HTTP/")) break;
  }
  return received;
}

/// The value of header `name` (lower case) in an answer's head, or empty.
std::string header_value(std::string_view head, std::string_view name) {
  std::size_t line = head.find("\r\n");
  while (line != std::string_view::npos) {
    std::size_t start = line + 2, end = head.find("\r\n", start);
    std::string_view field = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    auto colon = field.find(':');
    if (colon == name.size() && std::equal(name.begin(), name.end(), field.begin(), [](char a, char b) {
          return a == (b >= 'A' && b <= 'Z' ? static_cast<char>(b - 'A' + 'a') : b);
        })) {
      std::string_view value = field.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      return std::string(value);
    }
    line = end;
  }
  return {};
}

/// The path a redirect's Location leads to on the probed port: a path as it is, an absolute URL's path
/// (the probe stays on the sandbox's port), a relative one against `from`'s directory.
std::string redirect_path(const std::string& location, const std::string& from) {
  if (location.starts_with("/") && !location.starts_with("//")) return location;
  if (auto scheme = location.find("://"); scheme != std::string::npos) {
    auto path = location.find('/', scheme + 3);
    return path == std::string::npos ? "/" : location.substr(path);
  }
  return from.substr(0, from.rfind('/') + 1) + location;
}

/// Keeps what the sandbox wrote printable and short: it ends up in messages.
std::string printable(std::string_view text, std::size_t limit = 200) {
  std::string result;
  for (char c : text.substr(0, limit)) result += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > limit) result += "...";
  return result;
}

/// One GET of `path` on the port: passes on 2xx, or names where a 3xx leads (`redirect`).
Result<void> get_once(SandboxHelpers& helpers, const std::filesystem::path& socket, int port, const std::string& path,
                      std::string& redirect) {
  auto relay = helpers.open_relay(socket, static_cast<std::uint16_t>(port));
  if (!relay) return std::unexpected(relay.error());
  auto deadline = Clock::now() + std::chrono::milliseconds(limits::readiness_attempt_timeout_ms);
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                        "\r\nUser-Agent: modbox-readiness-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  if (auto sent = send_all(relay->get(), request); !sent) return std::unexpected(sent.error());
  auto head = read_head(relay->get(), deadline);
  if (!head) return std::unexpected(head.error());
  std::string what = "GET " + printable(path, 100) + " on port " + std::to_string(port);
  std::string line = head->substr(0, std::min(head->find("\r\n"), head->find('\n')));
  // "HTTP/1.1 200 OK": the status is the three digits after the first space.
  auto space = line.find(' ');
  if (!line.starts_with("HTTP/") || space == std::string::npos || line.size() < space + 4)
    return fail(ErrorKind::bad_gateway, what + " got no HTTP status line" +
                                            (line.empty() ? std::string(" (the connection closed)")
                                                          : ": " + printable(line)));
  char first = line[space + 1];
  if (first == '2') return {};
  std::string status = printable(std::string_view(line).substr(space + 1));
  if (first == '3') {
    std::string location = header_value(*head, "location");
    if (!location.empty()) {
      redirect = redirect_path(location, path);
      return fail(ErrorKind::bad_gateway, what + " answered " + status + " to " + printable(redirect, 100));
    }
  }
  return fail(ErrorKind::bad_gateway, what + " answered " + status);
}

/// GET / on the port, following redirects (as a browser opening the sandbox URL would) to paths on the
/// same port, five at most: the probe passes on the 2xx at the end.
Result<void> probe_http(SandboxHelpers& helpers, const std::filesystem::path& socket, int port) {
  std::string path = "/";
  for (int hop = 0;; ++hop) {
    std::string redirect;
    auto answered = get_once(helpers, socket, port, path, redirect);
    if (answered || redirect.empty()) return answered;
    if (hop == limits::readiness_http_redirects)
      return fail(ErrorKind::bad_gateway, answered.error().message + ", after " +
                                              std::to_string(limits::readiness_http_redirects) + " redirects already");
    path = redirect;
  }
}

Result<void> probe_exec(SandboxHelpers& helpers, const std::filesystem::path& socket,
                        const std::vector<std::string>& command) {
  ExecRequest request{.command = shell_quote(command), .timeout_ms = limits::readiness_attempt_timeout_ms, .cwd = "/"};
  auto result = helpers.exec(socket, request);
  if (!result) return std::unexpected(result.error());
  if (result->exit_code == 0 && !result->killed) return {};
  std::string reason = result->killed ? "was killed after " + std::to_string(limits::readiness_attempt_timeout_ms) + " ms"
                                      : "exited with " + std::to_string(result->exit_code);
  std::string said = result->stderr_text.empty() ? result->stdout_text : result->stderr_text;
  while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
  return fail(ErrorKind::bad_gateway, "`" + printable(request.command) + "` " + reason +
                                          (said.empty() ? std::string() : ": " + printable(said)));
}

/// A process whose name (/proc/PID/comm, what `pgrep NAME` matches) is `name` runs in the sandbox: a
/// loop of the sandbox's own shell over /proc, so the image needs no procps.
Result<void> probe_process(SandboxHelpers& helpers, const std::filesystem::path& socket, const std::string& name) {
  // comm holds at most 15 bytes of the name.
  std::string quoted = shell_quote(std::string_view(name).substr(0, 15));
  ExecRequest request{.command = "for f in /proc/[0-9]*/comm; do read -r n < \"$f\" 2>/dev/null && [ \"$n\" = " +
                                 quoted + " ] && exit 0; done; exit 1",
                      .timeout_ms = limits::readiness_attempt_timeout_ms,
                      .cwd = "/"};
  auto result = helpers.exec(socket, request);
  if (!result) return std::unexpected(result.error());
  if (result->exit_code == 0 && !result->killed) return {};
  return fail(ErrorKind::bad_gateway,
              "no " + name + " process is running" +
                  (result->killed ? std::string(" (the check was killed at its timeout)") : ""));
}

}  // namespace

std::optional<ReadinessProbe> process_probe_for(const std::vector<std::string>& image_command,
                                                const std::function<bool()>& has_supervisord_binary) {
  bool named = std::any_of(image_command.begin(), image_command.end(), [](const std::string& argument) {
    return argument.find("supervisord") != std::string::npos;
  });
  if (named || has_supervisord_binary())
    return ReadinessProbe{.kind = ReadinessProbe::Kind::process, .process = "supervisord"};
  return std::nullopt;
}

Result<void> probe_once(SandboxHelpers& helpers, const std::filesystem::path& socket, const ReadinessProbe& probe) {
  switch (probe.kind) {
    case ReadinessProbe::Kind::http: return probe_http(helpers, socket, probe.port);
    case ReadinessProbe::Kind::tcp: {
      // A relay opens only once the helper's connect to the port succeeded; closing it ends the probe.
      auto relay = helpers.open_relay(socket, static_cast<std::uint16_t>(probe.port));
      if (!relay) return std::unexpected(relay.error());
      return {};
    }
    case ReadinessProbe::Kind::exec: return probe_exec(helpers, socket, probe.command);
    case ReadinessProbe::Kind::process:
      return probe_process(helpers, socket, probe.process);
  }
  return fail(ErrorKind::internal, "a readiness probe of no known type");
}

}  // namespace modbox
