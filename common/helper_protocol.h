#pragma once
// The agent ↔ in-sandbox helper wire protocol, defined once for both ends.
//
// A connection to the helper's unix socket carries one conversation:
//   1. the helper speaks first: Hello (so the agent sends nothing to a socket that is not a helper);
//   2. the agent sends one request;
//   3. the helper answers, or answers Failure.
// Exec: answered by Output frames and Exit. Closing the connection before Exit cancels the request:
// the helper kills every process the command started (agent/helper/shim.h).
// Files (each resolved by the helper inside the container's mount namespace, so a symlink in the
// sandbox can never lead the agent to a host file; names are single path components):
//   Upload   → the agent then sends Data frames and End; the helper answers FileInfo (the stored
//              name) once the file is complete, or Failure. A connection closed before End
//              abandons the upload and leaves no file behind.
//   Download → FileInfo, Data frames, End; only regular files, refused without blocking on FIFOs.
//   List     → FileInfo for each regular file, then End.
//   Remove   → End.
// Relay (a TCP port in the sandbox, for the agent's front to proxy HTTP, SSE and WebSocket to):
//   RelayOpen → the helper connects to the port on the sandbox's loopback (127.0.0.1, then ::1
//              when 127.0.0.1 refuses) within relay_connect_timeout and answers RelayReady; or it
//              answers Failure and closes: a sentence naming the port ("nothing is listening on
//              port 8080 in the sandbox (connection refused)", "... did not accept a connection
//              within 5 s"), or that the helper has its most relays open. After RelayReady the
//              connection carries no more frames: it is the raw byte stream, both ways, as after
//              HTTP CONNECT. Bytes the agent sends after RelayOpen are the start of that stream
//              (dropped when the connect fails). shutdown(SHUT_WR) on either end is passed on to
//              the other as a half-close; the relay ends once both directions have ended, or at
//              once when either end resets or the agent closes its end completely (bytes not yet
//              delivered are then dropped). There is no idle timeout: the agent decides.
// Interactive session (a shell or command with its stdin open, for terminals and `exec -i`):
//   SessionOpen → the helper starts the command (empty: an interactive shell, `bash -i`, or `sh -i`
//              where there is no bash) as the image's user, with the sandbox's environment plus
//              the request's `env` (and TERM=xterm-256color on a terminal, unless `env` sets
//              TERM), in `cwd` (empty: /workspace when it exists, else /), and answers
//              SessionReady with its pid; or Failure (no shell, the helper has its most sessions
//              open) and closes. With `tty` the command runs on a new pseudo-terminal, as its
//              session's controlling terminal, sized `cols`×`rows` (1–window_size_max each); without,
//              on three pipes, and the size is ignored.
//   Then, agent → helper, in any order: Data (input: to the terminal, or to the command's stdin);
//              SessionResize (a size outside 1–window_size_max is ignored, the session goes on);
//              SessionSignal (to the terminal's foreground process group, or the command's process
//              group on pipes); End (no more input: on pipes the command's stdin is closed; on a
//              terminal its EOF character, ^D, is written, which ends a shell at an empty prompt).
//              The agent may send Data right after SessionOpen, before SessionReady.
//   Helper → agent: Output (a terminal's output is all stdout_stream; on pipes stdout and stderr
//              apart), then Exit once the command has exited and the output it left has been sent
//              (its background processes live on, as after exec); then the helper closes.
//   Both ways the helper reads only while what it holds for the other side is below a bound
//   (session_backlog_max), so a slow reader slows the writer instead of growing memory. There is no
//   idle timeout: the agent decides. The agent closing the connection (or breaking the protocol)
//   kills every process the session started, also those that left its group or session.
// Background processes (version 4; each request its own connection, like the others): commands that
// outlive the connection that started them, kept in the helper's process table until they exit and,
// once ended, among the most recent ended ones for listing (agent/helper/process_table.h).
//   ProcessStart  → ProcessInfo of the new process, or Failure (refused: the table is full).
//   ProcessList   → ProcessInfo for each process in the table, oldest first, then End.
//   ProcessRead   → ProcessInfo (the state when the read begins), then Output frames: what is kept
//              of its stdout and stderr (the last process_output_kept bytes of each), in the order
//              they were written; with `follow`, then what it writes next, as it comes, until it has
//              exited; then ProcessInfo again (the state at the end). An unknown id is Failure
//              (not_found). The agent closing the connection ends the read, never the process. A
//              reader that falls behind by more than what is kept misses the bytes in between: the
//              last ProcessInfo's `dropped` counts say how many of each stream this reader missed.
//   ProcessStdin  → End once the bytes are queued for the process's stdin (and it is closed when
//              `close`), or Failure: not_found, or refused (stdin closed, or more than
//              process_stdin_queue_max already waiting because the process does not read).
//   ProcessSignal → End once the signal was sent to every process of its tree (SIGKILL: the tree
//              is killed as an exec's is at its timeout), or Failure: not_found, or refused (it has
//              exited).
// Claim (version 5; a pooled sandbox handed to a provision, README.md "Warm pools"):
//   EnvironmentSet → End once every entry (NAME=VALUE) is in the helper's own environment, which every
//              later exec, background process, interactive session and file worker starts from (the
//              image's entrypoint, already running, keeps the environment it started with). Entries win
//              over what the helper had; nothing is removed.
// File watch (version 5):
//   WatchOpen → the helper watches `path` (a directory; with `recursive`, and every directory under
//              it, those created later included) with inotify, as the image's user would see it,
//              and answers WatchReady; or Failure (not_found, refused: not a directory) and closes.
//              Then WatchEvent frames as changes happen, each naming the entry relative to `path`,
//              until the agent closes the connection. The helper writes only while the agent reads:
//              changes that pile up beyond the kernel's inotify queue are reported as one
//              WatchEvent of kind `overflow`, never buffered without bound.
// A readiness probe is a connection that only reads the Hello.
//
// Frame: [type: 1 byte][payload length: 4 bytes, big-endian][payload]. Each type has a maximum
// payload size; a decoder refuses a larger length before reading the payload, and refuses unknown
// types. Payload fields are big-endian integers and strings as [length: 4 bytes][bytes].
// Type numbers are grouped: exec 0x10–0x1f, files 0x20–0x3f, TCP relays 0x40–0x4f, interactive
// sessions 0x50–0x5f, background processes 0x60–0x6f, file watches 0x70–0x7f, claims 0x80–0x8f.
//
// The agent treats everything from the helper as untrusted (code in the sandbox can kill or
// impersonate it): every message is validated here, and callers bound the time they wait.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace modbox::helper {

