#include "tests/unit/fakes.h"

#include <algorithm>

#include "agent/readiness_probe.h"

namespace modbox::testing {

void FakePodman::set_down(bool down) {
  std::lock_guard lock(mutex_);
  down_ = down;
}

void FakePodman::set_image_missing(const std::string& reference) {
  std::lock_guard lock(mutex_);
  missing_images_.insert(reference);
}

void FakePodman::set_image_present(const std::string& reference) {
  std::lock_guard lock(mutex_);
  missing_images_.erase(reference);
}

void FakePodman::fail_create(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  create_error_ = std::move(error);
}

void FakePodman::fail_start(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  start_error_ = std::move(error);
}

void FakePodman::fail_pull(const std::string& reference, std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  if (error) pull_errors_[reference] = *error;
  else pull_errors_.erase(reference);
}

void FakePodman::set_host_info(PodmanHostInfo info) {
  std::lock_guard lock(mutex_);
  host_info_ = std::move(info);
}

std::vector<std::pair<std::string, PullOptions>> FakePodman::pulls() const {
  std::lock_guard lock(mutex_);
  return pulls_;
}

void FakePodman::set_image_config(const std::string& reference, ImageConfig config) {
  std::lock_guard lock(mutex_);
  image_configs_[reference] = std::move(config);
}

void FakePodman::set_state_after_start(std::string state) {
  std::lock_guard lock(mutex_);
  state_after_start_ = std::move(state);
}

void FakePodman::hold_starts() {
  std::lock_guard lock(mutex_);
  holding_starts_ = true;
}

void FakePodman::release_starts() {
  std::lock_guard lock(mutex_);
  holding_starts_ = false;
  starts_released_.notify_all();
}

void FakePodman::exit_container(const std::string& id, int exit_code, bool oom_killed) {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return;
  it->second.state = "exited";
  it->second.exit_code = exit_code;
  it->second.oom_killed = oom_killed;
}

std::string FakePodman::add_container(ContainerSpec spec, std::string state) {
  std::lock_guard lock(mutex_);
  std::string id = "existing-" + std::to_string(next_container_++);
  containers_[id] = FakeContainer{id, std::move(spec), std::move(state)};
  return id;
}

std::vector<std::string> FakePodman::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

std::size_t FakePodman::count_calls(const std::string& prefix) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(calls_.begin(), calls_.end(), [&](const std::string& call) { return call.starts_with(prefix); }));
}

std::vector<ContainerSpec> FakePodman::created_specs() const {
  std::lock_guard lock(mutex_);
  return created_specs_;
}

std::optional<FakeContainer> FakePodman::container(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return std::nullopt;
  return it->second;
}

std::vector<FakeContainer> FakePodman::containers() const {
  std::lock_guard lock(mutex_);
  std::vector<FakeContainer> result;
  for (const auto& [id, container] : containers_) result.push_back(container);
  return result;
}

std::size_t FakePodman::starts_waiting() const {
  std::lock_guard lock(mutex_);
  return starts_waiting_;
}

std::optional<Error> FakePodman::refuse_if_down(const std::string& call) {
  calls_.push_back(call);
  if (down_) return Error{ErrorKind::unavailable, "podman service is not answering (fake)", {}};
  return std::nullopt;
}

Result<void> FakePodman::ping() {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("ping")) return std::unexpected(*error);
  return {};
}

Result<bool> FakePodman::image_exists(const std::string& reference) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("image_exists " + reference)) return std::unexpected(*error);
  return !missing_images_.contains(reference);
}

Result<std::string> FakePodman::create_container(const ContainerSpec& spec) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("create " + spec.name)) return std::unexpected(*error);
  if (create_error_) return std::unexpected(*create_error_);
  created_specs_.push_back(spec);
  std::string id = "container-" + std::to_string(next_container_++);
  containers_[id] = FakeContainer{id, spec, "created"};
  return id;
}

