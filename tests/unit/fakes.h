#pragma once
// In-memory stand-ins for the agent's side effects: Podman, the per-sandbox gateway ports and the
// clock. Each is thread-safe (the lifecycle provisions on its own threads), records what it was
// asked to do, and can be told to fail.

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/helper_client.h"
#include "agent/podman.h"
#include "agent/sandbox_service.h"

namespace modbox::testing {

struct FakeContainer {
  std::string id;
  ContainerSpec spec;
  std::string state = "created";  // "created", "running", "exited"
  int exit_code = 0;
  bool oom_killed = false;
};

class FakePodman final : public Podman {
 public:
  // Behaviour.
  void set_down(bool down);                    // every call answers unavailable
  void set_image_missing(const std::string& reference);
  void set_image_present(const std::string& reference);
  void fail_create(std::optional<Error> error);  // until reset with nullopt
  void fail_start(std::optional<Error> error);
  /// The state a started container is in (default "running"; "exited": its PID 1 stopped at once).
  void set_state_after_start(std::string state);
  /// Makes start_container wait until release_starts() (or 10 s), so a test can act mid-provision.
  void hold_starts();
  void release_starts();
  /// Called (without the fake's lock) at the start of every remove_container: a test acts mid-destroy.
  void on_remove(std::function<void(const std::string& id)> hook);
  /// Pulls of `reference` fail with `error` (nullopt: they succeed and the image is then present).
  void fail_pull(const std::string& reference, std::optional<Error> error);
  void set_host_info(PodmanHostInfo info);
  /// What image_config answers for `reference` (default: no entrypoint, no command).
  void set_image_config(const std::string& reference, ImageConfig config);
  /// The container's PID 1 ended with `exit_code` (the OOM killer struck when `oom_killed`): it is "exited".
  void exit_container(const std::string& id, int exit_code, bool oom_killed = false);
  /// Puts a container in place as if it had been created earlier (by this or another agent).
  std::string add_container(ContainerSpec spec, std::string state);

  // Observations.
  std::vector<std::string> calls() const;  // "ping", "create <name>", "start <id>", "remove <id>", ...
  std::size_t count_calls(const std::string& prefix) const;
  std::vector<ContainerSpec> created_specs() const;
  std::optional<FakeContainer> container(const std::string& id) const;
  std::vector<FakeContainer> containers() const;
  std::size_t starts_waiting() const;
  /// Every pull asked for, with its options (credentials included), in order.
  std::vector<std::pair<std::string, PullOptions>> pulls() const;
  /// Every commit asked for: the container and the options, in order.
  std::vector<std::pair<std::string, CommitOptions>> commits() const;
  /// Commits fail with `error` until reset with nullopt.
  void fail_commit(std::optional<Error> error);
  /// What the next builds print, line by line, and how they end (nullopt: they succeed).
  void set_build(std::vector<std::string> output, std::optional<Error> error);
  /// Every build asked for, in order.
  std::vector<BuildOptions> builds() const;
  /// Images removed through remove_image, in order.
  std::vector<std::string> removed_images() const;

  // Podman.
  Result<void> ping() override;
  Result<bool> image_exists(const std::string& reference) override;
  Result<std::string> create_container(const ContainerSpec& spec) override;
  Result<void> start_container(const std::string& id) override;
  Result<void> remove_container(const std::string& id) override;
  Result<ContainerState> inspect_container(const std::string& id) override;
  Result<std::vector<ContainerSummary>> list_containers(const std::string& label_key,
                                                        const std::string& label_value) override;
  Result<ImageConfig> image_config(const std::string& reference) override;
  Result<void> pull_image(const std::string& reference, const PullOptions& options) override;
  Result<PodmanHostInfo> host_info() override;
  Result<std::string> commit_container(const std::string& id, const CommitOptions& options) override;
  Result<void> remove_image(const std::string& reference) override;
  Result<std::string> build_image(const BuildOptions& options,
                                  const std::function<bool(std::string_view line)>& on_output) override;

 private:
  std::optional<Error> refuse_if_down(const std::string& call);  // records the call; needs mutex_

