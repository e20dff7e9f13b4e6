#include "agent/sandbox_api.h"

#include <algorithm>
#include <memory>

#include "agent/file_names.h"
#include "common/output_events.h"

namespace modbox {

namespace {

constexpr std::string_view api_prefix = "/modbox/api/";
constexpr std::string_view download_prefix = "/modbox/api/files/download/";
constexpr std::string_view files_prefix = "/modbox/api/files/";
/// After an upload goes over the limit, the rest of its body is still read (and dropped) up to
/// this much more, so that the client can read the 413; past it the connection is closed.
constexpr std::uint64_t overflow_drain_max = 16 << 20;

HttpResponse unauthorized(const Error& error) {
  HttpResponse response = error_response(error);
  if (error.kind == ErrorKind::unauthorized) response.headers["WWW-Authenticate"] = "Bearer";
  return response;
}

HttpResponse not_found(const HttpRequest& request) {
  return error_response(Error{ErrorKind::not_found,
                              "no route " + request.method + " " + request.path +
                                  " on this sandbox: it serves /modbox/api/exec, /modbox/api/files and "
                                  "/modbox/api/processes (other routes come with the image's web services)",
                              {}});
}

/// Writes a streamed exec's events: its output as it comes, then `exit` (or `error`).
bool write_exec_events(SandboxHelpers::ExecStream& stream, const BodyWriter& write) {
  OutputEventWriter events;
  for (;;) {
    auto step = stream.next(client_check_interval);
    if (!step) return write(events.flush() + event_text("error", error_event_data(step.error().message)));
    if (step->output) {
      if (!write(events.add(output_stream(step->output->stream), step->output->data))) return false;
    } else if (step->result) {
      return write(events.flush() + event_text("exit", exec_result_to_json(*step->result)));
    } else if (!write("")) {
      return false;  // the client left
    }
  }
}

Error bad_request(std::string sentence) {
  return Error{ErrorKind::bad_request, std::move(sentence), {}};
}

UploadedFile uploaded_file(const helper::FileInfo& info, std::string original_name, std::string mimetype) {
  // A time the sandbox set (touch -d 2300-01-01) must not overflow the clock's nanoseconds
  // (which end in 2262).
  constexpr std::int64_t max_ms = 9'000'000'000'000;  // 2255-03-14
  std::int64_t modified_ms = std::clamp<std::int64_t>(info.modified_ms, 0, max_ms);
  return UploadedFile{info.name, std::move(original_name), info.size, std::move(mimetype),
                      TimePoint(std::chrono::milliseconds(modified_ms))};
}

/// A file name taken from the URL: one plain path component.
Result<std::string> filename_parameter(std::string_view name) {
  if (!helper::is_plain_file_name(name))
    return fail(ErrorKind::bad_request,
                "'" + std::string(name.substr(0, 100)) + "' is not a file name: use a name from GET /modbox/api/files");
  return std::string(name);
}

}  // namespace

HttpResponse SandboxApi::serve(const std::string& sandbox_id, HttpRequest& request) {
  if (!request.path.starts_with(api_prefix)) {
    HttpResponse response = not_found(request);
    response.close_connection = static_cast<bool>(request.read_multipart);
    return response;
  }
  HttpResponse response;
  // Authenticate before looking at the body, so an unauthenticated caller learns nothing.
  auto sandbox = sandboxes_.authorize(sandbox_id, request.header("authorization"), owner_token_);
  const std::string& path = request.path;
  // Every call of its API is activity of the sandbox (its idle timeout), a transfer for as long as it lasts.
  auto busy =
      std::make_shared<SandboxActivity::Hold>(sandbox ? sandboxes_.hold_activity(sandbox_id) : SandboxActivity::Hold());
  if (!sandbox) {
    response = unauthorized(sandbox.error());
  } else if (path == "/modbox/api/exec") {
    response = request.method == "POST" ? exec(*sandbox, request) : refuse_method(request, "POST");
  } else if (path == "/modbox/api/files/upload") {
    response = request.method == "POST" ? upload(*sandbox, request) : refuse_method(request, "POST");
  } else if (path == "/modbox/api/files" || path == "/modbox/api/files/") {
    response = request.method == "GET" ? list(*sandbox, request) : refuse_method(request, "GET");
  } else if (path == "/modbox/api/files/watch" && request.method == "GET") {
    response = watch_files(*sandbox, request);
  } else if (path.starts_with(download_prefix)) {
    response = request.method == "GET" ? download(*sandbox, path.substr(download_prefix.size()), request)
                                       : refuse_method(request, "GET");
  } else if (path == processes_path || path.starts_with(std::string(processes_path) + "/")) {
    response = processes(*sandbox, request);
  } else if (path.starts_with(files_prefix)) {
    response = request.method == "DELETE" ? remove(*sandbox, path.substr(files_prefix.size()))
                                          : refuse_method(request, "DELETE");
  } else {
    response = not_found(request);
  }
  // A streamed body nobody read to its end leaves the connection unusable for another request.
  if (request.read_multipart) response.close_connection = true;
  if (response.stream)
    response.stream = [stream = std::move(response.stream), busy](std::uint64_t offset, std::uint64_t length,
                                                                  const BodyWriter& write) {
      return stream(offset, length, write);
    };
  return response;
}

std::optional<HttpResponse> SandboxApi::precheck(const std::string& sandbox_id, const HttpRequest& request) const {
  if (!request.path.starts_with(api_prefix)) return std::nullopt;
  auto sandbox = sandboxes_.authorize(sandbox_id, request.header("authorization"), owner_token_);
  if (sandbox) return std::nullopt;
  return unauthorized(sandbox.error());
}

HttpResponse SandboxApi::serve_web(const std::string& sandbox_id, HttpRequest& request) {
  auto sandbox = sandboxes_.get(std::nullopt, sandbox_id);
  if (!sandbox || sandbox->id != sandbox_id)
    return error_response(Error{ErrorKind::not_found, "this sandbox no longer exists", {}});
  if (mcp::Endpoint::serves(request.path)) return mcp_.serve(*sandbox, request);
  // The terminal's page; its WebSocket (/terminal/ws) never comes here: the front serves it.
  if (terminal_page_ != nullptr && (request.path == "/terminal" || request.path.starts_with("/terminal/")))
    return terminal_page_->serve(request);
  HttpResponse response = error_response(
      Error{ErrorKind::not_found, "no route " + request.method + " " + request.path + " on this sandbox", {}});
  if (request.read_multipart) response.close_connection = true;
  return response;
}

void SandboxApi::close_sandbox(const std::string& sandbox_id) {
  mcp_.close_sandbox(sandbox_id);
}

HttpResponse SandboxApi::exec(const Sandbox& sandbox, HttpRequest& request) {
  auto exec = parse_exec_request(request.body);
  if (!exec) return error_response(exec.error());
  if (wants_event_stream(request)) return exec_events(sandbox, *exec);
  // The answer comes at the end: a caller that hangs up before it kills the command.
  auto result = sandboxes_.run_exec(sandbox, *exec, request.client_connected);
  if (!result) return error_response(result.error());
  HttpResponse response = json_response(200, exec_result_to_json(*result));
  // Which shell ran the command: bash, or sh in an image without bash (the JSON keeps the seed's fields).
  if (!result->shell.empty()) response.headers["X-Modbox-Shell"] = result->shell;
  return response;
}

HttpResponse SandboxApi::exec_events(const Sandbox& sandbox, const ExecRequest& exec) {
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto started = helper->client.exec_stream(helper->socket, exec);
  if (!started) return error_response(with_context(started.error(), "exec in sandbox '" + sandbox.name + "'"));
  std::shared_ptr<SandboxHelpers::ExecStream> stream = std::move(*started);
  // The stream goes with the answer: a client that leaves cancels the command.
  return event_stream_response([stream](const BodyWriter& write) { return write_exec_events(*stream, write); });
}

HttpResponse SandboxApi::upload(const Sandbox& sandbox, HttpRequest& request) {
  static const Error not_multipart =
      bad_request("send the file as multipart/form-data in a field named 'file' (curl -F file=@PATH)");
  if (!request.read_multipart) return error_response(not_multipart);
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());