Result<void> FakePodman::start_container(const std::string& id) {
  std::unique_lock lock(mutex_);
  if (auto error = refuse_if_down("start " + id)) return std::unexpected(*error);
  ++starts_waiting_;
  starts_released_.wait_for(lock, std::chrono::seconds(10), [this] { return !holding_starts_; });
  --starts_waiting_;
  if (start_error_) return std::unexpected(*start_error_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return fail(ErrorKind::not_found, "no container with name or ID " + id + " found");
  it->second.state = state_after_start_;
  return {};
}

void FakePodman::on_remove(std::function<void(const std::string& id)> hook) {
  std::lock_guard lock(mutex_);
  on_remove_ = std::move(hook);
}

Result<void> FakePodman::remove_container(const std::string& id) {
  std::function<void(const std::string&)> hook;
  {
    std::lock_guard lock(mutex_);
    hook = on_remove_;
  }
  if (hook) hook(id);
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("remove " + id)) return std::unexpected(*error);
  containers_.erase(id);
  return {};
}

Result<ContainerState> FakePodman::inspect_container(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("inspect " + id)) return std::unexpected(*error);
  auto it = containers_.find(id);
  if (it == containers_.end()) return fail(ErrorKind::not_found, "no container with name or ID " + id + " found");
  const FakeContainer& container = it->second;
  return ContainerState{container.state, container.state == "running", container.exit_code, container.oom_killed};
}

Result<std::vector<ContainerSummary>> FakePodman::list_containers(const std::string& label_key,
                                                                  const std::string& label_value) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("list " + label_key + "=" + label_value)) return std::unexpected(*error);
  std::vector<ContainerSummary> result;
  for (const auto& [id, container] : containers_) {
    auto label = container.spec.labels.find(label_key);
    if (label == container.spec.labels.end() || label->second != label_value) continue;
    result.push_back({id, container.spec.name, container.state, container.spec.labels});
  }
  return result;
}

Result<void> FakePodman::pull_image(const std::string& reference, const PullOptions& options) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("pull " + reference)) return std::unexpected(*error);
  pulls_.emplace_back(reference, options);
  if (auto it = pull_errors_.find(reference); it != pull_errors_.end()) return std::unexpected(it->second);
  missing_images_.erase(reference);
  return {};
}

std::vector<std::pair<std::string, CommitOptions>> FakePodman::commits() const {
  std::lock_guard lock(mutex_);
  return commits_;
}

void FakePodman::fail_commit(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  commit_error_ = std::move(error);
}

std::vector<std::string> FakePodman::removed_images() const {
  std::lock_guard lock(mutex_);
  return removed_images_;
}

void FakePodman::set_build(std::vector<std::string> output, std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  build_output_ = std::move(output);
  build_error_ = std::move(error);
}

std::vector<BuildOptions> FakePodman::builds() const {
  std::lock_guard lock(mutex_);
  return builds_;
}

Result<std::string> FakePodman::build_image(const BuildOptions& options,
                                            const std::function<bool(std::string_view line)>& on_output) {
  std::vector<std::string> output;
  std::optional<Error> error;
  {
    std::lock_guard lock(mutex_);
    if (auto refused = refuse_if_down("build " + options.reference)) return std::unexpected(*refused);
    builds_.push_back(options);
    output = build_output_;
    error = build_error_;
  }
  for (const auto& line : output)
    if (!on_output(line)) return fail(ErrorKind::unavailable, "building " + options.reference + " was cancelled");
  if (error) return std::unexpected(*error);
  set_image_present(options.reference);
  return "built-" + std::to_string(builds().size());
}

Result<std::string> FakePodman::commit_container(const std::string& id, const CommitOptions& options) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("commit " + id)) return std::unexpected(*error);
  commits_.emplace_back(id, options);
  if (commit_error_) return std::unexpected(*commit_error_);
  if (!containers_.contains(id)) return fail(ErrorKind::not_found, "no container with name or ID " + id + " found");
  missing_images_.erase(options.repository + ":" + options.tag);
  return "image-" + std::to_string(commits_.size());
}

Result<void> FakePodman::remove_image(const std::string& reference) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("remove_image " + reference)) return std::unexpected(*error);
  removed_images_.push_back(reference);
  missing_images_.insert(reference);
  return {};
}

Result<PodmanHostInfo> FakePodman::host_info() {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("info")) return std::unexpected(*error);
  return host_info_;
}

Result<ImageConfig> FakePodman::image_config(const std::string& reference) {
  std::lock_guard lock(mutex_);
  if (auto error = refuse_if_down("image_config " + reference)) return std::unexpected(*error);
  if (missing_images_.contains(reference)) return fail(ErrorKind::not_found, "image not known (fake)");
  auto it = image_configs_.find(reference);
  return it == image_configs_.end() ? ImageConfig{} : it->second;
}

