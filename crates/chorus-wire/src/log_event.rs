//! Constellation log events: the plaintext of one log record (DESIGN §4).
//!
//! Only the identity's own devices read these (they are sealed under the epoch key), but
//! a sibling device can still be buggy or compromised, so every field is checked.

use prost::Message;

use crate::invitation::check_relay_url;
use crate::limits::{MAX_LOG_EVENT_LEN, MAX_RELAYS};
use crate::{WIRE_VERSION, WireError, check_display_name, check_version, decode_bounded, proto};

/// What an event says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A contact was added or renamed.
    ContactUpserted {
        /// The contact's root key.
        contact: [u8; 32],
        /// The local alias.
        name: String,
    },
    /// The identity's display name.
    ProfileUpdated {
        /// The new name.
        name: String,
    },
    /// The identity's relays.
    RelaysUpdated {
        /// Relay URLs, home relay first.
        relays: Vec<String>,
    },
    /// Messages with a contact were read up to a position.
    Read {
        /// The contact's root key.
        contact: [u8; 32],
        /// The position.
        up_to: u64,
    },
    /// An envelope reached the contact's relay.
    Delivered {
        /// The envelope id.
        envelope_id: [u8; 16],
    },
}

/// One decoded, checked event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// Random id, for deduplication.
    pub event_id: [u8; 16],
    /// The author's Lamport clock.
    pub lamport: u64,
    /// The author's wall clock.
    pub timestamp_ms: u64,
    /// The author device's key (must equal the relay-stamped author).
    pub author: [u8; 32],
    /// What it says.
    pub kind: EventKind,
}

fn fixed<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], WireError> {
    <[u8; N]>::try_from(bytes).map_err(|_| WireError::InvalidText {
        field,
        reason: "wrong length",
    })
}

impl LogEvent {
    /// Decodes and checks an event.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::LogEvent = decode_bounded("log event", bytes, MAX_LOG_EVENT_LEN)?;
        check_version("log event", p.version)?;
        use proto::log_event::Kind;
        let kind = match p.kind.ok_or(WireError::MissingField("log_event.kind"))? {
            Kind::ContactUpserted(c) => {
                check_display_name("contact_upserted.name", &c.name)?;
                EventKind::ContactUpserted {
                    contact: fixed("contact_upserted.contact_id", &c.contact_id)?,
                    name: c.name,
                }
            }
            Kind::ProfileUpdated(p) => {
                check_display_name("profile_updated.name", &p.name)?;
                EventKind::ProfileUpdated { name: p.name }
            }
            Kind::RelaysUpdated(r) => {
                if r.relay_urls.is_empty() || r.relay_urls.len() > MAX_RELAYS {
                    return Err(WireError::InvalidText {
                        field: "relays_updated.relay_urls",
                        reason: "must list 1 to 8 relays",
                    });
                }
                for url in &r.relay_urls {
                    check_relay_url("relays_updated.relay_urls", url)?;
                }
                EventKind::RelaysUpdated {
                    relays: r.relay_urls,
                }
            }
            Kind::Read(r) => EventKind::Read {
                contact: fixed("read.contact_id", &r.contact_id)?,
                up_to: r.up_to,
            },
            Kind::Delivered(d) => EventKind::Delivered {
                envelope_id: fixed("delivered.envelope_id", &d.envelope_id)?,
            },
        };
        Ok(Self {
            event_id: fixed("log_event.event_id", &p.event_id)?,
            lamport: p.lamport,
            timestamp_ms: p.timestamp_ms,
            author: fixed("log_event.author", &p.author)?,
            kind,
        })
    }

    /// Encodes the event.
    pub fn encode(&self) -> Vec<u8> {
        use proto::log_event::Kind;
        let kind = match &self.kind {
            EventKind::ContactUpserted { contact, name } => {
                Kind::ContactUpserted(proto::ContactUpserted {
                    contact_id: contact.to_vec(),
                    name: name.clone(),
                })
            }
            EventKind::ProfileUpdated { name } => {
                Kind::ProfileUpdated(proto::ProfileUpdated { name: name.clone() })
            }
            EventKind::RelaysUpdated { relays } => Kind::RelaysUpdated(proto::RelaysUpdated {
                relay_urls: relays.clone(),
            }),
            EventKind::Read { contact, up_to } => Kind::Read(proto::ReadMarker {
                contact_id: contact.to_vec(),
                up_to: *up_to,
            }),
            EventKind::Delivered { envelope_id } => Kind::Delivered(proto::Delivered {
                envelope_id: envelope_id.to_vec(),
            }),
        };
        proto::LogEvent {
            version: WIRE_VERSION,
            event_id: self.event_id.to_vec(),
            lamport: self.lamport,
            timestamp_ms: self.timestamp_ms,
            author: self.author.to_vec(),
            kind: Some(kind),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> LogEvent {
        LogEvent {
            event_id: [1; 16],
            lamport: 3,
            timestamp_ms: 4,
            author: [5; 32],
            kind,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in [
            EventKind::ContactUpserted {
                contact: [2; 32],
                name: "bob".into(),
            },
            EventKind::ProfileUpdated {
                name: "alice".into(),
            },
            EventKind::RelaysUpdated {
                relays: vec!["https://relay.example".into()],
            },
            EventKind::Read {
                contact: [2; 32],
                up_to: 9,
            },
            EventKind::Delivered {
                envelope_id: [3; 16],
            },
        ] {
            let e = event(kind);
            assert_eq!(LogEvent::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let too_many = event(EventKind::RelaysUpdated {
            relays: vec!["https://r".into(); MAX_RELAYS + 1],
        });
        assert!(matches!(
            LogEvent::decode(&too_many.encode()),
            Err(WireError::InvalidText {
                field: "relays_updated.relay_urls",
                ..
            })
        ));
        let at_limit = event(EventKind::RelaysUpdated {
            relays: vec!["https://r".into(); MAX_RELAYS],
        });
        assert!(LogEvent::decode(&at_limit.encode()).is_ok());
        let bad_name = event(EventKind::ProfileUpdated {
            name: "\u{1b}[2J".into(),
        });
        assert!(LogEvent::decode(&bad_name.encode()).is_err());
        let mut short = proto::LogEvent::decode(
            &event(EventKind::Delivered {
                envelope_id: [0; 16],
            })
            .encode()[..],
        )
        .unwrap();
        short.author = vec![1; 31];
        assert_eq!(
            LogEvent::decode(&short.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "log_event.author",
                reason: "wrong length"
            })
        );
        assert!(matches!(
            LogEvent::decode(&vec![0; MAX_LOG_EVENT_LEN + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }
}
