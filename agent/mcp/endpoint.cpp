#include "agent/mcp/endpoint.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>

#include "agent/mcp/server.h"
#include "common/system.h"

namespace modbox::mcp {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view base_path = "/mcp/terminal";
constexpr std::string_view messages_path = "/mcp/terminal/messages";

struct Session {
  std::string id;
  std::string sandbox_id;
  bool legacy = false;  // the HTTP+SSE transport: it lives as long as its stream
  SessionState protocol;
  Clock::time_point last_used;
  bool stream_open = false;
  bool ended = false;               // deleted, expired, replaced or its sandbox gone: its stream ends
  std::deque<std::string> backlog;  // legacy: responses waiting for the stream
  std::condition_variable changed;  // with State::mutex
};

std::string lower(std::string_view text) {
  std::string lowered(text);
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lowered;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

/// A media type without its parameters, lower-cased: "application/json; charset=utf-8" → "application/json".
std::string essence(std::string_view media_type) {
  return lower(trim(media_type.substr(0, media_type.find(';'))));
}

HttpResponse refusal(int status, int code, std::string_view message) {
  return json_response(status, error_body(code, message));
}

HttpResponse method_not_allowed(const HttpRequest& request, const char* allowed) {
  HttpResponse response =
      refusal(405, codes::transport_error,
              "Method Not Allowed: " + request.path + " answers " + allowed + ", not " + request.method);
  response.headers["Allow"] = allowed;
  return response;
}

/// Whether the Accept header (absent: anything) admits `type`, say "text/event-stream".
bool accepts(const HttpRequest& request, std::string_view type) {
  const std::string* accept = request.header("accept");
  if (accept == nullptr || trim(*accept).empty()) return true;
  std::string any_subtype = std::string(type.substr(0, type.find('/'))) + "/*";
  std::string_view rest = *accept;
  while (!rest.empty()) {
    std::size_t comma = rest.find(',');
    std::string range = essence(rest.substr(0, comma));
    if (range == "*/*" || range == type || range == any_subtype) return true;
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  return false;
}

/// The refusals every MCP request gets from its headers alone: a foreign Origin (DNS rebinding),
/// an unsupported MCP-Protocol-Version, a body that is not JSON.
std::optional<HttpResponse> check_headers(const HttpRequest& request) {
  if (const std::string* origin = request.header("origin")) {
    std::size_t scheme_end = origin->find("://");
    std::string authority =
        scheme_end == std::string::npos ? "" : lower(std::string_view(*origin).substr(scheme_end + 3));
    authority = authority.substr(0, authority.find('/'));
    const std::string* host = request.header("host");
    if (host == nullptr || authority.empty() || authority != lower(*host))
      return refusal(403, codes::transport_error,
                     "Forbidden: the Origin " + origin->substr(0, 200) + " is not this sandbox URL's origin");
  }
  if (const std::string* version = request.header("mcp-protocol-version"); version && !is_supported_version(*version)) {
    std::string supported;
    for (std::string_view known : protocol_versions) supported += (supported.empty() ? "" : ", ") + std::string(known);
    return refusal(
        400, codes::transport_error,
        "Bad Request: unsupported MCP-Protocol-Version " + version->substr(0, 100) + " (supported: " + supported + ")");
  }
  if (request.method == "POST") {
    const std::string* type = request.header("content-type");
    if ((type != nullptr && essence(*type) != "application/json") || request.read_multipart)
      return refusal(415, codes::transport_error,
                     "Unsupported Media Type: send the JSON-RPC message as Content-Type: application/json");
  }
  return std::nullopt;
}

HttpResponse reply_response(const Reply& reply) {
  switch (reply.kind) {
    case Reply::Kind::responses:
      return json_response(200, reply.body);
    case Reply::Kind::refused:
      return json_response(400, reply.body);
    case Reply::Kind::accepted:
    case Reply::Kind::needs_session:
      break;
  }
  return json_response(202, "");
}

std::string sse_event(std::string_view event, std::string_view data) {
  return "event: " + std::string(event) + "\ndata: " + std::string(data) + "\n\n";
}

}  // namespace

struct Endpoint::State {
  explicit State(EndpointOptions options_in) : options(std::move(options_in)) {}

  EndpointOptions options;
  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<Session>> sessions;
  std::size_t streams_open = 0;

  // Each needs `mutex`.
  void end(const std::shared_ptr<Session>& session) {
    session->ended = true;
    session->changed.notify_all();
    auto it = sessions.find(session->id);
    if (it != sessions.end() && it->second == session) sessions.erase(it);
  }

  /// Ends the Streamable HTTP sessions nobody used for `session_idle` and that have no open stream.
  void expire(Clock::time_point now) {
    std::vector<std::shared_ptr<Session>> expired;
    for (const auto& [id, session] : sessions)
      if (!session->legacy && !session->stream_open && now - session->last_used > options.session_idle)
        expired.push_back(session);
    for (const auto& session : expired) end(session);
  }

  /// A new session of the sandbox, replacing its session idle longest without a stream when it has
  /// as many as it may; nullptr (and why, in `refused`) when every one has an open stream.
  std::shared_ptr<Session> open(const std::string& sandbox_id, bool legacy, std::string& refused) {
    Clock::time_point now = options.now();
    expire(now);
    std::size_t count = 0;
    std::shared_ptr<Session> idlest;
    for (const auto& [id, session] : sessions) {
      if (session->sandbox_id != sandbox_id) continue;
      ++count;
      if (!session->stream_open && !session->legacy && (!idlest || session->last_used < idlest->last_used))
        idlest = session;
    }
    if (count >= options.sessions_per_sandbox) {
      if (!idlest) {
        refused = "Service Unavailable: this sandbox has " + std::to_string(count) +
                  " MCP sessions with an open stream, the most it may have; close one (DELETE /mcp/terminal/ with "
                  "its Mcp-Session-Id, or end its client) and try again";
        return nullptr;
      }
      end(idlest);
    }
    auto session = std::make_shared<Session>();
    session->id = random_hex(16);
    session->sandbox_id = sandbox_id;
    session->legacy = legacy;
    session->last_used = now;
    sessions[session->id] = session;
    return session;
  }

  /// The live session `id` of the sandbox, of the given transport; nullptr when there is none.
  std::shared_ptr<Session> find(const std::string& sandbox_id, const std::string& id, bool legacy) {
    expire(options.now());
    auto it = sessions.find(id);
    if (it == sessions.end() || it->second->sandbox_id != sandbox_id || it->second->legacy != legacy) return nullptr;
    return it->second;
  }

  std::optional<std::string> stream_refusal() const {
    if (streams_open < options.streams_max) return std::nullopt;
    return "Service Unavailable: the agent holds " + std::to_string(streams_open) +
           " MCP streams open, the most it serves at once; try again when some close";
  }
};

namespace {

using State = Endpoint::State;

/// While a stream's answer lives: it counts as its sandbox's activity and as an open stream, and
/// it ends a legacy session with it.
struct OpenStream {
  std::shared_ptr<State> state;
  std::shared_ptr<Session> session;
  SandboxActivity::Hold activity;

  ~OpenStream() {
    std::lock_guard lock(state->mutex);
    session->stream_open = false;
    --state->streams_open;
    session->last_used = state->options.now();
    if (session->legacy) state->end(session);
  }

  /// Writes `first`, then the session's messages as they come and keep-alive comments, until the
  /// session ends (true) or the client leaves (false).
  bool run(const std::string& first, const BodyWriter& write) {
    const EndpointOptions& options = state->options;
    if (!write(first)) return false;
    Clock::time_point last_write = options.now();
    std::unique_lock lock(state->mutex);
    for (;;) {
      session->changed.wait_for(lock, options.presence_check,
                                [this] { return session->ended || !session->backlog.empty(); });
      std::deque<std::string> messages = std::move(session->backlog);
      session->backlog.clear();
      bool ended = session->ended;
      lock.unlock();
      for (const std::string& message : messages) {
        if (!write(sse_event("message", message))) return false;
        last_write = options.now();
      }
      if (ended) return true;
      // Empty bytes send nothing and tell whether the client is still there.
      bool quiet = options.now() - last_write >= options.keep_alive;
      if (!write(quiet ? ": keep-alive\n\n" : "")) return false;
      if (quiet) last_write = options.now();
      lock.lock();
    }
  }
};

HttpResponse stream_response(std::shared_ptr<OpenStream> stream, std::string first) {
  HttpResponse response;
  response.content_type = "text/event-stream";
  response.headers["Cache-Control"] = "no-cache";
  response.headers["X-Accel-Buffering"] = "no";
  response.stream_chunked = true;
  response.stream = [stream = std::move(stream), first = std::move(first)](
                        std::uint64_t, std::uint64_t, const BodyWriter& write) { return stream->run(first, write); };
  return response;
}

}  // namespace

Endpoint::Endpoint(Exec exec, HoldActivity hold_activity, EndpointOptions options)
    : exec_(std::move(exec)),
      hold_activity_(std::move(hold_activity)),
      state_(std::make_shared<State>(std::move(options))) {}

Endpoint::~Endpoint() {
  std::lock_guard lock(state_->mutex);
  auto sessions = state_->sessions;
  for (const auto& [id, session] : sessions) state_->end(session);
}

bool Endpoint::serves(std::string_view path) {
  return path.starts_with(base_path) && (path.size() == base_path.size() || path[base_path.size()] == '/');
}

void Endpoint::close_sandbox(const std::string& sandbox_id) {
  std::lock_guard lock(state_->mutex);
  std::vector<std::shared_ptr<Session>> ending;
  for (const auto& [id, session] : state_->sessions)
    if (session->sandbox_id == sandbox_id) ending.push_back(session);
  for (const auto& session : ending) state_->end(session);
}

std::size_t Endpoint::session_count(const std::string& sandbox_id) const {
  std::lock_guard lock(state_->mutex);
  return static_cast<std::size_t>(
      std::count_if(state_->sessions.begin(), state_->sessions.end(),
                    [&](const auto& entry) { return entry.second->sandbox_id == sandbox_id; }));
}

HttpResponse Endpoint::serve(const Sandbox& sandbox, HttpRequest& request) {
  std::string_view rest = std::string_view(request.path).substr(base_path.size());
  // Handling a message is the sandbox's activity for as long as it takes (a command may run 30 s).
  SandboxActivity::Hold busy = hold_activity_(sandbox.id);
  HttpResponse response;
  if (auto refused = check_headers(request)) {
    response = std::move(*refused);
  } else if (rest.empty() || rest == "/") {
    if (request.method == "POST")
      response = post(sandbox, request);
    else if (request.method == "GET")
      response = open_stream(sandbox, request);
    else if (request.method == "DELETE")
      response = end_session(sandbox, request);
    else
      response = method_not_allowed(request, "GET, POST, DELETE");
  } else if (rest == "/sse") {
    response = request.method == "GET" ? open_legacy_stream(sandbox, request) : method_not_allowed(request, "GET");
  } else if (rest == "/messages") {
    response = request.method == "POST" ? post_legacy(sandbox, request) : method_not_allowed(request, "POST");
  } else {
    response = refusal(404, codes::transport_error,
                       "Not Found: the MCP server answers at /mcp/terminal/ (Streamable HTTP) and "
                       "/mcp/terminal/sse (HTTP+SSE), not " +
                           request.path);
  }
  // A streamed body nobody read to its end leaves the connection unusable for another request.
  if (request.read_multipart) response.close_connection = true;
  return response;
}

Server Endpoint::server_for(const Sandbox& sandbox) const {
  return Server([this, &sandbox](const ExecRequest& request) { return exec_(sandbox, request); });
}

HttpResponse Endpoint::post(const Sandbox& sandbox, const HttpRequest& request) {
  if (!accepts(request, "application/json"))
    return refusal(406, codes::transport_error, "Not Acceptable: the client must accept application/json");
  State& state = *state_;
  const std::string* id = request.header("mcp-session-id");
  if (id == nullptr) {
    Reply reply = server_for(sandbox).handle(request.body, std::nullopt);
    if (reply.kind == Reply::Kind::needs_session)
      return refusal(400, codes::transport_error,
                     "Bad Request: Mcp-Session-Id header is required: POST initialize first, then send the session "
                     "id it answers with every request");
    if (!reply.negotiated_version) return reply_response(reply);  // an error, or an initialize that failed
    std::string refused;
    std::lock_guard lock(state.mutex);
    auto session = state.open(sandbox.id, false, refused);
    if (!session) return refusal(503, codes::transport_error, refused);
    session->protocol.version = reply.negotiated_version;
    HttpResponse response = reply_response(reply);
    response.headers["Mcp-Session-Id"] = session->id;
    return response;
  }

  std::shared_ptr<Session> session;
  std::optional<SessionState> protocol;
  {
    std::lock_guard lock(state.mutex);
    session = state.find(sandbox.id, *id, false);
    if (!session)
      return refusal(404, codes::session_not_found,
                     "Session not found: it ended (deleted, idle for 30 minutes, or its sandbox ended); "
                     "initialize a new one");
    session->last_used = state.options.now();
    protocol = session->protocol;
  }
  // Not under the lock: a tool may run for 30 s, and a session's requests may run side by side.
  Reply reply = server_for(sandbox).handle(request.body, protocol);
  std::lock_guard lock(state.mutex);
  if (reply.initialized_notification) session->protocol.initialized = true;
  session->last_used = state.options.now();
  return reply_response(reply);
}

HttpResponse Endpoint::open_stream(const Sandbox& sandbox, const HttpRequest& request) {
  if (!accepts(request, "text/event-stream"))
    return refusal(406, codes::transport_error, "Not Acceptable: the stream is text/event-stream");
  const std::string* id = request.header("mcp-session-id");
  if (id == nullptr)
    return refusal(400, codes::transport_error,
                   "Bad Request: Mcp-Session-Id header is required (the legacy HTTP+SSE transport's stream is GET "
                   "/mcp/terminal/sse)");
  // Taken before the sessions' lock: the lifecycle's lock comes first when a sandbox ends.
  SandboxActivity::Hold activity = hold_activity_(sandbox.id);
  State& state = *state_;
  std::lock_guard lock(state.mutex);
  auto session = state.find(sandbox.id, *id, false);
  if (!session) return refusal(404, codes::session_not_found, "Session not found: initialize a new one");
  if (session->stream_open)
    return refusal(409, codes::transport_error, "Conflict: this session's stream is open already (one at a time)");
  if (auto refused = state.stream_refusal()) return refusal(503, codes::transport_error, *refused);
  session->stream_open = true;
  ++state.streams_open;
  return stream_response(std::make_shared<OpenStream>(state_, session, std::move(activity)), ": stream open\n\n");
}

HttpResponse Endpoint::end_session(const Sandbox& sandbox, const HttpRequest& request) {
  const std::string* id = request.header("mcp-session-id");
  if (id == nullptr) return refusal(400, codes::transport_error, "Bad Request: Mcp-Session-Id header is required");
  std::lock_guard lock(state_->mutex);
  auto session = state_->find(sandbox.id, *id, false);
  if (!session) return refusal(404, codes::session_not_found, "Session not found: it has ended already");
  state_->end(session);
  return json_response(200, "");
}

HttpResponse Endpoint::open_legacy_stream(const Sandbox& sandbox, const HttpRequest& request) {
  if (!accepts(request, "text/event-stream"))
    return refusal(406, codes::transport_error, "Not Acceptable: the stream is text/event-stream");
  SandboxActivity::Hold activity = hold_activity_(sandbox.id);
  State& state = *state_;
  std::lock_guard lock(state.mutex);
  if (auto refused = state.stream_refusal()) return refusal(503, codes::transport_error, *refused);
  std::string refused;
  auto session = state.open(sandbox.id, true, refused);
  if (!session) return refusal(503, codes::transport_error, refused);
  session->stream_open = true;
  ++state.streams_open;
  // The messages URL is relative to the sandbox URL, as the SDKs' servers write it.
  return stream_response(std::make_shared<OpenStream>(state_, session, std::move(activity)),
                         sse_event("endpoint", std::string(messages_path) + "?sessionId=" + session->id));
}

HttpResponse Endpoint::post_legacy(const Sandbox& sandbox, const HttpRequest& request) {
  const std::string* id = request.query_value("sessionId");
  if (id == nullptr)
    return refusal(400, codes::transport_error,
                   "Bad Request: the sessionId query parameter is required (the endpoint event of GET "
                   "/mcp/terminal/sse names the URL)");
  State& state = *state_;
  std::shared_ptr<Session> session;
  std::optional<SessionState> protocol;
  {
    std::lock_guard lock(state.mutex);
    session = state.find(sandbox.id, *id, true);
    if (!session)
      return refusal(404, codes::session_not_found, "Session not found: its stream is closed; open a new one");
    if (session->backlog.size() >= state.options.stream_backlog_max)
      return refusal(503, codes::transport_error,
                     "Service Unavailable: the session's stream has " +
                         std::to_string(state.options.stream_backlog_max) + " messages its client has not read yet");
    protocol = session->protocol;
  }
  Reply reply = server_for(sandbox).handle(request.body, protocol);
  std::lock_guard lock(state.mutex);
  if (reply.negotiated_version) session->protocol.version = reply.negotiated_version;
  if (reply.initialized_notification) session->protocol.initialized = true;
  // What has no id to be answered with on the stream (malformed JSON) is answered here.
  if (reply.kind == Reply::Kind::refused) return reply_response(reply);
  if (session->ended) return refusal(404, codes::session_not_found, "Session not found: its stream closed");
  if (reply.kind == Reply::Kind::responses) {
    session->backlog.push_back(std::move(reply.body));
    session->changed.notify_all();
  }
  return json_response(202, "");
}

}  // namespace modbox::mcp
