#include "cli/agent_client.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cli/user_unit.h"
#include "common/models.h"
#include "common/system.h"
#include "common/unique_fd.h"

namespace modbox {

namespace {
std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}
}  // namespace

AgentEndpoint AgentEndpoint::from_environment() {
  return AgentEndpoint{env_value("MODBOX_API_URL"), env_value("MODBOX_API_TOKEN")};
}

AgentClient::AgentClient(AgentPaths paths, std::optional<std::string> workspace, AgentEndpoint endpoint)
    : paths_(std::move(paths)),
      workspace_(std::move(workspace)),
      api_url_(std::move(endpoint.api_url)),
      api_token_(std::move(endpoint.api_token)),
      url_origin_(std::move(endpoint.url_origin)) {}

Result<Reply> AgentClient::send(const std::string& method, const std::string& path, const std::string& body,
                                int timeout_seconds) const {
  return send_within(method, path, body, std::chrono::seconds(timeout_seconds));
}

namespace {
/// A client of the agent, by its TCP URL with the token or by its unix socket, and the headers every
/// request to it carries.
std::unique_ptr<httplib::Client> connect_to_agent(const std::optional<std::string>& api_url,
                                                  const std::optional<std::string>& api_token,
                                                  const std::optional<std::string>& workspace,
                                                  const std::string& socket, httplib::Headers& headers) {
  std::unique_ptr<httplib::Client> client;
  if (api_url) {
    client = std::make_unique<httplib::Client>(*api_url);
    if (api_token) headers.emplace("Authorization", "Bearer " + *api_token);
  } else {
    client = std::make_unique<httplib::Client>(socket, 80);
    client->set_address_family(AF_UNIX);
    headers.emplace("Host", "localhost");
  }
  if (workspace) headers.emplace("X-Workspace-Id", *workspace);
  client->set_connection_timeout(std::chrono::seconds(5));
  return client;
}
}  // namespace

Result<Reply> AgentClient::send_within(const std::string& method, const std::string& path, const std::string& body,
                                       std::chrono::milliseconds timeout) const {
  httplib::Headers headers;
  auto client = connect_to_agent(api_url_, api_token_, workspace_, paths_.agent_socket().string(), headers);
  client->set_read_timeout(timeout);
  httplib::Result result = method == "GET"      ? client->Get(path.c_str(), headers)
                           : method == "DELETE" ? client->Delete(path.c_str(), headers)
                           : method == "PUT"    ? client->Put(path.c_str(), headers, body, "application/json")
                                                : client->Post(path.c_str(), headers, body, "application/json");
  if (!result) {
    std::string where = api_url_ ? *api_url_ : paths_.agent_socket().string();
    return fail(ErrorKind::unavailable, "cannot reach modboxd at " + where + " (" + httplib::to_string(result.error()) + ")");
  }
  return Reply{result->status, result->body};
}

Result<void> AgentClient::stream_get(const std::string& path, const std::function<bool(std::string_view)>& on_data,
                                     int read_timeout_seconds) const {
  httplib::Headers headers;
  auto client = connect_to_agent(api_url_, api_token_, workspace_, paths_.agent_socket().string(), headers);
  client->set_read_timeout(std::chrono::seconds(read_timeout_seconds));
  int status = 0;
  std::string error_body;
  bool stopped = false;
  auto result = client->Get(
      path.c_str(), headers,
      [&](const httplib::Response& response) {
        status = response.status;
        return true;
      },
      [&](const char* data, std::size_t length) {
        if (status < 200 || status >= 300) {
          if (error_body.size() < (64 << 10)) error_body.append(data, length);
          return true;
        }
        if (!on_data(std::string_view(data, length))) {
          stopped = true;
          return false;
        }
        return true;
      });
  if (stopped) return {};
  if (!result) {
    std::string where = api_url_ ? *api_url_ : paths_.agent_socket().string();
    if (status != 0)
      return fail(ErrorKind::unavailable, "the answer from modboxd at " + where + " was cut short (" +
                                              httplib::to_string(result.error()) + ")");
    return fail(ErrorKind::unavailable,
                "cannot reach modboxd at " + where + " (" + httplib::to_string(result.error()) + ")");
  }
  if (status < 200 || status >= 300) return std::unexpected(error_from_response(status, error_body));
  return {};
}

