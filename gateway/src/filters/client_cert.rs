//! `routes[N].client_cert`: the route asks for a verified client certificate (mTLS), and
//! optionally one of given subjects or subject alternative names. First in the route's chain:
//! the connection's identity is known before anything else is looked at, and costs nothing to
//! check.

use crate::{
    config::RouteClientCertConfig,
    error::GatewayError,
    pipeline::{
        filter::{Filter, Phase},
        session::Session,
    },
};

/// A route's client-certificate requirement.
#[derive(Debug)]
pub struct ClientCertFilter {
    allowed_subjects: Vec<String>,
    allowed_sans: Vec<String>,
}

impl ClientCertFilter {
    /// The filter for a route's `client_cert`, or none when it asks nothing.
    pub fn new(config: &RouteClientCertConfig) -> Option<Self> {
        let asks = config.required || !config.allowed_subjects.is_empty() || !config.allowed_sans.is_empty();
        asks.then(|| Self {
            allowed_subjects: config.allowed_subjects.clone(),
            allowed_sans: config.allowed_sans.clone(),
        })
    }
}

impl Filter for ClientCertFilter {
    fn name(&self) -> &'static str {
        "client_cert"
    }

    fn request<'a>(&'a self, session: &'a mut Session) -> Phase<'a> {
        let Some(client) = session.tls.as_ref().and_then(|t| t.client.as_ref()) else {
            return Phase::Ready(Err(GatewayError::ClientCertRequired(
                "this route requires a client certificate (over HTTPS, signed by the listener's client CA)",
            )));
        };
        let open = self.allowed_subjects.is_empty() && self.allowed_sans.is_empty();
        if open
            || self.allowed_subjects.contains(&client.subject)
            || client.sans.iter().any(|san| self.allowed_sans.contains(san))
        {
            return Phase::CONTINUE;
        }
        Phase::Ready(Err(GatewayError::ClientCertRequired("the client certificate is not one this route allows")))
    }
}
