// The sandbox lifecycle's part of the main process (a provision's `command`, seed 004's entrypoint):
// noticing that it exited, which ends the sandbox as `exited` with its exit code, and its output
// (the log the helper keeps, common/main_log.h), which stays readable after the sandbox ends.
//
// One watcher thread serves every sandbox: every main_exit_poll it asks the backend whether the
// helper said the command exited (for Podman, a stat of the bell the helper rings in its host
// directory), and less often which instances stopped. How the command ended always comes from the
// backend (Podman's inspect), never from the sandbox's own files alone.

#include <algorithm>
#include <set>

#include "agent/log.h"
#include "agent/sandbox_service.h"
#include "common/system.h"

namespace modbox {

namespace {
using Clock = std::chrono::steady_clock;

/// A bell that rings while the container still runs is retried every poll for this long (the
/// helper exits right after ringing), then only every main_exit_slow_retry: the sandbox rang it itself.
constexpr auto main_exit_fast_retry = std::chrono::seconds(2);
constexpr auto main_exit_slow_retry = std::chrono::seconds(5);
/// How much of the log a wait's 409 quotes at most.
constexpr std::size_t exit_message_log_max = 4096;
}  // namespace

std::filesystem::path SandboxService::saved_log_path(const std::string& sandbox_id) const {
  return store_.directory() / (sandbox_id + ".log");
}

bool SandboxService::finish_exited(const std::string& id) {
  Sandbox sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    // A destroy under way removes the instance, which ends the command: not the command's doing.
    if (it == sandboxes_.end() || !is_live(it->second.status) || destroying_.contains(id)) return true;
    sandbox = it->second;
  }
  if (sandbox.container_id.empty()) return false;
  auto ended = backend_.main_exit(sandbox);
  if (!ended) {
    if (ended.error().kind == ErrorKind::not_found)
      return destroy_by_id(id, DestroyReason::lost, "its container disappeared").has_value();
    log_error("cannot tell how the command of sandbox " + sandbox.name + " (" + id +
              ") ended: " + ended.error().message);
    return false;
  }
  if (!*ended) return false;  // still running
  // The backend's own lifetime backstop stops the instance too: past the TTL, that is the TTL's doing.
  if (auto deadline = sandbox_deadline(sandbox, std::nullopt, started_at_);
      deadline && deadline->reason == DestroyReason::ttl && deadline->at <= config_.now())
    return destroy_by_id(id, DestroyReason::ttl, "ttl expired").has_value();
  // A helper that could not start (an image user that does not exist) is a failed start.
  if ((*ended)->helper_failure && sandbox.status == SandboxStatus::provisioning) {
    (void)backend_.remove(sandbox);
    mark_failed(id, *(*ended)->helper_failure);
    return true;
  }
  MainExit exit = **ended;
  auto destroyed = destroy_by_id(id, DestroyReason::exited, "", exit);
  if (!destroyed)
    log_error("could not destroy sandbox " + id + " after its command exited: " + destroyed.error().message);
  return destroyed.has_value();
}

void SandboxService::watch_main_processes() {
  struct Retry {
    Clock::time_point first_rang;
    Clock::time_point next;
  };
  std::map<std::string, Retry> retries;  // bells that rang while their container still ran
  auto next_backend_check = Clock::now();
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    std::set<std::string> watched;
    for (const auto& [id, sandbox] : sandboxes_)
      if (is_live(sandbox.status) && !sandbox.command.empty() && !sandbox.container_id.empty()) watched.insert(id);
    lock.unlock();

    auto now = Clock::now();
    std::set<std::string> ended;
    for (const auto& id : watched)
      if (backend_.main_exit_reported(id)) ended.insert(id);
    if (!watched.empty() && now >= next_backend_check) {
      next_backend_check = now + main_exit_backend_poll;
      if (auto instances = backend_.list_own())
        for (const auto& instance : *instances)
          if (instance.stopped && watched.contains(instance.sandbox_id)) ended.insert(instance.sandbox_id);
    }
    std::erase_if(retries, [&](const auto& item) { return !ended.contains(item.first); });
    for (const auto& id : ended) {
      auto retry = retries.find(id);
      if (retry != retries.end() && now < retry->second.next) continue;
      if (finish_exited(id)) {
        retries.erase(id);
        continue;
      }
      Clock::time_point first = retry == retries.end() ? now : retry->second.first_rang;
      retries[id] = Retry{first, now + (now - first < main_exit_fast_retry ? main_exit_poll : main_exit_slow_retry)};
    }

    lock.lock();
    changed_.wait_for(lock, main_exit_poll, [this] { return stopping_; });
  }
}

