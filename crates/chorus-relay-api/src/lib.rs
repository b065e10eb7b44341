//! The relay's JSON contract, one definition for both ends.
//!
//! The relay (`chorus-relay`) decodes every request body here and answers with the
//! types here; the client (`chorus-client`) builds its requests and reads its answers
//! with the same types, and signs its login with the same [`auth_message`]. Neither
//! end restates a bound: both import [`limits`]. Keeping the contract apart from the
//! server means a client build compiles no HTTP server, database driver or CLI.
//!
//! Decoding refuses with a [`Refusal`]: what kind of fault (malformed JSON, a broken
//! bound, too large) and a short machine-readable code, which the relay turns into an
//! HTTP status and `{"error": code}`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod api;
pub mod binary;
pub mod limits;
mod refusal;

pub use api::*;
pub use refusal::{Refusal, RefusalKind};
