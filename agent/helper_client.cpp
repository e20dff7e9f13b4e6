#include "agent/helper_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/helper_conversation.h"
#include "agent/helper_process_client.h"
#include "common/system.h"

namespace modbox {

namespace {

using Clock = HelperClock;

Result<void> set_blocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
    return std::unexpected(system_error("fcntl", "relay socket", errno));
  return {};
}

void append_capped(std::string& target, const std::string& data, std::size_t cap, bool& truncated) {
  std::size_t room = target.size() < cap ? cap - target.size() : 0;
  if (data.size() > room) truncated = true;
  target.append(data, 0, std::min(room, data.size()));
}

/// Reads Output frames until Exit or Failure.
/// How often an exec whose caller may leave asks whether it is still wanted.
constexpr std::chrono::milliseconds caller_check_interval{250};

/// An exec's answer. Returning before its Exit frame closes the conversation, which makes the helper
/// kill the command: so when `still_wanted` says the caller left.
Result<ExecResult> collect_result(Conversation& conversation, const std::function<bool()>& still_wanted = {}) {
  ExecResult result;
  for (;;) {
    Result<helper::Message> message = helper_unavailable("did not answer");
    if (still_wanted) {
      auto next = conversation.receive_until(Clock::now() + caller_check_interval);
      if (!next) return std::unexpected(next.error());
      if (!*next) {
        if (!still_wanted()) return fail(ErrorKind::bad_request, "the caller hung up; the command was killed");
        continue;
      }
      message = std::move(**next);
    } else {
      message = conversation.receive();
    }
    if (!message) return std::unexpected(message.error());
    if (auto* output = std::get_if<helper::Output>(&*message)) {
      bool is_stdout = output->stream == helper::Stream::stdout_stream;
      append_capped(is_stdout ? result.stdout_text : result.stderr_text, output->data, limits::exec_output_cap_bytes,
                    result.truncated);
    } else if (auto* exit = std::get_if<helper::Exit>(&*message)) {
      ExecResult ended = helper_calls::exec_result_of(*exit);
      ended.stdout_text = std::move(result.stdout_text);
      ended.stderr_text = std::move(result.stderr_text);
      ended.truncated = ended.truncated || result.truncated;
      return ended;
    } else if (auto* failure = std::get_if<helper::Failure>(&*message)) {
      return helper_unavailable("could not run the command: " + sanitize(failure->message));
    } else {
      return helper_unavailable("sent a frame that does not belong in an answer");
    }
  }
}

/// A Failure from a file operation, as the error the caller answers with.
std::unexpected<Error> file_failure(const helper::Failure& failure) {
  std::string message = sanitize(failure.message);
  switch (failure.kind) {
    case helper::FailureKind::not_found:
      return fail(ErrorKind::not_found, message);
    case helper::FailureKind::refused:
      return fail(ErrorKind::bad_request, message);
    case helper::FailureKind::no_space:
      return fail(ErrorKind::insufficient_storage, "the sandbox's disk is full (" + message +
                                                       "); nothing was kept: free space in the sandbox and try again");
    case helper::FailureKind::error:
      break;
  }
  return fail(ErrorKind::conflict, "the sandbox's filesystem refused: " + message);
}

/// Opens a conversation for a file request and sends it; every later step has file_idle_timeout.
Result<Conversation> start_file_request(const std::filesystem::path& socket, const helper::Message& request) {
  auto conversation = Conversation::open(socket, Clock::now() + helper_answer_grace);
  if (!conversation) return std::unexpected(conversation.error());
  if (auto hello = conversation->receive_hello(); !hello) return std::unexpected(hello.error());
  conversation->set_deadline(Clock::now() + file_idle_timeout);
  if (auto sent = conversation->send(helper::encode(request)); !sent) return std::unexpected(sent.error());
  return conversation;
}

/// The next message of a file conversation, with a fresh idle deadline.
Result<helper::Message> receive_file_message(Conversation& conversation) {
  conversation.set_deadline(Clock::now() + file_idle_timeout);
  return conversation.receive();
}

class HelperUpload final : public SandboxHelpers::Upload {
 public:
  explicit HelperUpload(Conversation conversation) : conversation_(std::move(conversation)) {}

