#pragma once
// The HTTP API of modbox, defined once: the models that the agent serves and the CLI reads, their
// JSON mapping, and the validation of request bodies into FastAPI-shaped errors.
// JSON itself stays in models.cpp so that headers do not pull in nlohmann/json.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/system.h"

namespace modbox {

enum class SandboxStatus { provisioning, running, failed, destroyed };

std::string_view to_string(SandboxStatus status);
std::optional<SandboxStatus> parse_sandbox_status(std::string_view text);
/// Why a sandbox was destroyed (Modal's vocabulary): asked for, its TTL or idle timeout ran out, its
/// main process exited, or its container was lost (stopped or removed behind the agent's back).
enum class DestroyReason { requested, ttl, idle, exited, lost };

std::string_view to_string(DestroyReason reason);
std::optional<DestroyReason> parse_destroy_reason(std::string_view text);

inline bool is_live(SandboxStatus status) {
  return status == SandboxStatus::provisioning || status == SandboxStatus::running;
}

/// Limits of the API, shared by validation and documentation.
namespace limits {
inline constexpr std::size_t task_id_max_length = 63;
inline constexpr int ttl_seconds_min = 1;
inline constexpr int ttl_seconds_max = 86400;
/// Modal's idle_timeout, in seconds.
inline constexpr int idle_timeout_seconds_min = 1;
inline constexpr int idle_timeout_seconds_max = 86400;
/// Modal's tags: at most this many key-value pairs, each key and value at most this many bytes.
inline constexpr std::size_t tags_max_count = 64;
inline constexpr std::size_t tag_max_bytes = 256;
/// The longest a sandbox with a TTL may live, counted from its creation: extend moves its expiry up to
/// here, and Podman's container timeout (which libpod 4.3 cannot change after creation) is armed here.
inline constexpr int sandbox_lifetime_max_seconds = 86400;
inline constexpr int wait_timeout_default = 120;
inline constexpr int wait_timeout_max = 3600;
inline constexpr int exec_timeout_default_ms = 30000;
inline constexpr int exec_timeout_max_ms = 30000;
inline constexpr std::size_t exec_output_cap_bytes = 1 << 20;
inline constexpr std::size_t env_vars_max_count = 256;
inline constexpr std::size_t env_value_max_bytes = 32 << 10;
inline constexpr int port_min = 1;
inline constexpr int port_max = 65535;
/// Most ports one sandbox may ask to have served (`ports` of provision).
inline constexpr std::size_t sandbox_ports_max_count = 16;
/// The port of the sandbox that its URL's non-API paths go to when its image names no readiness_port.
inline constexpr int default_proxied_port = 8080;
inline constexpr std::size_t request_body_max_bytes = 1 << 20;
/// An uploaded file's content (the hosted service's "50 MB", read as MiB).
inline constexpr std::uint64_t upload_max_bytes = 50ull << 20;
/// A whole upload request: the file plus the multipart framing and other small fields.
inline constexpr std::uint64_t upload_request_max_bytes = upload_max_bytes + (1 << 20);
/// Where uploads are stored inside the sandbox.
inline constexpr std::string_view uploads_directory = "/workspace/uploads";
/// Most files a listing returns.
inline constexpr std::uint32_t file_list_max = 10000;
/// How often a readiness probe is tried (seed 004: interval_ms, default 100).
inline constexpr int readiness_interval_default_ms = 100;
inline constexpr int readiness_interval_min_ms = 10;
inline constexpr int readiness_interval_max_ms = 60000;
/// How long a readiness probe is tried before it gives up (seed 004: "a maximum of 5 minutes").
inline constexpr std::chrono::milliseconds readiness_give_up{5 * 60 * 1000};
/// How long one attempt may take: an exec probe's command timeout, an HTTP probe's wait for its status line.
inline constexpr int readiness_attempt_timeout_ms = 5000;
inline constexpr int readiness_http_redirects = 5;  // an HTTP probe follows at most this many
}  // namespace limits

/// When a sandbox counts as ready (seed 000's HTTP and process probes, seed 004's tcp and exec probes).
/// The image's readiness_port gives an `http` probe; without one, an image with supervisord gets a
/// `process` probe (a process of that name runs); a provision's `readiness_probe` (tcp or exec)
/// overrides either.
struct ReadinessProbe {
  enum class Kind { http, tcp, exec, process };
  Kind kind = Kind::tcp;
  int port = 0;                      // http and tcp
  std::vector<std::string> command;  // exec: argv, quoted for the helper's shell
  std::string process;               // process: the name a running process has (/proc/PID/comm)
  int interval_ms = limits::readiness_interval_default_ms;
  bool operator==(const ReadinessProbe&) const = default;
};

std::string_view to_string(ReadinessProbe::Kind kind);
/// "tcp port 8000", "HTTP GET / on port 8000", "exec test -f /tmp/ready": for messages.
std::string describe(const ReadinessProbe& probe);
struct Sandbox;
/// "sandbox NAME (ID, workspace W)": how log lines and error sentences name a sandbox.
std::string describe(const Sandbox& sandbox);

/// How the readiness probe of a provisioning sandbox is doing. Not stored: an agent that restarts
/// probes again from the start.
struct ReadinessState {
  enum class Phase { probing, passed, timed_out };
  Phase phase = Phase::probing;
  int attempts = 0;
  std::optional<bool> last_passed;  // nullopt before the first attempt
  std::optional<std::string> last_error;
  bool operator==(const ReadinessState&) const = default;
};

std::string_view to_string(ReadinessState::Phase phase);

/// A sandbox as the agent records it. The API view (`sandbox_to_json`) leaves out what is only
/// the agent's business: env var values, container id, API key.
struct Sandbox {
  std::string id;
  std::string name;  // the task_id
  std::optional<std::string> workspace_id;
  SandboxStatus status = SandboxStatus::provisioning;
  std::optional<std::string> sandbox_url;
  std::string image;
  std::optional<std::string> image_id;
  std::string created_by;
  TimePoint created_at{};
  std::optional<TimePoint> destroyed_at;
  std::optional<DestroyReason> destroy_reason;  // set with destroyed_at
  std::optional<int> ttl_seconds;
  /// When the TTL was last set by an extend (it counts from here); nullopt: it counts from created_at.
  std::optional<TimePoint> ttl_extended_at;
  /// Modal's idle timeout: destroyed after this long with no exec, file call or open connection.
  std::optional<int> idle_timeout_seconds;
  /// Modal's tags: the caller's key-value pairs, for filtering lists.
  std::map<std::string, std::string> tags;
  /// The sandbox's network: nullopt is the default (outbound through Podman's network), "none" only
  /// loopback.
  std::optional<std::string> network;
  std::optional<std::string> error;  // why the sandbox failed, for `failed` (and `destroyed` after a failure)
  std::map<std::string, std::string> env_vars;
  std::string container_id;
  int gateway_port = 0;
  /// The sandbox's own ports that the agent serves on loopback ports of their own, as provision asked.
  std::vector<int> ports;
  /// Record only: the host port serving each of `ports` (sandbox port → host port), set once running
  /// and kept across agent restarts like `gateway_port`. The API shows them as `port_urls`.
  std::map<int, int> port_gateways;
  /// Record only: the image's readiness_port when it has one (see proxied_port()).
  std::optional<int> readiness_port;
  // From the image: its memory_mb becomes the container's memory limit where the host's cgroups can
  // enforce it; where they cannot, `memory_limit_enforced` is false and the detail says why.
  std::optional<int> memory_mb;
  std::optional<bool> memory_limit_enforced;
  std::optional<std::string> memory_limit_detail;
  std::optional<std::string> registry_id;  // record only: the credential the image is pulled with
  /// While provisioning: the long step under way ("pulling ...", "building ..."), for progress displays.
  /// Not stored.
  std::optional<std::string> progress;
  /// The probe that decides when the sandbox is ready (nullopt: when its helper answers), and how it goes.
  std::optional<ReadinessProbe> readiness_probe;
  ReadinessState readiness;
  /// When the sandbox became running, and how long that took from its provision.
  std::optional<TimePoint> ready_at;
  std::optional<std::int64_t> startup_ms;
  /// The provision's `command`: run as the sandbox's main process instead of the image's entrypoint
  /// and cmd, and the sandbox ends when it exits (Modal's entrypoint). Empty: the image's own.
  std::vector<std::string> command;
  /// How the main process ended (with `destroy_reason: exited`): its exit status, 128+n for signal
  /// n (Modal's returncode), and whether the kernel killed it for running out of memory.
  std::optional<int> exit_code;
  std::optional<bool> oom_killed;
  /// Record only: while set, the sandbox is an idle member of the warm pool of this image id (started,
  /// with no task, key, env_vars, tags or TTL of its own): never listed or found by id, task_id or key
  /// until a provision claims it, which clears this.
  std::optional<std::string> pool;
  /// Handed to its provision from a warm pool (created_at is the claim; the container started earlier).
  bool from_pool = false;

