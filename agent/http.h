#pragma once
// Plain request/response types for the agent's HTTP handlers. Only the front (agent/front/) knows the
// HTTP library; handlers take these structs, so they are testable without sockets.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace modbox {

/// One part of a multipart/form-data body, announced before its content.
struct MultipartPart {
  std::string name;
  std::string filename;
  std::string content_type;
};
using MultipartPartHandler = std::function<bool(const MultipartPart& part)>;
using BodyChunkHandler = std::function<bool(std::string_view bytes)>;
/// Reads a streamed multipart body: `on_part` at the start of each part, `on_data` with its
/// content in pieces; either returning false stops reading. Returns true when the whole body was
/// read and well formed. Call it at most once.
using MultipartReader = std::function<bool(const MultipartPartHandler& on_part, const BodyChunkHandler& on_data)>;
/// Writes a streamed response body; returns false when the client is gone.
using BodyWriter = std::function<bool(std::string_view bytes)>;

struct HttpRequest {
  std::string method;
  std::string path;
  /// Every query parameter, repeated names included, in the order sent.
  std::multimap<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::map<std::string, std::string> path_params;
  std::string body;
  /// Set instead of `body` for multipart/form-data requests on listeners that stream them.
  MultipartReader read_multipart;
  bool over_tcp = false;  // false: the owner's unix socket
  /// Set by a server that watches the connection while the handler runs: false once the client has
  /// hung up. Empty when nobody watches.
  std::function<bool()> client_connected;

  const std::string* header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
  }
  /// The first value of a query parameter, or nullptr.
  const std::string* query_value(const std::string& name) const {
    auto it = query.lower_bound(name);
    return it == query.end() || it->first != name ? nullptr : &it->second;
  }
  /// Every value of a query parameter, in the order sent (`?tag=a=1&tag=b=2`).
  std::vector<std::string> query_values(const std::string& name) const {
    std::vector<std::string> values;
    for (auto [it, end] = query.equal_range(name); it != end; ++it) values.push_back(it->second);
    return values;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
  /// When set, the body is not `body` but `stream_length` (> 0) bytes that `stream` produces:
  /// it is called once with the part to write, [offset, offset + length) (all of it, or the one
  /// range of a 206), and writes exactly that; it returns false to abort the response (the
  /// client then sees the connection close).
  std::function<bool(std::uint64_t offset, std::uint64_t length, const BodyWriter& write)> stream;
  std::uint64_t stream_length = 0;
  /// With `stream`: the length is not known beforehand (a followed log). `stream` is called with
  /// (0, 0, write) and what it writes goes out as it comes (Transfer-Encoding: chunked) until it
  /// returns; writing empty bytes sends nothing and answers whether the client is still there. The
  /// connection closes after such an answer.
  bool stream_chunked = false;
  /// Close the connection after this answer: the request's body was not read to its end.
  bool close_connection = false;
};

using HttpHandler = std::function<HttpResponse(HttpRequest&)>;
/// Looks at a request before its body is read (method, path, query and headers only): an answer
/// ends the request there, nullopt lets it go on.
using HttpPrecheck = std::function<std::optional<HttpResponse>(const HttpRequest&)>;

/// A JSON response; an Error becomes its status and `{"detail": ...}` body.
HttpResponse json_response(int status, std::string body);
HttpResponse error_response(const Error& error);
/// 405 for a path that answers only the `allowed` methods ("GET, POST"), with its Allow header.
HttpResponse refuse_method(const HttpRequest& request, const char* allowed);

/// Whether the client asks for an event stream (`Accept: text/event-stream`).
bool wants_event_stream(const HttpRequest& request);
/// How often a stream with nothing to send asks whether its client is still there: a client that
/// left is noticed within this (and what it watched, a command, is then cancelled).
inline constexpr std::chrono::milliseconds client_check_interval{250};
/// A 200 text/event-stream answer (chunked, no caching) whose body `produce` writes as it goes;
/// `produce` returns false when the client is gone.
HttpResponse event_stream_response(std::function<bool(const BodyWriter& write)> produce);

/// Bytes [first, last] of a resource, both included.
struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};
/// The one byte range of a `Range: bytes=...` header within `size` bytes, or nullopt for anything
/// else: several ranges, a malformed or unsatisfiable one, or a last byte past the end.
std::optional<ByteRange> single_byte_range(std::string_view header, std::uint64_t size);

/// Decodes %XX escapes (and '+' as a space in query strings); a malformed escape stays as it is.
std::string url_decode(std::string_view text, bool plus_is_space);
/// `a=1&b=x%20y&a=2` → {a: 1, a: 2, b: "x y"}: repeated names keep every value, in order.
std::multimap<std::string, std::string> parse_query(std::string_view query);

/// Where a listener accepts connections, and how it reads request bodies.
struct ListenOptions {
  std::string unix_path;  // when set, a unix socket created with mode 0600
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  /// Largest request body accepted (413 beyond, before reading it when Content-Length says so).
  std::uint64_t body_max_bytes = (1 << 20) + 1;
  /// Hand multipart/form-data bodies to the handler as a stream (HttpRequest::read_multipart)
  /// instead of reading them into memory; other bodies stay bounded by request_body_max_bytes.
  bool stream_multipart = false;
  /// Asked when a client waits for "100 Continue" before sending its body: an answer (a 401, say)
  /// goes out instead, and the body is never sent.
  HttpPrecheck precheck;
};

/// Whether a request is a long call (it may take seconds to minutes: wait, exec, a transfer), which
/// runs on a thread of its own instead of one that short calls need. Sees the head only.
using LongCallPredicate = std::function<bool(const HttpRequest&)>;

/// A running HTTP server with its own event loop (agent/front/front.h); stopping it (or destroying
/// it) closes the socket and every connection.
class HttpListener {
 public:
  virtual ~HttpListener() = default;
  virtual int port() const = 0;
  virtual void stop() = 0;

  /// Binds `address` and starts serving `handler`, with up to `threads` handler calls at once.
  static Result<std::unique_ptr<HttpListener>> start(const ListenOptions& options, HttpHandler handler, int threads);
};

}  // namespace modbox
