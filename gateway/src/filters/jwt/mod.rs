//! JWT authentication: a compiled policy finds the bearer token (the `Authorization` header,
//! then an optional cookie, then an optional query parameter), checks its algorithm against the
//! policy's pinned list before anything else, verifies the signature with a static key or a
//! JWKS key set, validates `exp`/`nbf` (with leeway), `iss`, `aud` and the required claims, and
//! yields the headers to send to the backend. Every failure is one [`Rejection`], which is both
//! the `reason` label of `rustygate_auth_rejected_total` and the 401's `error_description`.

mod keys;
pub mod rejection;
pub mod token;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use opentelemetry::KeyValue;
use prometheus::IntCounter;
use serde_json::{Map, Value};

pub use keys::JwksMetrics;
use keys::Keys;
pub use rejection::Rejection;

use crate::{
    background::TaskSet,
    config::{JwtConfig, values::parse_algorithms},
    error::GatewayError,
    http_types::{HeaderName, HeaderValue, header},
    metrics::Metrics,
    pipeline::{
        filter::{Filter, Flow, Phase},
        message::RequestHead,
        session::{LogFields, Session},
    },
};

/// A verified token: what it gives the pipeline, and when it stops being valid.
#[derive(Debug)]
pub struct Verified {
    /// Headers to add to the upstream request (forwarded claims).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The token's claims (a rate limit may key on one).
    pub claims: Map<String, Value>,
    exp: Option<u64>,
    nbf: Option<u64>,
    keys_version: u64,
}

impl Verified {
    /// Whether `exp` and `nbf` still hold at `now` (seconds), with the policy's leeway.
    fn is_current(&self, now: u64, leeway: u64) -> bool {
        self.exp.is_none_or(|exp| exp.saturating_add(leeway) >= now)
            && self.nbf.is_none_or(|nbf| nbf <= now.saturating_add(leeway))
    }
}

/// What auth gives the rest of the pipeline.
#[derive(Debug)]
pub struct Authenticated {
    /// The verified token (shared with the token cache).
    pub verified: Arc<Verified>,
    /// When the query carries the policy's token parameter (whichever token was used): the
    /// query to forward instead, without it.
    pub query: Option<String>,
}

/// A compiled JWT policy.
pub struct JwtPolicy {
    /// The policy's name in the config.
    pub name: Arc<str>,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    keys: Keys,
    required: Vec<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    forward: Vec<(String, HeaderName)>,
    /// Client headers never forwarded on this policy's routes: the claim headers (so they
    /// cannot be forged) and, unless forwarded, `Authorization`.
    pub strip: Vec<HeaderName>,
    cookie: Option<String>,
    query_param: Option<String>,
    cache: Option<quick_cache::sync::Cache<String, Arc<Verified>>>,
    /// The JWKS refresh task, if the policy has one: it stops when a reload retires the policy.
    pub tasks: TaskSet,
}

impl std::fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtPolicy").field("name", &self.name).field("algorithms", &self.algorithms).finish()
    }
}

/// Installs jsonwebtoken's crypto provider (aws-lc-rs) once per process; verifying panics
/// without one (DEPS.md P5).
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

impl JwtPolicy {
    /// Compiles a validated policy: loads its key (reading `public_key_file` / `jwks_file` now)
    /// and, for a JWKS, starts its refresh task on `background`.
    pub fn new(
        name: &str,
        config: &JwtConfig,
        background: &tokio::runtime::Handle,
        metrics: &JwksMetrics,
    ) -> Result<Self, String> {
        install_crypto_provider();
        let algorithms = parse_algorithms(&config.algorithms)?;
        let tasks = TaskSet::default();
        let keys = Keys::new(name, config, &algorithms, background, metrics, &tasks)?;
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.clone();
        validation.leeway = config.leeway.0.as_secs();
        validation.validate_nbf = true;
        validation.validate_exp = true;
        // Presence is checked after decoding, for every required claim alike; the library
        // checks values (so a string `exp` is an invalid claim, not a missing one).
        validation.required_spec_claims.clear();
        let mut required = config.required_claims.clone();
        if !config.issuer.is_empty() {
            validation.set_issuer(&config.issuer);
            required.push("iss".into());
        }
        if config.audience.is_empty() {
            // A token's `aud` is only meaningful to a service that has one.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audience);
            required.push("aud".into());
        }
        required.sort();
        required.dedup();
        let forward: Vec<(String, HeaderName)> = config
            .forward_claims
            .iter()
            .map(|(claim, h)| {
                HeaderName::from_bytes(h.as_bytes())
                    .map(|n| (claim.clone(), n))
                    .map_err(|_| format!("bad header {h:?}"))
            })
            .collect::<Result<_, _>>()?;
        let mut strip: Vec<HeaderName> = forward.iter().map(|(_, h)| h.clone()).collect();
        if !config.forward_authorization {
            strip.push(header::AUTHORIZATION);
        }
        Ok(Self {
            name: name.into(),
            algorithms,
            validation,
            keys,
            required,
            issuers: config.issuer.clone(),
            audiences: config.audience.clone(),
            forward,
            strip,
            cookie: config.cookie.clone(),
            query_param: config.query_param.clone(),
            cache: (config.token_cache > 0).then(|| quick_cache::sync::Cache::new(config.token_cache as usize)),
            tasks,
        })
    }