/// Raised with every new request type: an agent refuses a helper of another version (a sandbox
/// started before an upgrade) with a sentence that says so, instead of failing request by request.
inline constexpr std::uint32_t protocol_version = 5;
/// Helpers of sandboxes started by an older agent keep serving exec and files after an upgrade;
/// relays (version 3) and background processes (version 4) need a helper that knows them. An exec's
/// output_cap above 1 MiB (a streamed exec) is honoured from version 4 on; older helpers cut at 1 MiB.
inline constexpr std::uint32_t oldest_protocol_version = 2;
inline constexpr std::uint32_t relay_protocol_version = 3;
/// Interactive sessions (terminals, `exec -i`) need version 4.
inline constexpr std::uint32_t session_protocol_version = 4;
inline constexpr std::uint32_t processes_protocol_version = 4;
/// Setting the environment of a pooled sandbox at its claim needs version 5.
inline constexpr std::uint32_t environment_protocol_version = 5;
/// File watches need version 5.
inline constexpr std::uint32_t watch_protocol_version = 5;
inline constexpr std::string_view hello_magic = "modbox-helper";
/// Where the helper listens, inside the container; the agent bind-mounts a per-sandbox host
/// directory at socket_directory.
inline constexpr std::string_view socket_directory = "/run/modbox";
inline constexpr std::string_view socket_name = "helper.sock";
/// Where the agent bind-mounts the helper binary (read-only) inside the container.
inline constexpr std::string_view binary_path_in_container = "/.modbox/helper";
/// A helper that cannot start (an image whose USER does not exist) writes why into this file in
/// socket_directory before it exits; the agent reads it, bounded and as untrusted, into the
/// sandbox's reason.
inline constexpr std::string_view startup_failure_name = "helper.failed";
/// The output of the helper's child (the image's entrypoint, or the provision's `command`): its stdout
/// and stderr share one pipe, which the helper copies into this ring file in socket_directory
/// (common/main_log.h) as well as onto its own stdout (what `podman logs` shows).
inline constexpr std::string_view main_log_name = "main.log";
/// Started with `--exit-with-child` (a provision's `command`), the helper ends the sandbox when its
/// child exits: it writes the child's exit status (decimal, 128+n for signal n) into this file in
/// socket_directory, followed by " oom" when the container's cgroup counted an OOM kill meanwhile,
/// then exits with that status, which stops the container. The file rings the agent's bell: the agent
/// takes the status from Podman, which the sandbox cannot forge, and believes " oom" only with
/// Podman's 137 (conmon does not see every OOM kill: Podman 4.3 with runc on cgroup v1 never reports
/// one, while the cgroup's own counter does).
inline constexpr std::string_view main_exit_name = "main.exited";
inline constexpr std::string_view main_exit_oom_mark = " oom";

