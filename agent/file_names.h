#pragma once
// The rules for the names of files that clients upload and download (seeds/001 "Uploading and
// downloading files"): what a client-supplied name is reduced to, how a stored name is shown, and the
// headers a download carries. Pure functions over bytes, fuzzed by tests/fuzz/file_names.cpp.

#include <string>
#include <string_view>

#include "common/result.h"

namespace modbox {

/// The basename a client-supplied upload name is reduced to: what follows the last '/' or '\',
/// without control characters; an error for a name that leaves nothing usable ("", ".", "..").
Result<std::string> safe_upload_name(std::string_view client_name);
/// A Content-Disposition value for `filename` that no byte of it can break out of.
std::string attachment_disposition(std::string_view filename);
/// The MIME type of a file name, by its extension; application/octet-stream when unknown.
std::string mime_type_for(std::string_view filename);
/// "script.py" from a stored "1748000000000-script.py".
std::string original_name_of(std::string_view stored_name);

}  // namespace modbox
