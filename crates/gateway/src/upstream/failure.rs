//! How sending to a provider fails. A leaf: the error enum renders it without importing the
//! client.

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to provider {provider}: {reason}")]
    Connect { provider: String, reason: String },
    #[error("provider {provider} did not answer within {seconds} s")]
    Timeout { provider: String, seconds: u64 },
    #[error("request to provider {provider} failed: {reason}")]
    Failed { provider: String, reason: String },
}
