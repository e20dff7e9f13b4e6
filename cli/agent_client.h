#pragma once
// The CLI's connection to modboxd: the owner's unix socket (or $MODBOX_API_URL with
// $MODBOX_API_TOKEN). The only place the CLI uses the HTTP library.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/paths.h"
#include "common/result.h"

namespace modbox {

struct Reply {
  int status = 0;
  std::string body;
};

/// Seconds the CLI waits for the agent's answer, by what the agent does before it answers: each
/// covers the agent's own bound on that work plus a wait in its queue when it is busy. Exec and wait
/// pass their own (the command's or the wait's timeout, plus the same margin).
namespace answer_timeout {
inline constexpr int standard = 60;  // answered from the agent's records, or after a Podman ping
inline constexpr int destroy = 120;  // the container is removed first, which Podman may take a minute for
}  // namespace answer_timeout

/// Whether an agent lives for `paths` (running, starting, or too busy to answer), told without asking
/// it anything: its state lock (AgentPaths::lock_file) is held. Only when the lock cannot be tested,
/// whether something listens on its socket.
bool agent_alive(const AgentPaths& paths);

/// Starts modboxd (find_agent_binary()) for `paths` in a session of its own, its output appended to
/// the agent's log; returns its pid.
Result<pid_t> spawn_agent(const AgentPaths& paths);

/// Starts the agent for `paths`: through its systemd user unit when one is enabled for these paths
/// (`modbox agent install-unit`), else, when this process runs inside a systemd unit (a TTL timer's
/// reap), as a transient unit of the user's manager: then the answer is 0, no child of ours. Else
/// spawn_agent.
Result<pid_t> start_agent(const AgentPaths& paths);

/// Prints `line` on standard error when that is a terminal.
void notice_on_terminal(const std::string& line);

/// How ensure_agent waits for an agent and starts one: every wait is bounded, and `spawn` and `notice`
/// can be replaced (tests check that no agent is started while one lives).
struct AgentStartPolicy {
  /// Starts an agent: the pid of a child to watch, or 0 when systemd started it.
  std::function<Result<pid_t>(const AgentPaths&)> spawn = start_agent;
  std::function<void(const std::string&)> notice = notice_on_terminal;
  /// One GET /agent/status. A slower answer is asked again, never taken for a dead agent.
  std::chrono::milliseconds status_timeout{2000};
  /// When an agent that lives has not answered for this long, `notice` says that modbox waits (once).
  std::chrono::milliseconds busy_notice_after{2000};
  /// How long to wait for an agent that lives but does not answer before giving up (no second agent).
  std::chrono::milliseconds busy_wait{120000};
  /// How long a started agent and its Podman service have to come up.
  std::chrono::milliseconds start_wait{30000};
};

/// Where the agent is reached: its TCP API at `api_url` with `api_token`, or, without a URL, the unix
/// socket of its AgentPaths.
struct AgentEndpoint {
  std::optional<std::string> api_url;
  std::optional<std::string> api_token;
  /// Where api_url was set, for messages: "env MODBOX_API_URL", "file ~/.config/modbox/config.json".
  std::string url_origin = "env MODBOX_API_URL";
  /// $MODBOX_API_URL and $MODBOX_API_TOKEN (empty ones count as unset).
  static AgentEndpoint from_environment();
};

class AgentClient {
 public:
  explicit AgentClient(AgentPaths paths, std::optional<std::string> workspace = std::nullopt,
                       AgentEndpoint endpoint = AgentEndpoint::from_environment());

  /// Sends one request; any HTTP status is a Reply, only a connection failure is an Error
  /// (kind `unavailable`). `timeout_seconds` bounds the wait for the answer.
  Result<Reply> send(const std::string& method, const std::string& path, const std::string& body = "",
                     int timeout_seconds = answer_timeout::standard) const;

  /// A GET whose answer's body is handed to `on_data` piece by piece as it arrives (a followed log);
  /// `on_data` returning false stops it. A non-2xx answer becomes the agent's Error, and so does an
  /// answer cut short (the agent stopped). `read_timeout_seconds` bounds each wait for more bytes.
  Result<void> stream_get(const std::string& path, const std::function<bool(std::string_view)>& on_data,
                          int read_timeout_seconds) const;