    /// The query without this policy's token parameter, if the query carries one; what the
    /// access log shows instead of the real query, whether or not the token is valid.
    pub fn query_without_token(&self, query: &str) -> Option<String> {
        let param = self.query_param.as_deref()?;
        token::take_query_param(query, param).map(|(_, rest)| rest)
    }

    /// The decision for a request when it needs no waiting: no usable token (a rejection), or a
    /// token verified before and still valid (from the cache). `None`: the full check is needed
    /// ([`authenticate`](Self::authenticate)).
    pub fn authenticate_now(&self, req: &RequestHead) -> Option<Result<Authenticated, Rejection>> {
        let token = match token::find(req, self.cookie.as_deref(), self.query_param.as_deref()) {
            Ok(token) => token,
            Err(rejection) => return Some(Err(rejection)),
        };
        let verified = self.cache.as_ref()?.get(token.as_ref())?;
        let now = jsonwebtoken::get_current_timestamp();
        if verified.keys_version != self.keys.version() || !verified.is_current(now, self.validation.leeway) {
            return None;
        }
        let query = req.uri.query().and_then(|q| self.query_without_token(q));
        Some(Ok(Authenticated { verified, query }))
    }

    /// Authenticates a request. A token verified before (same text, same key set, still within
    /// `exp`/`nbf`) is taken from the cache without repeating the signature and claim work.
    pub async fn authenticate(&self, req: &RequestHead) -> Result<Authenticated, Rejection> {
        let token = token::find(req, self.cookie.as_deref(), self.query_param.as_deref())?;
        let keys_version = self.keys.version();
        let now = jsonwebtoken::get_current_timestamp();
        let cached = self.cache.as_ref().and_then(|c| c.get(token.as_ref()));
        let verified = match cached {
            Some(v) if v.keys_version == keys_version && v.is_current(now, self.validation.leeway) => v,
            _ => {
                let verified = Arc::new(self.verify(&token, keys_version).await?);
                if let Some(cache) = &self.cache {
                    cache.insert(token.into_owned(), verified.clone());
                }
                verified
            }
        };
        let query = req.uri.query().and_then(|q| self.query_without_token(q));
        Ok(Authenticated { verified, query })
    }

    /// The full check of a token: pinned algorithm, signature, claims.
    async fn verify(&self, token: &str, keys_version: u64) -> Result<Verified, Rejection> {
        let header = jsonwebtoken::decode_header(token.as_bytes()).map_err(|_| token::header_rejection(token))?;
        // Pinned algorithms first: nothing else about an unaccepted token is looked at.
        if !self.algorithms.contains(&header.alg) {
            return Err(Rejection::AlgorithmNotAllowed);
        }
        // RFC 7515 §4.1.11: a token marking extensions as critical MUST be rejected by a
        // verifier that does not understand them, and this one understands none.
        if header.crit.is_some() {
            return Err(Rejection::Malformed);
        }
        let claims = self.keys.verify(token, &header, &self.validation).await?;
        self.check_claims(&claims)?;
        let headers = self
            .forward
            .iter()
            .filter_map(|(claim, name)| {
                let value = match claims.get(claim)? {
                    Value::Null => return None,
                    // Bytes, not `from_str`: a UTF-8 name is a valid (obs-text) header value.
                    Value::String(s) => HeaderValue::from_bytes(s.as_bytes()).ok(),
                    other => HeaderValue::from_str(&other.to_string()).ok(),
                }?;
                Some((name.clone(), value))
            })
            .collect();
        let time = |name: &str| claims.get(name).and_then(Value::as_u64);
        Ok(Verified { exp: time("exp"), nbf: time("nbf"), keys_version, headers, claims })
    }

