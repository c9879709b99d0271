use super::{token::take_query_param, *};
use crate::config::values::KeyKind;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn algorithms_are_pinned_to_one_family_and_never_none() {
    assert_eq!(parse_algorithms(&names(&["RS256", "PS256"])).unwrap(), [Algorithm::RS256, Algorithm::PS256]);
    assert!(parse_algorithms(&names(&["none"])).unwrap_err().contains("never accepted"));
    assert!(parse_algorithms(&names(&["HS256", "RS256"])).unwrap_err().contains("same kind of key"));
    assert!(parse_algorithms(&names(&["ES512"])).unwrap_err().contains("unknown algorithm"));
    assert!(parse_algorithms(&[]).unwrap_err().contains("list the accepted algorithms"));
}

#[test]
fn key_kinds_refuse_the_hs_rs_confusion() {
    assert!(KeyKind::Secret.accepts(&[Algorithm::HS256]).is_ok());
    assert!(KeyKind::Secret.accepts(&[Algorithm::RS256]).is_err());
    assert!(KeyKind::PublicKey.accepts(&[Algorithm::HS256]).is_err());
    assert!(KeyKind::Jwks.accepts(&[Algorithm::ES256]).is_ok());
}

#[test]
fn a_query_token_is_cut_out_and_the_rest_kept_byte_for_byte() {
    let (token, rest) = take_query_param("a=1&access_token=x.y.z&b=%2F&access_token=again", "access_token").unwrap();
    assert_eq!(token, "x.y.z");
    assert_eq!(rest, "a=1&b=%2F");
    assert_eq!(take_query_param("access_token=t", "access_token").unwrap().1, "");
    assert!(take_query_param("token_x=1", "token").is_none());
    assert!(take_query_param("access_token=", "access_token").is_none());
}

#[test]
fn unsigned_tokens_are_an_algorithm_rejection() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(r#"{"sub":"x"}"#));
    assert!(jsonwebtoken::decode_header(&none).is_err(), "jsonwebtoken has no `none`");
    assert_eq!(token::header_rejection(&none), Rejection::AlgorithmNotAllowed);
    assert_eq!(token::header_rejection("not-a-token"), Rejection::Malformed);
    assert_eq!(token::header_rejection(&format!("{}.e30.", b64("{}"))), Rejection::Malformed);
}

#[test]
fn challenges_follow_rfc_6750() {
    assert_eq!(Rejection::Missing.challenge(), "Bearer realm=\"rustygate\"");
    assert_eq!(
        Rejection::Expired.challenge(),
        "Bearer realm=\"rustygate\", error=\"invalid_token\", error_description=\"the token has expired\""
    );
    assert!(Rejection::Malformed.challenge().to_str().unwrap().contains("invalid_request"));
    let labels: std::collections::HashSet<_> = Rejection::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(labels.len(), Rejection::ALL.len(), "labels are distinct");
}
