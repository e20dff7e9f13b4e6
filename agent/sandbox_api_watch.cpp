// The sandbox URL's file watch, GET /modbox/api/files/watch?path=DIR[&recursive=true]: an event
// stream of the changes under a directory of the sandbox, from the helper's inotify watch
// (agent/helper/watch_service.h). Events:
//   ready   {"path": DIR}                               the watch is in place
//   change  {"type": "create|write|remove|rename|chmod", "name": "sub/a.txt"}   relative to DIR
//   overflow {}                                          changes came faster than they were read; some were lost
//   error   {"detail": "..."}                            the sandbox stopped answering; the stream ends
// and a `: keepalive` comment every 15 s of quiet. The watch ends when the client disconnects.

#include <nlohmann/json.hpp>

#include "agent/sandbox_api.h"
#include "common/body_reader.h"
#include "common/output_events.h"

namespace modbox {

namespace {

constexpr std::chrono::seconds watch_keepalive_interval{15};

std::string_view kind_name(helper::WatchKind kind) {
  switch (kind) {
    case helper::WatchKind::create:
      return "create";
    case helper::WatchKind::write:
      return "write";
    case helper::WatchKind::remove:
      return "remove";
    case helper::WatchKind::rename:
      return "rename";
    case helper::WatchKind::chmod:
      return "chmod";
    case helper::WatchKind::overflow:
      return "overflow";
  }
  return "change";
}

HttpResponse invalid_query(const char* name, const char* message, const char* type) {
  return error_response(Error{ErrorKind::validation, "invalid query", {{{"query", name}, message, type}}});
}

}  // namespace

HttpResponse SandboxApi::watch_files(const Sandbox& sandbox, const HttpRequest& request) {
  const std::string* path = request.query_value("path");
  if (path == nullptr) return invalid_query("path", "Field required", "missing");
  if (path->empty() || path->front() != '/' || path->size() > helper::path_max)
    return invalid_query("path", "Input should be an absolute path of at most 4096 bytes", "value_error");
  bool recursive = false;
  if (const std::string* value = request.query_value("recursive")) {
    auto parsed = parse_query_bool(*value);
    if (!parsed) return invalid_query("recursive", "Input should be a valid boolean", "bool_parsing");
    recursive = *parsed;
  }
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto opened = helper->client.open_watch(helper->socket, {*path, recursive});
  if (!opened) return error_response(opened.error());
  std::shared_ptr<SandboxHelpers::FileWatch> watch = std::move(*opened);
  std::string watched = *path;
  constexpr auto replace = nlohmann::json::error_handler_t::replace;
  return event_stream_response([watch, watched](const BodyWriter& write) {
    if (!write(event_text("ready", nlohmann::json{{"path", watched}}.dump(-1, ' ', false, replace)))) return false;
    auto quiet_since = std::chrono::steady_clock::now();
    for (;;) {
      auto event = watch->next(client_check_interval);
      if (!event)
        return write(
            event_text("error", nlohmann::json{{"detail", event.error().message}}.dump(-1, ' ', false, replace)));
      auto now = std::chrono::steady_clock::now();
      if (*event) {
        std::string text =
            (*event)->kind == helper::WatchKind::overflow
                ? event_text("overflow", "{}")
                : event_text("change",
                             nlohmann::json{{"type", kind_name((*event)->kind)}, {"name", (*event)->name}}.dump(
                                 -1, ' ', false, replace));
        if (!write(text)) return false;
        quiet_since = now;
      } else if (now - quiet_since >= watch_keepalive_interval) {
        if (!write(": keepalive\n\n")) return false;
        quiet_since = now;
      } else if (!write("")) {
        return false;  // the client left: destroying the watch ends it in the sandbox
      }
    }
  });
}

}  // namespace modbox
