#pragma once
// Who may reach a sandbox's web services through its URL (DESIGN.md "Sandbox URL and front"), and
// what of the credential is removed before the request goes into the sandbox. A loopback port is
// guessable by any local user, so every proxied request needs the sandbox's key (or the agent's
// owner token): as `Authorization: Bearer`, once as `?token=`, which is answered with a redirect
// that sets an HttpOnly cookie for that origin, or as that cookie. Pure functions: no sockets.

#include <optional>
#include <string>
#include <string_view>

namespace modbox::front {

/// Browsers share cookies among all ports of a host, so each origin (host port) has a cookie name
/// of its own, and every cookie with this prefix is removed before forwarding, whichever port set it.
inline constexpr std::string_view auth_cookie_prefix = "modbox_auth_";
std::string auth_cookie_name(int host_port);
/// The cookie's value for a credential: a hash that names the sandbox, so a cookie reveals neither
/// the key nor works for another sandbox.
std::string auth_cookie_value(std::string_view sandbox_id, std::string_view credential);

struct ProxyCredentials {
  std::string sandbox_id;
  int host_port = 0;                   // the origin the request came to
  std::optional<std::string> api_key;  // the sandbox's SANDBOX_API_KEY; none or empty: only the owner
  std::string owner_token;             // the agent's own token; empty: not accepted
};

struct ProxyRequestView {
  std::string_view method;
  std::string_view target;  // as sent: path and query
  const std::string* authorization = nullptr;
  const std::string* cookie = nullptr;
};

struct ProxyAuthVerdict {
  enum class Kind { allow, redirect, unauthorized, forbidden };
  Kind kind = Kind::unauthorized;
  std::string reason;               // unauthorized, forbidden: the sentence to answer
  std::string location;             // redirect: the same target without `token`
  std::string set_cookie;           // redirect: the Set-Cookie value
  std::string forwarded_target;     // allow: the target without `token`
  bool drop_authorization = false;  // allow: the Authorization header was the credential
  /// allow: the Cookie header without modbox's cookies; nullopt when nothing is left of it.
  std::optional<std::string> forwarded_cookie;
};

/// Decides a proxied request. `?token=` on a GET or HEAD is answered with a redirect that sets the
/// cookie; on other methods (a redirect would lose the body) it authenticates that request only.
ProxyAuthVerdict authorize_proxy_request(const ProxyCredentials& credentials, const ProxyRequestView& request);

}  // namespace modbox::front
