#pragma once
// Maps "METHOD /path/{param}" to handlers; each resource registers its own route table.

#include <string>
#include <vector>

#include "agent/http.h"

namespace modbox {

class Router {
 public:
  /// `pattern` is a path whose segments are literals or `{name}` placeholders.
  void add(std::string method, std::string pattern, HttpHandler handler);

  /// Finds the route, fills `request.path_params` and runs it: 404 for an unknown path, 405 for
  /// a known path with another method.
  HttpResponse dispatch(HttpRequest& request) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    HttpHandler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace modbox
