//! The Chorus client: drives the sans-I/O core with real I/O.
//!
//! So far this is the device's encrypted local store ([`Store`]); the relay connection
//! (HTTP + WebSocket with reconnect), timers and the prekey lifecycle come with the
//! Client/CLI issue. Everything the device changes goes through the core and is
//! persisted here, sealed, before anything it produced leaves the device.
//!
//! ```no_run
//! # async fn example() -> Result<(), chorus_client::StoreError> {
//! use chorus_client::{Store, Unlock};
//! let store = Store::open(std::path::Path::new("/tmp/alice"), Unlock::KeyFile).await?;
//! for contact in store.contacts().await? {
//!     println!("{contact}");
//! }
//! # Ok(()) }
//! ```

mod store;

pub use store::{KEY_FILE, MAX_CONTACT_NAME_LEN, STORE_FILE, Store, StoreError, Unlock};
