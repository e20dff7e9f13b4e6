#include "common/helper_protocol.h"

#include <algorithm>
#include <array>

namespace modbox::helper {

namespace {

/// Appends big-endian integers and length-prefixed strings.
class Writer {
 public:
  Writer() : bytes_(header_size, '\0') {}
  void u8(std::uint8_t value) { bytes_.push_back(static_cast<char>(value)); }
  void u32(std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes_.push_back(static_cast<char>((value >> shift) & 0xff));
  }
  void u64(std::uint64_t value) {
    u32(static_cast<std::uint32_t>(value >> 32));
    u32(static_cast<std::uint32_t>(value & 0xffffffffu));
  }
  void string(std::string_view value) {
    bytes_.reserve(bytes_.size() + 4 + value.size());
    u32(static_cast<std::uint32_t>(value.size()));
    bytes_.append(value);
  }
  std::string frame(FrameType type) && {
    // The header was reserved up front: the payload is never copied a second time.
    std::uint32_t size = static_cast<std::uint32_t>(bytes_.size() - header_size);
    bytes_[0] = static_cast<char>(type);
    for (std::size_t i = 0; i < 4; ++i) bytes_[1 + i] = static_cast<char>((size >> (24 - 8 * i)) & 0xff);
    return std::move(bytes_);
  }

 private:
  std::string bytes_;
};

/// Reads what Writer writes, refusing to run past the payload or past a field's limit.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  std::optional<std::uint8_t> u8() {
    if (bytes_.empty()) return std::nullopt;
    auto value = static_cast<std::uint8_t>(bytes_.front());
    bytes_.remove_prefix(1);
    return value;
  }
  std::optional<std::uint32_t> u32() {
    if (bytes_.size() < 4) return std::nullopt;
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<std::uint8_t>(bytes_[static_cast<std::size_t>(i)]);
    bytes_.remove_prefix(4);
    return value;
  }
  std::optional<std::uint64_t> u64() {
    auto high = u32();
    auto low = u32();
    if (!high || !low) return std::nullopt;
    return (std::uint64_t{*high} << 32) | *low;
  }
  std::optional<std::string> string(std::size_t max) {
    auto size = u32();
    if (!size || *size > max || *size > bytes_.size()) return std::nullopt;
    std::string value(bytes_.substr(0, *size));
    bytes_.remove_prefix(*size);
    return value;
  }
  bool at_end() const { return bytes_.empty(); }

 private:
  std::string_view bytes_;
};

std::unexpected<Error> malformed(std::string_view what) {
  return fail(ErrorKind::bad_request, "malformed " + std::string(what) + " frame");
}

bool has_nul(std::string_view text) {
  return text.find('\0') != std::string_view::npos;
}

Result<Message> decode_hello(Reader reader) {
  auto magic = reader.string(hello_magic.size());
  auto version = reader.u32();
  auto pid = reader.u32();
  auto shell = reader.string(path_max);
  if (!magic || *magic != hello_magic || !version || !pid || !shell || !reader.at_end()) return malformed("hello");
  return Hello{*version, *pid, *shell};
}

Result<Message> decode_exec(Reader reader) {
  auto command = reader.string(command_max);
  auto cwd = reader.string(path_max);
  auto timeout = reader.u32();
  auto cap = reader.u32();
  if (!command || !cwd || !timeout || !cap || !reader.at_end()) return malformed("exec");
  if (has_nul(*command) || cwd->empty() || cwd->front() != '/' || has_nul(*cwd) || *timeout == 0)
    return malformed("exec");
  return ExecRequest{*command, *cwd, *timeout, *cap};
}

Result<Message> decode_output(Reader reader) {
  auto stream = reader.u8();
  auto data = reader.string(output_chunk_max);
  if (!stream || (*stream != 1 && *stream != 2) || !data || !reader.at_end()) return malformed("output");
  return Output{static_cast<Stream>(*stream), *data};
}

Result<Message> decode_exit(Reader reader) {
  auto code = reader.u32();
  auto signal = reader.string(32);
  auto killed = reader.u8();
  auto truncated = reader.u8();
  auto shell = reader.string(path_max);
  if (!code || *code > 255 || !signal || !killed || *killed > 1 || !truncated || *truncated > 1 || !shell ||
      !reader.at_end())
    return malformed("exit");
  if (!signal->empty() && !signal_number(*signal)) return malformed("exit");
  return Exit{static_cast<std::int32_t>(*code), *signal, *killed == 1, *truncated == 1, *shell};
}

