//! `Debug` for the generated messages that carry secrets (see `build.rs`): ids, names
//! and addresses print; keys, sessions, deltas and plaintext print as their length.
//! A derived `Debug` would put them in any log line or panic message that shows one.

use std::fmt;

use crate::proto;

/// A secret field, shown as its length.
struct Secret(usize);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for proto::Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sent")
            .field("envelope_id", &self.envelope_id)
            .field("relay_url", &self.relay_url)
            .field("text", &Secret(self.text.len()))
            .field("ratchet_delta", &Secret(self.ratchet_delta.len()))
            .field("bundled", &self.bundled)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for proto::ContactDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactDetails")
            .field("relay_url", &self.relay_url)
            .field("session", &Secret(self.session.len()))
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for proto::PrekeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrekeySecret")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("secret", &Secret(self.secret.len()))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for proto::ProvisioningBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningBundle")
            .field("relay_url", &self.relay_url)
            .field("root_secret", &Secret(self.root_secret.len()))
            .field("identity_dh_secret", &Secret(self.identity_dh_secret.len()))
            .field("epoch_key", &Secret(self.epoch_key.len()))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for proto::CheckpointPrekey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointPrekey")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("secret", &Secret(self.secret.len()))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for proto::CheckpointContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointContact")
            .field("name", &self.name)
            .field("relay_url", &self.relay_url)
            .field("session", &Secret(self.session.len()))
            .finish_non_exhaustive()
    }
}