Result<void> AgentClient::post_form_events(const std::string& path, const std::vector<FormPart>& parts,
                                           const std::function<bool(std::string_view)>& on_data,
                                           int read_timeout_seconds) const {
  httplib::Headers headers;
  auto client = connect_to_agent(api_url_, api_token_, workspace_, paths_.agent_socket().string(), headers);
  client->set_read_timeout(std::chrono::seconds(read_timeout_seconds));
  client->set_write_timeout(std::chrono::seconds(120));
  std::string boundary = "modbox-" + random_hex(16);
  httplib::Request request;
  request.method = "POST";
  request.path = path;
  request.headers = headers;
  request.headers.emplace("Accept", "text/event-stream");
  request.headers.emplace("Content-Type", "multipart/form-data; boundary=" + boundary);
  for (const auto& part : parts) {
    request.body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + part.name + "\"";
    if (!part.filename.empty()) request.body += "; filename=\"" + part.filename + "\"";
    request.body += "\r\n";
    if (!part.content_type.empty()) request.body += "Content-Type: " + part.content_type + "\r\n";
    request.body += "\r\n" + part.content + "\r\n";
  }
  request.body += "--" + boundary + "--\r\n";
  int status = 0;
  std::string error_body;
  bool stopped = false;
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
    if (status < 200 || status >= 300) {
      if (error_body.size() < (64 << 10)) error_body.append(data, length);
      return true;
    }
    stopped = !on_data(std::string_view(data, length));
    return !stopped;
  };
  auto result = client->send(request);
  if (stopped) return {};
  std::string where = api_url_ ? *api_url_ : paths_.agent_socket().string();
  if (!result) {
    if (status != 0)
      return fail(ErrorKind::unavailable, "the answer from modboxd at " + where + " was cut short (" +
                                              httplib::to_string(result.error()) + ")");
    return fail(ErrorKind::unavailable,
                "cannot reach modboxd at " + where + " (" + httplib::to_string(result.error()) + ")");
  }
  if (status < 200 || status >= 300) return std::unexpected(error_from_response(status, error_body));
  return {};
}

Result<std::string> AgentClient::call(const std::string& method, const std::string& path, const std::string& body,
                                      int timeout_seconds) const {
  auto reply = send(method, path, body, timeout_seconds);
  if (!reply) return std::unexpected(reply.error());
  if (reply->status < 200 || reply->status >= 300) return std::unexpected(error_from_response(reply->status, reply->body));
  return reply->body;
}

std::optional<Reply> AgentClient::status_within(std::chrono::milliseconds timeout) const {
  auto reply = send_within("GET", "/agent/status", "", timeout);
  if (!reply || reply->status != 200) return std::nullopt;
  return *reply;
}

std::string find_agent_binary() {
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    auto sibling = self.parent_path() / "modboxd";
    if (::access(sibling.c_str(), X_OK) == 0) return sibling.string();
  }
  return "modboxd";
}

bool agent_alive(const AgentPaths& paths) {
  // The lock is what keeps a second agent from starting, so it is what tells: a running agent
  // holds it from before it serves (it reconciles first) until it has exited.
  if (auto held = file_lock_held(paths.lock_file())) return *held;
  auto listening = unix_socket_listening(paths.agent_socket());
  return !listening || *listening;  // cannot tell either: rather wait than start a second agent
}

void notice_on_terminal(const std::string& line) {
  if (::isatty(2)) std::fprintf(stderr, "%s\n", line.c_str());
}