Result<Message> decode_failure(Reader reader) {
  auto message = reader.string(message_max);
  auto kind = reader.u8();
  if (!message || !kind || *kind > static_cast<std::uint8_t>(FailureKind::no_space) || !reader.at_end())
    return malformed("failure");
  return Failure{*message, static_cast<FailureKind>(*kind)};
}

bool is_directory_path(const std::optional<std::string>& path) {
  return path && !path->empty() && path->front() == '/' && !has_nul(*path);
}

/// Upload, download and remove requests: a directory and a name in it.
template <typename Request>
Result<Message> decode_named(Reader reader, std::string_view what) {
  auto directory = reader.string(path_max);
  auto name = reader.string(name_max);
  if (!is_directory_path(directory) || !name || !is_plain_file_name(*name) || !reader.at_end()) return malformed(what);
  return Request{*directory, *name};
}

Result<Message> decode_list(Reader reader) {
  auto directory = reader.string(path_max);
  auto search = reader.string(name_max);
  auto limit = reader.u32();
  if (!is_directory_path(directory) || !search || has_nul(*search) || !limit || !reader.at_end())
    return malformed("list");
  return ListRequest{*directory, *search, *limit};
}

Result<Message> decode_data(Reader reader) {
  auto bytes = reader.string(data_chunk_max);
  if (!bytes || !reader.at_end()) return malformed("data");
  return Data{std::move(*bytes)};
}

Result<Message> decode_file_info(Reader reader) {
  auto name = reader.string(name_max);
  auto size = reader.u64();
  auto modified = reader.u64();
  if (!name || !is_plain_file_name(*name) || !size || !modified || !reader.at_end()) return malformed("file info");
  return FileInfo{*name, *size, static_cast<std::int64_t>(*modified)};
}

Result<Message> decode_relay_open(Reader reader) {
  auto port = reader.u32();
  if (!port || *port == 0 || *port > 65535 || !reader.at_end()) return malformed("relay open");
  return RelayOpen{static_cast<std::uint16_t>(*port)};
}

Result<Message> decode_session_open(Reader reader) {
  auto tty = reader.u8();
  auto cols = reader.u32();
  auto rows = reader.u32();
  auto command = reader.string(command_max);
  auto cwd = reader.string(path_max);
  auto count = reader.u32();
  if (!tty || *tty > 1 || !cols || !rows || !command || has_nul(*command) || !cwd || has_nul(*cwd) || !count ||
      *count > session_env_max)
    return malformed("session open");
  if (!cwd->empty() && cwd->front() != '/') return malformed("session open");
  if (*tty == 1 && !is_window_size(*cols, *rows)) return malformed("session open");
  SessionOpen open{*tty == 1, 0, 0, std::move(*command), std::move(*cwd), {}};
  if (open.tty) {
    open.cols = static_cast<std::uint16_t>(*cols);
    open.rows = static_cast<std::uint16_t>(*rows);
  }
  std::size_t env_bytes = 0;
  for (std::uint32_t i = 0; i < *count; ++i) {
    auto entry = reader.string(session_env_bytes_max);
    if (!entry || !is_environment_entry(*entry)) return malformed("session open");
    env_bytes += 4 + entry->size();
    if (env_bytes > session_env_bytes_max) return malformed("session open");
    open.env.push_back(std::move(*entry));
  }
  if (!reader.at_end()) return malformed("session open");
  return open;
}

Result<Message> decode_session_ready(Reader reader) {
  auto pid = reader.u32();
  if (!pid || *pid == 0 || *pid > 0x3fffffff || !reader.at_end()) return malformed("session ready");
  return SessionReady{*pid};
}

Result<Message> decode_session_resize(Reader reader) {
  auto cols = reader.u32();
  auto rows = reader.u32();
  if (!cols || !rows || *cols > 0xffff || *rows > 0xffff || !reader.at_end()) return malformed("session resize");
  return SessionResize{static_cast<std::uint16_t>(*cols), static_cast<std::uint16_t>(*rows)};
}

Result<Message> decode_session_signal(Reader reader) {
  auto number = reader.u32();
  if (!number || *number > 64 || signal_name(static_cast<int>(*number)).empty() || !reader.at_end())
    return malformed("session signal");
  return SessionSignal{static_cast<int>(*number)};
}

