//! Serving connections: the serving threads and the accept loop (`workers`), each request's
//! id and timing (`connection`), and the one door every request goes through (`dispatch`).

pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod workers;
