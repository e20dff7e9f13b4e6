#include "cli/agent_client.h"

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/wait.h>
#include <filesystem>
#include <thread>

#include "common/models.h"
#include "common/system.h"

namespace modbox {

namespace {
std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}
}  // namespace

AgentClient::AgentClient(AgentPaths paths, std::optional<std::string> workspace)
    : paths_(std::move(paths)), workspace_(std::move(workspace)) {
  api_url_ = env_value("MODBOX_API_URL");
  api_token_ = env_value("MODBOX_API_TOKEN");
}

Result<Reply> AgentClient::send(const std::string& method, const std::string& path, const std::string& body,
                                int timeout_seconds) const {
  std::unique_ptr<httplib::Client> client;
  httplib::Headers headers;
  if (api_url_) {
    client = std::make_unique<httplib::Client>(*api_url_);
    if (api_token_) headers.emplace("Authorization", "Bearer " + *api_token_);
  } else {
    client = std::make_unique<httplib::Client>(paths_.agent_socket().string(), 80);
    client->set_address_family(AF_UNIX);
    headers.emplace("Host", "localhost");
  }
  if (workspace_) headers.emplace("X-Workspace-Id", *workspace_);
  client->set_connection_timeout(std::chrono::seconds(5));
  client->set_read_timeout(std::chrono::seconds(timeout_seconds));
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

Result<std::string> AgentClient::call(const std::string& method, const std::string& path, const std::string& body,
                                      int timeout_seconds) const {
  auto reply = send(method, path, body, timeout_seconds);
  if (!reply) return std::unexpected(reply.error());
  if (reply->status < 200 || reply->status >= 300) return std::unexpected(error_from_response(reply->status, reply->body));
  return reply->body;
}

bool AgentClient::agent_answers() const {
  auto reply = send("GET", "/agent/status", "", 5);
  return reply && reply->status == 200;
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

Result<void> AgentClient::ensure_agent(bool announce) const {
  if (agent_answers()) return {};
  if (api_url_) return fail(ErrorKind::unavailable, "modboxd at " + *api_url_ + " (MODBOX_API_URL) is not answering");
  if (auto made = make_directories(paths_.runtime_dir, 0700); !made) return std::unexpected(made.error());
  if (announce) std::fprintf(stderr, "modbox: starting modboxd (log: %s)\n", paths_.log_file().c_str());
  std::string agent = find_agent_binary();
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(system_error("fork", agent, errno));
  if (pid == 0) {
    // Detached from this terminal and process group, so it outlives the CLI and its signals.
    ::setsid();
    FILE* log = std::fopen(paths_.log_file().c_str(), "a");
    if (log != nullptr) {
      ::dup2(::fileno(log), 1);
      ::dup2(::fileno(log), 2);
    }
    if (FILE* null = std::fopen("/dev/null", "r")) ::dup2(::fileno(null), 0);
    std::string state = "--state-dir=" + paths_.state_dir.string();
    std::string runtime = "--runtime-dir=" + paths_.runtime_dir.string();
    ::execlp(agent.c_str(), agent.c_str(), state.c_str(), runtime.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "modbox: cannot run %s: %s\n", agent.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  // A new agent answers before its Podman service does; wait for both, so the first command
  // after a start does not meet a 503.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = send("GET", "/agent/status", "", 5); status && status->status == 200) {
      auto parsed = agent_status_from_json(status->body);
      if (parsed && parsed->podman_ready) return {};
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return fail(ErrorKind::unavailable, "modboxd exited at start; see " + paths_.log_file().string());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return fail(ErrorKind::unavailable, "modboxd or its podman service did not come up within 30 s; see " +
                                         paths_.log_file().string() + " and " + paths_.podman_log_file().string());
}

}  // namespace modbox