void FakeHelpers::set_ready(bool ready) {
  std::lock_guard lock(mutex_);
  ready_ = ready;
}

void FakeHelpers::set_exec_result(Result<ExecResult> result) {
  std::lock_guard lock(mutex_);
  exec_result_ = std::move(result);
}

std::vector<std::filesystem::path> FakeHelpers::pinged() const {
  std::lock_guard lock(mutex_);
  return pinged_;
}

std::vector<std::pair<std::filesystem::path, ExecRequest>> FakeHelpers::execs() const {
  std::lock_guard lock(mutex_);
  return execs_;
}

Result<helper::Hello> FakeHelpers::ping(const std::filesystem::path& socket, std::chrono::milliseconds) {
  std::lock_guard lock(mutex_);
  pinged_.push_back(socket);
  if (!ready_) return fail(ErrorKind::unavailable, "the sandbox's helper is not listening (fake)");
  return helper::Hello{.pid = 1, .shell = "/bin/bash"};
}

void FakeHelpers::set_exec(ExecAnswerer answer) {
  std::lock_guard lock(mutex_);
  exec_answerer_ = std::move(answer);
}

void FakeHelpers::set_supervisord_installed(bool installed) {
  std::lock_guard lock(mutex_);
  supervisord_installed_ = installed;
}

std::size_t FakeHelpers::supervisord_checks() const {
  std::lock_guard lock(mutex_);
  return supervisord_checks_;
}

Result<ExecResult> FakeHelpers::exec(const std::filesystem::path& socket, const ExecRequest& request,
                                     const std::function<bool()>&) {
  ExecAnswerer answerer;
  {
    std::lock_guard lock(mutex_);
    if (request.command == supervisord_binary_check) {
      ++supervisord_checks_;
      return ExecResult{.exit_code = supervisord_installed_ ? 0 : 1};
    }
    execs_.emplace_back(socket, request);
    if (!exec_answerer_) return exec_result_;
    answerer = exec_answerer_;
  }
  return answerer(request);
}

void FakeHelpers::set_relay(RelayOpener open) {
  std::lock_guard lock(mutex_);
  relay_opener_ = std::move(open);
}

std::vector<std::pair<std::filesystem::path, std::uint16_t>> FakeHelpers::relays() const {
  std::lock_guard lock(mutex_);
  return relays_;
}

Result<UniqueFd> FakeHelpers::open_relay(const std::filesystem::path& socket, std::uint16_t port) {
  RelayOpener opener;
  {
    std::lock_guard lock(mutex_);
    relays_.emplace_back(socket, port);
    opener = relay_opener_;
  }
  // Called unlocked: an opener may block, or call back into the fake.
  if (!opener) return fail(ErrorKind::bad_gateway, "no relay in the fake");
  return opener(port);
}

void FakeHelpers::set_session(SessionOpener open) {
  std::lock_guard lock(mutex_);
  session_opener_ = std::move(open);
}

std::vector<std::pair<std::filesystem::path, helper::SessionOpen>> FakeHelpers::sessions() const {
  std::lock_guard lock(mutex_);
  return sessions_;
}

Result<SandboxHelpers::Session> FakeHelpers::open_session(const std::filesystem::path& socket,
                                                          const helper::SessionOpen& request) {
  SessionOpener opener;
  {
    std::lock_guard lock(mutex_);
    sessions_.emplace_back(socket, request);
    opener = session_opener_;
  }
  // Called unlocked, as relays are.
  if (!opener) return fail(ErrorKind::unavailable, "no session in the fake");
  return opener(request);
}

namespace {

/// Hands out prepared steps, one per call.
template <typename Interface>
class FakeSteps final : public Interface {
 public:
  using Step = typename Interface::Step;
  explicit FakeSteps(std::vector<Step> steps) : steps_(std::move(steps)) {}
  Result<Step> next(std::chrono::milliseconds) override {
    if (next_ >= steps_.size()) return fail(ErrorKind::internal, "the fake stream has ended");
    return steps_[next_++];
  }

