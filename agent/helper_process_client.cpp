#include "agent/helper_process_client.h"

#include <limits>

#include "agent/helper_conversation.h"

namespace modbox::helper_calls {

namespace {

using Clock = HelperClock;

/// A Failure about a background process, as the error the caller answers with.
std::unexpected<Error> process_failure(const helper::Failure& failure) {
  std::string message = sanitize(failure.message);
  switch (failure.kind) {
    case helper::FailureKind::not_found:
      return fail(ErrorKind::not_found, message);
    case helper::FailureKind::refused:
      return fail(ErrorKind::conflict, message);
    case helper::FailureKind::no_space:
      return fail(ErrorKind::insufficient_storage, "the sandbox's disk is full: " + message);
    case helper::FailureKind::error:
      break;
  }
  return helper_unavailable("could not do it: " + message);
}

/// Opens a conversation with a helper that knows background processes and sends `request`.
Result<Conversation> send_process_request(const std::filesystem::path& socket, const helper::Message& request) {
  auto conversation = Conversation::open(socket, Clock::now() + helper_answer_grace);
  if (!conversation) return std::unexpected(conversation.error());
  auto hello = conversation->receive_hello();
  if (!hello) return std::unexpected(hello.error());
  if (hello->version < helper::processes_protocol_version)
    return fail(ErrorKind::conflict,
                "this sandbox's helper has no background processes: it was started by an older modboxd; "
                "provision the sandbox again to use them");
  if (auto sent = conversation->send(helper::encode(request)); !sent) {
    // A helper at its limits refuses before it reads the request; its reason beats the broken pipe.
    if (auto answer = conversation->receive(); answer)
      if (auto* failure = std::get_if<helper::Failure>(&*answer)) return process_failure(*failure);
    return std::unexpected(sent.error());
  }
  return conversation;
}

/// The answer End (or the Failure) of a request that is answered with End.
Result<void> expect_end(Conversation& conversation, const char* what) {
  auto message = conversation.receive();
  if (!message) return std::unexpected(message.error());
  if (std::holds_alternative<helper::End>(*message)) return {};
  if (auto* failure = std::get_if<helper::Failure>(&*message)) return process_failure(*failure);
  return helper_unavailable(std::string("answered ") + what + " with an unexpected frame");
}

class HelperExecStream final : public SandboxHelpers::ExecStream {
 public:
  HelperExecStream(Conversation conversation, Clock::time_point started)
      : conversation_(std::move(conversation)), started_(started) {}

  Result<Step> next(std::chrono::milliseconds wait) override {
    if (ended_) return fail(ErrorKind::internal, "the command's stream has ended already");
    auto message = conversation_.receive_until(Clock::now() + wait);
    if (!message) return std::unexpected(message.error());
    if (!*message) return Step{};
    if (auto* output = std::get_if<helper::Output>(&**message)) return Step{std::move(*output), std::nullopt};
    if (auto* exit = std::get_if<helper::Exit>(&**message)) {
      ended_ = true;
      ExecResult result = exec_result_of(*exit);
      result.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
      return Step{std::nullopt, std::move(result)};
    }
    if (auto* failure = std::get_if<helper::Failure>(&**message))
      return helper_unavailable("could not run the command: " + sanitize(failure->message));
    return helper_unavailable("sent a frame that does not belong in an answer");
  }

 private:
  Conversation conversation_;
  Clock::time_point started_;
  bool ended_ = false;
};

class HelperProcessOutput final : public SandboxHelpers::ProcessOutput {
 public:
  HelperProcessOutput(Conversation conversation, helper::ProcessInfo info, bool follow)
      : conversation_(std::move(conversation)), info_(std::move(info)), follow_(follow) {}

  const helper::ProcessInfo& info() const override { return info_; }

  Result<Step> next(std::chrono::milliseconds wait) override {
    if (ended_) return fail(ErrorKind::internal, "the read of the process's output has ended already");
    // Following, the process decides how long the read lasts (the caller ends it by going away);
    // otherwise what is kept must keep coming.
    conversation_.set_deadline(follow_ ? Clock::time_point::max() : Clock::now() + wait + file_idle_timeout);
    auto message = conversation_.receive_until(Clock::now() + wait);
    if (!message) return std::unexpected(message.error());
    if (!*message) return Step{};
    if (auto* output = std::get_if<helper::Output>(&**message)) {
      // Without follow the helper sends what it keeps, no more: a helper that goes on is not one.
      received_ += output->data.size();
      if (!follow_ && received_ > 2 * helper::process_output_kept)
        return helper_unavailable("sent more of a process's output than it keeps");
      return Step{std::move(*output), std::nullopt};
    }
    if (auto* info = std::get_if<helper::ProcessInfo>(&**message)) {
      if (info->id != info_.id) return helper_unavailable("ended a read with another process's state");
      ended_ = true;
      return Step{std::nullopt, std::move(*info)};
    }
    if (auto* failure = std::get_if<helper::Failure>(&**message)) return process_failure(*failure);
    return helper_unavailable("sent an unexpected frame in a process's output");
  }

