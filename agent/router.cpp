#include "agent/router.h"

#include "common/models.h"

namespace modbox {

namespace {
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> segments;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) segments.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

bool match(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
           std::map<std::string, std::string>& params) {
  if (pattern.size() != path.size()) return false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const std::string& part = pattern[i];
    if (part.size() > 2 && part.front() == '{' && part.back() == '}')
      params[part.substr(1, part.size() - 2)] = path[i];
    else if (part != path[i])
      return false;
  }
  return true;
}
}  // namespace

void Router::add(std::string method, std::string pattern, HttpHandler handler) {
  routes_.push_back({std::move(method), split_path(pattern), std::move(handler)});
}

HttpResponse Router::dispatch(HttpRequest& request) const {
  std::vector<std::string> path = split_path(request.path);
  bool path_known = false;
  for (const auto& route : routes_) {
    std::map<std::string, std::string> params;
    if (!match(route.segments, path, params)) continue;
    path_known = true;
    if (route.method != request.method) continue;
    request.path_params = std::move(params);
    return route.handler(request);
  }
  if (path_known)
    return json_response(405, error_to_json(Error{ErrorKind::bad_request,
                                                  "method " + request.method + " is not allowed on " + request.path, {}}));
  return error_response(Error{ErrorKind::not_found, "no such endpoint: " + request.method + " " + request.path, {}});
}

}  // namespace modbox
