#pragma once
// The background processes API behind a sandbox URL (`/modbox/api/processes`): the requests, their
// validation into FastAPI-shaped 422s, and the JSON that the agent answers and the CLI reads.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/system.h"

namespace modbox {

/// `POST /modbox/api/processes`: `command` run by the sandbox's shell, in `cwd`, with the sandbox's
/// environment plus `env`.
struct ProcessStartRequest {
  std::string command;
  std::string cwd = "/";
  std::map<std::string, std::string> env;
};

/// `POST /modbox/api/processes/{id}/stdin`: bytes for its stdin (text, or base64 for any bytes), and
/// whether to close it after them.
struct ProcessStdinRequest {
  std::string data;
  bool close = false;
};

/// `POST /modbox/api/processes/{id}/signal`: {"signal": "SIGTERM"} ("TERM", "term", 15 and "15" too).
struct ProcessSignalRequest {
  int signal = 0;
};

enum class ProcessState { running, exited };
std::string_view to_string(ProcessState state);

struct BackgroundProcess {
  std::uint32_t id = 0;
  std::string command;  // its first 4096 bytes
  std::string cwd;
  ProcessState state = ProcessState::running;
  std::optional<int> exit_code;      // once exited: 128+n when signal n ended it
  std::optional<std::string> signal;  // once exited by a signal: its name
  TimePoint started_at{};
  std::optional<TimePoint> ended_at;
  bool stdin_open = false;
  std::uint64_t stdout_bytes = 0;  // written so far
  std::uint64_t stderr_bytes = 0;
};

/// What `GET .../output` answers without follow, as JSON: the process, what is kept of its output
/// (invalid UTF-8 replaced; the event stream carries any bytes), and whether older bytes are gone.
struct ProcessOutputAnswer {
  BackgroundProcess process;
  std::string stdout_text;
  std::string stderr_text;
  bool truncated = false;
};

Result<ProcessStartRequest> parse_process_start_request(std::string_view body);
Result<ProcessStdinRequest> parse_process_stdin_request(std::string_view body);
Result<ProcessSignalRequest> parse_process_signal_request(std::string_view body);
/// A signal as a person names it: "SIGTERM", "TERM", "term", "15", "SIGRTMIN+2"; nullopt when it is none.
std::optional<int> parse_signal(std::string_view text);

std::string process_start_request_to_json(const ProcessStartRequest& request);
std::string process_signal_request_to_json(const std::string& signal);
std::string background_process_to_json(const BackgroundProcess& process);
/// The process with `truncated` beside its fields: what ends a read of its output (its `exit` or
/// `end` event): whether bytes of it were gone before this read got to them.
struct ProcessReadEnd {
  BackgroundProcess process;
  bool truncated = false;
};
std::string process_read_end_to_json(const ProcessReadEnd& end);
Result<ProcessReadEnd> process_read_end_from_json(std::string_view text);
std::string background_processes_to_json(const std::vector<BackgroundProcess>& processes);
std::string process_output_answer_to_json(const ProcessOutputAnswer& answer);
/// The answers of a write to stdin and of a signal: what was done.
std::string process_stdin_answer_to_json(std::uint32_t id, std::size_t written, bool closed);
std::string process_signal_answer_to_json(std::uint32_t id, const std::string& signal);
Result<BackgroundProcess> background_process_from_json(std::string_view text);
Result<std::vector<BackgroundProcess>> background_processes_from_json(std::string_view text);

}  // namespace modbox