  std::unique_ptr<SandboxHelpers::Upload> upload;
  std::optional<Error> failure;
  std::string original_name;
  std::string declared_type;
  std::uint64_t file_bytes = 0;
  std::uint64_t body_bytes = 0;
  int file_parts = 0;
  bool in_file = false;
  bool too_large = false;
  bool read_whole = request.read_multipart(
      [&](const MultipartPart& part) {
        in_file = false;
        if (part.name != "file") return true;  // other fields are read and ignored
        if (++file_parts > 1) {
          failure = bad_request("one file per upload: the field 'file' came twice");
          return false;
        }
        auto name = safe_upload_name(part.filename);
        if (!name) {
          failure = name.error();
          return false;
        }
        auto started = helper->client.upload(helper->socket, {std::string(limits::uploads_directory), *name});
        if (!started) {
          failure = started.error();
          return false;
        }
        upload = std::move(*started);
        original_name = *name;
        declared_type = part.content_type;
        in_file = true;
        return true;
      },
      [&](std::string_view bytes) {
        body_bytes += bytes.size();
        if (too_large) return body_bytes <= limits::upload_request_max_bytes + overflow_drain_max;
        if (in_file) file_bytes += bytes.size();
        if (file_bytes > limits::upload_max_bytes || body_bytes > limits::upload_request_max_bytes) {
          // Abandoned: the helper removes what it had written.
          too_large = true;
          upload.reset();
          return true;
        }
        if (!in_file) return true;
        auto written = upload->write(bytes);
        if (!written) failure = written.error();
        return written.has_value();
      });
  if (read_whole) request.read_multipart = nullptr;
  if (too_large)
    return error_response(Error{ErrorKind::too_large,
                                "the file is larger than the upload limit of 50 MiB (" +
                                    std::to_string(limits::upload_max_bytes) + " bytes); nothing was stored",
                                {}});
  if (failure) return error_response(*failure);
  if (!read_whole)
    return error_response(bad_request("the multipart body is malformed or was cut off; nothing was stored"));
  if (upload == nullptr) return error_response(not_multipart);
  auto stored = upload->finish();
  if (!stored) return error_response(stored.error());
  // A client that names no type, or only the generic one (curl does for unknown extensions), gets
  // the type of the extension.
  bool generic = declared_type.empty() || declared_type == "application/octet-stream" ||
                 declared_type.find_first_of("\r\n") != std::string::npos;
  std::string mimetype = generic ? mime_type_for(original_name) : declared_type;
  return json_response(200, uploaded_file_to_json(uploaded_file(*stored, original_name, mimetype)));
}

