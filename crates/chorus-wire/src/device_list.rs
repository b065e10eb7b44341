//! The signed device list of an identity that runs `per-device` (Signal's Sesame).
//!
//! Under `per-device` a contact encrypts a copy of every message to each of the
//! identity's devices, so it must know which devices there are, and must not take
//! that from the relay's word: a relay that could add a device would read every
//! message. The list is signed by the identity's root key, and a decoded
//! [`DeviceList`] exists only once that signature verified over the exact fields. Its
//! `serial` grows with every change, so neither the relay nor a contact accepts an
//! older list again (a relay replaying the list from before a revocation would
//! otherwise bring the revoked device back).
//!
//! The list also names the devices the identity revoked, with when
//! ([`RemovedDevice`]): a contact device offline through several changes (a
//! revocation, then a link) never holds the list that first dropped a device, and
//! without the removal time would read what the relay took from the revoked device —
//! or its clone — until the newer list was signed.
//!
//! [`DeviceList::mismatch`] is the one comparison of a sender's device set against the
//! list: the relay refuses a post with it, and the sender reads its answer back.

use chorus_crypto::{RootPublicKey, RootSigningKey, Signature};
use prost::Message;

use crate::error::field;
use crate::limits::{MAX_DEVICE_LIST_LEN, MAX_LISTED_DEVICES};
use crate::{WireError, check_version, decode_bounded, fixed, proto};

/// Signature context of a device list.
pub const DEVICE_LIST_CONTEXT: &[u8] = b"Chorus_DeviceList_v1";

/// One device of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListedDevice {
    /// The device's Ed25519 key (its id everywhere).
    pub device: [u8; 32],
    /// Where the device's own prekey bundle is published.
    pub prekey_address: [u8; 32],
    /// Grows when the device's prekeys start over (a session built on an older
    /// generation is stale).
    pub generation: u32,
}

/// A device the identity revoked, as its list names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemovedDevice {
    /// The device's Ed25519 key.
    pub device: [u8; 32],
    /// Its generation when it was removed.
    pub generation: u32,
    /// When it was revoked (the revoking device's clock, ms since the Unix epoch).
    pub removed_ms: u64,
}

/// A device list, its root signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceList {
    /// Grows with every change.
    pub serial: u64,
    /// When the identity signed it (its clock, ms since the Unix epoch): a device it
    /// no longer lists is read only for what the relay took before.
    pub issued_ms: u64,
    devices: Vec<ListedDevice>,
    removed: Vec<RemovedDevice>,
    root: RootPublicKey,
    signature: Signature,
}

/// How a sender's device set differs from the list (each sorted, no duplicates).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Listed devices the sender did not name.
    pub missing: Vec<[u8; 32]>,
    /// Named devices the list does not hold.
    pub extra: Vec<[u8; 32]>,
    /// Named devices the list holds at another generation.
    pub stale: Vec<[u8; 32]>,
}

impl Mismatch {
    /// How `named` — (device, generation) pairs a sender encrypted to — differs from
    /// `listed`, the list's pairs. A device named twice counts once (the relay refuses
    /// such a post before it gets here).
    pub fn between(listed: &[([u8; 32], u32)], named: &[([u8; 32], u32)]) -> Self {
        let mut m = Mismatch::default();
        for (device, generation) in named {
            match listed.iter().find(|(d, _)| d == device) {
                None => m.extra.push(*device),
                Some((_, g)) if g != generation => m.stale.push(*device),
                Some(_) => {}
            }
        }
        m.missing = listed
            .iter()
            .filter(|(d, _)| !named.iter().any(|(n, _)| n == d))
            .map(|(d, _)| *d)
            .collect();
        for v in [&mut m.missing, &mut m.extra, &mut m.stale] {
            v.sort_unstable();
            v.dedup();
        }
        m
    }

    /// True when the sender's set is the list's.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.stale.is_empty()
    }
}

