//! Why a JWT policy refused a request: one [`Rejection`] per cause, which is the metric label,
//! the error body's message and the `WWW-Authenticate` challenge at once.

use crate::http_types::HeaderValue;
use jsonwebtoken::errors::ErrorKind;

/// Why a request was refused; `label()` is the `reason` of `rustygate_auth_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No token anywhere the policy looks.
    Missing,
    /// Not a bearer token, or not a well-formed JWT.
    Malformed,
    /// `alg` is not one the policy accepts (including `none`).
    AlgorithmNotAllowed,
    /// No key with the token's `kid` (after a JWKS refetch).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not an accepted issuer.
    WrongIssuer,
    /// `aud` names none of the accepted audiences.
    WrongAudience,
    /// A required claim is absent.
    MissingClaim,
    /// A claim has the wrong type (such as a string `exp`).
    InvalidClaim,
}

impl Rejection {
    /// Every rejection, for creating the metric series up front.
    pub const ALL: [Self; 11] = [
        Self::Missing,
        Self::Malformed,
        Self::AlgorithmNotAllowed,
        Self::UnknownKey,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::MissingClaim,
        Self::InvalidClaim,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
            Self::InvalidClaim => "invalid_claim",
        }
    }

    /// The message of the JSON body and the `error_description` (no quotes or backslashes).
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => "a bearer token is required",
            Self::Malformed => "the token is not a well-formed JWT bearer token",
            Self::AlgorithmNotAllowed => "the token's signing algorithm is not accepted",
            Self::UnknownKey => "the token was signed with an unknown key",
            Self::BadSignature => "the token's signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::WrongIssuer => "the token's issuer is not accepted",
            Self::WrongAudience => "the token's audience is not accepted",
            Self::MissingClaim => "the token lacks a required claim",
            Self::InvalidClaim => "the token has an invalid claim",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3): no error code when no token was sent.
    pub fn challenge(self) -> HeaderValue {
        let value = match self {
            Self::Missing => "Bearer realm=\"rustygate\"".to_owned(),
            Self::Malformed => format!(
                "Bearer realm=\"rustygate\", error=\"invalid_request\", error_description=\"{}\"",
                self.description()
            ),
            _ => format!(
                "Bearer realm=\"rustygate\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            ),
        };
        HeaderValue::from_str(&value).expect("challenges are ASCII")
    }

    pub(super) fn from_jwt_error(kind: &ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::MissingRequiredClaim(_) => Self::MissingClaim,
            ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => Self::InvalidClaim,
            // The key cannot verify this algorithm (family mismatch).
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::UnsupportedAlgorithm => Self::AlgorithmNotAllowed,
            _ => Self::Malformed,
        }
    }
}
