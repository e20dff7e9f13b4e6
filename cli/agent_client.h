#pragma once
// The CLI's connection to modboxd: the owner's unix socket (or $MODBOX_API_URL with
// $MODBOX_API_TOKEN). The only place the CLI uses the HTTP library.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "common/paths.h"
#include "common/result.h"

namespace modbox {

struct Reply {
  int status = 0;
  std::string body;
};

class AgentClient {
 public:
  explicit AgentClient(AgentPaths paths, std::optional<std::string> workspace = std::nullopt);

  /// Sends one request; any HTTP status is a Reply, only a connection failure is an Error
  /// (kind `unavailable`). `timeout_seconds` bounds the wait for the answer.
  Result<Reply> send(const std::string& method, const std::string& path, const std::string& body = "",
                     int timeout_seconds = 60) const;

  /// Like send, but a non-2xx answer becomes the agent's Error.
  Result<std::string> call(const std::string& method, const std::string& path, const std::string& body = "",
                           int timeout_seconds = 60) const;

  /// True when the agent answers /agent/status.
  bool agent_answers() const;

  /// Starts modboxd in the background unless it answers already, and waits until it does.
  /// `announce` prints a line on stderr when an agent had to be started.
  Result<void> ensure_agent(bool announce) const;

  const AgentPaths& paths() const { return paths_; }

  // The files API behind a sandbox URL ({sandbox_url}/modbox/api/files...), authorized with the
  // agent's own token, so it works for every sandbox of the owner, with or without SANDBOX_API_KEY.
  /// Called with (bytes done, bytes in all) as a transfer goes.
  using Progress = std::function<void(std::uint64_t done, std::uint64_t total)>;
  /// A request without a body; any HTTP status is a Reply.
  Result<Reply> sandbox_request(const std::string& sandbox_url, const std::string& method,
                                const std::string& path) const;
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

  Result<std::string> owner_token() const;
};

/// Where modboxd is: next to this executable, else in PATH.
std::string find_agent_binary();

}  // namespace modbox
