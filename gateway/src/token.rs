//! `rustygate token`: mints a signed JWT for trying a JWT policy out (the lab, curl, tests).
//! It signs with a shared secret (HS*) or a PEM private key (RS*, PS*, ES*, EdDSA).

use std::{str::FromStr, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// What to put in the token.
#[derive(Debug, Default)]
pub struct TokenSpec {
    /// `HS256`, `RS256`, …
    pub algorithm: String,
    /// Shared secret (HS*).
    pub secret: Option<String>,
    /// PEM private key file (RS*, PS*, ES*, EdDSA).
    pub key_file: Option<String>,
    /// `kid` header.
    pub kid: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud`.
    pub audience: Option<String>,
    /// Lifetime: `exp` = now + ttl.
    pub ttl: Duration,
    /// Extra claims as `name=value` (a value that parses as JSON is used as JSON).
    pub claims: Vec<String>,
}

/// Signs the token described by `spec`.
pub fn mint(spec: &TokenSpec) -> Result<String, String> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let alg = Algorithm::from_str(&spec.algorithm).map_err(|_| format!("unknown algorithm {:?}", spec.algorithm))?;
    // A key file wins over a secret (which may come from the environment's JWT_SECRET).
    let key = match (&spec.secret, &spec.key_file) {
        (Some(secret), None) => EncodingKey::from_secret(secret.as_bytes()),
        (_, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
            match alg.family() {
                jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Hmac => return Err("HS* algorithms sign with --secret".into()),
            }
            .map_err(|e| format!("{path:?} is not a PEM private key for {alg:?}: {e}"))?
        }
        (None, None) => return Err("give --secret (or JWT_SECRET) or --key-file".into()),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let mut claims = Map::new();
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + spec.ttl.as_secs()).into());
    for (name, value) in [("sub", &spec.subject), ("iss", &spec.issuer), ("aud", &spec.audience)] {
        if let Some(v) = value {
            claims.insert(name.into(), Value::String(v.clone()));
        }
    }
    for pair in &spec.claims {
        let (name, raw) = pair.split_once('=').ok_or_else(|| format!("--claim {pair:?}: expected name=value"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        claims.insert(name.to_owned(), value);
    }
    let mut header = Header::new(alg);
    header.kid = spec.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}