Result<Message> decode_process_start(Reader reader) {
  auto command = reader.string(command_max);
  auto cwd = reader.string(path_max);
  auto count = reader.u32();
  if (!command || has_nul(*command) || !is_directory_path(cwd) || !count || *count > process_env_max)
    return malformed("process start");
  ProcessStart start{*command, *cwd, {}};
  for (std::uint32_t i = 0; i < *count; ++i) {
    auto entry = reader.string(process_env_entry_max);
    if (!entry || !is_environment_entry(*entry)) return malformed("process start");
    start.env.push_back(std::move(*entry));
  }
  if (!reader.at_end()) return malformed("process start");
  return start;
}

Result<Message> decode_environment_set(Reader reader) {
  auto count = reader.u32();
  if (!count || *count > process_env_max) return malformed("environment set");
  EnvironmentSet set;
  for (std::uint32_t i = 0; i < *count; ++i) {
    auto entry = reader.string(process_env_entry_max);
    if (!entry || !is_environment_entry(*entry)) return malformed("environment set");
    set.env.push_back(std::move(*entry));
  }
  if (!reader.at_end()) return malformed("environment set");
  return set;
}

Result<Message> decode_process_info(Reader reader) {
  ProcessInfo info;
  auto id = reader.u32();
  auto state = reader.u8();
  auto code = reader.u32();
  auto signal = reader.string(32);
  auto started = reader.u64();
  auto ended = reader.u64();
  auto command = reader.string(process_command_shown_max);
  auto cwd = reader.string(path_max);
  auto stdin_open = reader.u8();
  auto counts = std::array{reader.u64(), reader.u64(), reader.u64(), reader.u64()};
  bool counted = std::ranges::all_of(counts, [](const auto& count) { return count.has_value(); });
  if (!id || *id == 0 || !state || (*state != 1 && *state != 2) || !code || *code > 255 || !signal || !started ||
      !ended || !command || !cwd || !stdin_open || *stdin_open > 1 || !counted || !reader.at_end())
    return malformed("process info");
  if (!signal->empty() && !signal_number(*signal)) return malformed("process info");
  info.id = *id;
  info.state = static_cast<ProcessState>(*state);
  info.exit_code = static_cast<std::int32_t>(*code);
  info.signal = std::move(*signal);
  info.started_ms = static_cast<std::int64_t>(*started);
  info.ended_ms = static_cast<std::int64_t>(*ended);
  info.command = std::move(*command);
  info.cwd = std::move(*cwd);
  info.stdin_open = *stdin_open == 1;
  info.stdout_bytes = *counts[0];
  info.stderr_bytes = *counts[1];
  info.stdout_dropped = *counts[2];
  info.stderr_dropped = *counts[3];
  return info;
}

Result<Message> decode_watch_open(Reader reader) {
  auto path = reader.string(path_max);
  auto recursive = reader.u8();
  if (!path || path->empty() || has_nul(*path) || !recursive || *recursive > 1 || !reader.at_end())
    return malformed("watch open");
  return WatchOpen{*path, *recursive == 1};
}

Result<Message> decode_watch_event(Reader reader) {
  auto kind = reader.u8();
  auto name = reader.string(path_max);
  if (!kind || *kind < 1 || *kind > 6 || !name || has_nul(*name) || !reader.at_end()) return malformed("watch event");
  return WatchEvent{static_cast<WatchKind>(*kind), *name};
}

Result<Message> decode_process_read(Reader reader) {
  auto id = reader.u32();
  auto follow = reader.u8();
  if (!id || *id == 0 || !follow || *follow > 1 || !reader.at_end()) return malformed("process read");
  return ProcessRead{*id, *follow == 1};
}

Result<Message> decode_process_stdin(Reader reader) {
  auto id = reader.u32();
  auto close = reader.u8();
  auto data = reader.string(process_stdin_max);
  if (!id || *id == 0 || !close || *close > 1 || !data || !reader.at_end()) return malformed("process stdin");
  return ProcessStdin{*id, std::move(*data), *close == 1};
}

Result<Message> decode_process_signal(Reader reader) {
  auto id = reader.u32();
  auto signal = reader.u32();
  if (!id || *id == 0 || !signal || signal_name(static_cast<int>(*signal)).empty() || !reader.at_end())
    return malformed("process signal");
  return ProcessSignal{*id, *signal};
}

/// The payload length that a complete 5-byte header announces.
std::size_t announced_size(const unsigned char* header) {
  return (std::size_t{header[1]} << 24) | (std::size_t{header[2]} << 16) | (std::size_t{header[3]} << 8) |
         std::size_t{header[4]};
}

}  // namespace

