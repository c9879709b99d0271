//! Finding the token in a request: `Authorization: Bearer`, else the policy's cookie, else its
//! query parameter (which is then cut out of the query forwarded and logged).

use std::borrow::Cow;

use actix_web::{HttpRequest, http::header};
use base64::Engine;

use super::Rejection;

/// Looks for the token where the policy allows.
pub(super) fn find<'r>(
    req: &'r HttpRequest,
    cookie: Option<&str>,
    query_param: Option<&str>,
) -> Result<Cow<'r, str>, Rejection> {
    let mut auth = req.headers().get_all(header::AUTHORIZATION);
    if let Some(value) = auth.next() {
        if auth.next().is_some() {
            return Err(Rejection::Malformed);
        }
        let value = value.to_str().map_err(|_| Rejection::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(Rejection::Malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Rejection::Malformed);
        }
        return Ok(Cow::Borrowed(token));
    }
    if let Some(name) = cookie
        && let Some(token) = cookie_value(req, name)
    {
        return Ok(Cow::Borrowed(token));
    }
    if let Some(name) = query_param
        && let Some(query) = req.uri().query()
        && let Some((token, _)) = take_query_param(query, name)
    {
        return Ok(Cow::Owned(token));
    }
    Err(Rejection::Missing)
}

fn cookie_value<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Removes every `name=…` pair from a raw query; returns the (percent-decoded) first value and
/// the rest of the query, byte for byte.
pub fn take_query_param(query: &str, name: &str) -> Option<(String, String)> {
    let mut token = None;
    let mut rest = String::with_capacity(query.len());
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if query_key_is(key, name) {
            if token.is_none() {
                let raw = pair.split_once('=').map_or("", |(_, v)| v);
                token = url::form_urlencoded::parse(format!("v={raw}").as_bytes()).next().map(|(_, v)| v.into_owned());
            }
            continue;
        }
        if !rest.is_empty() {
            rest.push('&');
        }
        rest.push_str(pair);
    }
    token.filter(|t| !t.is_empty()).map(|t| (t, rest))
}

/// Whether a raw query key names `name` once decoded, as the backend will read it
/// (`access%5Ftoken` is `access_token`).
pub fn query_key_is(raw_key: &str, name: &str) -> bool {
    if !raw_key.contains(['%', '+']) {
        return raw_key == name;
    }
    url::form_urlencoded::parse(raw_key.as_bytes()).next().is_some_and(|(k, v)| v.is_empty() && k == name)
}

/// The query as the access log may show it: the value of every parameter named in `secrets`
/// (compared after decoding) replaced by `[redacted]`.
pub fn redact_query<'q>(query: &'q str, secrets: &[String]) -> Cow<'q, str> {
    let secret = |pair: &str| {
        let key = pair.split('=').next().unwrap_or_default();
        secrets.iter().any(|s| query_key_is(key, s))
    };
    if secrets.is_empty() || !query.split('&').any(secret) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if secret(pair) => Cow::Owned(format!("{key}=[redacted]")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// Why a token whose header does not parse is refused: a readable header with an `alg` the
/// library does not know (such as `none`) is an algorithm rejection, anything else malformed.
pub(super) fn header_rejection(token: &str) -> Rejection {
    let Some(encoded) = token.split('.').next() else {
        return Rejection::Malformed;
    };
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|header| header.get("alg").map(|a| a.is_string()));
    if alg == Some(true) && token.split('.').count() == 3 {
        Rejection::AlgorithmNotAllowed
    } else {
        Rejection::Malformed
    }
}
