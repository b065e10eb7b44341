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

    /// Sets the identity's strategy for every device (they follow when they fold the
    /// log). Returns whether it changed. Refuses, changing nothing, a strategy this
    /// client cannot send with yet.
    pub async fn set_strategy(
        &self,
        strategy: Strategy,
    ) -> Result<(bool, Vec<Event>), ClientError> {
        if !matches!(strategy, Strategy::Sequenced | Strategy::Leaderless) {
            return Err(ClientError::StrategyNotBuilt(strategy));
        }
        self.sync_log().await?;
        if self.strategy().await? == strategy {
            return Ok((false, Vec::new()));
        }
        let (_, events) = self
            .append(vec![Pending::free(EventKind::StrategySet { strategy })])
            .await?;
        Ok((true, events))
    }
}