fn signed_bytes(
    serial: u64,
    issued_ms: u64,
    devices: &[ListedDevice],
    removed: &[RemovedDevice],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + devices.len() * 68 + removed.len() * 44);
    out.extend_from_slice(&serial.to_be_bytes());
    out.extend_from_slice(&issued_ms.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(devices.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for d in devices {
        out.extend_from_slice(&d.device);
        out.extend_from_slice(&d.prekey_address);
        out.extend_from_slice(&d.generation.to_be_bytes());
    }
    // Only when there are any: a list without removed devices is signed as before they
    // were named (the device count above fixes where this part starts).
    if !removed.is_empty() {
        out.extend_from_slice(
            &u32::try_from(removed.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for r in removed {
            out.extend_from_slice(&r.device);
            out.extend_from_slice(&r.generation.to_be_bytes());
            out.extend_from_slice(&r.removed_ms.to_be_bytes());
        }
    }
    out
}

/// The shape rules both signing and decoding keep.
fn check_devices(
    serial: u64,
    devices: &[ListedDevice],
    removed: &[RemovedDevice],
) -> Result<(), WireError> {
    let invalid = |reason| WireError::InvalidText {
        field: "device_list.devices",
        reason,
    };
    if serial == 0 {
        return Err(WireError::InvalidText {
            field: "device_list.serial",
            reason: "must be at least 1",
        });
    }
    if devices.is_empty() {
        return Err(invalid("an identity has at least one device"));
    }
    if devices.len() + removed.len() > MAX_LISTED_DEVICES {
        return Err(invalid("more devices than an identity may have"));
    }
    if !devices.windows(2).all(|w| w[0].device < w[1].device) {
        return Err(invalid("must be sorted by device id without duplicates"));
    }
    let removed_invalid = |reason| WireError::InvalidText {
        field: "device_list.removed",
        reason,
    };
    if !removed.windows(2).all(|w| w[0].device < w[1].device) {
        return Err(removed_invalid(
            "must be sorted by device id without duplicates",
        ));
    }
    if removed.iter().any(|r| {
        devices
            .binary_search_by(|d| d.device.cmp(&r.device))
            .is_ok()
    }) {
        return Err(removed_invalid("a device both listed and removed"));
    }
    Ok(())
}

impl DeviceList {
    /// Signs a list of `devices` and the `removed` ones. Both are sorted here; a
    /// duplicate device, one both listed and removed, an empty list, more than
    /// [`MAX_LISTED_DEVICES`] in all or serial 0 is refused.
    pub fn sign(
        root: &RootSigningKey,
        serial: u64,
        issued_ms: u64,
        mut devices: Vec<ListedDevice>,
        mut removed: Vec<RemovedDevice>,
    ) -> Result<Self, WireError> {
        devices.sort();
        removed.sort();
        check_devices(serial, &devices, &removed)?;
        let signature = root.sign(
            DEVICE_LIST_CONTEXT,
            &signed_bytes(serial, issued_ms, &devices, &removed),
        );
        Ok(Self {
            serial,
            issued_ms,
            devices,
            removed,
            root: root.public_key(),
            signature,
        })
    }

    /// Decodes a list and verifies it was signed by `root` (the identity the caller
    /// expects: the log's root at the relay, the pinned one at a contact).
    pub fn decode(bytes: &[u8], root: &RootPublicKey) -> Result<Self, WireError> {
        let p: proto::DeviceList = decode_bounded("device list", bytes, MAX_DEVICE_LIST_LEN)?;
        check_version("device list", p.version)?;
        let signer = field(
            "device_list.root_key",
            RootPublicKey::from_slice(&p.root_key),
        )?;
        if signer != *root {
            return Err(WireError::BadSignature(
                "device list (another identity's root)",
            ));
        }
        if p.devices.len() + p.removed.len() > MAX_LISTED_DEVICES {
            return Err(WireError::InvalidText {
                field: "device_list.devices",
                reason: "more devices than an identity may have",
            });
        }
        let devices = p
            .devices
            .iter()
            .map(|d| {
                Ok(ListedDevice {
                    device: fixed("device_list.device_id", &d.device_id)?,
                    prekey_address: fixed("device_list.prekey_address", &d.prekey_address)?,
                    generation: d.generation,
                })
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        let removed = p
            .removed
            .iter()
            .map(|r| {
                Ok(RemovedDevice {
                    device: fixed("device_list.removed.device_id", &r.device_id)?,
                    generation: r.generation,
                    removed_ms: r.removed_ms,
                })
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        check_devices(p.serial, &devices, &removed)?;
        let signature = field("device_list.signature", Signature::from_slice(&p.signature))?;
        root.verify(
            DEVICE_LIST_CONTEXT,
            &signed_bytes(p.serial, p.issued_ms, &devices, &removed),
            &signature,
        )
        .map_err(|_| WireError::BadSignature("device list"))?;
        Ok(Self {
            serial: p.serial,
            issued_ms: p.issued_ms,
            devices,
            removed,
            root: signer,
            signature,
        })
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        proto::DeviceList {
            version: crate::WIRE_VERSION,
            serial: self.serial,
            issued_ms: self.issued_ms,
            devices: self
                .devices
                .iter()
                .map(|d| proto::ListedDevice {
                    device_id: d.device.to_vec(),
                    prekey_address: d.prekey_address.to_vec(),
                    generation: d.generation,
                })
                .collect(),
            removed: self
                .removed
                .iter()
                .map(|r| proto::RemovedDevice {
                    device_id: r.device.to_vec(),
                    generation: r.generation,
                    removed_ms: r.removed_ms,
                })
                .collect(),
            root_key: self.root.as_bytes().to_vec(),
            signature: self.signature.as_bytes().to_vec(),
        }
        .encode_to_vec()
    }

    /// The devices, sorted by id.
    pub fn devices(&self) -> &[ListedDevice] {
        &self.devices
    }

    /// The devices the identity revoked that it still names, sorted by id.
    pub fn removed(&self) -> &[RemovedDevice] {
        &self.removed
    }

    /// The device with this id.
    pub fn get(&self, device: &[u8; 32]) -> Option<&ListedDevice> {
        self.devices
            .binary_search_by(|d| d.device.cmp(device))
            .ok()
            .map(|i| &self.devices[i])
    }

    /// The (device, generation) pairs, as [`Mismatch::between`] compares them.
    pub fn pairs(&self) -> Vec<([u8; 32], u32)> {
        self.devices
            .iter()
            .map(|d| (d.device, d.generation))
            .collect()
    }

    /// How `named` differs from this list ([`Mismatch::between`]).
    pub fn mismatch(&self, named: &[([u8; 32], u32)]) -> Mismatch {
        Mismatch::between(&self.pairs(), named)
    }
}

#[cfg(test)]
mod tests {
    use chorus_crypto::RootSigningKey;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn listed(b: u8, generation: u32) -> ListedDevice {
        ListedDevice {
            device: [b; 32],
            prekey_address: [b ^ 0xff; 32],
            generation,
        }
    }

    fn root(seed: u64) -> RootSigningKey {
        RootSigningKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn a_signed_list_decodes_under_its_root_only() {
        let r = root(1);
        let list = DeviceList::sign(&r, 3, 9, vec![listed(2, 0), listed(1, 5)], vec![]).unwrap();
        let back = DeviceList::decode(&list.encode(), &r.public_key()).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.devices()[0].device, [1; 32], "sorted");
        assert_eq!(
            DeviceList::decode(&list.encode(), &root(2).public_key()),
            Err(WireError::BadSignature(
                "device list (another identity's root)"
            ))
        );
    }

    #[test]
    fn a_list_whose_fields_changed_after_signing_is_refused() {
        let r = root(1);
        let list = DeviceList::sign(&r, 3, 9, vec![listed(1, 0), listed(2, 0)], vec![]).unwrap();
        let mut p = proto::DeviceList::decode(list.encode().as_slice()).unwrap();
        p.devices[1].generation = 1;
        assert_eq!(
            DeviceList::decode(&p.encode_to_vec(), &r.public_key()),
            Err(WireError::BadSignature("device list"))
        );
        let mut p = proto::DeviceList::decode(list.encode().as_slice()).unwrap();
        p.serial = 4;
        assert!(DeviceList::decode(&p.encode_to_vec(), &r.public_key()).is_err());
        let mut p = proto::DeviceList::decode(list.encode().as_slice()).unwrap();
        p.issued_ms = 10;
        assert_eq!(
            DeviceList::decode(&p.encode_to_vec(), &r.public_key()),
            Err(WireError::BadSignature("device list"))
        );
    }

    #[test]
    fn shape_rules_hold_at_their_bounds() {
        let r = root(1);
        assert!(DeviceList::sign(&r, 0, 0, vec![listed(1, 0)], vec![]).is_err());
        assert!(DeviceList::sign(&r, 1, 0, vec![], vec![]).is_err());
        assert!(DeviceList::sign(&r, 1, 0, vec![listed(1, 0), listed(1, 1)], vec![]).is_err());
        let many = |n: usize| {
            (0..n)
                .map(|i| ListedDevice {
                    device: [u8::try_from(i).unwrap(); 32],
                    prekey_address: [0; 32],
                    generation: u32::MAX,
                })
                .collect::<Vec<_>>()
        };
        let full =
            DeviceList::sign(&r, u64::MAX, u64::MAX, many(MAX_LISTED_DEVICES), vec![]).unwrap();
        assert!(full.encode().len() <= MAX_DEVICE_LIST_LEN);
        assert!(DeviceList::decode(&full.encode(), &r.public_key()).is_ok());
        assert!(DeviceList::sign(&r, 1, 0, many(MAX_LISTED_DEVICES + 1), vec![]).is_err());
        // Hand-built: unsorted entries are refused even under a valid-looking frame.
        let mut p = proto::DeviceList::decode(full.encode().as_slice()).unwrap();
        p.devices.swap(0, 1);
        assert!(matches!(
            DeviceList::decode(&p.encode_to_vec(), &r.public_key()),
            Err(WireError::InvalidText { .. })
        ));
        let big = vec![0u8; MAX_DEVICE_LIST_LEN + 1];
        assert!(matches!(
            DeviceList::decode(&big, &r.public_key()),
            Err(WireError::TooLarge { .. })
        ));
    }

    fn removed(b: u8, removed_ms: u64) -> RemovedDevice {
        RemovedDevice {
            device: [b; 32],
            generation: 0,
            removed_ms,
        }
    }

    /// A list signed before removed devices existed (serial, time, count, devices, and
    /// nothing after) still verifies: stored lists and lists from older clients.
    #[test]
    fn a_list_signed_before_removals_existed_still_verifies() {
        let r = root(1);
        let devices = vec![listed(1, 0), listed(2, 3)];
        let mut old = Vec::new();
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&9u64.to_be_bytes());
        old.extend_from_slice(&2u32.to_be_bytes());
        for d in &devices {
            old.extend_from_slice(&d.device);
            old.extend_from_slice(&d.prekey_address);
            old.extend_from_slice(&d.generation.to_be_bytes());
        }
        let signature = r.sign(DEVICE_LIST_CONTEXT, &old);
        let mut p = proto::DeviceList::decode(
            DeviceList::sign(&r, 7, 9, devices, vec![])
                .unwrap()
                .encode()
                .as_slice(),
        )
        .unwrap();
        p.signature = signature.as_bytes().to_vec();
        let back = DeviceList::decode(&p.encode_to_vec(), &r.public_key()).unwrap();
        assert!(back.removed().is_empty());
        // The same signature does not cover a removal added after it.
        p.removed.push(proto::RemovedDevice {
            device_id: vec![3; 32],
            generation: 0,
            removed_ms: 1,
        });
        assert_eq!(
            DeviceList::decode(&p.encode_to_vec(), &r.public_key()),
            Err(WireError::BadSignature("device list"))
        );
    }

    #[test]
    fn removed_devices_are_signed_and_keep_their_shape_rules() {
        let r = root(1);
        let list = DeviceList::sign(
            &r,
            4,
            9,
            vec![listed(1, 0)],
            vec![removed(3, 7), removed(2, 5)],
        )
        .unwrap();
        let back = DeviceList::decode(&list.encode(), &r.public_key()).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.removed(), &[removed(2, 5), removed(3, 7)], "sorted");
        // Moving a removal later (a relay keeping a revoked device readable longer),
        // or dropping it, breaks the signature.
        let mut p = proto::DeviceList::decode(list.encode().as_slice()).unwrap();
        p.removed[0].removed_ms = 6;
        assert_eq!(
            DeviceList::decode(&p.encode_to_vec(), &r.public_key()),
            Err(WireError::BadSignature("device list"))
        );
        let mut p = proto::DeviceList::decode(list.encode().as_slice()).unwrap();
        p.removed.clear();
        assert_eq!(
            DeviceList::decode(&p.encode_to_vec(), &r.public_key()),
            Err(WireError::BadSignature("device list"))
        );
        // A device both listed and removed, a removal named twice, too many in all.
        assert!(DeviceList::sign(&r, 1, 0, vec![listed(1, 0)], vec![removed(1, 0)]).is_err());
        assert!(
            DeviceList::sign(
                &r,
                1,
                0,
                vec![listed(1, 0)],
                vec![removed(2, 0), removed(2, 1)]
            )
            .is_err()
        );
        let gone = |n: usize| {
            (1..=n)
                .map(|i| removed(u8::try_from(i).unwrap(), u64::MAX))
                .collect::<Vec<_>>()
        };
        let full =
            DeviceList::sign(&r, 1, 0, vec![listed(0, 0)], gone(MAX_LISTED_DEVICES - 1)).unwrap();
        assert!(full.encode().len() <= MAX_DEVICE_LIST_LEN);
        assert!(DeviceList::decode(&full.encode(), &r.public_key()).is_ok());
        assert!(DeviceList::sign(&r, 1, 0, vec![listed(0, 0)], gone(MAX_LISTED_DEVICES)).is_err());
    }

    #[test]
    fn mismatch_names_missing_extra_and_stale_devices() {
        let list = DeviceList::sign(
            &root(1),
            1,
            0,
            vec![listed(1, 0), listed(2, 3), listed(3, 0)],
            vec![],
        )
        .unwrap();
        assert!(
            list.mismatch(&[([1; 32], 0), ([2; 32], 3), ([3; 32], 0)])
                .is_empty()
        );
        let m = list.mismatch(&[([2; 32], 2), ([9; 32], 0), ([1; 32], 0)]);
        assert_eq!(m.missing, vec![[3; 32]]);
        assert_eq!(m.extra, vec![[9; 32]]);
        assert_eq!(m.stale, vec![[2; 32]]);
    }
}