std::size_t max_payload(FrameType type) {
  switch (type) {
    case FrameType::hello:
      return 64 + hello_magic.size() + path_max;
    case FrameType::failure:
      return 4 + message_max;
    case FrameType::exec:
      return 16 + command_max + path_max;
    case FrameType::output:
      return 5 + output_chunk_max;
    case FrameType::exit:
      return 64 + path_max;
    case FrameType::upload:
    case FrameType::download:
    case FrameType::remove:
      return 8 + path_max + name_max;
    case FrameType::list:
      return 12 + path_max + name_max;
    case FrameType::data:
      return 4 + data_chunk_max;
    case FrameType::end:
      return 0;
    case FrameType::file_info:
      return 20 + name_max;
    case FrameType::relay_open:
      return 4;
    case FrameType::relay_ready:
      return 0;
    case FrameType::session_open:
      return 17 + command_max + path_max + session_env_bytes_max;
    case FrameType::session_ready:
      return 4;
    case FrameType::session_resize:
      return 8;
    case FrameType::session_signal:
      return 4;
    case FrameType::process_start:
      // The command, and as much again for the environment (an HTTP body is 1 MiB at most).
      return 12 + path_max + 2 * command_max;
    case FrameType::process_list:
      return 0;
    case FrameType::process_info:
      return 96 + process_command_shown_max + path_max;
    case FrameType::process_read:
      return 5;
    case FrameType::process_stdin:
      return 9 + process_stdin_max;
    case FrameType::process_signal:
      return 8;
    case FrameType::environment_set:
      // Like a process's environment: an HTTP body is 1 MiB at most.
      return 4 + 2 * command_max;
    case FrameType::watch_open:
      return 5 + path_max;
    case FrameType::watch_ready:
      return 0;
    case FrameType::watch_event:
      return 5 + path_max;
  }
  return 0;
}

bool is_window_size(std::uint32_t cols, std::uint32_t rows) {
  return cols >= 1 && cols <= window_size_max && rows >= 1 && rows <= window_size_max;
}

bool is_environment_entry(std::string_view entry) {
  std::size_t equals = entry.find('=');
  return equals != std::string_view::npos && equals > 0 && !has_nul(entry);
}

bool is_plain_file_name(std::string_view name) {
  return !name.empty() && name.size() <= name_max && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && !has_nul(name);
}

