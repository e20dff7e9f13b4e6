#pragma once
// The agent's side of streamed execs and background processes (common/helper_protocol.h): the
// calls behind SandboxHelpers::exec_stream and its process methods, over one Conversation each.
// Internal to the helper client (agent/helper_client.cpp).

#include "agent/helper_client.h"

namespace modbox::helper_calls {

/// The result an Exit frame reports (duration and output left for the caller to fill in).
ExecResult exec_result_of(const helper::Exit& exit);

Result<std::unique_ptr<SandboxHelpers::ExecStream>> exec_stream(const std::filesystem::path& socket,
                                                                const ExecRequest& request);
Result<helper::ProcessInfo> start_process(const std::filesystem::path& socket, const helper::ProcessStart& request);
Result<std::vector<helper::ProcessInfo>> list_processes(const std::filesystem::path& socket);
Result<std::unique_ptr<SandboxHelpers::ProcessOutput>> read_process(const std::filesystem::path& socket,
                                                                    const helper::ProcessRead& request);
Result<void> write_process_stdin(const std::filesystem::path& socket, const helper::ProcessStdin& request);
Result<void> signal_process(const std::filesystem::path& socket, const helper::ProcessSignal& request);
Result<void> set_environment(const std::filesystem::path& socket, const helper::EnvironmentSet& request);

}  // namespace modbox::helper_calls
