#pragma once
// A stand-in for `podman system service`: an HTTP server on a unix socket in a temp dir that
// answers the libpod endpoints the agent uses, in the shapes Podman 4 answers them, and records
// every request. The HTTP library stays inside fake_libpod_server.cpp.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/podman.h"

namespace modbox::testing {

struct RecordedRequest {
  std::string method;
  std::string path;  // decoded, without the query
  std::map<std::string, std::string> params;
  std::vector<std::string> host_headers;  // every Host header sent
  std::string content_type;
  std::string body;
  std::multimap<std::string, std::string> all_params;  // repeated parameters (`changes`) each
};

class FakeLibpodServer {
 public:
  /// Listens before returning; fails the test if it cannot.
  FakeLibpodServer();
  ~FakeLibpodServer();
  FakeLibpodServer(const FakeLibpodServer&) = delete;
  FakeLibpodServer& operator=(const FakeLibpodServer&) = delete;

  std::string socket_path() const;

  // Behaviour.
  void add_image(const std::string& reference);
  /// Adds the image with `config_json` as the "Config" object of its inspection.
  void set_image_config(const std::string& reference, const std::string& config_json);
  /// A container known to Podman (listed by containers/json, startable, removable).
  void add_container(const ContainerSummary& container);
  /// Answers /_ping with `status`.
  void set_ping_status(int status);
  /// Answers containers/create with a Podman error body {"cause", "message", "response"}.
  void fail_create(int status, const std::string& cause, const std::string& message);
  /// Answers /build with these JSON lines (default: a two-step build that succeeds).
  void set_build_answer(std::vector<std::string> json_lines);
  /// Answers DELETE with `status` and a Podman error body (0: normal behaviour).
  void fail_remove(int status);

  // Observations.
  std::vector<RecordedRequest> requests() const;
  /// The last request with this method whose path starts with `path_prefix`.
  std::optional<RecordedRequest> last_request(const std::string& method, const std::string& path_prefix) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace modbox::testing
