#pragma once
// The registries API (`/registries`): credentials for pulling private images. The secret (password or
// token) is part of the stored record only; no API view, log line or error message carries it.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/system.h"

namespace modbox {

namespace limits {
inline constexpr std::size_t registry_secret_max_bytes = 4096;
}

struct Registry {
  std::string id;
  std::string name;
  std::string server;  // host[:port], as in image references: "ghcr.io", "127.0.0.1:5000"
  std::optional<std::string> username;
  std::optional<std::string> password;  // secret
  std::optional<std::string> token;     // secret; sent as the password (how ghcr.io, GitLab and Docker Hub take tokens)
  bool insecure = false;                // plain HTTP or unverified TLS allowed (always so for loopback servers)
  std::optional<std::string> workspace_id;
  TimePoint created_at{};
  TimePoint updated_at{};

  /// "password" or "token": which kind of secret is stored, for the API view.
  std::string auth_type() const { return token ? "token" : "password"; }
};

struct RegistryCreateRequest {
  std::string name;
  std::string server;
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::optional<std::string> token;
  bool insecure = false;
};

/// Validates the body: name and server required; exactly one of password and token; a password needs a
/// username. `https://` and a trailing `/` are taken off the server.
Result<RegistryCreateRequest> parse_registry_create_request(std::string_view body);

/// True when TLS verification is off for pulls from this registry: asked for (`insecure`), or the
/// server is on the loopback interface, as Docker treats 127.0.0.0/8 and localhost.
bool registry_skips_tls_verify(const Registry& registry);

// The API view leaves the secret out; the record keeps it.
std::string registry_to_json(const Registry& registry);
std::string registries_to_json(const std::vector<Registry>& registries);
std::string registry_record_to_json(const Registry& registry);
Result<Registry> registry_record_from_json(std::string_view text);
Result<Registry> registry_from_json(std::string_view text);
Result<std::vector<Registry>> registries_from_json(std::string_view text);
std::string registry_create_request_to_json(const RegistryCreateRequest& request);

}  // namespace modbox
