//! Who is looking: the signed-in member behind the session cookie, with the anti-forgery token
//! of their forms. A page without a live session sends the browser to sign in; a change needs
//! the owner role, this session's token in the form, and (when the browser says where the
//! form came from) this site as its origin.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::ConsoleState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use tollgate_core::sign_in::SessionToken;
use tollgate_core::standing::{ClientAddress, ClientTransport, KeyShown};
use tollgate_store::{Actor, Member, Role};

/// The session cookie's name.
pub const COOKIE: &str = "tollgate_session";

#[derive(Debug, Clone)]
pub struct Viewer {
    pub member: Member,
    pub token: SessionToken,
    /// The anti-forgery token every form of this session carries.
    pub csrf: String,
    /// The organization's name, for the header.
    pub organization: String,
    /// Whether the request's `Origin` (or `Referer`) names this site, or names nothing.
    same_origin: bool,
}

impl Viewer {
    pub fn is_owner(&self) -> bool {
        self.member.role == Role::Owner
    }

    /// The actor audit entries name for what this member does here.
    pub fn actor(&self) -> Actor {
        Actor {
            kind: "user".into(),
            id: self.member.user.id.as_str().to_owned(),
        }
    }

    /// Checks that a posted form may change things: this session's token, from this site, by
    /// an owner.
    pub fn may_change(&self, fields: &Fields) -> Result<(), ConsoleError> {
        self.posted(fields)?;
        if !self.is_owner() {
            return Err(ConsoleError::ReaderRole);
        }
        Ok(())
    }

    /// Checks a form any member may post (their own password, signing out).
    pub fn posted(&self, fields: &Fields) -> Result<(), ConsoleError> {
        let given = fields.get("csrf").as_bytes();
        let expected = self.csrf.as_bytes();
        let same = given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same || !self.same_origin {
            return Err(ConsoleError::Forgery);
        }
        Ok(())
    }
}

/// The session token a request's cookies carry.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether `Origin` (or, without it, `Referer`) names this site, `host` (as the client wrote
/// it). A request naming neither passes (old browsers, curl; the anti-forgery token is still
/// required); one naming a site when this one's name is unknown does not.
pub fn same_origin(headers: &HeaderMap, host: Option<&str>) -> bool {
    let named = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(origin) = named else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    !authority.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// The site's name as the client wrote it: what the gateway worked out (a trusted proxy's
/// `X-Forwarded-Host`, or `Host`), else the `Host` header.
pub fn site(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ClientTransport>()
        .and_then(|t| t.host.clone())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
}

/// The client's address as the gateway worked it out, as text.
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ClientAddress>()
        .and_then(|a| a.0)
        .map(|ip| ip.to_string())
}

/// The throttle's name for the client's address (an IPv6 /64 as one).
fn throttle_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ClientAddress>()
        .and_then(|a| a.0)
        .map_or_else(|| "unknown".to_owned(), tollgate_core::sign_in::address_key)
}

/// Whether cookies must be `Secure` (the client came over TLS).
pub fn https(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<ClientTransport>()
        .is_some_and(|t| t.https)
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Viewer, ConsoleError> {
        // The router is nested under the console's prefix, which it strips from the path.
        let next = parts
            .uri
            .path_and_query()
            .map_or_else(String::new, |p| format!("{}{}", crate::PREFIX, p.as_str()));
        let Some(cookie) = session_cookie(&parts.headers) else {
            return Err(ConsoleError::SignIn { next });
        };
        let Some((token, session)) = state.control.session(cookie).await? else {
            return Err(ConsoleError::SignIn { next });
        };
        if let Some(shown) = parts.extensions.get::<KeyShown>() {
            // A live session is as good as a key for the connection's standing.
            shown.set();
        }
        let organization = state.control.organization().await?.name;
        Ok(Viewer {
            csrf: token.csrf(state.control.hasher()),
            member: session.member,
            token,
            organization,
            same_origin: same_origin(&parts.headers, site(parts).as_deref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; tollgate_session=tgs_x; b=2")]);
        assert_eq!(session_cookie(&h), Some("tgs_x"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "tollgate_sessionx=1")])),
            None
        );
    }

    #[test]
    fn another_site_s_origin_is_refused() {
        let site = Some("t.example:8080");
        assert!(same_origin(
            &headers(&[("origin", "http://t.example:8080")]),
            site
        ));
        assert!(same_origin(
            &headers(&[("origin", "https://T.example:8080")]),
            site
        ));
        assert!(same_origin(
            &headers(&[("referer", "https://t.example:8080/console/x?y")]),
            site
        ));
        assert!(
            same_origin(&headers(&[]), site),
            "neither header: the token decides"
        );
        assert!(same_origin(&headers(&[]), None));
        for other in [
            "https://evil.example",
            "null",
            "https://t.example",
            "https://t.example:8080.evil.example",
            "http://",
            "t.example:8080",
        ] {
            assert!(
                !same_origin(&headers(&[("origin", other)]), site),
                "{other}"
            );
        }
        assert!(
            !same_origin(&headers(&[("origin", "http://t.example:8080")]), None),
            "no name known: refused"
        );
    }
}

/// What a page needs to know about the browser, signed in or not.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: Option<String>,
    pub https: bool,
    pub same_origin: bool,
    pub user_agent: Option<String>,
    pub session: Option<String>,
    /// The site's name as the client wrote it.
    pub host: Option<String>,
    /// The sign-in throttle's name for the client's address.
    pub address: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Client, Self::Rejection> {
        let host = site(parts);
        Ok(Client {
            ip: client_ip(parts),
            https: https(parts),
            same_origin: same_origin(&parts.headers, host.as_deref()),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            session: session_cookie(&parts.headers).map(str::to_owned),
            host,
            address: throttle_address(parts),
        })
    }
}

/// The `Set-Cookie` value that gives the browser its session (`None`: ends it).
pub fn cookie(token: Option<&SessionToken>, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    match token {
        Some(token) => format!(
            "{COOKIE}={}; Path=/console; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            token.expose(),
            tollgate_core::sign_in::SESSION_LIFETIME_SECS
        ),
        None => format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

/// Where to go after signing in: a console page named by `next`, else the keys.
pub fn landing(next: &str) -> &str {
    let safe = next.starts_with("/console/")
        && !next.starts_with("/console/login")
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if safe {
        next
    } else {
        "/console/api-keys"
    }
}