  /// One part of a multipart/form-data request.
  struct FormPart {
    std::string name;
    std::string filename;  // empty: a plain field
    std::string content_type;
    std::string content;
  };
  /// A multipart/form-data POST that asks for an event stream (Accept: text/event-stream): the
  /// answer's body goes to `on_data` piece by piece as it arrives, as stream_get hands it.
  Result<void> post_form_events(const std::string& path, const std::vector<FormPart>& parts,
                                const std::function<bool(std::string_view)>& on_data, int read_timeout_seconds) const;

  /// Like send, but a non-2xx answer becomes the agent's Error.
  Result<std::string> call(const std::string& method, const std::string& path, const std::string& body = "",
                           int timeout_seconds = answer_timeout::standard) const;

  /// Returns once the agent answers. An agent that lives (agent_alive) but answers slowly is waited
  /// for, within `policy.busy_wait`; only when none lives is modboxd started, and waited for until it
  /// and its Podman service answer. `announce` prints a line on stderr when an agent is started.
  Result<void> ensure_agent(bool announce, const AgentStartPolicy& policy = {}) const;

  const AgentPaths& paths() const { return paths_; }
  /// The agent's TCP URL when it is reached there instead of its unix socket (it is then not ours to
  /// start, stop or read the log of).
  const std::optional<std::string>& api_url() const { return api_url_; }
  /// The agent's own token ($MODBOX_API_TOKEN, else the agent's token file): every sandbox URL of
  /// the owner accepts it.
  Result<std::string> owner_token() const;

  // The files API behind a sandbox URL ({sandbox_url}/modbox/api/files...), authorized with the
  // agent's own token, so it works for every sandbox of the owner, with or without SANDBOX_API_KEY.
  /// Called with (bytes done, bytes in all) as a transfer goes.
  using Progress = std::function<void(std::uint64_t done, std::uint64_t total)>;
  /// A request (with a JSON body when `body` is not empty); any HTTP status is a Reply.
  Result<Reply> sandbox_request(const std::string& sandbox_url, const std::string& method, const std::string& path,
                                const std::string& body = "") const;
  /// sandbox_request for a call that must succeed: the body of a 2xx answer, else the agent's Error.
  Result<std::string> sandbox_call(const std::string& sandbox_url, const std::string& method, const std::string& path,
                                   const std::string& body = "") const;
  /// A request that asks for an event stream (Accept: text/event-stream; a JSON body when `body` is
  /// not empty): the answer's body goes to `on_data` piece by piece as it arrives, until it ends or
  /// `on_data` returns false. A non-2xx answer becomes the agent's Error, and so does an answer cut
  /// short. `read_timeout_seconds` bounds each wait for more bytes.
  Result<void> sandbox_events(const std::string& sandbox_url, const std::string& method, const std::string& path,
                              const std::string& body, const std::function<bool(std::string_view)>& on_data,
                              int read_timeout_seconds) const;
  /// Uploads `file`, streamed from disk, under its own name; the answer's JSON body on success.
  Result<std::string> upload_file(const std::string& sandbox_url, const std::filesystem::path& file,
                                  const Progress& progress) const;
  /// Streams the upload `name` into `out` (written to a temporary file beside it and renamed when
  /// complete; "-" is standard output).
  Result<std::uint64_t> download_file(const std::string& sandbox_url, const std::string& name,
                                      const std::filesystem::path& out, const Progress& progress) const;

 private:
  AgentPaths paths_;
  std::optional<std::string> workspace_;
  std::optional<std::string> api_url_;
  std::optional<std::string> api_token_;
  std::string url_origin_;

  Result<Reply> send_within(const std::string& method, const std::string& path, const std::string& body,
                            std::chrono::milliseconds timeout) const;
  /// The agent's status when it answers within `timeout`.
  std::optional<Reply> status_within(std::chrono::milliseconds timeout) const;
  /// Waits while an agent lives but does not answer: true once it answers, false when none lives
  /// (any more); an error when `policy.busy_wait` (counted from `since`) runs out.
  Result<bool> wait_while_alive(const AgentStartPolicy& policy, std::chrono::steady_clock::time_point since) const;
  /// Waits until the agent started as `pid` (or one started meanwhile by another modbox) and its
  /// Podman service answer.
  Result<void> wait_for_start(pid_t pid, const AgentStartPolicy& policy) const;
};

/// Where modboxd is: next to this executable, else in PATH.
std::string find_agent_binary();

}  // namespace modbox
