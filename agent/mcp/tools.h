#pragma once
// The MCP server's tools (seed 001: "Run shell commands, read/write files"), each a few shell
// commands run through the sandbox's exec: as the image's user, with the sandbox's environment,
// in sh where there is no bash (a busybox-only image included), within exec's limits (30 s, 1 MiB
// of output per stream).
//
//   run_command     {command, cwd?, timeout_seconds?}  exec's answer; a non-zero exit is a result, not an error
//   read_file       {path}                             UTF-8 text, or base64 for other bytes; 1 MiB at most
//   write_file      {path, content}                    text, creating missing parent directories
//   list_directory  {path}                             names and types (file, directory, symlink, other)
//
// A bad argument is a tool result with isError and a sentence, never a JSON-RPC error; so is a
// command that could not run (the sandbox's helper gone, say). Relative paths start at /.

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/mcp/server.h"

namespace modbox::mcp {

/// The tools as tools/list shows them in protocol `version`.
nlohmann::json tool_descriptions(std::string_view version);
bool has_tool(std::string_view name);
/// Runs tool `name` with `arguments` (an object): its CallToolResult in protocol `version`.
nlohmann::json call_tool(std::string_view name, const nlohmann::json& arguments, std::string_view version,
                         const ExecFunction& exec);

/// One shell command of a write, and how many bytes of the content it writes.
struct WriteStep {
  std::string command;
  std::size_t bytes = 0;
};
/// The commands that write `content` to `path` (quoted as given), each at most `command_max`
/// bytes: the shell gets a command as one argv string, which Linux bounds at 128 KiB, so a large
/// content is written in several appends. The first also creates the parent directories.
std::vector<WriteStep> write_file_commands(std::string_view path, std::string_view content, std::size_t command_max);
/// Whether `bytes` is well-formed UTF-8.
bool is_utf8(std::string_view bytes);

}  // namespace modbox::mcp
