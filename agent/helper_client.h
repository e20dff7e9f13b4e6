#pragma once
// The agent's side of the in-sandbox helper protocol (common/helper_protocol.h): a connection per
// request over the sandbox's unix socket, with deadlines, treating every byte from the helper as
// untrusted. Behind an interface so the lifecycle can be tested without containers.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/helper_protocol.h"
#include "common/models.h"
#include "common/unique_fd.h"

namespace modbox {

class SandboxHelpers {
 public:
  virtual ~SandboxHelpers() = default;
  /// Connects to the helper at `socket` and reads its hello within `timeout`: the readiness probe.
  virtual Result<helper::Hello> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout) = 0;
  /// Runs `request` through the helper. Gives up (closing the connection, which makes the helper
  /// kill the command) at the request's timeout plus a grace period. A helper that is gone, slow
  /// or not speaking the protocol is an `unavailable` error that says so.
  /// `still_wanted`, when given, is asked every 250 ms while the command runs: false (the caller hung
  /// up) gives up the same way, killing the command.
  virtual Result<ExecResult> exec(const std::filesystem::path& socket, const ExecRequest& request,
                                  const std::function<bool()>& still_wanted) = 0;
  Result<ExecResult> exec(const std::filesystem::path& socket, const ExecRequest& request) {
    return exec(socket, request, {});
  }

  /// An upload in progress: write() the content in pieces, then finish(). Destroying it before
  /// finish() abandons the upload, and the helper leaves no file behind.
  class Upload {
   public:
    virtual ~Upload() = default;
    virtual Result<void> write(std::string_view bytes) = 0;
    /// The stored file, once the helper has it whole.
    virtual Result<helper::FileInfo> finish() = 0;
  };
  /// A download in progress: info() is known before any content; next() gives the content in
  /// pieces, then nullopt once all of info().size bytes have come.
  class Download {
   public:
    virtual ~Download() = default;
    virtual const helper::FileInfo& info() const = 0;
    virtual Result<std::optional<std::string>> next() = 0;
  };

  /// File operations, resolved by the helper inside the container. A Failure from the helper
  /// becomes not_found, bad_request (refused) or conflict (the sandbox's filesystem said no);
  /// a helper that is gone or misbehaving, `unavailable`. Each step waits at most file_idle_timeout.
  virtual Result<std::unique_ptr<Upload>> upload(const std::filesystem::path& socket,
                                                 const helper::UploadRequest& request) = 0;
  virtual Result<std::unique_ptr<Download>> download(const std::filesystem::path& socket,
                                                     const helper::DownloadRequest& request) = 0;
  virtual Result<std::vector<helper::FileInfo>> list(const std::filesystem::path& socket,
                                                     const helper::ListRequest& request) = 0;
  virtual Result<void> remove(const std::filesystem::path& socket, const helper::RemoveRequest& request) = 0;

  /// A relay to TCP `port` on the sandbox's loopback, through the helper at `socket`: the
  /// connected unix socket, in blocking mode and close-on-exec, carrying the raw byte stream both
  /// ways. The helper's answer is read byte-exactly, so nothing of the protocol is left on it and
  /// nothing of the stream was taken (a server that speaks first, as SSH does, is read from the
  /// start). shutdown(SHUT_WR) reaches the server as a half-close, and the server's reaches the
  /// caller as end of file; closing the socket ends the relay at once. Takes at most
  /// relay_open_timeout. The helper's refusal (nothing listening on the port, no connection
  /// within helper::relay_connect_timeout, too many relays open) is `bad_gateway` with its
  /// sentence; a helper that is gone, slow or not speaking the protocol, `unavailable`.
  virtual Result<UniqueFd> open_relay(const std::filesystem::path& socket, std::uint16_t port) = 0;

  /// An interactive session the helper has started (common/helper_protocol.h, SessionOpen).
  struct Session {
    /// The connected unix socket, blocking and close-on-exec, positioned right after SessionReady:
    /// the caller sends Data, SessionResize, SessionSignal and End on it and reads Output frames,
    /// then Exit (or end of file when the helper went away); closing it kills the session's
    /// whole process tree.
    UniqueFd connection;
    std::uint32_t pid = 0;  // the session's command in the sandbox
  };
  /// Starts `request` (validated here: sizes, cwd, env) through the helper at `socket`. Reads the
  /// helper's answer byte-exactly, so no frame after SessionReady is taken. Takes at most
  /// session_open_timeout. A helper older than helper::session_protocol_version is `conflict`
  /// ("this sandbox was started by an older modboxd; ..."); the helper's refusal is `unavailable`
  /// (at its most sessions, cannot start the shell) or `conflict` (the image has no shell), with
  /// its sentence; a bad request is `bad_request`; a helper that is gone, slow or not speaking the
  /// protocol, `unavailable`.
  virtual Result<Session> open_session(const std::filesystem::path& socket, const helper::SessionOpen& request) = 0;
  /// A streamed exec: the command's output as it comes, then how it ended.
  class ExecStream {
   public:
    virtual ~ExecStream() = default;
    struct Step {
      std::optional<helper::Output> output;  // a piece of its stdout or stderr
      std::optional<ExecResult> result;      // how it ended (stdout and stderr empty: they came as pieces)
    };
    /// What happened next; a Step with neither when nothing came within `wait`. Destroying the stream
    /// before the result cancels the command: the helper kills all of it.
    virtual Result<Step> next(std::chrono::milliseconds wait) = 0;
  };
  /// Starts `request` with no cap on its output (helpers before version 4 still cut at 1 MiB) and
  /// answers once the helper has it; the stream then gives up, as exec does, at the request's timeout
  /// plus helper_answer_grace. Errors as exec's.
  virtual Result<std::unique_ptr<ExecStream>> exec_stream(const std::filesystem::path& socket,
                                                          const ExecRequest& request) = 0;

