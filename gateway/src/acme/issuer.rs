//! One ACME order, start to end: the account (its key kept in the state directory), the order
//! for the configured domains, each authorization's challenge answered by the listeners, the
//! finalization (a new ECDSA P-256 key and its CSR, made by instant-acme with rcgen) and the
//! chain, saved and then served.

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient, Identifier, Key, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{
    certificates::{AcmeCertificates, Source, from_pem},
    state_dir::StateDir,
};
use crate::tls::LoadedCertificate;

/// How a domain proves control to the CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// A token served over plain HTTP on port 80 (`server.listen`).
    Http01,
    /// A validation certificate on the HTTPS listener, for ALPN `acme-tls/1`.
    TlsAlpn01,
}

/// What an order needs, made once from `server.tls.acme`.
pub struct Issuer {
    /// The directory URL.
    pub directory: String,
    /// `mailto:` contact, if an email was configured.
    pub contact: Option<String>,
    /// The challenge answered.
    pub challenge: Challenge,
    /// The state directory.
    pub state: StateDir,
    /// The certificates the listeners serve, and the challenges they answer.
    pub certificates: Arc<AcmeCertificates>,
    http: Arc<reqwest::Client>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("directory", &self.directory).field("challenge", &self.challenge).finish()
    }
}

/// How long one order may take, validations included, before it is given up (and retried).
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

impl Issuer {
    /// An issuer for `directory`, trusting `directory_ca` (PEM) for its HTTPS, or the system's
    /// roots.
    pub fn new(
        directory: String,
        email: Option<&str>,
        challenge: Challenge,
        directory_ca: Option<&std::path::Path>,
        state_dir: &std::path::Path,
        certificates: Arc<AcmeCertificates>,
    ) -> Result<Self, String> {
        let tls = crate::tls::upstream::client_config(directory_ca, None, None, false)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the ACME client: {e}"))?;
        Ok(Self {
            directory,
            contact: email.map(|e| format!("mailto:{e}")),
            challenge,
            state: StateDir::open(state_dir)?,
            certificates,
            http: Arc::new(http),
        })
    }

    /// The certificate kept in the state directory, if it is for the configured domains and
    /// still valid (a restart serves it without a new order).
    pub fn stored(&self) -> Result<Option<LoadedCertificate>, String> {
        let Some((chain, key)) = self.state.certificate()? else { return Ok(None) };
        let cert = from_pem(&chain, &key, &self.state.certificate_path())?;
        let mut wanted = self.certificates.domains().to_vec();
        let mut held = cert.names.clone();
        wanted.sort();
        held.sort();
        Ok((wanted == held).then_some(cert))
    }

    /// Runs one order; on success the new certificate is saved and served.
    pub async fn issue(&self) -> Result<LoadedCertificate, String> {
        let result = tokio::time::timeout(ORDER_TIMEOUT, self.order()).await;
        // Whatever happened, the validation answers are withdrawn.
        self.certificates.clear_challenges();
        let (chain, key) = match result {
            Err(_) => return Err(format!("the order took longer than {}s", ORDER_TIMEOUT.as_secs())),
            Ok(r) => r?,
        };
        let cert = from_pem(&chain, &key, &self.state.certificate_path())
            .map_err(|e| format!("the issued certificate cannot be served: {e}"))?;
        self.state.save_certificate(&chain, &key)?;
        self.certificates.install(cert.clone(), Source::Acme);
        Ok(cert)
    }

    async fn account(&self) -> Result<Account, String> {
        let der = match self.state.account_key()? {
            Some(der) => der,
            None => {
                let (_, pkcs8) = Key::generate_pkcs8().map_err(|e| format!("cannot make an account key: {e}"))?;
                self.state.save_account_key(pkcs8.secret_pkcs8_der())?;
                pkcs8.secret_pkcs8_der().to_vec()
            }
        };
        let key = Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(der.as_slice()))
            .map_err(|e| format!("the saved account key cannot be used: {e}"))?;
        // Found, or created, at the configured directory: a CA that forgot the account (a
        // test CA restarted) gets it again under the same key.
        let (account, _) = Account::builder_with_http(Box::new(AcmeHttp(self.http.clone())))
            .create_from_key((key, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))), self.directory.clone())
            .await
            .map_err(|e| format!("account at {}: {e}", self.directory))?;
        if let Some(contact) = &self.contact
            && let Err(e) = account.update_contacts(&[contact.as_str()]).await
        {
            tracing::debug!(error = %e, "the ACME account's contact could not be set");
        }
        Ok(account)
    }

    /// The order itself: the chain and the key (PEM).
    async fn order(&self) -> Result<(String, String), String> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> =
            self.certificates.domains().iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| format!("new order: {e}"))?;
        let kind = match self.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                // Already proven (a recent order for the same names).
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("an authorization is {other:?}")),
            }
            let mut challenge =
                authorization.challenge(kind.clone()).ok_or_else(|| format!("the CA offers no {kind:?} challenge"))?;
            let domain = challenge.identifier().to_string();
            let key_authorization = challenge.key_authorization();
            match self.challenge {
                Challenge::Http01 => {
                    self.certificates.add_http01(challenge.token.clone(), key_authorization.as_str().to_owned())
                }
                Challenge::TlsAlpn01 => self.certificates.add_alpn(&domain, key_authorization.digest().as_ref())?,
            }
            challenge.set_ready().await.map_err(|e| format!("challenge for {domain}: {e}"))?;
        }
        let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        match order.poll_ready(&retries).await.map_err(|e| format!("validation: {e}"))? {
            OrderStatus::Ready => {}
            other => {
                return Err(format!("the order is {other:?} after validation (the CA could not reach the gateway?)"));
            }
        }
        let key = order.finalize().await.map_err(|e| format!("finalize: {e}"))?;
        let chain = order.poll_certificate(&retries).await.map_err(|e| format!("certificate: {e}"))?;
        Ok((chain, key))
    }

    /// Where the chain is kept.
    pub fn certificate_path(&self) -> PathBuf {
        self.state.certificate_path()
    }
}

/// instant-acme's HTTP, over the reqwest client the gateway already has (its own rustls
/// configuration: the directory's CA, the aws-lc-rs provider).
struct AcmeHttp(Arc<reqwest::Client>);

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let (status, headers) = (response.status(), response.headers().clone());
            let bytes = response.bytes().await.map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let mut answer = http::Response::new(http_body_util::Full::new(bytes));
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(BytesResponse::from(answer))
        })
    }
}
