//! Compile-time proof that no secret type implements `Debug`: each example below must
//! fail to compile (`cargo test` runs them as `compile_fail` doctests). Types that merely
//! *hold* secrets print only public facts; their output is snapshot-tested in chorus-core.
//!
//! ```compile_fail
//! fn leak(k: &chorus_crypto::LinkKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::EpochKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::RootSigningKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::DeviceSigningKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::IdentityDhSecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::SignedPrekeySecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::OneTimePrekeySecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::EphemeralSecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::RatchetSecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::DeviceDhSecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::PqPrekeySecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::RootKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::ChainKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::RemoteChainKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::MessageKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::RemoteMessageKey) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::DhOutput) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::KemSharedSecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::HandshakeSecret) -> String { format!("{k:?}") }
//! ```
//! ```compile_fail
//! fn leak(k: &chorus_crypto::StoreKey) -> String { format!("{k:?}") }
//! ```
//!
//! The same paths do name real types (so the failures above are about `Debug`):
//! ```
//! fn _t0(_: &chorus_crypto::RootSigningKey) {}
//! fn _t1(_: &chorus_crypto::DeviceSigningKey) {}
//! fn _t2(_: &chorus_crypto::IdentityDhSecret) {}
//! fn _t3(_: &chorus_crypto::SignedPrekeySecret) {}
//! fn _t4(_: &chorus_crypto::OneTimePrekeySecret) {}
//! fn _t5(_: &chorus_crypto::EphemeralSecret) {}
//! fn _t6(_: &chorus_crypto::RatchetSecret) {}
//! fn _t7(_: &chorus_crypto::DeviceDhSecret) {}
//! fn _t8(_: &chorus_crypto::PqPrekeySecret) {}
//! fn _t9(_: &chorus_crypto::RootKey) {}
//! fn _t10(_: &chorus_crypto::ChainKey) {}
//! fn _t11(_: &chorus_crypto::RemoteChainKey) {}
//! fn _t12(_: &chorus_crypto::MessageKey) {}
//! fn _t13(_: &chorus_crypto::RemoteMessageKey) {}
//! fn _t14(_: &chorus_crypto::DhOutput) {}
//! fn _t15(_: &chorus_crypto::KemSharedSecret) {}
//! fn _t16(_: &chorus_crypto::HandshakeSecret) {}
//! fn _t17(_: &chorus_crypto::StoreKey) {}
//! ```