 protected:
  std::vector<Step> steps_;
  std::size_t next_ = 0;
};

class FakeProcessOutput final : public SandboxHelpers::ProcessOutput {
 public:
  FakeProcessOutput(helper::ProcessInfo info, std::vector<Step> steps) : info_(std::move(info)), steps_(std::move(steps)) {}
  const helper::ProcessInfo& info() const override { return info_; }
  Result<Step> next(std::chrono::milliseconds) override {
    if (next_ >= steps_.size()) return fail(ErrorKind::internal, "the fake read has ended");
    return steps_[next_++];
  }

 private:
  helper::ProcessInfo info_;
  std::vector<Step> steps_;
  std::size_t next_ = 0;
};

}  // namespace

void FakeHelpers::set_stream_piece(std::size_t piece) {
  std::lock_guard lock(mutex_);
  stream_piece_ = piece;
}

Result<std::unique_ptr<SandboxHelpers::ExecStream>> FakeHelpers::exec_stream(const std::filesystem::path& socket,
                                                                             const ExecRequest& request) {
  auto answer = exec(socket, request);
  if (!answer) return std::unexpected(answer.error());
  std::size_t piece;
  {
    std::lock_guard lock(mutex_);
    piece = stream_piece_;
  }
  std::vector<ExecStream::Step> steps;
  auto add = [&](helper::Stream stream, const std::string& text) {
    for (std::size_t at = 0; at < text.size(); at += piece)
      steps.push_back({helper::Output{stream, text.substr(at, piece)}, std::nullopt});
  };
  add(helper::Stream::stdout_stream, answer->stdout_text);
  add(helper::Stream::stderr_stream, answer->stderr_text);
  ExecResult result = *answer;
  result.stdout_text.clear();
  result.stderr_text.clear();
  steps.push_back({std::nullopt, result});
  return std::make_unique<FakeSteps<ExecStream>>(std::move(steps));
}

Result<void> FakeHelpers::processes_refusal() const {
  if (processes_error_) return std::unexpected(*processes_error_);
  return {};
}

helper::ProcessInfo* FakeHelpers::find_process(const std::filesystem::path& socket, std::uint32_t id) {
  for (auto& process : processes_[socket])
    if (process.id == id) return &process;
  return nullptr;
}

Result<helper::ProcessInfo> FakeHelpers::start_process(const std::filesystem::path& socket,
                                                       const helper::ProcessStart& request) {
  std::lock_guard lock(mutex_);
  if (auto refused = processes_refusal(); !refused) return std::unexpected(refused.error());
  started_processes_.push_back(request);
  auto& processes = processes_[socket];
  helper::ProcessInfo info;
  info.id = processes.empty() ? 1 : processes.back().id + 1;
  info.command = request.command;
  info.cwd = request.cwd;
  info.started_ms = 1'700'000'000'000;
  info.stdin_open = true;
  processes.push_back(info);
  return info;
}

Result<std::vector<helper::ProcessInfo>> FakeHelpers::list_processes(const std::filesystem::path& socket) {
  std::lock_guard lock(mutex_);
  ++process_listings_;
  if (auto refused = processes_refusal(); !refused) return std::unexpected(refused.error());
  return processes_[socket];
}

Result<std::unique_ptr<SandboxHelpers::ProcessOutput>> FakeHelpers::read_process(const std::filesystem::path& socket,
                                                                                 const helper::ProcessRead& request) {
  std::lock_guard lock(mutex_);
  if (auto refused = processes_refusal(); !refused) return std::unexpected(refused.error());
  helper::ProcessInfo* process = find_process(socket, request.id);
  if (process == nullptr) return fail(ErrorKind::not_found, "no background process in the fake");
  std::vector<ProcessOutput::Step> steps;
  for (const auto& piece : process_output_[request.id]) steps.push_back({piece, std::nullopt});
  steps.push_back({std::nullopt, *process});
  return std::make_unique<FakeProcessOutput>(*process, std::move(steps));
}

Result<void> FakeHelpers::write_process_stdin(const std::filesystem::path& socket,
                                              const helper::ProcessStdin& request) {
  std::lock_guard lock(mutex_);
  if (auto refused = processes_refusal(); !refused) return refused;
  if (find_process(socket, request.id) == nullptr) return fail(ErrorKind::not_found, "no background process in the fake");
  process_inputs_.push_back(request);
  return {};
}

Result<void> FakeHelpers::signal_process(const std::filesystem::path& socket, const helper::ProcessSignal& request) {
  std::lock_guard lock(mutex_);
  if (auto refused = processes_refusal(); !refused) return refused;
  if (find_process(socket, request.id) == nullptr) return fail(ErrorKind::not_found, "no background process in the fake");
  process_signals_.push_back(request);
  return {};
}

