//! Your profile: the display name every device of the identity shows, and that every
//! contact is told in-band.

use chorus_wire::{EventKind, check_display_name, normalize_display_name};

use super::Device;
use crate::ClientError;
use crate::log::Pending;

impl Device {
    /// Sets the identity's display name on every device (a `ProfileUpdated` register in
    /// the log, the last writer wins). Contacts are told with the next message to each
    /// (every message says the sender's name): they see the change, and their name for
    /// us follows unless they chose one of their own. Returns the old and the new name;
    /// a name that is empty or over 64 bytes is refused and nothing changes.
    pub async fn set_profile_name(&self, name: &str) -> Result<(String, String), ClientError> {
        let name = normalize_display_name(name);
        check_display_name("name", &name)?;
        self.sync_log().await?;
        let was = self.profile_name().await?;
        if was != name {
            self.append(vec![Pending::free(EventKind::ProfileUpdated {
                name: name.clone(),
            })])
            .await?;
        }
        Ok((was, self.profile_name().await?))
    }

    /// The identity's display name as this device folded it.
    pub async fn profile_name(&self) -> Result<String, ClientError> {
        let folded = self
            .log
            .with_state(|s| s.profile_name().map(str::to_owned))
            .await?;
        Ok(folded.unwrap_or_else(|| self.name()))
    }
}
