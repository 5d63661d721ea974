//! The names of the headers Tollgate reads and writes on every request, made at compile time:
//! a name written as a string is parsed and hashed again on each use.

use axum::http::HeaderName;

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const OPENAI_PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");
pub(crate) const OPENAI_ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");
pub(crate) const OPENAI_PROJECT: HeaderName = HeaderName::from_static("openai-project");
pub(crate) const OPENAI_VERSION: HeaderName = HeaderName::from_static("openai-version");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
pub(crate) const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
pub(crate) const RATE_LIMIT_REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
pub(crate) const RATE_LIMIT_TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];