main_log::Chunk SandboxService::read_log(const std::string& sandbox_id, std::uint64_t from) const {
  for (const auto& path : {backend_.main_log(sandbox_id), saved_log_path(sandbox_id)}) {
    if (path.empty()) continue;
    auto chunk = main_log::read(path.string(), from);
    if (chunk) return *chunk;
    if (chunk.error().kind != ErrorKind::not_found) break;  // not a log: the sandbox's doing
  }
  return main_log::Chunk{"", from, from};
}

void SandboxService::save_log(const std::string& sandbox_id) {
  if (!is_record_id(sandbox_id)) return;
  {
    std::lock_guard lock(mutex_);
    if (!sandboxes_.contains(sandbox_id)) return;  // no record to keep it next to
  }
  auto live = backend_.main_log(sandbox_id);
  if (live.empty()) return;
  auto chunk = main_log::read(live.string(), 0);
  if (!chunk) {
    if (chunk.error().kind != ErrorKind::not_found)
      log_error("cannot keep the log of sandbox " + sandbox_id + ": " + chunk.error().message);
    return;
  }
  if (auto saved = write_file_atomic(saved_log_path(sandbox_id), main_log::snapshot(*chunk), 0600); !saved)
    log_error("cannot keep the log of sandbox " + sandbox_id + ": " + saved.error().message);
}

std::string SandboxService::exited_message(const Sandbox& sandbox) const {
  std::string message = "sandbox '" + sandbox.name + "' exited: its command ended with exit code " +
                        std::to_string(sandbox.exit_code.value_or(-1));
  if (sandbox.oom_killed.value_or(false)) message += " (killed for running out of memory)";
  auto tail = main_log::last_lines(read_log(sandbox.id, 0), exit_log_lines);
  if (tail.bytes.empty()) return message + "; it wrote no output";
  std::string lines = tail.bytes.size() > exit_message_log_max
                          ? "..." + tail.bytes.substr(tail.bytes.size() - exit_message_log_max)
                          : tail.bytes;
  while (!lines.empty() && lines.back() == '\n') lines.pop_back();
  return message + "; the last lines of its output:\n" + lines;
}

Result<std::string> SandboxService::logs(const Workspace& workspace, const std::string& id_or_task,
                                         std::optional<std::size_t> tail) {
  auto sandbox = get(workspace, id_or_task);
  if (!sandbox) return std::unexpected(sandbox.error());
  auto chunk = read_log(sandbox->id, 0);
  return tail ? main_log::last_lines(chunk, *tail).bytes : chunk.bytes;
}

bool SandboxService::follow_logs(const std::string& sandbox_id, std::optional<std::size_t> tail,
                                 const LogWriter& write) {
  auto chunk = read_log(sandbox_id, 0);
  if (tail) chunk = main_log::last_lines(chunk, *tail);
  if (!chunk.bytes.empty() && !write(chunk.bytes)) return false;
  std::uint64_t position = chunk.end;
  // The helper appends as the command writes; read what came every poll, or at once when the
  // sandbox ends (its log is saved before its status changes, so nothing written is missed).
  auto ended = [&] {
    auto it = sandboxes_.find(sandbox_id);
    return stopping_ || it == sandboxes_.end() || !is_live(it->second.status);
  };
  for (;;) {
    bool over;
    {
      std::unique_lock lock(mutex_);
      over = changed_.wait_for(lock, main_exit_poll, ended);
    }
    auto next = read_log(sandbox_id, position);
    if (!next.bytes.empty() && !write(next.bytes)) return false;
    position = next.end;
    if (over) return true;
    if (!write({})) return false;  // the client hung up
  }
}

}  // namespace modbox