  /// The HTTP server hands the body over in small pieces (4 KiB): they are gathered into full
  /// Data frames, so a 50 MiB upload is ~200 frames to the helper instead of ~13 000.
  Result<void> write(std::string_view bytes) override {
    while (!bytes.empty()) {
      auto piece = bytes.substr(0, helper::data_chunk_max - pending_.bytes.size());
      pending_.bytes.append(piece);
      bytes.remove_prefix(piece.size());
      if (pending_.bytes.size() == helper::data_chunk_max)
        if (auto sent = flush(); !sent) return sent;
    }
    // A slow client must not leave the helper's worker without data until it gives up.
    if (!pending_.bytes.empty() && Clock::now() - last_flush_ > partial_flush_after)
      if (auto sent = flush(); !sent) return sent;
    return {};
  }

  Result<helper::FileInfo> finish() override {
    if (auto sent = flush(); !sent) return std::unexpected(sent.error());
    conversation_.set_deadline(Clock::now() + file_idle_timeout);
    if (auto sent = conversation_.send(helper::encode(helper::End{})); !sent) return std::unexpected(sent.error());
    auto message = receive_file_message(conversation_);
    if (!message) return std::unexpected(message.error());
    if (auto* info = std::get_if<helper::FileInfo>(&*message)) return *info;
    if (auto* failure = std::get_if<helper::Failure>(&*message)) return file_failure(*failure);
    return helper_unavailable("answered an upload with an unexpected frame");
  }

 private:
  Result<void> flush() {
    last_flush_ = Clock::now();
    if (pending_.bytes.empty()) return {};
    conversation_.set_deadline(Clock::now() + file_idle_timeout);
    auto sent = conversation_.send(helper::encode(pending_));
    pending_.bytes.clear();
    if (sent) return sent;
    // The helper refused the upload (no permission, no space) and closed: its reason may be
    // waiting on the socket, and says more than the broken pipe.
    conversation_.set_deadline(Clock::now() + std::chrono::milliseconds(200));
    if (auto message = conversation_.receive(); message)
      if (auto* failure = std::get_if<helper::Failure>(&*message)) return file_failure(*failure);
    return sent;
  }

  static constexpr auto partial_flush_after = std::chrono::seconds(5);
  Conversation conversation_;
  helper::Data pending_;
  Clock::time_point last_flush_ = Clock::now();
};

class HelperDownload final : public SandboxHelpers::Download {
 public:
  HelperDownload(Conversation conversation, helper::FileInfo info)
      : conversation_(std::move(conversation)),
        info_(std::move(info)),
        // A helper that trickles (code in the sandbox can answer in its place) must not hold the
        // agent's thread for ever: the whole file has to come at 64 KiB/s at least, plus a minute.
        deadline_(Clock::now() + std::chrono::seconds(60) +
                  std::chrono::seconds(std::min<std::uint64_t>(info_.size / (64 << 10), 24 * 3600))) {}

  const helper::FileInfo& info() const override { return info_; }

  Result<std::optional<std::string>> next() override {
    if (received_ == info_.size && ended_) return std::optional<std::string>();
    if (Clock::now() > deadline_) return helper_unavailable("is sending the file too slowly");
    auto message = receive_file_message(conversation_);
    if (!message) return std::unexpected(message.error());
    if (auto* data = std::get_if<helper::Data>(&*message)) {
      if (data->bytes.empty()) return helper_unavailable("sent an empty data frame");
      if (data->bytes.size() > info_.size - received_) return helper_unavailable("sent more than the file's size");
      received_ += data->bytes.size();
      return std::optional<std::string>(std::move(data->bytes));
    }
    if (std::holds_alternative<helper::End>(*message)) {
      ended_ = true;
      if (received_ != info_.size)
        return fail(ErrorKind::conflict, info_.name + " shrank while it was being downloaded");
      return std::optional<std::string>();
    }
    return helper_unavailable("sent an unexpected frame in a download");
  }

 private:
  Conversation conversation_;
  helper::FileInfo info_;
  Clock::time_point deadline_;
  std::uint64_t received_ = 0;
  bool ended_ = false;
};

class HelperClient final : public SandboxHelpers {
 public:
  Result<helper::Hello> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout) override {
    auto conversation = Conversation::open(socket, Clock::now() + timeout);
    if (!conversation) return std::unexpected(conversation.error());
    return conversation->receive_hello();
  }

