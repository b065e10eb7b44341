//! This device's identity as stored: the shared identity secrets plus the device's own
//! key, the relay it calls home, and the derived public names (fingerprint, address).

use chorus_core::LocalIdentity;
use chorus_crypto::{
    DeviceDhSecret, DeviceSigningKey, Fingerprint, IdentityDhSecret, RootSigningKey,
};
use chorus_relay_api::Id32;
use chorus_wire::IdentityKeys;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ClientError;

/// Domain label of a directory address.
const ADDRESS_LABEL: &[u8] = b"chorus-directory-address-v1\0";

/// The secrets sealed in the `identity` row. No `Debug`.
#[derive(Serialize, Deserialize)]
pub(crate) struct IdentitySecrets {
    /// The root signing key: on every device in `shared-root`, on the primary device
    /// only in `primary-root`.
    pub(crate) root: Option<RootSigningKey>,
    /// The identity's public keys as the root signed them (encoded `IdentityKeys`):
    /// what a device without the root presents in handshakes.
    pub(crate) keys: Vec<u8>,
    pub(crate) dh: IdentityDhSecret,
    pub(crate) device: DeviceSigningKey,
    pub(crate) device_dh: DeviceDhSecret,
}

/// The identity as this device holds it: with the root key if it has one, otherwise
/// from the root-signed public keys (checked against `dh`).
pub(crate) fn local_identity(
    root: Option<RootSigningKey>,
    keys: &[u8],
    dh: IdentityDhSecret,
) -> Result<LocalIdentity, ClientError> {
    match root {
        Some(root) => Ok(LocalIdentity::from_parts(root, dh)),
        None => LocalIdentity::without_root(IdentityKeys::decode(keys)?, dh)
            .ok_or_else(|| ClientError::Corrupt("identity keys".into())),
    }
}

impl IdentitySecrets {
    pub(crate) fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        secret_bytes(self)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, ClientError> {
        postcard::from_bytes(bytes).map_err(|_| ClientError::Corrupt("identity".into()))
    }
}

/// Serialises secrets into one wiped buffer, never into a growing `Vec`
/// ([`chorus_core::encode_wiped`]).
pub(crate) fn secret_bytes<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    chorus_core::encode_wiped(&[], value)
        .ok_or_else(|| ClientError::Corrupt("secret encoding".into()))
}

/// The loaded identity of this device.
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) relay_url: String,
    pub(crate) intro_mailbox: Id32,
    pub(crate) identity: LocalIdentity,
}

impl Me {
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.identity.keys().root)
    }

    /// `fingerprint@relay`: what others give `chorus contact add`.
    pub(crate) fn address(&self) -> String {
        format!("{}@{}", self.fingerprint().digits(), self.relay_url)
    }

    /// This identity's prekey directory address on its relay.
    pub(crate) fn directory_address(&self) -> Id32 {
        directory_address(&self.fingerprint().digits())
    }
}

/// The directory address of a fingerprint: a hash, so the relay's address space says
/// nothing more than the fingerprint the publisher chose to give out.
pub(crate) fn directory_address(digits: &str) -> Id32 {
    Id32(
        Sha256::new()
            .chain_update(ADDRESS_LABEL)
            .chain_update(digits.as_bytes())
            .finalize()
            .into(),
    )
}

/// A parsed `fingerprint@relay` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// The 30 fingerprint digits.
    pub digits: String,
    /// The relay URL.
    pub relay_url: String,
}

impl std::str::FromStr for Address {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, ClientError> {
        let bad = |reason: &'static str| ClientError::BadAddress { reason };
        let (digits, relay) = s
            .trim()
            .split_once('@')
            .ok_or(bad("expected DIGITS@RELAY"))?;
        let digits: String = digits.chars().filter(|c| *c != ' ').collect();
        if digits.len() != 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the fingerprint must be 30 digits"));
        }
        let relay_url = crate::relay::normalize_url(relay)
            .map_err(|_| bad("the relay must be an http:// or https:// URL"))?;
        Ok(Self { digits, relay_url })
    }
}
