#pragma once
// The sandbox URL: one loopback port per sandbox, serving the sandbox's REST API
// (/modbox/api/*, agent/sandbox_api.h) for callers that hold its SANDBOX_API_KEY.

#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "agent/http.h"
#include "agent/sandbox_service.h"

namespace modbox {

class Gateway final : public SandboxEndpoints {
 public:
  /// Requests served at once per sandbox URL (each exec holds one until its command ends); more wait.
  static constexpr int threads_per_sandbox = 16;

  /// Serves `sandbox_id`'s requests; set before the first open().
  using Backend = std::function<HttpResponse(const std::string& sandbox_id, HttpRequest& request)>;

  explicit Gateway(std::string host = "127.0.0.1") : host_(std::move(host)) {}
  ~Gateway() override;
  /// Answers requests from their headers alone, before a body is sent (see HttpPrecheck).
  using Precheck = std::function<std::optional<HttpResponse>(const std::string& sandbox_id, const HttpRequest& request)>;
  void set_backend(Backend backend, Precheck precheck = nullptr) {
    backend_ = std::move(backend);
    precheck_ = std::move(precheck);
  }

  /// Every port of a sandbox is served by the same backend for now.
  Result<int> open(const std::string& sandbox_id, int sandbox_port, int preferred_port) override;
  void close(const std::string& sandbox_id) override;
  void close_all();

 private:
  std::string host_;
  Backend backend_;
  Precheck precheck_;
  std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::unique_ptr<HttpListener>> listeners_;  // by (sandbox id, sandbox port)
};


}  // namespace modbox