  using SandboxHelpers::exec;
  Result<ExecResult> exec(const std::filesystem::path& socket, const ExecRequest& request,
                          const std::function<bool()>& still_wanted) override {
    auto started = Clock::now();
    // A live helper greets at once; a stuck one should not hold the caller for the whole timeout.
    auto conversation = Conversation::open(socket, started + helper_answer_grace);
    if (!conversation) return std::unexpected(conversation.error());
    if (auto hello = conversation->receive_hello(); !hello) return std::unexpected(hello.error());
    conversation->set_deadline(started + std::chrono::milliseconds(request.timeout_ms) + helper_answer_grace);
    helper::ExecRequest frame{request.command, request.cwd, static_cast<std::uint32_t>(request.timeout_ms),
                              static_cast<std::uint32_t>(limits::exec_output_cap_bytes)};
    if (auto sent = conversation->send(helper::encode(frame)); !sent) return std::unexpected(sent.error());
    auto result = collect_result(*conversation, still_wanted);
    if (!result) return result;
    result->duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    return result;
  }

  Result<std::unique_ptr<Upload>> upload(const std::filesystem::path& socket,
                                         const helper::UploadRequest& request) override {
    auto conversation = start_file_request(socket, request);
    if (!conversation) return std::unexpected(conversation.error());
    return std::make_unique<HelperUpload>(std::move(*conversation));
  }

  Result<std::unique_ptr<Download>> download(const std::filesystem::path& socket,
                                             const helper::DownloadRequest& request) override {
    auto conversation = start_file_request(socket, request);
    if (!conversation) return std::unexpected(conversation.error());
    auto message = receive_file_message(*conversation);
    if (!message) return std::unexpected(message.error());
    if (auto* failure = std::get_if<helper::Failure>(&*message)) return file_failure(*failure);
    auto* info = std::get_if<helper::FileInfo>(&*message);
    if (info == nullptr || info->name != request.name)
      return helper_unavailable("answered a download with an unexpected frame");
    return std::make_unique<HelperDownload>(std::move(*conversation), *info);
  }

  Result<std::vector<helper::FileInfo>> list(const std::filesystem::path& socket,
                                             const helper::ListRequest& request) override {
    auto conversation = start_file_request(socket, request);
    if (!conversation) return std::unexpected(conversation.error());
    std::vector<helper::FileInfo> files;
    for (;;) {
      auto message = receive_file_message(*conversation);
      if (!message) return std::unexpected(message.error());
      if (auto* info = std::get_if<helper::FileInfo>(&*message)) {
        if (files.size() >= request.limit) return helper_unavailable("listed more files than asked for");
        files.push_back(std::move(*info));
      } else if (std::holds_alternative<helper::End>(*message)) {
        return files;
      } else if (auto* failure = std::get_if<helper::Failure>(&*message)) {
        return file_failure(*failure);
      } else {
        return helper_unavailable("sent an unexpected frame in a listing");
      }
    }
  }

  Result<void> remove(const std::filesystem::path& socket, const helper::RemoveRequest& request) override {
    auto conversation = start_file_request(socket, request);
    if (!conversation) return std::unexpected(conversation.error());
    auto message = receive_file_message(*conversation);
    if (!message) return std::unexpected(message.error());
    if (std::holds_alternative<helper::End>(*message)) return {};
    if (auto* failure = std::get_if<helper::Failure>(&*message)) return file_failure(*failure);
    return helper_unavailable("answered a remove with an unexpected frame");
  }

  Result<UniqueFd> open_relay(const std::filesystem::path& socket, std::uint16_t port) override {
    if (port == 0) return fail(ErrorKind::bad_request, "port 0 cannot be relayed to");
    auto handed = hand_over(socket, helper::RelayOpen{port}, relay_open_timeout,
                            {helper::relay_protocol_version, ErrorKind::bad_gateway,
                             "this sandbox's helper predates relays (it was started by an older modboxd); destroy "
                             "and provision it again to reach its web ports"},
                            [](const helper::Failure&) { return ErrorKind::bad_gateway; });
    if (!handed) return std::unexpected(handed.error());
    if (!std::holds_alternative<helper::RelayReady>(handed->answer))
      return helper_unavailable("answered a relay request with an unexpected frame");
    return std::move(handed->connection);
  }

