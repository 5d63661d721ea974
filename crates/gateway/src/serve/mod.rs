//! Serving connections: the serving threads and the accept loop with its connection limits
//! (`workers`, with `trust` for connections that have not shown a key), a write timeout toward clients that stop reading (`stall`), each request's id
//! and timing (`connection`), browsers' cross-origin requests for client tokens (`cors`), and the one door every request goes through (`dispatch`).

pub(crate) mod connection;
pub(crate) mod cors;
pub(crate) mod dispatch;
pub(crate) mod stall;
pub(crate) mod trust;
pub(crate) mod workers;
