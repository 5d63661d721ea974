//! One request's life: who is calling (`auth`), the model catalog (`models`), and forwarding
//! to a provider with metering on the way (`proxy`, `sse`).

pub(crate) mod auth;
pub(crate) mod models;
pub(crate) mod proxy;
pub(crate) mod sse;