  Result<std::unique_ptr<ExecStream>> exec_stream(const std::filesystem::path& socket,
                                                  const ExecRequest& request) override {
    return helper_calls::exec_stream(socket, request);
  }
  Result<helper::ProcessInfo> start_process(const std::filesystem::path& socket,
                                            const helper::ProcessStart& request) override {
    return helper_calls::start_process(socket, request);
  }
  Result<void> set_environment(const std::filesystem::path& socket, const helper::EnvironmentSet& request) override {
    return helper_calls::set_environment(socket, request);
  }
  Result<std::vector<helper::ProcessInfo>> list_processes(const std::filesystem::path& socket) override {
    return helper_calls::list_processes(socket);
  }
  Result<std::unique_ptr<ProcessOutput>> read_process(const std::filesystem::path& socket,
                                                      const helper::ProcessRead& request) override {
    return helper_calls::read_process(socket, request);
  }
  Result<void> write_process_stdin(const std::filesystem::path& socket, const helper::ProcessStdin& request) override {
    return helper_calls::write_process_stdin(socket, request);
  }
  Result<void> signal_process(const std::filesystem::path& socket, const helper::ProcessSignal& request) override {
    return helper_calls::signal_process(socket, request);
  }

  Result<std::unique_ptr<FileWatch>> open_watch(const std::filesystem::path& socket,
                                                const helper::WatchOpen& request) override {
    if (request.path.empty() || request.path.front() != '/' || request.path.size() > helper::path_max ||
        request.path.find('\0') != std::string::npos)
      return fail(ErrorKind::bad_request, "the path to watch must be absolute, at most 4096 bytes, without NUL");
    auto handed = hand_over(socket, request, helper_answer_grace,
                            {helper::watch_protocol_version, ErrorKind::conflict,
                             "this sandbox was started by an older modboxd; provision it again to watch its files"},
                            [](const helper::Failure& failure) {
                              switch (failure.kind) {
                                case helper::FailureKind::not_found:
                                  return ErrorKind::not_found;
                                case helper::FailureKind::refused:
                                  return ErrorKind::bad_request;
                                case helper::FailureKind::error:
                                case helper::FailureKind::no_space:
                                  break;
                              }
                              return ErrorKind::conflict;
                            });
    if (!handed) return std::unexpected(handed.error());
    if (!std::holds_alternative<helper::WatchReady>(handed->answer))
      return helper_unavailable("answered a watch request with an unexpected frame");
    return std::make_unique<Watch>(std::move(handed->connection));
  }

  Result<Session> open_session(const std::filesystem::path& socket, const helper::SessionOpen& request) override {
    if (auto valid = check_session_request(request); !valid) return std::unexpected(valid.error());
    auto handed =
        hand_over(socket, request, session_open_timeout,
                  {helper::session_protocol_version, ErrorKind::conflict,
                   "this sandbox was started by an older modboxd; provision it again for terminals and "
                   "interactive commands"},
                  [](const helper::Failure& failure) {
                    return failure.kind == helper::FailureKind::refused ? ErrorKind::conflict : ErrorKind::unavailable;
                  });
    if (!handed) return std::unexpected(handed.error());
    auto* ready = std::get_if<helper::SessionReady>(&handed->answer);
    if (ready == nullptr) return helper_unavailable("answered a session request with an unexpected frame");
    return Session{std::move(handed->connection), ready->pid};
  }