  mutable std::mutex mutex_;
  std::condition_variable starts_released_;
  bool down_ = false;
  bool holding_starts_ = false;
  std::function<void(const std::string&)> on_remove_;
  std::string state_after_start_ = "running";
  std::size_t starts_waiting_ = 0;
  std::set<std::string> missing_images_;
  std::optional<Error> create_error_;
  std::optional<Error> start_error_;
  std::map<std::string, ImageConfig> image_configs_;
  std::map<std::string, Error> pull_errors_;
  std::vector<std::pair<std::string, PullOptions>> pulls_;
  std::vector<std::pair<std::string, CommitOptions>> commits_;
  std::optional<Error> commit_error_;
  std::vector<BuildOptions> builds_;
  std::vector<std::string> build_output_;
  std::optional<Error> build_error_;
  std::vector<std::string> removed_images_;
  PodmanHostInfo host_info_{.rootless = true, .cgroup_version = "v2", .cgroup_controllers = {"cpu", "memory", "pids"}};
  std::map<std::string, FakeContainer> containers_;
  std::vector<ContainerSpec> created_specs_;
  std::vector<std::string> calls_;
  int next_container_ = 1;
};

/// The in-sandbox helpers of every sandbox, answering from memory: ready at once unless told not
/// to be, running every command with the result set by set_exec_result, and opening relays only
/// as set_relay says.
class FakeHelpers final : public SandboxHelpers {
 public:
  void set_ready(bool ready);
  void set_exec_result(Result<ExecResult> result);
  /// Answers each exec with `answer(request)` instead of the set result (called unlocked); unset: the set result.
  using ExecAnswerer = std::function<Result<ExecResult>(const ExecRequest& request)>;
  void set_exec(ExecAnswerer answer);
  std::vector<std::filesystem::path> pinged() const;
  /// Every exec but the lifecycle's check for a supervisord binary (agent/readiness_probe.h), which
  /// is answered from set_supervisord_installed (default: not installed) and counted apart, so that
  /// tests of exec see only their own commands.
  std::vector<std::pair<std::filesystem::path, ExecRequest>> execs() const;
  void set_supervisord_installed(bool installed);
  std::size_t supervisord_checks() const;
  /// What open_relay answers, called with the port (one end of a socketpair stands for the
  /// sandbox's server, say); unset, every relay is refused: bad_gateway "no relay in the fake".
  using RelayOpener = std::function<Result<UniqueFd>(std::uint16_t port)>;
  void set_relay(RelayOpener open);
  /// Every open_relay call: the socket and the port.
  std::vector<std::pair<std::filesystem::path, std::uint16_t>> relays() const;
  /// What open_session answers, called with the request (one end of a socketpair stands for the
  /// helper, say); unset, every session is refused: unavailable "no session in the fake".
  using SessionOpener = std::function<Result<Session>(const helper::SessionOpen& request)>;
  void set_session(SessionOpener open);
  /// Every open_session call: the socket and the request.
  std::vector<std::pair<std::filesystem::path, helper::SessionOpen>> sessions() const;

  Result<helper::Hello> ping(const std::filesystem::path& socket, std::chrono::milliseconds timeout) override;
  using SandboxHelpers::exec;
  Result<ExecResult> exec(const std::filesystem::path& socket, const ExecRequest& request,
                          const std::function<bool()>& still_wanted) override;
  // Files live in memory, one flat directory per socket; uploads are named "1000-{name}".
  Result<std::unique_ptr<Upload>> upload(const std::filesystem::path& socket,
                                         const helper::UploadRequest& request) override;
  Result<std::unique_ptr<Download>> download(const std::filesystem::path& socket,
                                             const helper::DownloadRequest& request) override;
  Result<std::vector<helper::FileInfo>> list(const std::filesystem::path& socket,
                                             const helper::ListRequest& request) override;
  Result<void> remove(const std::filesystem::path& socket, const helper::RemoveRequest& request) override;
  Result<UniqueFd> open_relay(const std::filesystem::path& socket, std::uint16_t port) override;
  Result<Session> open_session(const std::filesystem::path& socket, const helper::SessionOpen& request) override;
  /// The content of a stored file, or nullopt.
  std::optional<std::string> file(const std::filesystem::path& socket, const std::string& name) const;

  /// A streamed exec gives the answer exec would (set_exec, set_exec_result) as pieces: its
  /// stdout, then its stderr, each in pieces of `piece` bytes, then the result.
  Result<std::unique_ptr<ExecStream>> exec_stream(const std::filesystem::path& socket,
                                                  const ExecRequest& request) override;
  void set_stream_piece(std::size_t piece);

  // Background processes: a table per socket. A start adds a running process (ids from 1);
  // set_processes replaces a table; a read gives set_process_output's pieces for the id, then the
  // process as the table has it. Refused with set_processes_error (an older helper, say).
  Result<helper::ProcessInfo> start_process(const std::filesystem::path& socket,
                                            const helper::ProcessStart& request) override;
  Result<std::vector<helper::ProcessInfo>> list_processes(const std::filesystem::path& socket) override;
  Result<std::unique_ptr<ProcessOutput>> read_process(const std::filesystem::path& socket,
                                                      const helper::ProcessRead& request) override;
  Result<void> write_process_stdin(const std::filesystem::path& socket, const helper::ProcessStdin& request) override;
  Result<void> signal_process(const std::filesystem::path& socket, const helper::ProcessSignal& request) override;
  void set_processes(const std::filesystem::path& socket, std::vector<helper::ProcessInfo> processes);
  void set_process_output(std::uint32_t id, std::vector<helper::Output> pieces);
  void set_processes_error(std::optional<Error> error);
  std::vector<helper::ProcessStart> started_processes() const;
  std::vector<helper::ProcessStdin> process_inputs() const;
  std::vector<helper::ProcessSignal> process_signals() const;
  std::size_t process_listings() const;