Result<pid_t> spawn_agent(const AgentPaths& paths) {
  std::string agent = find_agent_binary();
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(system_error("fork", agent, errno));
  if (pid == 0) {
    // Detached from this terminal and process group, so it outlives the CLI and its signals.
    ::setsid();
    FILE* log = std::fopen(paths.log_file().c_str(), "a");
    if (log != nullptr) {
      ::dup2(::fileno(log), 1);
      ::dup2(::fileno(log), 2);
    }
    if (FILE* null = std::fopen("/dev/null", "r")) ::dup2(::fileno(null), 0);
    std::string state = "--state-dir=" + paths.state_dir.string();
    std::string runtime = "--runtime-dir=" + paths.runtime_dir.string();
    ::execlp(agent.c_str(), agent.c_str(), state.c_str(), runtime.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "modbox: cannot run %s: %s\n", agent.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

Result<pid_t> start_agent(const AgentPaths& paths) {
  if (agent_unit_in_charge(paths)) {
    // Type=notify: this returns once the agent serves, or fails with systemd's reason.
    if (auto started = systemctl_user({"start", agent_unit_name}); !started)
      return std::unexpected(with_context(started.error(),
                                          "starting modboxd through its user unit (journalctl "
                                          "--user -u modboxd says why)"));
    return 0;
  }
  // Run by a unit (a TTL timer's `modbox agent reap`, a CI runner's service): a forked agent would stay
  // in that unit's cgroup, a stray process once it ends, or killed with it. A unit of its own instead.
  if (inside_systemd_unit() && user_manager_reachable()) {
    if (auto started = start_agent_as_transient_unit(find_agent_binary(), paths); !started)
      return std::unexpected(with_context(
          started.error(), "starting modboxd as a unit of its own (see " + paths.log_file().string() + ")"));
    return 0;
  }
  return spawn_agent(paths);
}

Result<void> AgentClient::ensure_agent(bool announce, const AgentStartPolicy& policy) const {
  auto since = std::chrono::steady_clock::now();
  if (status_within(policy.status_timeout)) return {};
  if (api_url_)
    return fail(ErrorKind::unavailable, "modboxd at " + *api_url_ +
                                            " (from " + url_origin_ + ") is not answering");
  // A slow answer is a busy agent, or one still starting: a second one would only be refused by
  // the state lock. Start one only when none lives.
  auto answered = wait_while_alive(policy, since);
  if (!answered) return std::unexpected(answered.error());
  if (*answered) return {};
  if (auto made = make_directories(paths_.runtime_dir, 0700); !made) return std::unexpected(made.error());
  if (announce) std::fprintf(stderr, "modbox: starting modboxd (log: %s)\n", paths_.log_file().c_str());
  auto pid = policy.spawn(paths_);
  if (!pid) return std::unexpected(pid.error());
  return wait_for_start(*pid, policy);
}

Result<bool> AgentClient::wait_while_alive(const AgentStartPolicy& policy,
                                           std::chrono::steady_clock::time_point since) const {
  bool told = false;
  while (agent_alive(paths_)) {
    auto waited = std::chrono::steady_clock::now() - since;
    if (!told && waited >= policy.busy_notice_after) {
      policy.notice("modbox: waiting for modboxd (busy)...");
      told = true;
    }
    if (waited >= policy.busy_wait) {
      auto pid = read_file(paths_.pid_file(), 64);
      return fail(ErrorKind::unavailable,
                  "modboxd" + (pid ? " (pid " + pid->substr(0, pid->find('\n')) + ")" : std::string()) +
                      " is running but has not answered for " +
                      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(waited).count()) +
                      " s (busy, or still starting); see " + paths_.log_file().string());
    }
    // Short questions until the notice; then one patient question for the rest of the wait, so that
    // an agent slower than status_timeout at every answer is still heard.
    auto timeout = told ? std::max(policy.status_timeout,
                                   std::chrono::duration_cast<std::chrono::milliseconds>(policy.busy_wait - waited))
                        : policy.status_timeout;
    auto asked = std::chrono::steady_clock::now();
    if (status_within(timeout)) return true;
    // A missing or refusing socket (an agent that has not started serving) fails at once: pause.
    if (std::chrono::steady_clock::now() - asked < std::chrono::milliseconds(50))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

Result<void> AgentClient::wait_for_start(pid_t pid, const AgentStartPolicy& policy) const {
  // A new agent answers before its Podman service does; wait for both, so the first command
  // after a start does not meet a 503.
  auto deadline = std::chrono::steady_clock::now() + policy.start_wait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = status_within(policy.status_timeout)) {
      auto parsed = agent_status_from_json(status->body);
      if (parsed && parsed->podman_ready) return {};
    }
    int status = 0;
    // Started by systemd (pid 0): it is no child of ours, and it has exited when nobody holds the lock.
    if (pid == 0 ? !agent_alive(paths_) : ::waitpid(pid, &status, WNOHANG) == pid) {
      // Another modbox started an agent at the same moment, and that one holds the lock: use it.
      if (agent_alive(paths_)) {
        auto answered = wait_while_alive(policy, std::chrono::steady_clock::now());
        if (!answered) return std::unexpected(answered.error());
        if (*answered) return {};
      }
      return fail(ErrorKind::unavailable,
                  "modboxd exited at start; see " +
                      (pid == 0 ? paths_.log_file().string() + " or journalctl --user" : paths_.log_file().string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return fail(ErrorKind::unavailable,
              "modboxd or its podman service did not come up within " +
                  std::to_string(std::chrono::duration_cast<std::chrono::seconds>(policy.start_wait).count()) +
                  " s; see " + paths_.log_file().string() + " and " + paths_.podman_log_file().string());
}

namespace {

constexpr int transfer_timeout_seconds = 120;

std::unique_ptr<httplib::Client> sandbox_client(const std::string& sandbox_url) {
  auto client = std::make_unique<httplib::Client>(sandbox_url);
  client->set_connection_timeout(std::chrono::seconds(5));
  client->set_read_timeout(std::chrono::seconds(transfer_timeout_seconds));
  client->set_write_timeout(std::chrono::seconds(transfer_timeout_seconds));
  client->set_url_encode(false);
  return client;
}

Error transfer_failed(const std::string& sandbox_url, httplib::Error error) {
  return Error{ErrorKind::unavailable,
               "the transfer with " + sandbox_url + " failed (" + httplib::to_string(error) + ")", {}};
}

}  // namespace

Result<std::string> AgentClient::owner_token() const {
  if (api_token_) return *api_token_;
  auto token = read_file(paths_.token_file(), 4096);
  if (!token) return std::unexpected(with_context(token.error(), "reading the agent's token"));
  std::string value = *token;
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
  return value;
}

Result<Reply> AgentClient::sandbox_request(const std::string& sandbox_url, const std::string& method,
                                           const std::string& path, const std::string& body) const {
  auto token = owner_token();
  if (!token) return std::unexpected(token.error());
  auto client = sandbox_client(sandbox_url);
  httplib::Headers headers{{"Authorization", "Bearer " + *token}};
  httplib::Result result = method == "DELETE" ? client->Delete(path.c_str(), headers)
                           : method == "POST" ? client->Post(path.c_str(), headers, body, "application/json")
                                              : client->Get(path.c_str(), headers);
  if (!result) return std::unexpected(transfer_failed(sandbox_url, result.error()));
  return Reply{result->status, result->body};
}

Result<std::string> AgentClient::sandbox_call(const std::string& sandbox_url, const std::string& method,
                                              const std::string& path, const std::string& body) const {
  auto reply = sandbox_request(sandbox_url, method, path, body);
  if (!reply) return std::unexpected(reply.error());
  if (reply->status < 200 || reply->status >= 300) return std::unexpected(error_from_response(reply->status, reply->body));
  return std::move(reply->body);
}

Result<void> AgentClient::sandbox_events(const std::string& sandbox_url, const std::string& method,
                                         const std::string& path, const std::string& body,
                                         const std::function<bool(std::string_view)>& on_data,
                                         int read_timeout_seconds) const {
  auto token = owner_token();
  if (!token) return std::unexpected(token.error());
  auto client = sandbox_client(sandbox_url);
  client->set_read_timeout(std::chrono::seconds(read_timeout_seconds));
  httplib::Request request;
  request.method = method;
  request.path = path;
  request.headers = {{"Authorization", "Bearer " + *token}, {"Accept", "text/event-stream"}};
  if (!body.empty()) {
    request.headers.emplace("Content-Type", "application/json");
    request.body = body;
  }
  int status = 0;
  std::string error_body;
  bool stopped = false;
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, std::size_t length, std::uint64_t, std::uint64_t) {
    if (status < 200 || status >= 300) {
      if (error_body.size() < (64 << 10)) error_body.append(data, length);
      return true;
    }
    stopped = !on_data(std::string_view(data, length));
    return !stopped;
  };
  auto result = client->send(request);
  if (stopped) return {};
  if (!result) {
    if (status != 0)
      return fail(ErrorKind::unavailable, "the answer from " + sandbox_url + " was cut short (" +
                                              httplib::to_string(result.error()) + ")");
    return std::unexpected(transfer_failed(sandbox_url, result.error()));
  }
  if (status < 200 || status >= 300) return std::unexpected(error_from_response(status, error_body));
  return {};
}

Result<std::string> AgentClient::upload_file(const std::string& sandbox_url, const std::filesystem::path& file,
                                             const Progress& progress) const {
  auto token = owner_token();
  if (!token) return std::unexpected(token.error());
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(system_error("open", file.string(), errno));
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return std::unexpected(system_error("stat", file.string(), errno));
  if (!S_ISREG(info.st_mode)) return fail(ErrorKind::bad_request, file.string() + " is not a regular file");
  auto size = static_cast<std::uint64_t>(info.st_size);
  if (size > limits::upload_max_bytes)
    return fail(ErrorKind::too_large, file.string() + " is " + std::to_string(size) +
                                          " bytes; a sandbox takes uploads of at most 50 MiB (" +
                                          std::to_string(limits::upload_max_bytes) + " bytes)");
  int raw_fd = fd.get();
  bool read_failed = false;
  httplib::MultipartFormDataProviderItems items = {
      {"file",
       [raw_fd, size, &progress, &read_failed](std::size_t offset, httplib::DataSink& sink) {
         std::string buffer(256 << 10, '\0');
         ssize_t got = ::pread(raw_fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
         if (got < 0) {
           read_failed = true;
           return false;
         }
         // Stop at the size the file had when the upload began, should it grow meanwhile.
         std::size_t take = static_cast<std::size_t>(
             std::min<std::uint64_t>(static_cast<std::uint64_t>(got), size - std::min<std::uint64_t>(offset, size)));
         if (take == 0) {
           sink.done();
           return true;
         }
         if (!sink.write(buffer.data(), take)) return false;
         if (progress) progress(offset + take, size);
         return true;
       },
       file.filename().string(), ""}};
  auto client = sandbox_client(sandbox_url);
  httplib::Headers headers{{"Authorization", "Bearer " + *token}};
  auto result = client->Post("/modbox/api/files/upload", headers, httplib::MultipartFormDataItems{}, items);
  if (read_failed) return std::unexpected(system_error("read", file.string(), errno));
  if (!result) return std::unexpected(transfer_failed(sandbox_url, result.error()));
  if (result->status != 200) return std::unexpected(error_from_response(result->status, result->body));
  return result->body;
}

Result<std::uint64_t> AgentClient::download_file(const std::string& sandbox_url, const std::string& name,
                                                 const std::filesystem::path& out, const Progress& progress) const {
  auto token = owner_token();
  if (!token) return std::unexpected(token.error());
  bool to_stdout = out == "-";
  std::filesystem::path partial = out;
  partial += ".modbox-part-" + std::to_string(::getpid());
  FILE* sink = to_stdout ? stdout : std::fopen(partial.c_str(), "wb");
  if (sink == nullptr) return std::unexpected(system_error("open", partial.string(), errno));
  int status = 0;
  std::string error_body;
  std::uint64_t written = 0;
  bool write_failed = false;
  auto client = sandbox_client(sandbox_url);
  httplib::Headers headers{{"Authorization", "Bearer " + *token}};
  auto result = client->Get(
      ("/modbox/api/files/download/" + percent_encode(name)).c_str(), headers,
      [&](const httplib::Response& response) {
        status = response.status;
        return true;
      },
      [&](const char* data, std::size_t length) {
        if (status != 200) {
          if (error_body.size() < (64 << 10)) error_body.append(data, length);
          return true;
        }
        if (std::fwrite(data, 1, length, sink) != length) {
          write_failed = true;
          return false;
        }
        written += length;
        return true;
      },
      [&](std::uint64_t done, std::uint64_t total) {
        if (progress && status == 200) progress(done, total);
        return true;
      });
  bool flushed = std::fflush(sink) == 0 && !write_failed;
  if (!to_stdout) std::fclose(sink);
  auto discard = [&] {
    if (!to_stdout) std::filesystem::remove(partial);
  };
  if (!result) {
    discard();
    return std::unexpected(transfer_failed(sandbox_url, result.error()));
  }
  if (status != 200) {
    discard();
    return std::unexpected(error_from_response(status, error_body));
  }
  if (!flushed) {
    discard();
    return fail(ErrorKind::internal, "cannot write " + out.string() + ": " + std::strerror(errno));
  }
  if (!to_stdout) {
    std::error_code error;
    std::filesystem::rename(partial, out, error);
    if (error) {
      discard();
      return fail(ErrorKind::internal, "cannot move the download to " + out.string() + ": " + error.message());
    }
  }
  return written;
}

}  // namespace modbox
