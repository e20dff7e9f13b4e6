#pragma once
// E2B's in-sandbox API, envd (port 49983), served by the agent through the sandbox's helper, so that
// the official `e2b` SDKs' sandbox calls work against a modbox sandbox:
//   GET  /health                          204
//   GET  /files?path=P                    the file's bytes; POST /files?path=P multipart or octet-stream
//   POST /process.Process/{Start,Connect,List,SendInput,SendSignal,Update,CloseStdin}
//   POST /filesystem.Filesystem/{Stat,MakeDir,Move,ListDir,Remove,WatchDir}, and the polling watchers
//        {CreateWatcher,GetWatcherEvents,RemoveWatcher}
// over the Connect protocol in JSON (agent/e2b/connect_codec.h). Commands are the helper's background
// processes (agent/helper/process_table.h), PTYs its interactive sessions; filesystem calls run as
// the image's user, with relative paths from its home, as envd resolves them.
//
// The caller (the E2B front) has routed the request to a running sandbox and checked its
// X-Access-Token.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "agent/http.h"
#include "agent/sandbox_service.h"

namespace modbox::e2b {

struct PtySession;

class EnvdService {
 public:
  explicit EnvdService(SandboxService& sandboxes) : sandboxes_(sandboxes) {}
  ~EnvdService();

  /// One request to envd of `sandbox` (on a worker thread, as a long call: streams last minutes).
  HttpResponse serve(const Sandbox& sandbox, HttpRequest& request);
  /// Whether a request to envd may take long (streams, transfers).
  static bool is_long(const HttpRequest& request);
  /// The sandbox ended: its PTYs end, the streams reading them finish.
  void close_sandbox(const std::string& sandbox_id);

 private:
  HttpResponse rpc(const Sandbox& sandbox, std::string_view service, std::string_view method, HttpRequest& request);
  HttpResponse process_rpc(const Sandbox& sandbox, std::string_view method, const std::string& body,
                           const HttpRequest& request);
  HttpResponse filesystem_rpc(const Sandbox& sandbox, std::string_view method, const std::string& body);
  HttpResponse start(const Sandbox& sandbox, const std::string& body, const HttpRequest& request);
  HttpResponse start_pty(const Sandbox& sandbox, const std::string& body, const HttpRequest& request);
  HttpResponse attach(const Sandbox& sandbox, const std::string& body, const HttpRequest& request);
  HttpResponse watch_dir(const Sandbox& sandbox, const std::string& body, const HttpRequest& request);
  HttpResponse watcher_rpc(const Sandbox& sandbox, std::string_view method, const std::string& body);
  /// `path` made absolute as envd does (relative to the user's home), or why not.
  Result<std::string> absolute_path(const Sandbox& sandbox, const std::string& path);
  HttpResponse read_file(const Sandbox& sandbox, const HttpRequest& request);
  HttpResponse write_files(const Sandbox& sandbox, HttpRequest& request);

  std::shared_ptr<PtySession> find_pty(const std::string& sandbox_id, std::uint32_t pid);

  SandboxService& sandboxes_;
  std::mutex mutex_;
  /// The live PTYs by sandbox and pid: SendInput, Update and SendSignal write to them while their
  /// Start stream reads them.
  std::map<std::pair<std::string, std::uint32_t>, std::shared_ptr<PtySession>> ptys_;
  /// What each command was started as, for List (the helper knows the shell line only).
  std::map<std::pair<std::string, std::uint32_t>, std::string> configs_;
  /// The polling watchers (CreateWatcher) by sandbox and id; their events wait in the helper's
  /// connection (and the kernel's inotify queue) until GetWatcherEvents takes them.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<SandboxHelpers::FileWatch>> watchers_;
  std::uint64_t next_watcher_ = 1;
};

}  // namespace modbox::e2b
