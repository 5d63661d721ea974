//! Which handler serves a request. The metered endpoints' `POST`s, nearly all of a gateway's
//! traffic, go straight to their handler; everything else goes through the router, which
//! knows those paths too (for their other methods). Skipping axum's routing, extractors and
//! boxed futures saved ~4k of ~100k user-space instructions per proxied request (callgrind).

use crate::request::auth;
use crate::request::proxy::{self, Endpoint};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use std::net::SocketAddr;
use tower_service::Service;

/// The gateway's request handling: its router and, for the direct path, its state.
#[derive(Clone)]
pub(crate) struct Dispatch {
    router: Router,
    state: AppState,
}

impl Dispatch {
    /// `router` must be the one built over `state`.
    pub(crate) fn new(router: Router, state: AppState) -> Dispatch {
        Dispatch { router, state }
    }

    /// Serves a request that arrived from `peer`.
    pub(crate) async fn serve(
        mut self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response {
        if request.method() == Method::POST {
            if let Some(endpoint) = Endpoint::at(request.uri().path()) {
                return match auth::authenticate(&self.state, request.headers(), peer.ip()) {
                    Ok(principal) => {
                        proxy::serve_metered(
                            self.state,
                            principal,
                            endpoint,
                            request.map(Body::new),
                        )
                        .await
                    }
                    Err(err) => err.into_response(),
                };
            }
        }
        request.extensions_mut().insert(ConnectInfo(peer));
        let Ok(response) = self.router.call(request).await;
        response
    }
}
