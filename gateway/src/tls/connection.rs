//! What a TLS connection negotiated, kept with the connection for the requests on it: the
//! `X-Forwarded-Proto` they get, and the access log's and span's TLS fields.

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
        Self { version, cipher, sni: conn.server_name().map(Into::into), alpn }
    }
}