/// Whether a Docker USER spec means plain root: empty, "root" or "0". For any other the agent
/// starts the container as root (so that the helper can create its socket) and passes the spec to
/// the helper (`--user SPEC`), which runs the entrypoint and every command as that user.
bool runs_as_root(std::string_view user_spec);

enum class FrameType : std::uint8_t {
  hello = 0x01,           // helper → agent, first frame of every connection
  failure = 0x02,         // helper → agent: the request was refused or could not run; ends the conversation
  exec = 0x10,            // agent → helper
  output = 0x11,          // helper → agent: a chunk of the command's stdout or stderr
  exit = 0x12,            // helper → agent: how the command ended; ends the conversation
  upload = 0x20,          // agent → helper
  download = 0x21,        // agent → helper
  list = 0x22,            // agent → helper
  remove = 0x23,          // agent → helper
  data = 0x24,            // either way: a chunk of a file's content
  end = 0x25,             // either way: the end of a stream of Data or FileInfo frames; answers Remove
  file_info = 0x26,       // helper → agent
  relay_open = 0x40,      // agent → helper: [port: 4 bytes], 1–65535
  relay_ready = 0x41,     // helper → agent, empty: the raw byte stream starts after it
  session_open = 0x50,    // agent → helper
  session_ready = 0x51,   // helper → agent: [pid: 4 bytes]
  session_resize = 0x52,  // agent → helper: [cols: 4 bytes][rows: 4 bytes]
  session_signal = 0x53,  // agent → helper: [signal number: 4 bytes]
  process_start = 0x60,   // agent → helper
  process_list = 0x61,    // agent → helper, empty
  process_info = 0x62,    // helper → agent
  process_read = 0x63,    // agent → helper
  process_stdin = 0x64,   // agent → helper
  process_signal = 0x65,  // agent → helper
  watch_open = 0x70,      // agent → helper
  watch_ready = 0x71,     // helper → agent, empty
  watch_event = 0x72,     // helper → agent
  environment_set = 0x80,  // agent → helper: a claim's environment
};

inline constexpr std::size_t header_size = 5;
inline constexpr std::size_t output_chunk_max = 64 << 10;
inline constexpr std::size_t command_max = 1 << 20;
inline constexpr std::size_t path_max = 4096;
inline constexpr std::size_t message_max = 1024;
inline constexpr std::size_t data_chunk_max = 256 << 10;
/// NAME_MAX: a file name is one path component.
inline constexpr std::size_t name_max = 255;
/// A terminal's columns and rows are 1 to this.
inline constexpr std::uint16_t window_size_max = 1000;
/// A session's extra environment: at most this many KEY=VALUE entries, of at most
/// session_env_bytes_max bytes together.
inline constexpr std::size_t session_env_max = 256;
inline constexpr std::size_t session_env_bytes_max = 128 << 10;
/// What a session's helper holds for either side (output for the agent, input for the command)
/// before it stops reading from the other.
inline constexpr std::size_t session_backlog_max = 256 << 10;
/// A background process's environment: at most this many NAME=VALUE entries, each at most
/// process_env_entry_max bytes.
inline constexpr std::size_t process_env_max = 256;
inline constexpr std::size_t process_env_entry_max = 33 << 10;
/// How much of each stream of a background process the helper keeps for late readers.
inline constexpr std::size_t process_output_kept = 1 << 20;
/// The most bytes one ProcessStdin carries, and the most that may wait for a process to read them.
inline constexpr std::size_t process_stdin_max = 1 << 20;
inline constexpr std::size_t process_stdin_queue_max = 1 << 20;
/// The most processes a ProcessList answers (the helper's table holds at most this many).
inline constexpr std::size_t processes_listed_max = 128;
/// How much of a background process's command a ProcessInfo carries: listings stay small.
inline constexpr std::size_t process_command_shown_max = 4096;
/// How long the helper waits for the sandbox's port to accept a relay's connection.
inline constexpr std::chrono::seconds relay_connect_timeout{5};
/// The largest payload of any frame type, and of each.
std::size_t max_payload(FrameType type);

