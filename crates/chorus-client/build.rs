//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo does not know the
//! macro read it: without this, a new migration is silently missing from the binary
//! until something else changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
