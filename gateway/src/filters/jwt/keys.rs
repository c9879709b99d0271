//! Verification keys: a static key (`secret`, `public_key_file`) or a JWKS key set (`jwks_file`,
//! `jwks_url`). A JWKS is re-read on a schedule and at once when a token names an unknown
//! `kid` — at most once per `jwks_min_refetch`, with concurrent requests waiting on one fetch —
//! and a failed fetch keeps the last good set. Both are timed on tokio's clock: the monotonic
//! clock, except in a test that pauses it.

use std::{
    path::PathBuf,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use jsonwebtoken::{
    Algorithm, DecodingKey, Header, Validation,
    jwk::{JwkSet, PublicKeyUse},
};
use prometheus::IntCounterVec;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::rejection::Rejection;
use crate::config::JwtConfig;

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Time allowed for one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

use crate::background::TaskSet;
pub use crate::metrics::JwksMetrics;

/// One verification key.
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// The keys a policy currently trusts.
#[derive(Default)]
pub(super) struct KeySet(Vec<Key>);

impl KeySet {
    /// Keys that may have signed a token with this `kid` and `alg`: those with that `kid` and
    /// those without one (a static key, a JWK without `kid`); every key when the token names
    /// none. Keys of another family or another declared `alg` are never tried.
    fn candidates<'a>(&'a self, kid: Option<&'a str>, alg: Algorithm) -> impl Iterator<Item = &'a DecodingKey> {
        self.0
            .iter()
            .filter(move |k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            .filter(move |k| k.alg.is_none_or(|a| a == alg) && k.key.family() == alg.family())
            .map(|k| &k.key)
    }

    /// Parses a JWKS document, keeping the signature keys it can use.
    fn from_jwks(bytes: &[u8]) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let alg = match jwk.common.key_algorithm {
                Some(a) => match Algorithm::from_str(&a.to_string()) {
                    Ok(alg) => Some(alg),
                    Err(_) => continue, // an encryption algorithm
                },
                None => None,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                continue; // shared secrets have no place in a public key set
            }
            keys.push(Key { kid: jwk.common.key_id.clone(), alg, key });
        }
        if keys.is_empty() {
            return Err("the JWKS has no usable signature key".into());
        }
        Ok(Self(keys))
    }
}

/// Where a policy's keys come from.
pub(super) enum Keys {
    Static(KeySet),
    Jwks(Arc<Jwks>),
}

impl Keys {
    pub(super) fn new(
        policy: &str,
        config: &JwtConfig,
        algorithms: &[Algorithm],
        background: &tokio::runtime::Handle,
        metrics: &JwksMetrics,
        tasks: &TaskSet,
    ) -> Result<Self, String> {
        if let Some(secret) = &config.secret {
            let key = DecodingKey::from_secret(secret.as_bytes());
            return Ok(Self::Static(KeySet(vec![Key { kid: None, alg: None, key }])));
        }
        if let Some(path) = &config.public_key_file {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read public_key_file {path:?}: {e}"))?;
            let key = match algorithms[0].family() {
                jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Hmac => unreachable!("validation pairs HS* with a secret"),
            }
            .map_err(|e| format!("public_key_file {path:?} is not a PEM public key for {:?}: {e}", algorithms[0]))?;
            return Ok(Self::Static(KeySet(vec![Key { kid: None, alg: None, key }])));
        }
        let (location, initial) = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => {
                let bytes = std::fs::read(path).map_err(|e| format!("cannot read jwks_file {path:?}: {e}"))?;
                let set = KeySet::from_jwks(&bytes).map_err(|e| format!("jwks_file {path:?}: {e}"))?;
                tracing::info!(policy, keys = set.0.len(), "JWKS loaded");
                metrics.0.with_label_values(&[policy, "success"]).inc();
                (Location::File(path.into()), Some(set))
            }
            (None, Some(url)) => (Location::Url(url.clone()), None),
            (None, None) => return Err("no key source".into()),
        };
        let fetched = initial.is_some();
        let jwks = Arc::new(Jwks {
            policy: policy.into(),
            location,
            current: ArcSwap::from_pointee(initial.unwrap_or_default()),
            generation: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            min_refetch: config.jwks_min_refetch.0,
            last_fetch: Mutex::new(fetched.then(Instant::now)),
            fetch_lock: tokio::sync::Mutex::new(()),
            background: background.clone(),
            client: std::sync::OnceLock::new(),
            metrics: metrics.0.clone(),
        });
        for result in ["success", "error"] {
            jwks.metrics.with_label_values(&[policy, result]);
        }
        let weak = Arc::downgrade(&jwks);
        let every = config.jwks_refresh.0;
        tasks.spawn(background, async move {
            if !fetched && let Some(jwks) = weak.upgrade() {
                let _guard = jwks.fetch_lock.lock().await;
                // A request with a token may have fetched first.
                if jwks.generation.load(Ordering::Acquire) == 0 {
                    jwks.fetch().await;
                }
            }
            loop {
                tokio::time::sleep(every).await;
                let Some(jwks) = weak.upgrade() else { break };
                let _guard = jwks.fetch_lock.lock().await;
                jwks.fetch().await;
            }
        });
        Ok(Self::Jwks(jwks))
    }

    /// Changes whenever the trusted key set does (tokens verified before must be verified again).
    pub(super) fn version(&self) -> u64 {
        match self {
            Self::Static(_) => 0,
            Self::Jwks(jwks) => jwks.swaps.load(Ordering::Acquire),
        }
    }

    /// Verifies the token's signature and claims with the key it names.
    pub(super) async fn verify(
        &self,
        token: &str,
        header: &Header,
        validation: &Validation,
    ) -> Result<Map<String, Value>, Rejection> {
        match self {
            Self::Static(set) => verify_with(set, token, header, validation),
            Self::Jwks(jwks) => {
                let set = jwks.current.load_full();
                if set.candidates(header.kid.as_deref(), header.alg).next().is_some() {
                    return verify_with(&set, token, header, validation);
                }
                // An unknown key: perhaps a rotation the schedule has not seen yet.
                if jwks.refetch_for_unknown_key().await {
                    return verify_with(&jwks.current.load_full(), token, header, validation);
                }
                Err(Rejection::UnknownKey)
            }
        }
    }
}

