#include "agent/front/proxy_auth.h"

#include <openssl/sha.h>

#include <vector>

#include "agent/front/http_text.h"
#include "agent/http.h"
#include "common/system.h"

namespace modbox::front {

namespace {

constexpr std::string_view bearer = "Bearer ";

/// The target split into path and query, with the `token` parameter taken out of the query.
struct SplitTarget {
  std::string path;
  std::string query_without_token;  // raw, other parameters in their order
  std::optional<std::string> token;
};

SplitTarget split_target(std::string_view target) {
  SplitTarget split;
  std::size_t question = target.find('?');
  split.path = std::string(target.substr(0, question));
  if (question == std::string_view::npos) return split;
  std::string_view query = target.substr(question + 1);
  for (;;) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    std::size_t equals = pair.find('=');
    if (url_decode(pair.substr(0, equals), true) == "token") {
      if (!split.token)
        split.token = equals == std::string_view::npos ? std::string() : url_decode(pair.substr(equals + 1), true);
    } else if (!pair.empty()) {
      if (!split.query_without_token.empty()) split.query_without_token += '&';
      split.query_without_token += pair;
    }
    if (query.empty()) break;
  }
  return split;
}

std::string join_target(const SplitTarget& split) {
  std::string target = split.path.empty() ? "/" : split.path;
  if (!split.query_without_token.empty()) target += "?" + split.query_without_token;
  return target;
}

/// Whether `credential` is the owner token or the sandbox's key.
struct Match {
  bool owner = false;
  bool key = false;
};
Match match(const ProxyCredentials& credentials, std::string_view credential) {
  Match result;
  result.owner = !credentials.owner_token.empty() && constant_time_equals(credential, credentials.owner_token);
  result.key =
      credentials.api_key && !credentials.api_key->empty() && constant_time_equals(credential, *credentials.api_key);
  return result;
}

}  // namespace

std::string auth_cookie_name(int host_port) {
  return std::string(auth_cookie_prefix) + std::to_string(host_port);
}

std::string auth_cookie_value(std::string_view sandbox_id, std::string_view credential) {
  std::string material = "modbox-front-cookie\n";
  material += sandbox_id;
  material += '\n';
  material += credential;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(material.data()), material.size(), digest);
  static constexpr char hex[] = "0123456789abcdef";
  std::string value;
  for (unsigned char byte : digest) {
    value += hex[byte >> 4];
    value += hex[byte & 0xf];
  }
  return value;
}

ProxyAuthVerdict authorize_proxy_request(const ProxyCredentials& credentials, const ProxyRequestView& request) {
  ProxyAuthVerdict verdict;
  SplitTarget target = split_target(request.target);
  bool has_key = credentials.api_key && !credentials.api_key->empty();

  // The cookies: ours (of any port) are taken out; the one of this origin may authenticate.
  std::optional<std::string> cookie_credential;
  std::string other_cookies;
  if (request.cookie != nullptr) {
    std::string_view rest = *request.cookie;
    std::string own_name = auth_cookie_name(credentials.host_port);
    while (!rest.empty()) {
      std::size_t semicolon = rest.find(';');
      std::string_view pair = trim_blanks(rest.substr(0, semicolon));
      rest = semicolon == std::string_view::npos ? std::string_view() : rest.substr(semicolon + 1);
      if (pair.empty()) continue;
      std::string_view name = trim_blanks(pair.substr(0, pair.find('=')));
      if (name.starts_with(auth_cookie_prefix)) {
        if (name == own_name && pair.find('=') != std::string_view::npos)
          cookie_credential = std::string(trim_blanks(pair.substr(pair.find('=') + 1)));
        continue;
      }
      if (!other_cookies.empty()) other_cookies += "; ";
      other_cookies += pair;
    }
  }

  bool owner = false;
  bool key = false;
  bool bearer_used = false;
  if (request.authorization != nullptr && request.authorization->starts_with(bearer)) {
    Match found = match(credentials, std::string_view(*request.authorization).substr(bearer.size()));
    owner |= found.owner;
    key |= found.key;
    bearer_used = found.owner || found.key;
  }
  std::optional<Match> token_match;
  if (target.token) {
    token_match = match(credentials, *target.token);
    owner |= token_match->owner;
    key |= token_match->key;
  }
  if (cookie_credential) {
    std::string value = *cookie_credential;
    if (!credentials.owner_token.empty() &&
        constant_time_equals(value, auth_cookie_value(credentials.sandbox_id, credentials.owner_token)))
      owner = true;
    if (has_key && constant_time_equals(value, auth_cookie_value(credentials.sandbox_id, *credentials.api_key)))
      key = true;
  }

  if (!owner && !has_key) {
    verdict.kind = ProxyAuthVerdict::Kind::forbidden;
    verdict.reason = "this sandbox was provisioned without SANDBOX_API_KEY in env_vars, so its URL is closed";
    return verdict;
  }
  if (!owner && !key) {
    verdict.kind = ProxyAuthVerdict::Kind::unauthorized;
    verdict.reason = target.token ? "the token in the URL is not this sandbox's SANDBOX_API_KEY"
                                  : "this sandbox's URL needs its SANDBOX_API_KEY: send Authorization: Bearer <key>, "
                                    "or open the URL once with ?token=<key>";
    return verdict;
  }
  bool is_get = request.method == "GET" || request.method == "HEAD";
  if (token_match && (token_match->owner || token_match->key) && is_get) {
    verdict.kind = ProxyAuthVerdict::Kind::redirect;
    verdict.location = join_target(target);
    std::string credential = token_match->key ? *credentials.api_key : credentials.owner_token;
    verdict.set_cookie = auth_cookie_name(credentials.host_port) + "=" +
                         auth_cookie_value(credentials.sandbox_id, credential) + "; Path=/; HttpOnly; SameSite=Lax";
    return verdict;
  }
  verdict.kind = ProxyAuthVerdict::Kind::allow;
  verdict.forwarded_target = join_target(target);
  verdict.drop_authorization = bearer_used;
  if (!other_cookies.empty()) verdict.forwarded_cookie = other_cookies;
  return verdict;
}

}  // namespace modbox::front
