#pragma once
// modbox's exit statuses, in one place: main maps every error to one of them, `modbox --help` lists
// them (exit_status_help), and man/modbox.1 documents them under EXIT STATUS. exec, shell and
// `exec -i/-t` exit with their command's own status instead when the command ran.

#include <string>

#include "common/result.h"

namespace modbox::exit_status {

inline constexpr int success = 0;
/// Any other error: the agent refused the request, Podman failed, a sandbox failed.
inline constexpr int error = 1;
/// The command line is wrong: an unknown command or option, a missing or invalid argument.
inline constexpr int usage = 2;
/// modboxd cannot serve now: it is not running (`agent status`), could not be started, does not
/// answer (nor MODBOX_API_URL), lost the connection, or answered 503 (its Podman is down). The
/// CLI's connection failures and the agent's 503 share ErrorKind::unavailable: either way, the
/// request itself was not at fault and may work later.
inline constexpr int agent_unavailable = 3;
/// The sandbox, image, registry, process or file named does not exist (the agent answered 404).
inline constexpr int not_found = 4;
/// Waited the time asked for without the sandbox getting there (`wait`, `provision --wait`: 408).
inline constexpr int timeout = 5;

/// The exit status for a command that failed with `error`.
int for_error(const Error& error);

/// The footer of `modbox --help`: the table above, for people and scripts.
std::string help_footer();

}  // namespace modbox::exit_status
