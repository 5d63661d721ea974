//! `tollgate scan`: finds secrets in files, in staged changes and in git history.
//!
//! [`rules`] says what each kind of secret looks like, [`detect`] finds them in a buffer,
//! [`files`] walks trees (respecting `.gitignore`, skipping binaries) and [`git`] reads staged
//! changes and history; [`report`] writes what was found as a table, JSON or SARIF 2.1.0.

pub mod detect;
pub mod error;
pub mod files;
pub mod git;
pub mod report;
pub mod rules;

pub use detect::{Detector, Hit};
pub use error::ScanError;
pub use report::Finding;