 private:
  /// The helper version a request needs, and what an older helper's sandbox is told.
  struct VersionNeeded {
    std::uint32_t version;
    ErrorKind kind;
    const char* sentence;
  };
  struct HandedOver {
    UniqueFd connection;  // blocking; every byte after the answer is still on it
    helper::Message answer;
  };
  /// The conversation of a request after whose answer the connection stops carrying frames (a
  /// relay's stream, a session's): sends `request`, reads the answer byte-exactly, and hands the
  /// connection over. A Failure becomes the error `failure_kind` picks, with the helper's sentence.
  template <class FailureKind>
  static Result<HandedOver> hand_over(const std::filesystem::path& socket, const helper::Message& request,
                                      std::chrono::milliseconds timeout, const VersionNeeded& needed,
                                      FailureKind failure_kind) {
    auto started = Clock::now();
    auto conversation = Conversation::open(socket, started + helper_answer_grace);
    if (!conversation) return std::unexpected(conversation.error());
    // Whatever follows the answer belongs to the caller: it must stay on the socket.
    conversation->read_frames_exactly();
    auto hello = conversation->receive_hello();
    if (!hello) return std::unexpected(hello.error());
    if (hello->version < needed.version) return fail(needed.kind, needed.sentence);
    conversation->set_deadline(started + timeout);
    auto sent = conversation->send(helper::encode(request));
    auto message = conversation->receive();
    if (!message) return std::unexpected(sent ? message.error() : sent.error());
    // A helper at its limits refuses before it reads the request; its reason beats the broken pipe.
    if (auto* failure = std::get_if<helper::Failure>(&*message))
      return fail(failure_kind(*failure), sanitize(failure->message));
    if (!sent) return std::unexpected(sent.error());
    UniqueFd fd = std::move(*conversation).release();
    if (auto blocking = set_blocking(fd.get()); !blocking) return std::unexpected(blocking.error());
    return HandedOver{std::move(fd), std::move(*message)};
  }

  /// A watch's connection after WatchReady: WatchEvent frames until either side closes.
  class Watch : public FileWatch {
   public:
    explicit Watch(UniqueFd connection) : connection_(std::move(connection)) {}
    Result<std::optional<helper::WatchEvent>> next(std::chrono::milliseconds wait) override {
      auto deadline = Clock::now() + wait;
      for (;;) {
        auto message = decoder_.next();
        if (!message) return helper_unavailable("broke the watch protocol: " + message.error().message);
        if (*message) {
          auto* event = std::get_if<helper::WatchEvent>(&**message);
          if (event == nullptr) return helper_unavailable("sent a frame that does not belong in a watch");
          // A name is the sandbox's to choose: control characters go, UTF-8 stays.
          for (char& c : event->name)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
          return std::optional(std::move(*event));
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd entry{connection_.get(), POLLIN, 0};
        int ready = ::poll(&entry, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return std::optional<helper::WatchEvent>();
        char buffer[16 << 10];
        ssize_t got = ::recv(connection_.get(), buffer, sizeof buffer, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return helper_unavailable("ended the watch (was the sandbox stopped?)");
        decoder_.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
      }
    }

   private:
    UniqueFd connection_;
    helper::FrameDecoder decoder_;
  };

  /// What the helper's decoder would refuse, refused here with a sentence instead.
  static Result<void> check_session_request(const helper::SessionOpen& request) {
    if (request.tty && !helper::is_window_size(request.cols, request.rows))
      return fail(ErrorKind::bad_request,
                  "a terminal's columns and rows must be 1 to " + std::to_string(helper::window_size_max));
    if (request.command.size() > helper::command_max || request.command.find('\0') != std::string::npos)
      return fail(ErrorKind::bad_request, "the command must be at most 1 MiB, without NUL bytes");
    if (!request.cwd.empty() && (request.cwd.front() != '/' || request.cwd.size() > helper::path_max ||
                                 request.cwd.find('\0') != std::string::npos))
      return fail(ErrorKind::bad_request, "the working directory must be an absolute path");
    if (request.env.size() > helper::session_env_max)
      return fail(ErrorKind::bad_request,
                  "at most " + std::to_string(helper::session_env_max) + " environment variables can be given");
    std::size_t bytes = 0;
    for (const auto& entry : request.env) {
      if (!helper::is_environment_entry(entry))
        return fail(ErrorKind::bad_request, "environment variables are KEY=VALUE, with a name and no NUL bytes");
      bytes += 4 + entry.size();
    }
    if (bytes > helper::session_env_bytes_max)
      return fail(ErrorKind::bad_request, "the environment variables are over " +
                                              std::to_string(helper::session_env_bytes_max >> 10) + " KiB together");
    return {};
  }
};

}  // namespace

std::unique_ptr<SandboxHelpers> make_helper_client() {
  return std::make_unique<HelperClient>();
}

}  // namespace modbox