 private:
  Conversation conversation_;
  helper::ProcessInfo info_;
  bool follow_;
  std::uint64_t received_ = 0;
  bool ended_ = false;
};

}  // namespace

ExecResult exec_result_of(const helper::Exit& exit) {
  ExecResult result;
  result.exit_code = exit.exit_code;
  result.killed = exit.killed;
  if (!exit.signal.empty()) result.signal = exit.signal;
  result.truncated = exit.truncated;
  result.shell = sanitize(exit.shell);
  return result;
}

Result<std::unique_ptr<SandboxHelpers::ExecStream>> exec_stream(const std::filesystem::path& socket,
                                                                const ExecRequest& request) {
  auto started = Clock::now();
  auto conversation = Conversation::open(socket, started + helper_answer_grace);
  if (!conversation) return std::unexpected(conversation.error());
  if (auto hello = conversation->receive_hello(); !hello) return std::unexpected(hello.error());
  conversation->set_deadline(started + std::chrono::milliseconds(request.timeout_ms) + helper_answer_grace);
  helper::ExecRequest frame{request.command, request.cwd, static_cast<std::uint32_t>(request.timeout_ms),
                            std::numeric_limits<std::uint32_t>::max()};
  if (auto sent = conversation->send(helper::encode(frame)); !sent) return std::unexpected(sent.error());
  return std::make_unique<HelperExecStream>(std::move(*conversation), started);
}

Result<helper::ProcessInfo> start_process(const std::filesystem::path& socket, const helper::ProcessStart& request) {
  auto conversation = send_process_request(socket, request);
  if (!conversation) return std::unexpected(conversation.error());
  auto message = conversation->receive();
  if (!message) return std::unexpected(message.error());
  if (auto* info = std::get_if<helper::ProcessInfo>(&*message)) return std::move(*info);
  if (auto* failure = std::get_if<helper::Failure>(&*message)) return process_failure(*failure);
  return helper_unavailable("answered a process start with an unexpected frame");
}

Result<std::vector<helper::ProcessInfo>> list_processes(const std::filesystem::path& socket) {
  auto conversation = send_process_request(socket, helper::ProcessList{});
  if (!conversation) return std::unexpected(conversation.error());
  std::vector<helper::ProcessInfo> processes;
  for (;;) {
    auto message = conversation->receive();
    if (!message) return std::unexpected(message.error());
    if (std::holds_alternative<helper::End>(*message)) return processes;
    auto* info = std::get_if<helper::ProcessInfo>(&*message);
    if (info == nullptr) return helper_unavailable("sent an unexpected frame in a process listing");
    if (processes.size() >= helper::processes_listed_max)
      return helper_unavailable("listed more processes than its table holds");
    processes.push_back(std::move(*info));
  }
}

Result<std::unique_ptr<SandboxHelpers::ProcessOutput>> read_process(const std::filesystem::path& socket,
                                                                    const helper::ProcessRead& request) {
  auto conversation = send_process_request(socket, request);
  if (!conversation) return std::unexpected(conversation.error());
  auto message = conversation->receive();
  if (!message) return std::unexpected(message.error());
  if (auto* failure = std::get_if<helper::Failure>(&*message)) return process_failure(*failure);
  auto* info = std::get_if<helper::ProcessInfo>(&*message);
  if (info == nullptr || info->id != request.id)
    return helper_unavailable("answered a read of a process's output with an unexpected frame");
  return std::make_unique<HelperProcessOutput>(std::move(*conversation), std::move(*info), request.follow);
}

Result<void> write_process_stdin(const std::filesystem::path& socket, const helper::ProcessStdin& request) {
  auto conversation = send_process_request(socket, request);
  if (!conversation) return std::unexpected(conversation.error());
  return expect_end(*conversation, "a write to a process's stdin");
}

Result<void> signal_process(const std::filesystem::path& socket, const helper::ProcessSignal& request) {
  auto conversation = send_process_request(socket, request);
  if (!conversation) return std::unexpected(conversation.error());
  return expect_end(*conversation, "a signal");
}

}  // namespace modbox::helper_calls