    /// Presence of the required claims (`null` is absent) and the types of `iss` and `aud`: the
    /// library skips the issuer and audience checks for values it cannot parse, such as a
    /// number or `null`, so they are checked here as well.
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), Rejection> {
        if let Some(missing) = self.required.iter().find(|c| claims.get(c.as_str()).is_none_or(Value::is_null)) {
            tracing::debug!(policy = &*self.name, claim = missing.as_str(), "token lacks a required claim");
            return Err(Rejection::MissingClaim);
        }
        if !self.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if self.issuers.contains(iss) => {}
                Some(Value::String(_)) => return Err(Rejection::WrongIssuer),
                _ => return Err(Rejection::InvalidClaim),
            }
        }
        if !self.audiences.is_empty() {
            let accepted = |v: &Value| v.as_str().is_some_and(|a| self.audiences.iter().any(|x| x == a));
            match claims.get("aud") {
                Some(aud @ Value::String(_)) if accepted(aud) => {}
                Some(Value::String(_)) => return Err(Rejection::WrongAudience),
                Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                    if !list.iter().any(accepted) {
                        return Err(Rejection::WrongAudience);
                    }
                }
                _ => return Err(Rejection::InvalidClaim),
            }
        }
        Ok(())
    }
}

/// A route's JWT policy in the pipeline: nothing about an unauthenticated request reaches the
/// backend, a bucket or a plugin. What it verified stays in the session ([`Authenticated`]) for
/// the filters after it (a rate limit keyed on a claim).
#[derive(Debug)]
pub struct JwtFilter {
    policy: Arc<JwtPolicy>,
    /// `rustygate_auth_rejected_total{route,reason}` of the route, in [`Rejection::ALL`] order.
    rejected: Vec<IntCounter>,
}

impl JwtFilter {
    /// The policy on route `route`, with its rejection counters (created at zero, so that
    /// rates and alerts work before the first rejection).
    pub fn new(policy: Arc<JwtPolicy>, metrics: &Metrics, route: &str) -> Self {
        let rejected =
            Rejection::ALL.iter().map(|r| metrics.auth_rejected_total.with_label_values(&[route, r.label()])).collect();
        Self { policy, rejected }
    }

    fn count(&self, reason: Rejection) {
        if let Some(i) = Rejection::ALL.iter().position(|r| *r == reason)
            && let Some(c) = self.rejected.get(i)
        {
            c.inc();
        }
    }
}

impl Filter for JwtFilter {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn request<'a>(&'a self, session: &'a mut Session) -> Phase<'a> {
        // A cached token or a missing one is decided at once; only a full check may wait (for
        // a JWKS fetch), and only it costs a boxed future.
        if let Some(outcome) = self.policy.authenticate_now(&session.head) {
            return Phase::Ready(self.conclude(session, outcome));
        }
        Phase::Pending(Box::pin(async move {
            let outcome = self.policy.authenticate(&session.head).await;
            self.conclude(session, outcome)
        }))
    }

    /// A token in the query is kept out of the access log, valid or not.
    fn logging(&self, _: &Session, fields: &mut LogFields) {
        if let Some((path, query)) = fields.target.split_once('?')
            && let Some(clean) = self.policy.query_without_token(query)
        {
            fields.target = if clean.is_empty() { path.to_owned() } else { format!("{path}?{clean}") };
        }
    }
}

impl JwtFilter {
    /// What an authentication outcome does to the request.
    fn conclude(&self, session: &mut Session, outcome: Result<Authenticated, Rejection>) -> Result<Flow, GatewayError> {
        match outcome {
            Ok(authenticated) => {
                // Claim headers are the gateway's word, not the client's: the client's copies
                // (and `Authorization`, unless forwarded) go, the verified claims come in.
                let upstream = &mut session.upstream;
                for name in &self.policy.strip {
                    upstream.headers.remove(name);
                }
                for (name, value) in &authenticated.verified.headers {
                    upstream.headers.insert(name.clone(), value.clone());
                }
                // A token that came in the query is not forwarded.
                if let Some(rest) = &authenticated.query {
                    upstream.query = Some(rest.clone()).filter(|q| !q.is_empty());
                }
                session.state.insert(authenticated);
                Ok(Flow::Continue)
            }
            Err(reason) => {
                self.count(reason);
                session.trace_event("auth rejected", || vec![KeyValue::new("rustygate.auth.reason", reason.label())]);
                Err(GatewayError::Unauthorized(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests;
