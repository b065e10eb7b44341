//! `chorus security set`: moving the root key between `shared-root` (on every device)
//! and `primary-root` (on this device only).
//!
//! To `primary-root`: one root-signed `LevelChanged` entry names this device as the
//! primary; every other device deletes its copy of the root when it folds the entry.
//! A device cannot be made to forget: a device that might be compromised keeps what it
//! held, so this is for limiting what a device lost *later* can do, not for one already
//! lost (revoke that one, which rotates every shared key). To `shared-root`: the entry
//! and, in the same atomic append, a `RootShared` record with the root sealed to each
//! current device's own key; each device keeps what it opens only if it is the roster's
//! root. Devices linked later get the root in their provisioning bundle, as in any
//! `shared-root` identity.

use chorus_crypto::DevicePublicKey;
use chorus_wire::{EventKind, SecurityLevel};

use super::Device;
use crate::ClientError;

impl Device {
    /// Changes the security level; `false` if it already was `level`. Needs the root
    /// (any device in `shared-root`, the primary in `primary-root`); moving to
    /// `primary-root` makes this device the primary.
    pub async fn set_security(&self, level: SecurityLevel) -> Result<bool, ClientError> {
        let me = self.me();
        let root = me
            .identity
            .root()
            .ok_or(ClientError::NotPrimary("change the security level"))?;
        let me = DevicePublicKey::from_bytes(self.log.keys.device)
            .map_err(|_| ClientError::Corrupt("device key".into()))?;
        let refused = |e: chorus_core::RosterError| ClientError::Corrupt(format!("roster: {e}"));
        let now = u64::try_from(self.now()).unwrap_or(0);
        let mut changed = false;
        self.append_roster_change(|roster| {
            changed = roster.level() != level;
            if !changed {
                return Ok(Vec::new());
            }
            let primary = (level == SecurityLevel::PrimaryRoot).then_some(me);
            let entry = roster.change_level(root, primary, now).map_err(refused)?;
            let mut records = vec![EventKind::Roster {
                entry: entry.as_bytes().to_vec(),
            }];
            if level == SecurityLevel::SharedRoot {
                let mut next = roster.clone();
                next.apply(&entry).map_err(refused)?;
                records.push(next.share_root(root, &mut self.rng()));
            }
            Ok(records)
        })
        .await?;
        Ok(changed)
    }
}