struct Hello {
  std::uint32_t version = protocol_version;
  std::uint32_t pid = 0;  // the helper's pid in the container (1 when it is init)
  std::string shell;      // what Exec runs commands with: a path to bash, or to sh when the image has no bash
};

struct ExecRequest {
  std::string command;
  std::string cwd = "/";
  std::uint32_t timeout_ms = 30000;
  /// Per stream; the helper drops the rest and reports truncated. A streamed exec asks for the
  /// most (helpers before version 4 cut at 1 MiB whatever is asked).
  std::uint32_t output_cap = 1 << 20;
};

enum class Stream : std::uint8_t { stdout_stream = 1, stderr_stream = 2 };

struct Output {
  Stream stream = Stream::stdout_stream;
  std::string data;
};

struct Exit {
  std::int32_t exit_code = 0;  // 0–255; 128+n when signal n ended the command
  std::string signal;          // "SIGKILL", or empty when the command exited by itself
  bool killed = false;         // the timeout ended it
  bool truncated = false;      // the helper dropped output past the cap
  std::string shell;           // the shell that ran the command
};

/// What kind of refusal a Failure is, so the agent can answer 404 or 400 instead of "unavailable".
enum class FailureKind : std::uint8_t {
  error = 0,      // the request could not be carried out (no space, permission denied, ...)
  not_found = 1,  // no such file
  refused = 2,    // the request names something the helper will not touch (not a regular file)
  no_space = 3,   // the sandbox's disk (or quota) is full; nothing was kept
};

struct Failure {
  std::string message;
  FailureKind kind = FailureKind::error;
};

/// Stores an upload in `directory` (created when missing) as "{epoch-ms}-{name}", the helper's
/// clock choosing the millisecond (the next free one when two uploads collide).
struct UploadRequest {
  std::string directory;
  std::string name;
};
struct DownloadRequest {
  std::string directory;
  std::string name;
};
/// Regular files in `directory` whose name contains `search`, at most `limit` of them, by name.
struct ListRequest {
  std::string directory;
  std::string search;
  std::uint32_t limit = 10000;
};
struct RemoveRequest {
  std::string directory;
  std::string name;
};
struct Data {
  std::string bytes;
};
struct End {};
struct FileInfo {
  std::string name;
  std::uint64_t size = 0;
  std::int64_t modified_ms = 0;  // since the epoch
};

/// Asks for a relay to `port` on the sandbox's loopback; encoded as 4 bytes so that a decoder can
/// refuse 0 and anything past 65535 instead of wrapping it.
struct RelayOpen {
  std::uint16_t port = 0;
};
/// The helper is connected to the port; every byte after this frame is the relayed stream.
struct RelayReady {};

/// Opens an interactive session. Sizes are encoded as 4 bytes each so that a decoder can refuse 0
/// and anything past window_size_max instead of wrapping it; without `tty` they are not checked
/// and decode as 0.
struct SessionOpen {
  bool tty = false;
  std::uint16_t cols = 0;
  std::uint16_t rows = 0;
  std::string command;           // empty: an interactive shell
  std::string cwd;               // absolute, or empty: /workspace when it exists, else /
  std::vector<std::string> env;  // KEY=VALUE, added to (or replacing in) the sandbox's environment
};
/// The session's command runs as process `pid` (in the sandbox's pid namespace).
struct SessionReady {
  std::uint32_t pid = 0;
};
/// A new terminal size. Any size up to 65535 decodes (a decoder that refused 0 would end the
/// session over it); the helper ignores one outside 1–window_size_max.
struct SessionResize {
  std::uint16_t cols = 0;
  std::uint16_t rows = 0;
};
/// A signal number that signal_name() knows.
struct SessionSignal {
  int signal = 0;
};

/// Starts `shell -c command` as a background process, in `cwd`, as the image's user, with the
/// sandbox's environment plus `env` (NAME=VALUE entries, which win over the sandbox's), and a pipe
/// as its stdin.
struct ProcessStart {
  std::string command;
  std::string cwd = "/";
  std::vector<std::string> env;
};
struct ProcessList {};

enum class ProcessState : std::uint8_t { running = 1, exited = 2 };

