//! One request's life once it is past the door: who is calling (`auth`), the steps put in
//! order (`handler`) for each kind of target: the model catalog (`models`), a metered endpoint
//! (`metered`) or a pass-through group (`pass_through`), both sent on by `forward` with a
//! `meter` (and `sse` for streams) reading the answer on the way.

pub(crate) mod auth;
pub(crate) mod call;
pub(crate) mod client_secrets;
pub(crate) mod forward;
pub(crate) mod handler;
pub(crate) mod meter;
pub(crate) mod metered;
pub(crate) mod models;
pub(crate) mod pass_through;
pub(crate) mod realtime;
pub(crate) mod sse;
pub(crate) mod tenancy;
