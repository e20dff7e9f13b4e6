#pragma once
// The images API (`/sandbox-images`, seeds/000 and seeds/003): the image model, its create and update
// bodies with their validation, and the OCI reference rules the fields must follow. One definition for
// the agent and the CLI, as common/models.h is for sandboxes.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/models.h"
#include "common/result.h"
#include "common/system.h"

namespace modbox {

namespace limits {
inline constexpr int image_memory_mb_min = 256;
inline constexpr int image_memory_mb_max = 8192;
inline constexpr int image_memory_mb_default = 1024;
inline constexpr int image_ttl_seconds_min = 60;
inline constexpr int image_ttl_seconds_max = 86400;
inline constexpr std::size_t image_name_max_length = 255;  // the `name` field, for people
inline constexpr std::size_t image_reference_max_length = 255;
inline constexpr std::size_t image_tag_max_length = 128;
inline constexpr std::size_t description_max_length = 4096;
}  // namespace limits

/// modbox's default images, built locally from images/NAME: the names `images/build`,
/// `modbox images build` and the agent's built-in registrations share.
inline constexpr std::array<const char*, 4> default_image_names = {"sandbox-lite", "code-exec", "sandbox", "ubuntu"};

/// A registered image. `workspace_id` empty: a global image, visible in every workspace; `builtin`: one of
/// modbox's default images (`is_default` true), which nobody can change or delete through the API.
struct SandboxImage {
  std::string id;
  std::string name;
  std::string image;  // repository without tag: "ghcr.io/org/app", "modbox/sandbox-lite"
  std::string tag = "latest";
  std::optional<std::string> description;
  bool enabled = true;
  bool is_default = false;
  int memory_mb = limits::image_memory_mb_default;
  std::optional<int> readiness_port;
  std::optional<int> ttl_seconds;
  std::optional<std::string> workspace_id;
  std::optional<std::string> registry_id;
  std::optional<std::string> registry_name;  // filled in from the registry when answering; not stored
  TimePoint created_at{};
  TimePoint updated_at{};
  bool builtin = false;  // stored, not part of the API view
};

/// What Podman runs for `image`: `localhost/NAME:TAG` for the built-in defaults (built locally),
/// otherwise `image:tag` with Docker's normalisation of short names (`python` → `docker.io/library/python`).
std::string image_reference(const SandboxImage& image);

/// `POST /sandbox-images` (SandboxImageCreate in seeds/003).
struct ImageCreateRequest {
  std::string name;
  std::string image;
  std::string tag = "latest";
  std::optional<std::string> description;
  bool enabled = true;
  bool is_default = false;
  int memory_mb = limits::image_memory_mb_default;
  std::optional<int> readiness_port;
  std::optional<int> ttl_seconds;
  std::optional<std::string> registry_id;
};

/// A field of a partial update: absent (leave as is), null (clear) or a value.
template <class T>
using Patch = std::optional<std::optional<T>>;

/// `PUT /sandbox-images/{id}`: only the fields present change.
struct ImageUpdateRequest {
  std::optional<std::string> name;
  std::optional<std::string> image;
  std::optional<std::string> tag;
  Patch<std::string> description;
  std::optional<bool> enabled;
  std::optional<bool> is_default;
  std::optional<int> memory_mb;
  Patch<int> readiness_port;
  Patch<int> ttl_seconds;
  Patch<std::string> registry_id;

  bool empty() const {
    return !name && !image && !tag && !description && !enabled && !is_default && !memory_mb && !readiness_port &&
           !ttl_seconds && !registry_id;
  }
};

/// `POST /sandboxes/snapshot`: the running sandbox `task_id`'s filesystem as a new image called `name`
/// (validated as an image's `name`).
struct SnapshotRequest {
  std::string task_id;
  std::string name;
};

// Validation, each returning a 422 error naming the field.
Result<SnapshotRequest> parse_snapshot_request(std::string_view body);
Result<ImageCreateRequest> parse_image_create_request(std::string_view body);
/// The `image` part of `POST /sandbox-images/build`: the fields of POST /sandbox-images but `image`,
/// `tag` and `registry_id`, which the build sets (422 when given).
Result<ImageCreateRequest> parse_image_build_fields(std::string_view body);
/// The largest context a build takes (the uploaded tar): 413 beyond.
inline constexpr std::uint64_t build_context_max_bytes = 256ull << 20;
/// The largest Containerfile sent as a part of its own.
inline constexpr std::size_t build_containerfile_max_bytes = 1 << 20;
std::string image_build_fields_to_json(const ImageCreateRequest& request);

// The event stream of `POST /sandbox-images/build` asked for with `Accept: text/event-stream`:
//   event: output   data: {"line": "STEP 2/3: RUN make"}   a line of the build's output, as it comes
//   event: image    data: the SandboxImageDetail registered (what the plain answer's 201 carries)
//   event: error    data: {"status": 400, "detail": ...}  how the build failed (the plain answer's)
std::string build_output_event_data(std::string_view line);
Result<std::string> build_output_line(std::string_view data);
std::string build_error_event_data(const Error& error);
Error build_error_from_event(std::string_view data);
Result<ImageUpdateRequest> parse_image_update_request(std::string_view body);
/// `?enabled_only=` as FastAPI reads a bool query parameter.
Result<bool> parse_enabled_only_query(std::string_view value);

/// The repository part of an image reference, by the Docker/OCI grammar: `[host[:port]/]path` with
/// lower-case path components; no tag, no digest (they go in `tag`). `loc` names the field.
std::optional<FieldError> check_image_repository(std::string_view image, std::vector<std::string> loc);
/// `name` as one OCI repository path component: lower-case letters and digits, each run of anything else
/// as one '-', at most 64 characters; "" when nothing of it is left. Images modbox makes (snapshots,
/// builds) are stored under such a component.
std::string repository_component(std::string_view name);
/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
std::optional<FieldError> check_image_tag(std::string_view tag, std::vector<std::string> loc);
/// A UUID in canonical 8-4-4-4-12 hex form.
bool is_uuid(std::string_view text);
std::optional<FieldError> check_uuid(std::string_view text, std::vector<std::string> loc);

/// `host[:port]` of a registry: DNS labels separated by dots (or an IPv6 address in brackets), port 1-65535.
bool is_registry_host(std::string_view host_and_port);

/// The registry host an image is pulled from: its first path component when that names a host
/// (has a dot or a port, or is `localhost`), else `docker.io`.
std::string registry_host_of(std::string_view image);

// Serialisation: the API view is SandboxImageDetail with every field of seeds/003 (nulls included).
std::string image_to_json(const SandboxImage& image);
std::string images_to_json(const std::vector<SandboxImage>& images);
std::string image_record_to_json(const SandboxImage& image);
Result<SandboxImage> image_record_from_json(std::string_view text);
Result<SandboxImage> image_from_json(std::string_view text);
Result<std::vector<SandboxImage>> images_from_json(std::string_view text);

std::string image_create_request_to_json(const ImageCreateRequest& request);
std::string snapshot_request_to_json(const SnapshotRequest& request);
std::string image_update_request_to_json(const ImageUpdateRequest& request);

}  // namespace modbox