  std::optional<TimePoint> expires_at() const {
    if (!ttl_seconds) return std::nullopt;
    return ttl_extended_at.value_or(created_at) + std::chrono::seconds(*ttl_seconds);
  }
  /// The latest an extend may move expires_at to (limits::sandbox_lifetime_max_seconds after creation).
  TimePoint lifetime_end() const { return created_at + std::chrono::seconds(limits::sandbox_lifetime_max_seconds); }
};

/// The port of the sandbox that its URL's non-API paths are proxied to: the image's readiness_port,
/// else limits::default_proxied_port.
int proxied_port(const Sandbox& sandbox);

/// The URL serving each of the sandbox's `ports` (sandbox port → URL, on the host of sandbox_url);
/// empty unless the sandbox is running with its ports open.
std::map<int, std::string> port_urls(const Sandbox& sandbox);

struct ProvisionRequest {
  std::string task_id;
  std::optional<std::string> image_id;
  std::optional<std::string> image;  // modbox extension: a local image reference instead of image_id
  std::optional<int> ttl_seconds;
  std::map<std::string, std::string> env_vars;
  std::vector<int> ports;  // modbox extension: ports of the sandbox to serve on loopback URLs of their own
  std::optional<ReadinessProbe> readiness_probe;  // tcp or exec (seed 004); overrides the image's HTTP probe
  std::optional<int> idle_timeout_seconds;        // seed 004's idle_timeout
  std::map<std::string, std::string> tags;        // seed 004's tags
  std::optional<std::string> network;             // "none": loopback only
  std::vector<std::string> command;  // argv of the sandbox's main process (seed 004's entrypoint); empty: the image's
};

/// One `tag=key=value` filter of `GET /sandboxes`; a sandbox matches when it has that tag.
struct TagFilter {
  std::string key;
  std::string value;
  bool operator==(const TagFilter&) const = default;
};

/// What `GET /sandboxes` keeps: a status, and tags that must all be present.
struct SandboxFilter {
  std::optional<SandboxStatus> status;
  std::vector<TagFilter> tags;
};

/// Whether the sandbox passes every part of the filter.
bool matches(const Sandbox& sandbox, const SandboxFilter& filter);

struct WaitRequest {
  std::string task_id;
  int timeout_seconds = limits::wait_timeout_default;
};

struct DestroyRequest {
  std::string task_id;
};

/// `GET /sandboxes/{id}/logs?follow=&tail=`: the main process's output.
struct LogsQuery {
  bool follow = false;              // stream new output as it comes, until the sandbox ends
  std::optional<std::size_t> tail;  // only the last N lines of what is kept (nullopt: all of it)
};

/// `POST /sandboxes/extend` (modbox extension, E2B's set_timeout): the sandbox now expires
/// `ttl_seconds` from now.
struct ExtendRequest {
  std::string task_id;
  int ttl_seconds = 0;
};

struct ExecRequest {
  std::string command;
  int timeout_ms = limits::exec_timeout_default_ms;
  std::string cwd = "/";
};

/// `POST /sandboxes/exec` (modbox extension for the owner of the agent): exec by task_id.
struct SandboxExecRequest {
  std::string task_id;
  ExecRequest exec;
};

struct ExecResult {
  int exit_code = 0;
  std::string stdout_text;
  std::string stderr_text;
  bool killed = false;
  std::optional<std::string> signal;
  std::int64_t duration_ms = 0;
  bool truncated = false;
  std::string shell;  // what ran the command (bash, or sh in an image without bash); not in the JSON
};

/// One of the layers that destroy a sandbox when its TTL runs out (DESIGN.md "TTL"): whether it works
/// on this host, and what it does or why it does not.
struct TtlLayer {
  std::string name;  // systemd_timer, podman_timeout, agent_reaper
  bool active = false;
  std::string detail;
  bool operator==(const TtlLayer&) const = default;
};

/// What `GET /agent/status` reports.
struct AgentStatus {
  std::string version;
  int pid = 0;
  std::string user;
  std::string state_dir;
  std::string socket_path;
  std::optional<std::string> api_url;
  /// E2B's envd for every sandbox (E2B_SANDBOX_URL, "http://127.0.0.1:PORT"), and the domain E2B's
  /// SDKs build port hosts from ("localhost:PORT"); nullopt with --no-e2b.
  std::optional<std::string> e2b_url;
  std::optional<std::string> e2b_domain;
  bool podman_ready = false;
  std::string podman_detail;
  std::string runtime;
  std::size_t live_sandboxes = 0;
  std::vector<TtlLayer> ttl_layers;
};

// Request parsing: each returns a validation error (422) naming the field, or the request.
Result<ProvisionRequest> parse_provision_request(std::string_view body);
Result<WaitRequest> parse_wait_request(std::string_view body);
Result<DestroyRequest> parse_destroy_request(std::string_view body);
Result<ExtendRequest> parse_extend_request(std::string_view body);
Result<ExecRequest> parse_exec_request(std::string_view body);
Result<SandboxExecRequest> parse_sandbox_exec_request(std::string_view body);
Result<SandboxStatus> parse_status_query(std::string_view value);
/// The `tag` query parameters of `GET /sandboxes`, each `key=value` (422 at ["query", "tag"] otherwise).
Result<std::vector<TagFilter>> parse_tag_queries(const std::vector<std::string>& values);
/// `follow` a boolean as pydantic reads one, `tail` an integer 0–1 000 000; errors at ["query", name].
Result<LogsQuery> parse_logs_query(const std::multimap<std::string, std::string>& query);

/// Checks a task_id on its own (also used for the CLI's arguments); `loc` names the field.
std::optional<FieldError> check_task_id(std::string_view task_id, std::vector<std::string> loc);

// Serialisation. `_record` variants carry every field and are what the store writes.
std::string sandbox_to_json(const Sandbox& sandbox);
std::string sandboxes_to_json(const std::vector<Sandbox>& sandboxes);
std::string sandbox_record_to_json(const Sandbox& sandbox);
Result<Sandbox> sandbox_record_from_json(std::string_view text);
Result<Sandbox> sandbox_from_json(std::string_view text);
Result<std::vector<Sandbox>> sandboxes_from_json(std::string_view text);

std::string provision_request_to_json(const ProvisionRequest& request);
std::string wait_request_to_json(const WaitRequest& request);
std::string destroy_request_to_json(const DestroyRequest& request);
std::string extend_request_to_json(const ExtendRequest& request);
std::string exec_request_to_json(const ExecRequest& request);
std::string sandbox_exec_request_to_json(const SandboxExecRequest& request);

std::string exec_result_to_json(const ExecResult& result);
Result<ExecResult> exec_result_from_json(std::string_view text);

/// A file in the sandbox's uploads directory, as the files API shows it.
struct UploadedFile {
  std::string filename;       // the stored name, "{epoch-ms}-{name}"
  std::string original_name;  // the name it was uploaded under (its basename)
  std::uint64_t size = 0;
  std::string mimetype;
  TimePoint uploaded_at{};
};

std::string uploaded_file_to_json(const UploadedFile& file);
std::string uploaded_files_to_json(const std::vector<UploadedFile>& files);
Result<UploadedFile> uploaded_file_from_json(std::string_view text);
Result<std::vector<UploadedFile>> uploaded_files_from_json(std::string_view text);
/// The answer to deleting an upload: {"filename": ..., "deleted": true}.
std::string file_deleted_to_json(const std::string& filename);

std::string agent_status_to_json(const AgentStatus& status);
Result<AgentStatus> agent_status_from_json(std::string_view text);

/// `{"detail": "sentence"}` or, for validation errors, `{"detail": [{"loc", "msg", "type"}...]}`.
std::string error_to_json(const Error& error);
/// Decodes an error body written by error_to_json (or any body) for an HTTP status.
Error error_from_response(int status, std::string_view body);

}  // namespace modbox
