//! How an identity's devices act as one toward its contacts: the multi-device
//! strategies of DESIGN §6, compared side by side by the simulator (`chorus-sim`,
//! `docs/strategies.md`). The identity's choice is an event in its log
//! (`EventKind::StrategySet`), so every device agrees which one is in force.
//!
//! A strategy is internal to an identity (except [`Strategy::PerDevice`], which its
//! contacts must support): a contact sees one identity and one ratchet whichever of the
//! others is in force.

use std::fmt;

/// A multi-device strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// Any device sends through a guarded append on the contact's session stream; the
    /// loser of a race encrypts again on the winner's state (the default).
    Sequenced,
    /// Devices send without waiting for the log; simultaneous DH steps fork the ratchet
    /// tree and every side converges on one branch.
    Leaderless,
    /// The holder of a lease in the log encrypts; the others hand it their messages.
    Leader,
    /// One device holds each contact's session; siblings ask it to send through the log
    /// and it fans received messages out.
    Primary,
    /// Signal's Sesame: every device has its own session with every contact device;
    /// contacts see the device set.
    PerDevice,
}

impl Strategy {
    /// Every strategy, in the order the design lists them.
    pub const ALL: [Strategy; 5] = [
        Strategy::Sequenced,
        Strategy::Leaderless,
        Strategy::Leader,
        Strategy::Primary,
        Strategy::PerDevice,
    ];

    /// The name the CLI and the log use.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Sequenced => "sequenced",
            Strategy::Leaderless => "leaderless",
            Strategy::Leader => "leader",
            Strategy::Primary => "primary",
            Strategy::PerDevice => "per-device",
        }
    }

    /// Parses a name ([`Self::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_nothing_else_does() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.name()), Some(s));
        }
        assert_eq!(Strategy::parse("Sequenced"), None);
        assert_eq!(Strategy::parse("multi-home"), None);
        assert_eq!(Strategy::parse(""), None);
    }
}