std::string encode(const Message& message) {
  Writer writer;
  struct Visitor {
    Writer& w;
    FrameType operator()(const Hello& hello) {
      w.string(hello_magic);
      w.u32(hello.version);
      w.u32(hello.pid);
      w.string(hello.shell);
      return FrameType::hello;
    }
    FrameType operator()(const Failure& failure) {
      w.string(std::string_view(failure.message).substr(0, message_max));
      w.u8(static_cast<std::uint8_t>(failure.kind));
      return FrameType::failure;
    }
    FrameType operator()(const UploadRequest& upload) {
      w.string(upload.directory);
      w.string(upload.name);
      return FrameType::upload;
    }
    FrameType operator()(const DownloadRequest& download) {
      w.string(download.directory);
      w.string(download.name);
      return FrameType::download;
    }
    FrameType operator()(const ListRequest& list) {
      w.string(list.directory);
      w.string(list.search);
      w.u32(list.limit);
      return FrameType::list;
    }
    FrameType operator()(const RemoveRequest& remove) {
      w.string(remove.directory);
      w.string(remove.name);
      return FrameType::remove;
    }
    FrameType operator()(const Data& data) {
      w.string(data.bytes);
      return FrameType::data;
    }
    FrameType operator()(const End&) { return FrameType::end; }
    FrameType operator()(const FileInfo& info) {
      w.string(info.name);
      w.u64(info.size);
      w.u64(static_cast<std::uint64_t>(info.modified_ms));
      return FrameType::file_info;
    }
    FrameType operator()(const RelayOpen& relay) {
      w.u32(relay.port);
      return FrameType::relay_open;
    }
    FrameType operator()(const RelayReady&) { return FrameType::relay_ready; }
    FrameType operator()(const SessionOpen& open) {
      w.u8(open.tty ? 1 : 0);
      w.u32(open.cols);
      w.u32(open.rows);
      w.string(open.command);
      w.string(open.cwd);
      w.u32(static_cast<std::uint32_t>(open.env.size()));
      for (const auto& entry : open.env) w.string(entry);
      return FrameType::session_open;
    }
    FrameType operator()(const SessionReady& ready) {
      w.u32(ready.pid);
      return FrameType::session_ready;
    }
    FrameType operator()(const SessionResize& resize) {
      w.u32(resize.cols);
      w.u32(resize.rows);
      return FrameType::session_resize;
    }
    FrameType operator()(const SessionSignal& signal) {
      w.u32(static_cast<std::uint32_t>(signal.signal));
      return FrameType::session_signal;
    }
    FrameType operator()(const ExecRequest& exec) {
      w.string(exec.command);
      w.string(exec.cwd);
      w.u32(exec.timeout_ms);
      w.u32(exec.output_cap);
      return FrameType::exec;
    }
    FrameType operator()(const Output& output) {
      w.u8(static_cast<std::uint8_t>(output.stream));
      w.string(output.data);
      return FrameType::output;
    }
    FrameType operator()(const ProcessStart& start) {
      w.string(start.command);
      w.string(start.cwd);
      w.u32(static_cast<std::uint32_t>(start.env.size()));
      for (const auto& entry : start.env) w.string(entry);
      return FrameType::process_start;
    }
    FrameType operator()(const ProcessList&) { return FrameType::process_list; }
    FrameType operator()(const EnvironmentSet& set) {
      w.u32(static_cast<std::uint32_t>(set.env.size()));
      for (const auto& entry : set.env) w.string(entry);
      return FrameType::environment_set;
    }
    FrameType operator()(const ProcessInfo& info) {
      w.u32(info.id);
      w.u8(static_cast<std::uint8_t>(info.state));
      w.u32(static_cast<std::uint32_t>(info.exit_code));
      w.string(info.signal);
      w.u64(static_cast<std::uint64_t>(info.started_ms));
      w.u64(static_cast<std::uint64_t>(info.ended_ms));
      w.string(std::string_view(info.command).substr(0, process_command_shown_max));
      w.string(info.cwd);
      w.u8(info.stdin_open ? 1 : 0);
      for (std::uint64_t count : {info.stdout_bytes, info.stderr_bytes, info.stdout_dropped, info.stderr_dropped})
        w.u64(count);
      return FrameType::process_info;
    }
    FrameType operator()(const ProcessRead& read) {
      w.u32(read.id);
      w.u8(read.follow ? 1 : 0);
      return FrameType::process_read;
    }
    FrameType operator()(const ProcessStdin& input) {
      w.u32(input.id);
      w.u8(input.close ? 1 : 0);
      w.string(input.data);
      return FrameType::process_stdin;
    }
    FrameType operator()(const ProcessSignal& signal) {
      w.u32(signal.id);
      w.u32(signal.signal);
      return FrameType::process_signal;
    }
    FrameType operator()(const WatchOpen& open) {
      w.string(open.path);
      w.u8(open.recursive ? 1 : 0);
      return FrameType::watch_open;
    }
    FrameType operator()(const WatchReady&) { return FrameType::watch_ready; }
    FrameType operator()(const WatchEvent& event) {
      w.u8(static_cast<std::uint8_t>(event.kind));
      w.string(std::string_view(event.name).substr(0, path_max));
      return FrameType::watch_event;
    }
    FrameType operator()(const Exit& exit) {
      w.u32(static_cast<std::uint32_t>(exit.exit_code));
      w.string(exit.signal);
      w.u8(exit.killed ? 1 : 0);
      w.u8(exit.truncated ? 1 : 0);
      w.string(exit.shell);
      return FrameType::exit;
    }
  };
  FrameType type = std::visit(Visitor{writer}, message);
  return std::move(writer).frame(type);
}

