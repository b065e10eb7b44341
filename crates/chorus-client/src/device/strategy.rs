//! The identity's multi-device strategy (`docs/strategies.md`): an event in the log,
//! last writer wins, so every device sends the same way. The send path reads it on
//! every send (`send.rs`).

use chorus_core::Strategy;
use chorus_wire::EventKind;

use super::Device;
use crate::log::Pending;
use crate::{ClientError, Event};

impl Device {
    /// The strategy in force, as this device folded the log.
    pub async fn strategy(&self) -> Result<Strategy, ClientError> {
        self.log.strategy().await
    }

    /// The device that encrypts for the identity, by name, as folded: the lease
    /// holder under `leader` (`None` when no lease holds now), the primary under
    /// `primary`; `None` under the strategies where every device does.
    pub async fn sending_device(&self) -> Result<Option<String>, ClientError> {
        let now = u64::try_from(self.now()).unwrap_or(0);
        self.log
            .with_state(|s| s.sender(now).map(|d| device_name(s, &d)))
            .await
    }

    /// Sets the identity's strategy for every device (they follow when they fold the
    /// log). Returns whether it changed. `per-device` needs the root key on every
    /// device (`shared-root`); refused, changing nothing, otherwise. Once it is in
    /// force this device publishes its bundle and the identity's device list.
    ///
    /// `primary` makes this device the primary; set again on another device, it moves
    /// the role there.
    pub async fn set_strategy(
        &self,
        strategy: Strategy,
    ) -> Result<(bool, Vec<Event>), ClientError> {
        self.sync_log().await?;
        if strategy == Strategy::PerDevice
            && self.log.with_state(|s| s.roster().level()).await?
                != chorus_wire::SecurityLevel::SharedRoot
        {
            return Err(ClientError::StrategyNeedsSharedRoot(strategy));
        }
        let me = self.log.keys.device;
        let (now, primary) = self.log.with_state(|s| (s.strategy(), s.primary())).await?;
        let moves_primary = strategy == Strategy::Primary && primary != Some(me);
        if now == strategy && !moves_primary {
            return Ok((false, Vec::new()));
        }
        let (_, events) = self
            .append(vec![Pending::free(EventKind::StrategySet { strategy })])
            .await?;
        self.publish_per_device().await?;
        Ok((true, events))
    }
}

/// A roster device's name.
fn device_name(state: &chorus_core::Constellation, key: &[u8; 32]) -> String {
    state
        .roster()
        .devices()
        .iter()
        .find(|d| d.key.as_bytes() == key)
        .map_or_else(|| "an unknown device".to_owned(), |d| d.name.clone())
}