void FakeHelpers::set_processes(const std::filesystem::path& socket, std::vector<helper::ProcessInfo> processes) {
  std::lock_guard lock(mutex_);
  processes_[socket] = std::move(processes);
}

void FakeHelpers::set_process_output(std::uint32_t id, std::vector<helper::Output> pieces) {
  std::lock_guard lock(mutex_);
  process_output_[id] = std::move(pieces);
}

void FakeHelpers::set_processes_error(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  processes_error_ = std::move(error);
}

std::vector<helper::ProcessStart> FakeHelpers::started_processes() const {
  std::lock_guard lock(mutex_);
  return started_processes_;
}

std::vector<helper::ProcessStdin> FakeHelpers::process_inputs() const {
  std::lock_guard lock(mutex_);
  return process_inputs_;
}

std::vector<helper::ProcessSignal> FakeHelpers::process_signals() const {
  std::lock_guard lock(mutex_);
  return process_signals_;
}

std::size_t FakeHelpers::process_listings() const {
  std::lock_guard lock(mutex_);
  return process_listings_;
}

void FakeEndpoints::set_port_taken(int port) {
  std::lock_guard lock(mutex_);
  taken_.insert(port);
}

void FakeEndpoints::fail_open(bool fail) {
  std::lock_guard lock(mutex_);
  fail_ = fail;
}

void FakeEndpoints::fail_sandbox_port(int sandbox_port) {
  std::lock_guard lock(mutex_);
  failing_sandbox_port_ = sandbox_port;
}

std::map<std::string, int> FakeEndpoints::open_ports() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, int> urls;
  for (const auto& [key, host_port] : open_)
    if (key.second == 0) urls[key.first] = host_port;
  return urls;
}

std::map<int, int> FakeEndpoints::served_ports(const std::string& sandbox_id) const {
  std::lock_guard lock(mutex_);
  std::map<int, int> ports;
  for (const auto& [key, host_port] : open_)
    if (key.first == sandbox_id && key.second != 0) ports[key.second] = host_port;
  return ports;
}

std::size_t FakeEndpoints::listener_count() const {
  std::lock_guard lock(mutex_);
  return open_.size();
}

std::size_t FakeEndpoints::open_count() const {
  std::lock_guard lock(mutex_);
  return opened_;
}

Result<int> FakeEndpoints::open(const std::string& sandbox_id, int sandbox_port, int preferred_port) {
  std::lock_guard lock(mutex_);
  if (fail_ || (sandbox_port != 0 && sandbox_port == failing_sandbox_port_))
    return fail(ErrorKind::internal, "bind: Address already in use (fake)");
  if (auto it = open_.find({sandbox_id, sandbox_port}); it != open_.end()) return it->second;
  int port = preferred_port;
  if (port == 0 || taken_.contains(port)) port = next_port_++;
  taken_.insert(port);
  open_[{sandbox_id, sandbox_port}] = port;
  ++opened_;
  return port;
}