  // Background processes (common/helper_protocol.h, version 4). A helper of an older version is
  // `conflict`, with a sentence saying to provision the sandbox again; an unknown id `not_found`; a
  // refusal of the helper's (a full table, a closed stdin, a process that has exited) `conflict` with
  // its sentence; a helper that is gone or misbehaving `unavailable`. Each takes helper_answer_grace
  // at most, but for the reads.
  virtual Result<helper::ProcessInfo> start_process(const std::filesystem::path& socket,
                                                    const helper::ProcessStart& request) = 0;
  virtual Result<std::vector<helper::ProcessInfo>> list_processes(const std::filesystem::path& socket) = 0;
  /// A read of a background process's output: what the helper keeps, then (following) what comes.
  class ProcessOutput {
   public:
    virtual ~ProcessOutput() = default;
    /// The process when the read began; `*_dropped` are the bytes no longer kept.
    virtual const helper::ProcessInfo& info() const = 0;
    struct Step {
      std::optional<helper::Output> output;
      std::optional<helper::ProcessInfo>
          end;  // the read is over: the process then (`*_dropped`: what this read missed)
    };
    /// What came next; a Step with neither when nothing came within `wait`. Destroying it ends the
    /// read, never the process.
    virtual Result<Step> next(std::chrono::milliseconds wait) = 0;
  };
  virtual Result<std::unique_ptr<ProcessOutput>> read_process(const std::filesystem::path& socket,
                                                              const helper::ProcessRead& request) = 0;
  virtual Result<void> write_process_stdin(const std::filesystem::path& socket,
                                           const helper::ProcessStdin& request) = 0;
  virtual Result<void> signal_process(const std::filesystem::path& socket, const helper::ProcessSignal& request) = 0;

  /// Adds `env` to the helper's own environment, which every later command starts from (a pooled
  /// sandbox's claim; common/helper_protocol.h, version 5). A helper of an older version is `conflict`;
  /// one that is gone or misbehaving `unavailable`. Takes helper_answer_grace at most.
  virtual Result<void> set_environment(const std::filesystem::path& socket, const helper::EnvironmentSet& request) {
    (void)socket;
    (void)request;
    return fail(ErrorKind::unavailable, "this helper client cannot set a sandbox's environment");
  }
  /// A watch of a directory in the sandbox (common/helper_protocol.h, WatchOpen, version 5).
  class FileWatch {
   public:
    virtual ~FileWatch() = default;
    /// The next change; nullopt when none came within `wait`. An `unavailable` error once the
    /// helper has gone away. Destroying the watch ends it in the sandbox.
    virtual Result<std::optional<helper::WatchEvent>> next(std::chrono::milliseconds wait) = 0;
  };
  /// Starts watching `request.path` (absolute) as the image's user. A missing path is `not_found`,
  /// one that is not a directory `bad_request`, a helper older than version 5 `conflict`; a helper
  /// that is gone or misbehaving `unavailable`. Takes helper_answer_grace at most.
  virtual Result<std::unique_ptr<FileWatch>> open_watch(const std::filesystem::path& socket,
                                                        const helper::WatchOpen& request) {
    (void)socket;
    (void)request;
    return fail(ErrorKind::conflict, "this agent cannot watch files in sandboxes");
  }
};

/// The real client over unix sockets.
std::unique_ptr<SandboxHelpers> make_helper_client();

/// How long after the command's own timeout the agent still waits for the helper's answer.
inline constexpr std::chrono::milliseconds helper_answer_grace{2000};
/// How long a file operation waits for the helper to send or take the next piece.
inline constexpr std::chrono::milliseconds file_idle_timeout{30000};
/// How long open_relay waits for the helper to connect to the port and answer.
inline constexpr std::chrono::milliseconds relay_open_timeout{10000};
/// How long open_session waits for the helper to start the session and answer.
inline constexpr std::chrono::milliseconds session_open_timeout{10000};
static_assert(relay_open_timeout > helper::relay_connect_timeout + helper_answer_grace,
              "a helper's own connect timeout must end before the agent gives up on it");

}  // namespace modbox