  /// Records each socket's environment (the claims' env); refused with set_environment_error.
  Result<void> set_environment(const std::filesystem::path& socket, const helper::EnvironmentSet& request) override;
  std::vector<std::string> environment(const std::filesystem::path& socket) const;
  void set_environment_error(std::optional<Error> error);

 private:
  Result<void> processes_refusal() const;  // needs mutex_
  helper::ProcessInfo* find_process(const std::filesystem::path& socket, std::uint32_t id);  // needs mutex_
  friend class FakeUpload;
  std::map<std::filesystem::path, std::vector<std::string>> environments_;
  std::optional<Error> environment_error_;
  mutable std::mutex mutex_;
  std::map<std::filesystem::path, std::map<std::string, std::string>> files_;
  bool ready_ = true;
  Result<ExecResult> exec_result_ = ExecResult{};
  ExecAnswerer exec_answerer_;
  std::vector<std::filesystem::path> pinged_;
  std::vector<std::pair<std::filesystem::path, ExecRequest>> execs_;
  bool supervisord_installed_ = false;
  std::size_t supervisord_checks_ = 0;
  RelayOpener relay_opener_;
  std::vector<std::pair<std::filesystem::path, std::uint16_t>> relays_;
  SessionOpener session_opener_;
  std::vector<std::pair<std::filesystem::path, helper::SessionOpen>> sessions_;
  std::size_t stream_piece_ = 1 << 20;
  std::map<std::filesystem::path, std::vector<helper::ProcessInfo>> processes_;
  std::map<std::uint32_t, std::vector<helper::Output>> process_output_;
  std::optional<Error> processes_error_;
  std::vector<helper::ProcessStart> started_processes_;
  std::vector<helper::ProcessStdin> process_inputs_;
  std::vector<helper::ProcessSignal> process_signals_;
  std::size_t process_listings_ = 0;
};

/// Hands out host ports without opening sockets; a host port can be marked as taken by someone else.
class FakeEndpoints final : public SandboxEndpoints {
 public:
  void set_port_taken(int port);
  void fail_open(bool fail);
  /// Opening `sandbox_port` (of any sandbox) fails until fail_sandbox_port(0).
  void fail_sandbox_port(int sandbox_port);
  std::map<std::string, int> open_ports() const;  // sandbox id → host port of its URL
  /// The sandbox's ports being served, sandbox port → host port (the URL itself left out).
  std::map<int, int> served_ports(const std::string& sandbox_id) const;
  std::size_t listener_count() const;  // host ports open now, URLs and ports of every sandbox
  std::size_t open_count() const;      // how many open() calls succeeded, ever

  Result<int> open(const std::string& sandbox_id, int sandbox_port, int preferred_port) override;
  void close(const std::string& sandbox_id) override;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int> open_;  // (sandbox id, sandbox port) → host port
  std::set<int> taken_;
  bool fail_ = false;
  int failing_sandbox_port_ = 0;
  std::size_t opened_ = 0;
  int next_port_ = 41000;
};

/// Systemd timers in memory: which sandbox's timer is armed for when, every call in order, and a
/// switch to make calls fail.
class FakeTtlTimers final : public TtlTimers {
 public:
  TtlLayer layer() const override;
  Result<void> arm(const std::string& sandbox_id, TimePoint at) override;
  Result<void> disarm(const std::string& sandbox_id) override;

  void set_active(bool active);
  void set_failing(bool failing);
  std::map<std::string, TimePoint> armed() const;
  /// "arm ID" and "disarm ID", in the order they were carried out.
  std::vector<std::string> calls() const;

 private:
  mutable std::mutex mutex_;
  bool active_ = true;
  bool failing_ = false;
  std::map<std::string, TimePoint> armed_;
  std::vector<std::string> calls_;
};

/// A clock that only moves when told to.
class FakeClock {
 public:
  explicit FakeClock(TimePoint start) : now_(start) {}
  TimePoint now() const;
  void advance(std::chrono::seconds by);

 private:
  mutable std::mutex mutex_;
  TimePoint now_;
};

}  // namespace modbox::testing
