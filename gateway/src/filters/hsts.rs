//! `routes[N].hsts`: answers over HTTPS tell browsers to use HTTPS only for this host for a
//! year (RFC 6797). Not sent over plain HTTP: browsers ignore it there, and it would be a
//! promise the plain listener cannot keep. First in the chain, so that it is on every answer
//! of the route, refusals included.

use crate::{
    http_types::{HeaderName, HeaderValue},
    pipeline::{filter::Filter, message::Response, session::Session},
};

const STRICT_TRANSPORT_SECURITY: HeaderName = HeaderName::from_static("strict-transport-security");
/// One year, without `includeSubDomains` (which would bind hosts this route does not serve).
const ONE_YEAR: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// The route's HSTS header.
#[derive(Debug)]
pub struct Hsts;

impl Filter for Hsts {
    fn name(&self) -> &'static str {
        "hsts"
    }

    fn response(&self, session: &mut Session, response: &mut Response) {
        if session.tls.is_some() {
            response.headers.insert(STRICT_TRANSPORT_SECURITY, ONE_YEAR);
        }
    }
}
