//! What the layer that authenticates a request tells the connection it came on, through the
//! request's extensions: the address the client is known by, and whether it proved a valid key
//! (a connection that has shown none is kept on a short leash: see the gateway's `trust`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The client's address as the gateway worked it out (trusted proxies' forwarding headers
/// applied); `None` when nobody could name it, which only an open allow-list admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

/// How the client reached Tollgate: over TLS (its own, or a trusted proxy's that says so with
/// `X-Forwarded-Proto: https`; session cookies are `Secure` then), and the site's name as the
/// client wrote it (`Host`, or a trusted proxy's `X-Forwarded-Host`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTransport {
    pub https: bool,
    pub host: Option<String>,
}

/// Set once the request presented a valid key; read after the answer.
#[derive(Debug, Clone, Default)]
pub struct KeyShown(Arc<AtomicBool>);

impl KeyShown {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