void FakeEndpoints::close(const std::string& sandbox_id) {
  std::lock_guard lock(mutex_);
  for (auto it = open_.begin(); it != open_.end();) {
    if (it->first.first == sandbox_id) {
      taken_.erase(it->second);
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
}

TimePoint FakeClock::now() const {
  std::lock_guard lock(mutex_);
  return now_;
}

void FakeClock::advance(std::chrono::seconds by) {
  std::lock_guard lock(mutex_);
  now_ += by;
}

}  // namespace modbox::testing

namespace modbox::testing {

class FakeUpload final : public SandboxHelpers::Upload {
 public:
  FakeUpload(FakeHelpers& helpers, std::filesystem::path socket, std::string name)
      : helpers_(helpers), socket_(std::move(socket)), name_(std::move(name)) {}
  Result<void> write(std::string_view bytes) override {
    content_.append(bytes);
    return {};
  }
  Result<helper::FileInfo> finish() override {
    std::lock_guard lock(helpers_.mutex_);
    std::string stored = "1000-" + name_;
    helpers_.files_[socket_][stored] = content_;
    return helper::FileInfo{stored, content_.size(), 1000};
  }

 private:
  FakeHelpers& helpers_;
  std::filesystem::path socket_;
  std::string name_;
  std::string content_;
};

namespace {
class FakeDownload final : public SandboxHelpers::Download {
 public:
  FakeDownload(helper::FileInfo info, std::string content) : info_(std::move(info)), content_(std::move(content)) {}
  const helper::FileInfo& info() const override { return info_; }
  Result<std::optional<std::string>> next() override {
    if (sent_) return std::optional<std::string>();
    sent_ = true;
    if (content_.empty()) return std::optional<std::string>();
    return std::optional<std::string>(content_);
  }

 private:
  helper::FileInfo info_;
  std::string content_;
  bool sent_ = false;
};
}  // namespace

Result<std::unique_ptr<SandboxHelpers::Upload>> FakeHelpers::upload(const std::filesystem::path& socket,
                                                                    const helper::UploadRequest& request) {
  return std::make_unique<FakeUpload>(*this, socket, request.name);
}

Result<std::unique_ptr<SandboxHelpers::Download>> FakeHelpers::download(const std::filesystem::path& socket,
                                                                        const helper::DownloadRequest& request) {
  auto content = file(socket, request.name);
  if (!content) return fail(ErrorKind::not_found, "no file " + request.name);
  return std::make_unique<FakeDownload>(helper::FileInfo{request.name, content->size(), 1000}, *content);
}

Result<std::vector<helper::FileInfo>> FakeHelpers::list(const std::filesystem::path& socket,
                                                        const helper::ListRequest& request) {
  std::lock_guard lock(mutex_);
  std::vector<helper::FileInfo> files;
  for (const auto& [name, content] : files_[socket])
    if (name.find(request.search) != std::string::npos) files.push_back({name, content.size(), 1000});
  return files;
}

Result<void> FakeHelpers::remove(const std::filesystem::path& socket, const helper::RemoveRequest& request) {
  std::lock_guard lock(mutex_);
  if (files_[socket].erase(request.name) == 0) return fail(ErrorKind::not_found, "no file " + request.name);
  return {};
}

std::optional<std::string> FakeHelpers::file(const std::filesystem::path& socket, const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto directory = files_.find(socket);
  if (directory == files_.end()) return std::nullopt;
  auto it = directory->second.find(name);
  if (it == directory->second.end()) return std::nullopt;
  return it->second;
}

TtlLayer FakeTtlTimers::layer() const {
  std::lock_guard lock(mutex_);
  return TtlLayer{"systemd_timer", active_, active_ ? "fake timers" : "no systemd user manager (fake)"};
}

Result<void> FakeTtlTimers::arm(const std::string& sandbox_id, TimePoint at) {
  std::lock_guard lock(mutex_);
  calls_.push_back("arm " + sandbox_id);
  if (failing_) return fail(ErrorKind::unavailable, "systemd-run exited with status 1: fake failure");
  armed_[sandbox_id] = at;
  return {};
}

Result<void> FakeTtlTimers::disarm(const std::string& sandbox_id) {
  std::lock_guard lock(mutex_);
  calls_.push_back("disarm " + sandbox_id);
  if (failing_) return fail(ErrorKind::unavailable, "systemctl exited with status 1: fake failure");
  armed_.erase(sandbox_id);
  return {};
}

void FakeTtlTimers::set_active(bool active) {
  std::lock_guard lock(mutex_);
  active_ = active;
}

void FakeTtlTimers::set_failing(bool failing) {
  std::lock_guard lock(mutex_);
  failing_ = failing;
}

std::map<std::string, TimePoint> FakeTtlTimers::armed() const {
  std::lock_guard lock(mutex_);
  return armed_;
}

std::vector<std::string> FakeTtlTimers::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

Result<void> FakeHelpers::set_environment(const std::filesystem::path& socket,
                                         const helper::EnvironmentSet& request) {
  std::lock_guard lock(mutex_);
  if (environment_error_) return std::unexpected(*environment_error_);
  auto& env = environments_[socket];
  env.insert(env.end(), request.env.begin(), request.env.end());
  return {};
}

std::vector<std::string> FakeHelpers::environment(const std::filesystem::path& socket) const {
  std::lock_guard lock(mutex_);
  auto it = environments_.find(socket);
  return it == environments_.end() ? std::vector<std::string>{} : it->second;
}

void FakeHelpers::set_environment_error(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  environment_error_ = std::move(error);
}

}  // namespace modbox::testing