/// A background process as the helper's table has it. Times are milliseconds since the epoch on
/// the sandbox's clock. `exited` is reported once its output is settled: the shell exited and its
/// pipes were read to their end, or for ProcessTable::linger more (a job it left running keeps them
/// open; what that job writes later is still kept).
struct ProcessInfo {
  std::uint32_t id = 0;  // 1, 2, 3, ... in the order processes were started; never reused
  ProcessState state = ProcessState::running;
  std::int32_t exit_code = 0;  // when exited: 0–255, 128+n when signal n ended it
  std::string signal;          // when a signal ended it: its name ("SIGTERM"); else empty
  std::int64_t started_ms = 0;
  std::int64_t ended_ms = 0;  // 0 while running
  std::string command;        // its first process_command_shown_max bytes
  std::string cwd;
  bool stdin_open = false;
  std::uint64_t stdout_bytes = 0;  // written so far
  std::uint64_t stderr_bytes = 0;
  /// Bytes of each stream that the answer this info belongs to does not hold: those no longer kept
  /// (ProcessStart, ProcessList, the first ProcessInfo of a read), or those this reader missed (the
  /// last one of a read).
  std::uint64_t stdout_dropped = 0;
  std::uint64_t stderr_dropped = 0;
};

struct ProcessRead {
  std::uint32_t id = 0;
  bool follow = false;
};

/// `data` goes to the process's stdin; with `close`, stdin is closed after it (end of file).
struct ProcessStdin {
  std::uint32_t id = 0;
  std::string data;
  bool close = false;
};

struct ProcessSignal {
  std::uint32_t id = 0;
  std::uint32_t signal = 0;  // 1–64
};

/// Adds `env` (NAME=VALUE entries, at most process_env_max, each at most process_env_entry_max bytes)
/// to the helper's environment.
struct EnvironmentSet {
  std::vector<std::string> env;
};

/// Watches the directory `path` (absolute), and with `recursive` every directory under it.
struct WatchOpen {
  std::string path;
  bool recursive = false;
};
struct WatchReady {};
enum class WatchKind : std::uint8_t { create = 1, write = 2, remove = 3, rename = 4, chmod = 5, overflow = 6 };
/// A change to `name` (relative to the watched directory; empty for the directory itself, and for
/// `overflow`: changes were lost).
struct WatchEvent {
  WatchKind kind = WatchKind::create;
  std::string name;
};

using Message = std::variant<Hello, Failure, ExecRequest, Output, Exit, UploadRequest, DownloadRequest, ListRequest,
                             RemoveRequest, Data, End, FileInfo, RelayOpen, RelayReady, SessionOpen, SessionReady,
                             SessionResize, SessionSignal, ProcessStart, ProcessList, ProcessInfo, ProcessRead,
                             ProcessStdin, ProcessSignal, EnvironmentSet, WatchOpen, WatchReady, WatchEvent>;

/// A file name the helper accepts: one path component, not "." or "..", no NUL, at most name_max bytes.
bool is_plain_file_name(std::string_view name);

/// A terminal size the helper applies: both 1–window_size_max.
bool is_window_size(std::uint32_t cols, std::uint32_t rows);
/// An environment entry a session accepts: KEY=VALUE with a non-empty KEY, no NUL.
bool is_environment_entry(std::string_view entry);

/// One complete frame, encoded.
std::string encode(const Message& message);
/// Decodes one frame's payload; refuses truncated, overlong or invalid fields.
Result<Message> decode(FrameType type, std::string_view payload);

/// Splits a byte stream into frames. Feed it what arrives; take frames out with next().
class FrameDecoder {
 public:
  void feed(std::string_view bytes) { buffer_.append(bytes); }
  /// The next complete message, nullopt when more bytes are needed, or an error for a frame that
  /// can never be valid (unknown type, oversized length, malformed payload). After an error the
  /// stream is unusable.
  Result<std::optional<Message>> next();
  /// Bytes held that do not yet form a frame.
  std::size_t pending() const { return buffer_.size() - offset_; }
  /// Those bytes themselves: what followed the last frame taken out.
  std::string_view unread() const { return std::string_view(buffer_).substr(offset_); }
  /// How many more bytes the next frame needs before next() can return it (0: it is complete),
  /// so that a reader that must not take a byte past a frame can read exactly that many. Call it
  /// after next() returned nullopt: the header has been checked then.
  std::size_t missing() const;

 private:
  std::string buffer_;
  std::size_t offset_ = 0;
};

/// "SIGKILL" for 9; "SIGRTMIN+n" for real-time signals; empty for numbers that are not signals.
std::string signal_name(int number);
/// The number of a name that signal_name() writes, or nullopt.
std::optional<int> signal_number(std::string_view name);

}  // namespace modbox::helper