fn verify_with(
    set: &KeySet,
    token: &str,
    header: &Header,
    validation: &Validation,
) -> Result<Map<String, Value>, Rejection> {
    let mut outcome = Err(Rejection::UnknownKey);
    for key in set.candidates(header.kid.as_deref(), header.alg) {
        match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
            Ok(data) => return Ok(data.claims),
            // Without a `kid` several keys may be tried; only a bad signature moves on.
            Err(e) => {
                outcome = Err(Rejection::from_jwt_error(e.kind()));
                if outcome != Err(Rejection::BadSignature) {
                    return outcome;
                }
            }
        }
    }
    outcome
}

enum Location {
    File(PathBuf),
    Url(String),
}

/// A JWKS key set and its refresh state.
pub(super) struct Jwks {
    policy: Arc<str>,
    location: Location,
    current: ArcSwap<KeySet>,
    /// Counts fetch attempts, so requests that waited for one know it happened.
    generation: AtomicU64,
    /// Counts key sets swapped in (the token cache's validity).
    swaps: AtomicU64,
    min_refetch: Duration,
    last_fetch: Mutex<Option<Instant>>,
    /// Held while fetching: concurrent requests with unknown keys wait for one fetch.
    fetch_lock: tokio::sync::Mutex<()>,
    background: tokio::runtime::Handle,
    client: std::sync::OnceLock<reqwest::Client>,
    metrics: IntCounterVec,
}

