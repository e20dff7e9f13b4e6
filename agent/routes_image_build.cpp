// POST /sandbox-images/build: an image built from a Containerfile and a context uploaded as
// multipart/form-data, then registered as POST /sandbox-images registers one (agent/image_build.h).

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "agent/image_build.h"
#include "agent/route_handler.h"
#include "agent/routes.h"
#include "common/output_events.h"
#include "common/system.h"
#include "common/unique_fd.h"

namespace modbox {

namespace {

/// The largest `image` part (the registration's JSON fields).
constexpr std::size_t build_fields_max_bytes = 64 << 10;

/// An uploaded context on disk, removed when the last holder lets go (the build, or the stream
/// that runs it).
class SpooledFile {
 public:
  static Result<std::shared_ptr<SpooledFile>> create(const std::filesystem::path& directory) {
    auto file = std::make_shared<SpooledFile>();
    file->path_ = directory / ("context-" + random_hex(8) + ".tar");
    file->fd_ = UniqueFd(::open(file->path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!file->fd_.valid()) return std::unexpected(system_error("open", file->path_.string(), errno));
    return file;
  }
  ~SpooledFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  Result<void> write(std::string_view bytes) {
    if (size_ < 2) head_.append(bytes.substr(0, 2 - size_));
    size_ += bytes.size();
    while (!bytes.empty()) {
      ssize_t written = ::write(fd_.get(), bytes.data(), bytes.size());
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) return std::unexpected(system_error("write", path_.string(), errno));
      bytes.remove_prefix(static_cast<std::size_t>(written));
    }
    return {};
  }
  const std::filesystem::path& path() const { return path_; }
  std::uint64_t size() const { return size_; }
  bool gzip() const { return head_ == "\x1f\x8b"; }

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
  std::uint64_t size_ = 0;
  std::string head_;
};

Error missing_field(const char* part, const std::string& message) {
  return Error{ErrorKind::validation, "invalid request", {{{"body", part}, message, "missing"}}};
}

/// `?file=`: a relative path inside the context, without `..`.
Result<std::string> containerfile_path(const HttpRequest& request) {
  const std::string* value = request.query_value("file");
  if (value == nullptr) return std::string("Containerfile");
  bool bad = value->empty() || value->size() > 1024 || value->front() == '/' || value->find('\0') != std::string::npos;
  for (std::size_t start = 0; !bad && start <= value->size();) {
    std::size_t slash = value->find('/', start);
    if (slash == std::string::npos) slash = value->size();
    bad = value->compare(start, slash - start, "..") == 0;
    start = slash + 1;
  }
  if (bad)
    return fail_validation({{{"query", "file"},
                             "Value error, file must be a relative path inside the context, without '..'",
                             "value_error"}});
  return *value;
}

struct UploadedBuild {
  std::string fields;
  bool has_fields = false;
  std::optional<std::string> containerfile;
  std::shared_ptr<SpooledFile> context;
};

/// Reads the multipart body: the parts `image`, `containerfile` and `context` (others are ignored).
Result<UploadedBuild> read_build_upload(HttpRequest& request, const std::filesystem::path& spool_dir,
                                        std::uint64_t context_max_bytes) {
  if (!request.read_multipart)
    return fail(ErrorKind::bad_request,
                "send the build as multipart/form-data: a part 'image' with the image's fields as JSON "
                "({\"name\": ...}), a part 'context' with the build context as a tar, and/or a part "
                "'containerfile'");
  UploadedBuild upload;
  enum class Part { other, fields, containerfile, context } current = Part::other;
  std::optional<Error> failure;
  bool read_whole = request.read_multipart(
      [&](const MultipartPart& part) {
        auto twice = [&](bool seen) {
          if (seen) failure = Error{ErrorKind::bad_request, "the part '" + part.name + "' came twice", {}};
          return seen;
        };
        if (part.name == "image") {
          if (twice(upload.has_fields)) return false;
          upload.has_fields = true;
          current = Part::fields;
        } else if (part.name == "containerfile") {
          if (twice(upload.containerfile.has_value())) return false;
          upload.containerfile.emplace();
          current = Part::containerfile;
        } else if (part.name == "context") {
          if (twice(upload.context != nullptr)) return false;
          auto spooled = SpooledFile::create(spool_dir);
          if (!spooled) {
            failure = spooled.error();
            return false;
          }
          upload.context = std::move(*spooled);
          current = Part::context;
        } else {
          current = Part::other;
        }
        return true;
      },
      [&](std::string_view bytes) {
        auto over = [&](const std::string& what, std::uint64_t limit) {
          failure = Error{ErrorKind::too_large,
                          what + " is larger than the limit of " + std::to_string(limit) + " bytes; nothing was built",
                          {}};
          return false;
        };
        switch (current) {
          case Part::fields:
            upload.fields.append(bytes);
            if (upload.fields.size() > build_fields_max_bytes) return over("the part 'image'", build_fields_max_bytes);
            return true;
          case Part::containerfile:
            upload.containerfile->append(bytes);
            if (upload.containerfile->size() > build_containerfile_max_bytes)
              return over("the Containerfile", build_containerfile_max_bytes);
            return true;
          case Part::context:
            if (upload.context->size() + bytes.size() > context_max_bytes)
              return over("the build context", context_max_bytes);
            if (auto written = upload.context->write(bytes); !written) {
              failure = written.error();
              return false;
            }
            return true;
          case Part::other:
            return true;
        }
        return true;
      });
  if (read_whole) request.read_multipart = nullptr;
  if (failure) return std::unexpected(*failure);
  if (!read_whole)
    return fail(ErrorKind::bad_request, "the multipart body is malformed or was cut off; nothing was built");
  return upload;
}

HttpResponse serve_image_build(ImageBuildService& builds, const std::filesystem::path& spool_dir,
                               std::uint64_t context_max_bytes, HttpRequest& request) {
  auto workspace = workspace_of(request);
  if (!workspace) return error_response(workspace.error());
  auto upload = read_build_upload(request, spool_dir, context_max_bytes);
  if (!upload) return error_response(upload.error());
  if (!upload->has_fields)
    return error_response(missing_field("image", "Field required: a part 'image' with the image's fields as JSON"));
  auto fields = parse_image_build_fields(upload->fields);
  if (!fields) return error_response(fields.error());
  auto file = containerfile_path(request);
  if (!file) return error_response(file.error());
  if (!upload->containerfile && !upload->context)
    return error_response(
        missing_field("context", "Field required: a part 'context' (a tar), a part 'containerfile', or both"));
  if (upload->containerfile && upload->context && upload->context->gzip())
    return error_response(Error{ErrorKind::bad_request,
                                "with a part 'containerfile', send the context as an uncompressed tar (it is "
                                "gzip-compressed)",
                                {}});
  ImageBuildRequest build{.image = *fields, .containerfile = upload->containerfile, .file = *file};
  std::shared_ptr<SpooledFile> context = upload->context;
  if (context) build.context_file = context->path();

  if (wants_event_stream(request))
    return event_stream_response([&builds, workspace = *workspace, build, context](const BodyWriter& write) {
      bool connected = true;
      auto built = builds.build(workspace, build, [&](std::string_view line) {
        connected = write(event_text("output", build_output_event_data(line)));
        return connected;
      });
      if (!connected) return false;
      if (built) return write(event_text("image", image_to_json(*built)));
      return write(event_text("error", build_error_event_data(built.error())));
    });
  auto built = builds.build(*workspace, build, [](std::string_view) { return true; });
  if (!built) return error_response(built.error());
  return json_response(201, image_to_json(*built));
}

}  // namespace

void register_image_build_route(Router& router, ImageBuildService& builds, std::filesystem::path spool_dir,
                                std::uint64_t context_max_bytes) {
  // Builds an image from a Containerfile and a context (multipart/form-data) and registers it: 201
  // SandboxImageDetail, or with Accept: text/event-stream the build's output as it comes, then the image.
  router.add("POST", "/sandbox-images/build", [&builds, spool_dir, context_max_bytes](HttpRequest& request) {
    return serve_image_build(builds, spool_dir, context_max_bytes, request);
  });
}

}  // namespace modbox
