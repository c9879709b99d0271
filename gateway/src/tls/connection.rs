//! What a TLS connection negotiated, kept with the connection for the requests on it: the
//! `X-Forwarded-Proto` they get, and the access log's and span's TLS fields.

use super::client_auth::ClientIdentity;

/// The facts of one TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTls {
    /// `1.2` or `1.3` (OTel's `tls.protocol.version`).
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<Box<str>>,
    /// The application protocol agreed by ALPN (`h2`, `http/1.1`), if any.
    pub alpn: Option<&'static str>,
    /// The client's verified certificate, on a listener that asks for one (mTLS).
    pub client: Option<ClientIdentity>,
}

impl ConnectionTls {
    /// Reads a server connection after its handshake.
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "",
        };
        let cipher = conn.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("");
        let alpn = match conn.alpn_protocol() {
            Some(b"h2") => Some("h2"),
            Some(b"http/1.1") => Some("http/1.1"),
            _ => None,
        };
        // rustls verified the chain against the listener's CA before the handshake finished.
        let client = conn.peer_certificates().and_then(|chain| chain.first()).and_then(ClientIdentity::of);
        Self { version, cipher, sni: conn.server_name().map(Into::into), alpn, client }
    }
}