Result<Message> decode(FrameType type, std::string_view payload) {
  if (payload.size() > max_payload(type)) return malformed("oversized");
  Reader reader(payload);
  switch (type) {
    case FrameType::hello:
      return decode_hello(reader);
    case FrameType::failure:
      return decode_failure(reader);
    case FrameType::exec:
      return decode_exec(reader);
    case FrameType::output:
      return decode_output(reader);
    case FrameType::exit:
      return decode_exit(reader);
    case FrameType::upload:
      return decode_named<UploadRequest>(reader, "upload");
    case FrameType::download:
      return decode_named<DownloadRequest>(reader, "download");
    case FrameType::list:
      return decode_list(reader);
    case FrameType::remove:
      return decode_named<RemoveRequest>(reader, "remove");
    case FrameType::data:
      return decode_data(reader);
    case FrameType::end:
      if (!reader.at_end()) return malformed("end");
      return End{};
    case FrameType::file_info:
      return decode_file_info(reader);
    case FrameType::relay_open:
      return decode_relay_open(reader);
    case FrameType::relay_ready:
      if (!reader.at_end()) return malformed("relay ready");
      return RelayReady{};
    case FrameType::session_open:
      return decode_session_open(reader);
    case FrameType::session_ready:
      return decode_session_ready(reader);
    case FrameType::session_resize:
      return decode_session_resize(reader);
    case FrameType::session_signal:
      return decode_session_signal(reader);
    case FrameType::process_start:
      return decode_process_start(reader);
    case FrameType::process_list:
      if (!reader.at_end()) return malformed("process list");
      return ProcessList{};
    case FrameType::process_info:
      return decode_process_info(reader);
    case FrameType::process_read:
      return decode_process_read(reader);
    case FrameType::process_stdin:
      return decode_process_stdin(reader);
    case FrameType::process_signal:
      return decode_process_signal(reader);
    case FrameType::environment_set:
      return decode_environment_set(reader);
    case FrameType::watch_open:
      return decode_watch_open(reader);
    case FrameType::watch_ready:
      if (!reader.at_end()) return malformed("watch ready");
      return WatchReady{};
    case FrameType::watch_event:
      return decode_watch_event(reader);
  }
  return fail(ErrorKind::bad_request, "unknown frame type");
}

Result<std::optional<Message>> FrameDecoder::next() {
  if (pending() < header_size) return std::nullopt;
  const auto* header = reinterpret_cast<const unsigned char*>(buffer_.data() + offset_);
  auto type = static_cast<FrameType>(header[0]);
  switch (type) {
    case FrameType::hello:
    case FrameType::failure:
    case FrameType::exec:
    case FrameType::output:
    case FrameType::exit:
    case FrameType::upload:
    case FrameType::download:
    case FrameType::list:
    case FrameType::remove:
    case FrameType::data:
    case FrameType::end:
    case FrameType::file_info:
    case FrameType::relay_open:
    case FrameType::relay_ready:
    case FrameType::session_open:
    case FrameType::session_ready:
    case FrameType::session_resize:
    case FrameType::session_signal:
    case FrameType::process_start:
    case FrameType::process_list:
    case FrameType::process_info:
    case FrameType::process_read:
    case FrameType::process_stdin:
    case FrameType::process_signal:
    case FrameType::environment_set:
    case FrameType::watch_open:
    case FrameType::watch_ready:
    case FrameType::watch_event:
      break;
    default:
      return fail(ErrorKind::bad_request, "unknown frame type " + std::to_string(header[0]));
  }
  std::size_t size = announced_size(header);
  if (size > max_payload(type))
    return fail(ErrorKind::too_large, "frame of " + std::to_string(size) + " bytes is over the limit of its type");
  if (pending() < header_size + size) return std::nullopt;
  auto message = decode(type, std::string_view(buffer_).substr(offset_ + header_size, size));
  if (!message) return std::unexpected(message.error());
  offset_ += header_size + size;
  // Drop consumed bytes once they dominate, so the buffer does not grow with the stream.
  if (offset_ > (64 << 10) && offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  return std::optional<Message>(std::move(*message));
}

std::size_t FrameDecoder::missing() const {
  if (pending() < header_size) return header_size - pending();
  std::size_t frame = header_size + announced_size(reinterpret_cast<const unsigned char*>(buffer_.data() + offset_));
  return frame > pending() ? frame - pending() : 0;
}

namespace {
constexpr std::array<std::string_view, 32> signal_names = {
    "",          "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
    "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT",   "SIGSTOP", "SIGTSTP",  "SIGTTIN", "SIGTTOU", "SIGURG",
    "SIGXCPU",   "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS"};
constexpr int realtime_min = 34;
constexpr int realtime_max = 64;
}  // namespace

std::string signal_name(int number) {
  if (number >= 1 && number < static_cast<int>(signal_names.size()))
    return std::string(signal_names[static_cast<std::size_t>(number)]);
  if (number >= realtime_min && number <= realtime_max) return "SIGRTMIN+" + std::to_string(number - realtime_min);
  return "";
}

std::optional<int> signal_number(std::string_view name) {
  if (name.empty()) return std::nullopt;
  for (int number = 1; number <= realtime_max; ++number)
    if (signal_name(number) == name) return number;
  return std::nullopt;
}

bool runs_as_root(std::string_view user_spec) {
  return user_spec.empty() || user_spec == "root" || user_spec == "0";
}

}  // namespace modbox::helper