impl Jwks {
    /// Refetches on a request's behalf, unless one ran within `min_refetch`; true if a fetch
    /// ran (by this request or one it waited for).
    async fn refetch_for_unknown_key(self: &Arc<Self>) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let this = self.clone();
        // The fetch runs on the background runtime, which owns the HTTP client.
        let task = self.background.spawn(async move {
            let _guard = this.fetch_lock.lock().await;
            if this.generation.load(Ordering::Acquire) != seen {
                return true; // someone fetched while this request waited
            }
            let recent = this.last_fetch.lock().expect("not poisoned").is_some_and(|t| t.elapsed() < this.min_refetch);
            if recent {
                return false;
            }
            this.fetch().await;
            true
        });
        task.await.unwrap_or(false)
    }

    /// Fetches the key set and swaps it in; on failure keeps the last good one. The caller
    /// holds `fetch_lock`.
    async fn fetch(&self) {
        *self.last_fetch.lock().expect("not poisoned") = Some(Instant::now());
        let result = match &self.location {
            Location::File(path) => tokio::fs::read(path).await.map_err(|e| format!("cannot read {path:?}: {e}")),
            Location::Url(url) => self.download(url).await,
        }
        .and_then(|bytes| KeySet::from_jwks(&bytes));
        match result {
            Ok(set) => {
                tracing::info!(policy = &*self.policy, keys = set.0.len(), "JWKS loaded");
                self.current.store(Arc::new(set));
                self.swaps.fetch_add(1, Ordering::Release);
                self.metrics.with_label_values(&[&*self.policy, "success"]).inc();
            }
            Err(e) => {
                tracing::warn!(
                    policy = &*self.policy,
                    error = e.as_str(),
                    "JWKS fetch failed; keeping the last good key set"
                );
                self.metrics.with_label_values(&[&*self.policy, "error"]).inc();
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().expect("a default reqwest client builds")
        });
        // Errors name the URL redacted (userinfo and query values may be credentials), and
        // reqwest's own text without its copy of the URL.
        let shown = || crate::config::redacted_url(url);
        let mut resp = client.get(url).send().await.map_err(|e| format!("GET {}: {}", shown(), e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("GET {}: status {}", shown(), resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {}: {}", shown(), e.without_url()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("GET {}: larger than {MAX_JWKS_BYTES} bytes", shown()));
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

    /// A JWKS document with the public half of `tests/keys/rsa.key` as `kid`.
    fn jwks_doc(kid: &str) -> String {
        let pem = std::fs::read(format!("{KEYS}/rsa.key")).unwrap();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::json!({ "keys": [jwk] }).to_string()
    }

    /// A policy `p` reading `file`'s JWKS, refreshed every `refresh` seconds, refetched for an
    /// unknown `kid` at most every `min_refetch` seconds; its timer runs on `rt`.
    fn file_keys(
        rt: &tokio::runtime::Runtime,
        file: &std::path::Path,
        refresh: u64,
        min_refetch: u64,
    ) -> (Arc<Jwks>, JwksMetrics, TaskSet) {
        let config = JwtConfig {
            algorithms: vec!["RS256".into()],
            jwks_file: Some(file.display().to_string()),
            jwks_refresh: HumanDuration::secs(refresh),
            jwks_min_refetch: HumanDuration::secs(min_refetch),
            ..JwtConfig::default()
        };
        let opts = prometheus::Opts::new("jwks_fetches", "fetches");
        let metrics = JwksMetrics(IntCounterVec::new(opts, &["policy", "result"]).unwrap());
        let tasks = TaskSet::default();
        // In the runtime, so that the read at start is timed on its paused clock.
        let _in_runtime = rt.enter();
        let keys = Keys::new("p", &config, &[Algorithm::RS256], rt.handle(), &metrics, &tasks).unwrap();
        let Keys::Jwks(jwks) = keys else { panic!("a JWKS policy") };
        (jwks, metrics, tasks)
    }

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
    }

    /// Lets ready tasks run (a file read finish on the blocking pool) until `done`, without
    /// moving the paused clock; fails after 10 s of real time.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < give_up, "{what}");
            tokio::task::yield_now().await;
        }
    }

    /// Lets every task that is ready run, without moving the paused clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn fetches(jwks: &Jwks) -> u64 {
        jwks.generation.load(Ordering::Acquire)
    }

    /// On a paused clock, the schedule re-reads the file exactly every `jwks_refresh` and swaps
    /// in what it read (fails if the interval were longer or shorter by a millisecond).
    #[test]
    fn the_schedule_rereads_a_jwks_every_jwks_refresh() {
        let rt = paused_runtime();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks_doc("k1")).unwrap();
        let (jwks, metrics, _tasks) = file_keys(&rt, &file, 60, 1);
        let kid = |jwks: &Jwks| jwks.current.load().0[0].kid.clone().unwrap();
        assert_eq!(metrics.0.with_label_values(&["p", "success"]).get(), 1, "read at start");
        let last_read = |jwks: &Jwks| *jwks.last_fetch.lock().unwrap();
        rt.block_on(async {
            for (round, next) in [(1, "k2"), (2, "k3")] {
                settle().await; // the schedule's sleep starts
                std::fs::write(&file, jwks_doc(next)).unwrap();
                let read = last_read(&jwks);
                tokio::time::advance(Duration::from_millis(59_999)).await;
                settle().await; // a read due now would have begun (it notes its time first)
                assert_eq!(last_read(&jwks), read, "no read 1 ms before refresh {round}");
                assert_eq!(fetches(&jwks), round - 1);
                tokio::time::advance(Duration::from_millis(1)).await;
                until("the scheduled read", || fetches(&jwks) == round).await;
                assert_eq!(kid(&jwks), next, "refresh {round} swapped in the new set");
            }
        });
        assert_eq!(metrics.0.with_label_values(&["p", "success"]).get(), 3);
    }

    /// On a paused clock, an unknown `kid` refetches only once `jwks_min_refetch` has passed
    /// since the last read (fails if the interval were longer or shorter by a millisecond, or
    /// ignored).
    #[test]
    fn an_unknown_kid_refetches_at_most_once_per_jwks_min_refetch() {
        let rt = paused_runtime();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks_doc("k1")).unwrap();
        let (jwks, _metrics, _tasks) = file_keys(&rt, &file, 3600, 30);
        rt.block_on(async {
            assert!(!jwks.refetch_for_unknown_key().await, "just read at start");
            tokio::time::advance(Duration::from_millis(29_999)).await;
            assert!(!jwks.refetch_for_unknown_key().await, "1 ms before jwks_min_refetch");
            assert_eq!(fetches(&jwks), 0);
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(jwks.refetch_for_unknown_key().await, "jwks_min_refetch after the read");
            assert_eq!(fetches(&jwks), 1);
            assert!(!jwks.refetch_for_unknown_key().await, "the next one waits for the interval again");
            tokio::time::advance(Duration::from_secs(30)).await;
            assert!(jwks.refetch_for_unknown_key().await);
            assert_eq!(fetches(&jwks), 2);
        });
    }
}
