//! OpenAI's error envelope: `{"error":{"message","type","param","code"}}`. Every crate maps its
//! own error enum onto this one shape so clients see the same errors OpenAI would send.

use serde::Serialize;

/// The classes of error the API reports, each with OpenAI's HTTP status and `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400 `invalid_request_error`.
    InvalidRequest,
    /// 401 `invalid_request_error`.
    Authentication,
    /// 403 `invalid_request_error`.
    PermissionDenied,
    /// 404 `invalid_request_error`.
    NotFound,
    /// 405 `invalid_request_error`.
    MethodNotAllowed,
    /// 408 `invalid_request_error`: the client stopped sending its request.
    RequestTimeout,
    /// 409 `invalid_request_error`.
    Conflict,
    /// 413 `invalid_request_error`.
    PayloadTooLarge,
    /// 429 `requests`: a requests-per-period or concurrency limit.
    RequestsRateLimited,
    /// 429 `tokens`: a tokens-per-period limit.
    TokensRateLimited,
    /// 429 `insufficient_quota`: a spend limit; retrying does not help.
    InsufficientQuota,
    /// 500 `server_error`.
    Server,
    /// 502 `server_error`: the provider could not be reached.
    BadGateway,
    /// 503 `server_error`.
    Unavailable,
    /// 504 `server_error`: the provider did not answer in time.
    GatewayTimeout,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RequestsRateLimited
            | ErrorKind::TokensRateLimited
            | ErrorKind::InsufficientQuota => 429,
            ErrorKind::Server => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::Server
            | ErrorKind::BadGateway
            | ErrorKind::Unavailable
            | ErrorKind::GatewayTimeout => "server_error",
            ErrorKind::RequestsRateLimited => "requests",
            ErrorKind::TokensRateLimited => "tokens",
            ErrorKind::InsufficientQuota => "insufficient_quota",
            _ => "invalid_request_error",
        }
    }
}

/// One error as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

impl OpenAiError {
    /// An error with `message`, in which anything that looks like a secret key (a word that
    /// starts with `sk-` and is as long as a key, or any word longer than an id) is masked:
    /// errors quote what the caller sent, and a secret pasted in the wrong place must not come
    /// back in an answer that proxies and clients log.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        OpenAiError {
            kind,
            message: crate::key::mask_secrets(&message).into_owned(),
            param: None,
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body, with all four keys present (`param` and `code` may be null).
    pub fn to_json(&self) -> String {
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind.type_name(),
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        serde_json::to_string(&envelope).unwrap_or_else(|_| {
            r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#
                .to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_all_four_keys() {
        let err = OpenAiError::new(ErrorKind::Authentication, "nope").with_code("invalid_api_key");
        let value: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap_or_default();
        assert_eq!(value["error"]["message"], "nope");
        assert_eq!(value["error"]["type"], "invalid_request_error");
        assert_eq!(value["error"]["code"], "invalid_api_key");
        assert!(value["error"]["param"].is_null());
        assert_eq!(value["error"].as_object().map(|o| o.len()), Some(4));
        assert_eq!(err.status(), 401);
    }
}
