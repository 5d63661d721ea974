//! Why a scan could not be done.

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("git could not be run ({0}); --staged and --history need git installed")]
    GitMissing(std::io::Error),
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("{0}")]
    Walk(String),
}
