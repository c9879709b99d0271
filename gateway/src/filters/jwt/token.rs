//! Finding the token in a request: `Authorization: Bearer`, else the policy's cookie, else its
//! query parameter (which is then cut out of the query forwarded and logged).

use std::borrow::Cow;

use crate::{http_types::header, pipeline::message::RequestHead};
use base64::Engine;

use super::rejection::Rejection;

/// Looks for the token where the policy allows.
pub(super) fn find<'r>(
    req: &'r RequestHead,
    cookie: Option<&str>,
    query_param: Option<&str>,
) -> Result<Cow<'r, str>, Rejection> {
    let mut auth = req.headers.get_all(header::AUTHORIZATION).iter();
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
        && let Some(query) = req.uri.query()
        && let Some((token, _)) = take_query_param(query, name)
    {
        return Ok(Cow::Owned(token));
    }
    Err(Rejection::Missing)
}

fn cookie_value<'r>(req: &'r RequestHead, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
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
/// replaced by `[redacted]`. Generous on purpose, as backends differ: pairs split on `&` and
/// `;`, keys compared after decoding and with `.` and space read as `_` (PHP reads
/// `access.token` as `access_token`).
pub fn redact_query<'q>(query: &'q str, secrets: &[String]) -> Cow<'q, str> {
    let secret = |pair: &str| {
        let key = pair.split('=').next().unwrap_or_default();
        secrets.iter().any(|s| loose_key_is(key, s))
    };
    if secrets.is_empty() || !query.split(['&', ';']).any(secret) {
        return Cow::Borrowed(query);
    }
    // Per `&`-separated pair: from the first `;`-separated part naming a secret, everything up
    // to the next `&` is hidden (a backend splitting on `&` only reads all of it as the value).
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            let mut offset = 0;
            for part in pair.split(';') {
                if secret(part)
                    && let Some(eq) = part.find('=')
                {
                    return Cow::Owned(format!("{}=[redacted]", &pair[..offset + eq]));
                }
                offset += part.len() + 1;
            }
            Cow::Borrowed(pair)
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// [`query_key_is`], also reading `.` and space in the decoded key as `_`.
fn loose_key_is(raw_key: &str, name: &str) -> bool {
    if query_key_is(raw_key, name) {
        return true;
    }
    let decoded: String = url::form_urlencoded::parse(raw_key.as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c == '.' || c == ' ' { '_' } else { c })
        .collect();
    decoded == name
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_found_and_redacted_as_backends_read_them() {
        assert_eq!(take_query_param("a=1&access%5Ftoken=T&b=2", "access_token"), Some(("T".into(), "a=1&b=2".into())));
        let secrets = ["access_token".to_owned()];
        assert_eq!(redact_query("a=1&b=2", &secrets), "a=1&b=2");
        assert_eq!(
            redact_query("a=1;access_token=T4&access.token=T5&access+token=T6&access%5ftoken=T7", &secrets),
            "a=1;access_token=[redacted]&access.token=[redacted]&access+token=[redacted]&access%5ftoken=[redacted]"
        );
    }
}
