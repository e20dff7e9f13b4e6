#include "agent/image_builder.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "agent/log.h"
#include "agent/process.h"

namespace modbox {

ScriptImageBuilder::ScriptImageBuilder(std::filesystem::path images_dir, std::filesystem::path log_dir,
                                       std::vector<std::string> names)
    : images_dir_(std::move(images_dir)), log_dir_(std::move(log_dir)), names_(std::move(names)) {}

std::optional<std::string> ScriptImageBuilder::buildable(const std::string& reference) const {
  for (const auto& name : names_)
    if (reference == "localhost/modbox/" + name + ":latest") return name;
  return std::nullopt;
}

Result<void> ScriptImageBuilder::build(const std::string& name) {
  std::lock_guard lock(build_mutex_);
  std::filesystem::path log = log_dir_ / ("build-" + name + ".log");
  log_info("building modbox/" + name + " with " + (images_dir_ / "build").string() + "; its output: " + log.string());
  auto started = std::chrono::steady_clock::now();
  auto pid = spawn_process({.argv = {(images_dir_ / "build").string(), name},
                            .output_file = log.string(),
                            .new_session = true,
                            .die_with_parent = true});
  if (!pid) return std::unexpected(pid.error());
  // A stuck build (a hung download) must not hold the sandbox forever.
  auto status = wait_process(*pid, std::chrono::minutes(45));
  if (!status) {
    ::kill(-*pid, SIGKILL);
    wait_process(*pid);
    return fail(ErrorKind::internal, "images/build " + name + " did not finish within 45 minutes; see " + log.string());
  }
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0)
    return fail(ErrorKind::internal, "images/build " + name + " " + describe_wait_status(*status) + " after " +
                                         std::to_string(seconds) + " s; see " + log.string());
  log_info("built modbox/" + name + " in " + std::to_string(seconds) + " s");
  return {};
}

}  // namespace modbox
