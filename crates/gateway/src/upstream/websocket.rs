//! A WebSocket to a provider, for the Realtime API: the TCP connection (and TLS, with the public
//! roots and the provider's `ca_file`, through tokio-rustls as reqwest does) made here, the
//! handshake and framing by tungstenite. The provider's own headers and key go with the
//! handshake, never the client's.

use super::{Upstream, UpstreamError};
use axum::http::{HeaderMap, HeaderValue, Uri};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::client::{generate_key, Request};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// A connection either side of TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket open to a provider.
pub(crate) type ProviderSocket = WebSocketStream<Box<dyn Io>>;

impl Upstream {
    /// Opens a WebSocket to the provider's `path_and_query` (`/v1/realtime?model=...`), with
    /// the client's headers in `forwarded` (already filtered) beside the provider's own.
    pub(crate) async fn websocket(
        &self,
        path_and_query: &str,
        forwarded: &[(&'static str, HeaderValue)],
        project: Option<&tollgate_core::ProjectId>,
        config: WebSocketConfig,
    ) -> Result<ProviderSocket, UpstreamError> {
        let provider = &self.settings.name;
        let failed = |reason: String| UpstreamError::Failed {
            provider: provider.clone(),
            reason,
        };
        let url: Uri = self
            .url(path_and_query)
            .parse()
            .map_err(|e| failed(format!("its base_url makes no WebSocket URL: {e}")))?;
        let (tls, scheme, default_port) = match url.scheme_str() {
            Some("https") => (true, "wss", 443),
            Some("http") => (false, "ws", 80),
            _ => {
                return Err(failed(
                    "its base_url is neither http:// nor https://".into(),
                ))
            }
        };
        let host = url
            .host()
            .ok_or_else(|| failed("its base_url names no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_u16().unwrap_or(default_port);
        let authority = url
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut request = Request::builder()
            .uri(format!("{scheme}://{authority}{path}"))
            .header("host", &authority)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", generate_key());
        for (name, value) in forwarded {
            request = request.header(*name, value.clone());
        }
        // The provider's own headers and key (no client header is passed but `forwarded`).
        for (name, value) in &self.headers(&HeaderMap::new(), false, project) {
            request = request.header(name, value);
        }
        let request = request
            .body(())
            .map_err(|e| failed(format!("the handshake could not be written: {e}")))?;
        let connect_timeout = self.settings.connect_timeout;
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| UpstreamError::Connect {
                    provider: provider.clone(),
                    reason: e.to_string(),
                })?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if tls {
                let connector = tokio_rustls::TlsConnector::from(self.tls_config()?);
                let name = rustls_pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| failed(format!("its host is no TLS name: {e}")))?;
                Box::new(connector.connect(name, tcp).await.map_err(|e| {
                    UpstreamError::Connect {
                        provider: provider.clone(),
                        reason: format!("TLS: {e}"),
                    }
                })?)
            } else {
                Box::new(tcp)
            };
            Ok::<_, UpstreamError>(io)
        };
        let io = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::Connect {
                provider: provider.clone(),
                reason: format!("no connection within {} s", connect_timeout.as_secs()),
            })??;
        let handshake = tokio_tungstenite::client_async_with_config(request, io, Some(config));
        let (socket, _) = tokio::time::timeout(self.settings.timeout, handshake)
            .await
            .map_err(|_| UpstreamError::Timeout {
                provider: provider.clone(),
                seconds: self.settings.timeout.as_secs(),
            })?
            .map_err(|e| failed(format!("the WebSocket handshake failed: {e}")))?;
        Ok(socket)
    }

    /// The TLS client configuration: the public roots, and the provider's `ca_file`; made at
    /// the first session and kept.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
        if let Some(config) = self.websocket_tls.get() {
            return Ok(config.clone());
        }
        let config = self.make_tls_config()?;
        let _ = self.websocket_tls.set(config.clone());
        Ok(config)
    }

    fn make_tls_config(&self) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
        let failed = |reason: String| UpstreamError::Failed {
            provider: self.settings.name.clone(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.settings.ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| failed(format!("its ca_file cannot be read: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| failed(format!("its ca_file is not PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| failed(format!("its ca_file holds a bad certificate: {e}")))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
