//! Invitations: a prekey bundle plus where and how to answer.

use prost::Message;

use crate::limits::{MAX_INVITATION_LEN, MAX_RELAY_URL_LEN};
use crate::prekeys::PrekeyBundle;
use crate::{WIRE_VERSION, WireError, check_version, decode_bounded, proto};

/// A 32-byte mailbox id: whoever holds it may post to the mailbox.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MailboxId(pub [u8; 32]);

impl MailboxId {
    /// Reads a 32-byte id from the named field.
    pub(crate) fn from_slice(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        <[u8; 32]>::try_from(bytes)
            .map(MailboxId)
            .map_err(|_| WireError::InvalidText {
                field,
                reason: "must be 32 bytes",
            })
    }
}

/// Checks a relay URL's length and scheme.
pub(crate) fn check_relay_url(field: &'static str, url: &str) -> Result<(), WireError> {
    if url.len() > MAX_RELAY_URL_LEN {
        return Err(WireError::TooLarge {
            what: "relay URL",
            max: MAX_RELAY_URL_LEN,
            actual: url.len(),
        });
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(WireError::InvalidText {
            field,
            reason: "must start with http:// or https://",
        });
    }
    Ok(())
}

/// A parsed invitation (bundle signatures verified, URL checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// The inviter's keys.
    pub bundle: PrekeyBundle,
    /// The inviter's home relay.
    pub relay_url: String,
    /// A one-time mailbox for the answer.
    pub mailbox: MailboxId,
    /// The inviter's display name, if given: a suggested alias.
    pub name: Option<String>,
}

impl Invitation {
    /// Decodes and checks an invitation.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::Invitation = decode_bounded("invitation", bytes, MAX_INVITATION_LEN)?;
        check_version("invitation", p.version)?;
        let bundle = PrekeyBundle::from_proto(
            p.bundle
                .as_ref()
                .ok_or(WireError::MissingField("invitation.bundle"))?,
        )?;
        check_relay_url("invitation.relay_url", &p.relay_url)?;
        let mailbox = MailboxId::from_slice("invitation.mailbox_id", &p.mailbox_id)?;
        let name = if p.name.is_empty() {
            None
        } else {
            crate::check_display_name("invitation.name", &p.name)?;
            Some(p.name)
        };
        Ok(Self {
            bundle,
            relay_url: p.relay_url,
            mailbox,
            name,
        })
    }

    /// Encodes the invitation.
    pub fn encode(&self) -> Vec<u8> {
        proto::Invitation {
            version: WIRE_VERSION,
            bundle: Some(self.bundle.to_proto()),
            relay_url: self.relay_url.clone(),
            mailbox_id: self.mailbox.0.to_vec(),
            name: self.name.clone().unwrap_or_default(),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prekeys::tests::bundle;

    fn invitation(url: &str) -> proto::Invitation {
        proto::Invitation {
            version: WIRE_VERSION,
            bundle: Some(bundle(1).to_proto()),
            relay_url: url.to_owned(),
            mailbox_id: vec![9; 32],
            name: String::new(),
        }
    }

    #[test]
    fn a_relay_url_at_the_limit_is_accepted_and_one_byte_longer_is_not() {
        let at = format!("https://{}", "a".repeat(MAX_RELAY_URL_LEN - 8));
        assert_eq!(at.len(), MAX_RELAY_URL_LEN);
        assert!(Invitation::decode(&invitation(&at).encode_to_vec()).is_ok());
        let over = format!("{at}a");
        assert_eq!(
            Invitation::decode(&invitation(&over).encode_to_vec()),
            Err(WireError::TooLarge {
                what: "relay URL",
                max: MAX_RELAY_URL_LEN,
                actual: MAX_RELAY_URL_LEN + 1
            })
        );
    }

    #[test]
    fn an_invitation_over_the_limit_is_not_parsed() {
        let big = vec![0u8; MAX_INVITATION_LEN + 1];
        assert!(matches!(
            Invitation::decode(&big),
            Err(WireError::TooLarge {
                what: "invitation",
                ..
            })
        ));
    }

    #[test]
    fn a_relay_url_without_an_http_scheme_and_a_short_mailbox_are_named() {
        assert!(matches!(
            Invitation::decode(&invitation("ftp://relay").encode_to_vec()),
            Err(WireError::InvalidText {
                field: "invitation.relay_url",
                ..
            })
        ));
        let mut p = invitation("https://relay");
        p.mailbox_id.pop();
        assert!(matches!(
            Invitation::decode(&p.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "invitation.mailbox_id",
                ..
            })
        ));
    }
}