HttpResponse SandboxApi::list(const Sandbox& sandbox, HttpRequest& request) {
  std::string search;
  if (const std::string* value = request.query_value("search")) search = *value;
  if (search.size() > helper::name_max || search.find('\0') != std::string::npos)
    return error_response(Error{ErrorKind::validation,
                                "invalid query",
                                {{{"query", "search"}, "search must be at most 255 bytes", "value_error"}}});
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto files =
      helper->client.list(helper->socket, {std::string(limits::uploads_directory), search, limits::file_list_max});
  if (!files) return error_response(files.error());
  std::vector<UploadedFile> listing;
  listing.reserve(files->size());
  for (const auto& file : *files)
    listing.push_back(uploaded_file(file, original_name_of(file.name), mime_type_for(file.name)));
  return json_response(200, uploaded_files_to_json(listing));
}

HttpResponse SandboxApi::download(const Sandbox& sandbox, const std::string& filename, const HttpRequest& request) {
  auto name = filename_parameter(filename);
  if (!name) return error_response(name.error());
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto opened = helper->client.download(helper->socket, {std::string(limits::uploads_directory), *name});
  if (!opened) return error_response(opened.error());
  std::shared_ptr<SandboxHelpers::Download> download = std::move(*opened);
  std::uint64_t size = download->info().size;
  HttpResponse response;
  response.content_type = mime_type_for(*name);
  response.headers["Content-Disposition"] = attachment_disposition(*name);
  // The sandbox chose the bytes: a browser must not guess a more dangerous type than the one given.
  response.headers["X-Content-Type-Options"] = "nosniff";
  response.headers["Accept-Ranges"] = "bytes";
  if (const std::string* range = request.header("range")) {
    // One range is served (resuming a download); the HTTP server cuts the answer to it.
    if (!single_byte_range(*range, size)) {
      HttpResponse refusal = error_response(
          Error{ErrorKind::bad_request,
                "the Range '" + range->substr(0, 100) + "' is not one satisfiable byte range of " + *name,
                {}});
      refusal.status = 416;
      refusal.headers["Content-Range"] = "bytes */" + std::to_string(size);
      return refusal;
    }
    response.status = 206;
  }
  if (size == 0) {
    auto end = download->next();
    if (!end) return error_response(end.error());
    return response;
  }
  response.stream_length = size;
  response.stream = [download](std::uint64_t offset, std::uint64_t length, const BodyWriter& write) {
    std::uint64_t position = 0;
    std::uint64_t end = offset + length;
    while (position < end) {
      auto chunk = download->next();
      if (!chunk || !*chunk) return false;  // the helper failed, or the file shrank: cut the answer short
      std::string_view bytes = **chunk;
      std::uint64_t chunk_end = position + bytes.size();
      if (chunk_end > offset) {
        std::uint64_t from = offset > position ? offset - position : 0;
        std::uint64_t to = std::min<std::uint64_t>(bytes.size(), end - position);
        if (!write(bytes.substr(static_cast<std::size_t>(from), static_cast<std::size_t>(to - from)))) return false;
      }
      position = chunk_end;
    }
    return true;  // a range that ends early leaves the rest unread: the helper's worker just stops
  };
  return response;
}

HttpResponse SandboxApi::remove(const Sandbox& sandbox, const std::string& filename) {
  auto name = filename_parameter(filename);
  if (!name) return error_response(name.error());
  auto helper = sandboxes_.helper_access(sandbox);
  if (!helper) return error_response(helper.error());
  auto removed = helper->client.remove(helper->socket, {std::string(limits::uploads_directory), *name});
  if (!removed) return error_response(removed.error());
  return json_response(200, file_deleted_to_json(*name));
}

}  // namespace modbox
