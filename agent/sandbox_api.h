#pragma once
// The routes behind a sandbox URL (seeds/001 "Executing commands", "Uploading and downloading
// files"), served by the agent through the sandbox's helper:
//   POST   /modbox/api/exec                    JSON, or with Accept: text/event-stream the output as it
//                                              comes (common/output_events.h)
//   POST   /modbox/api/files/upload            multipart/form-data, field `file`, ≤ 50 MiB, streamed
//   GET    /modbox/api/files[?search=S]
//   GET    /modbox/api/files/download/{filename}
//   DELETE /modbox/api/files/{filename}
//   GET    /modbox/api/files/watch?path=DIR[&recursive=true]   an event stream of changes under DIR
//                                              (agent/sandbox_api_watch.cpp)
// and background processes (agent/sandbox_api_processes.cpp):
//   POST   /modbox/api/processes               {command, cwd?, env?} → 201, the process
//   GET    /modbox/api/processes               every process the helper holds
//   GET    /modbox/api/processes/{id}
//   GET    /modbox/api/processes/{id}/output[?follow=true]   JSON, or an event stream
//   POST   /modbox/api/processes/{id}/stdin    {data | data_base64, close?}
//   POST   /modbox/api/processes/{id}/signal   {signal}
// Every /modbox/api/ route needs Authorization: Bearer <SANDBOX_API_KEY> (or the agent's own
// token), checked before anything else.
// serve_web serves the agent's own web routes, which the front lets in like proxied requests:
//   /mcp/terminal/...   the MCP server (agent/mcp/endpoint.h)
//   /terminal/...       the web terminal's page (agent/terminal/terminal_page.h); its WebSocket,
//                       /terminal/ws, is the front's own (agent/front/terminal_bridge.h)

#include <string>

#include "agent/http.h"
#include "agent/mcp/endpoint.h"
#include "agent/sandbox_service.h"
#include "agent/terminal/terminal_page.h"
#include "common/helper_protocol.h"
#include "common/output_events.h"

namespace modbox {

/// The routes of background processes (agent/sandbox_api_processes.cpp).
inline constexpr std::string_view processes_path = "/modbox/api/processes";

/// The stream of an exec's or a process's output that a helper's Output frame carries.
inline OutputStream output_stream(helper::Stream stream) {
  return stream == helper::Stream::stdout_stream ? OutputStream::stdout_stream : OutputStream::stderr_stream;
}

class SandboxApi {
 public:
  /// `terminal_page` serves /terminal/ (null: not served, 404).
  SandboxApi(SandboxService& sandboxes, std::string owner_token, const TerminalPage* terminal_page = nullptr)
      : sandboxes_(sandboxes), owner_token_(std::move(owner_token)), terminal_page_(terminal_page) {}

  HttpResponse serve(const std::string& sandbox_id, HttpRequest& request);
  /// The answer to a request whose credentials are refused, from its headers alone, so that a
  /// client waiting for 100 Continue never sends the body; nullopt when serve() should see it.
  std::optional<HttpResponse> precheck(const std::string& sandbox_id, const HttpRequest& request) const;
  /// The agent's own web routes of the sandbox URL (/terminal/…, /mcp/terminal/…), which the front
  /// has already let in with the sandbox's key or the owner token.
  HttpResponse serve_web(const std::string& sandbox_id, HttpRequest& request);
  /// The sandbox ended: what its web routes hold for it (MCP sessions, their streams) ends too.
  void close_sandbox(const std::string& sandbox_id);

 private:
  HttpResponse exec(const Sandbox& sandbox, HttpRequest& request);
  HttpResponse exec_events(const Sandbox& sandbox, const ExecRequest& exec);
  /// Everything under /modbox/api/processes.
  HttpResponse processes(const Sandbox& sandbox, HttpRequest& request);
  HttpResponse start_process(const Sandbox& sandbox, const HttpRequest& request);
  HttpResponse list_processes(const Sandbox& sandbox);
  HttpResponse show_process(const Sandbox& sandbox, std::uint32_t id);
  HttpResponse process_output(const Sandbox& sandbox, std::uint32_t id, const HttpRequest& request);
  HttpResponse process_stdin(const Sandbox& sandbox, std::uint32_t id, const HttpRequest& request);
  HttpResponse process_signal(const Sandbox& sandbox, std::uint32_t id, const HttpRequest& request);
  HttpResponse upload(const Sandbox& sandbox, HttpRequest& request);
  HttpResponse list(const Sandbox& sandbox, HttpRequest& request);
  HttpResponse download(const Sandbox& sandbox, const std::string& filename, const HttpRequest& request);
  HttpResponse remove(const Sandbox& sandbox, const std::string& filename);
  HttpResponse watch_files(const Sandbox& sandbox, const HttpRequest& request);

  /// /mcp/terminal/: its tools run through the sandbox's exec, and its sessions are the sandbox's activity.
  mcp::Endpoint mcp_{
      [this](const Sandbox& sandbox, const ExecRequest& request) { return sandboxes_.run_exec(sandbox, request); },
      [this](const std::string& sandbox_id) { return sandboxes_.hold_activity(sandbox_id); }};
  SandboxService& sandboxes_;
  std::string owner_token_;
  const TerminalPage* terminal_page_;
};

}  // namespace modbox
