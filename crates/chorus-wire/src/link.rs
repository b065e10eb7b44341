//! Linking a device (DESIGN §7): the messages on the rendezvous channel and the
//! provisioning bundle.
//!
//! The channel is readable and writable by the relay and by anyone who saw the link
//! code, so every message is parsed as hostile. What makes linking safe is the protocol
//! in `chorus-client`'s `link` module (a commitment before the hello, a SAS over the
//! transcript of these exact bytes), not secrecy of the channel. The hello is signed by
//! the new device's key over everything it says and where it says it.
//!
//! ```
//! use chorus_wire::LinkMessage;
//! let bytes = LinkMessage::Confirm.encode();
//! assert_eq!(LinkMessage::decode(&bytes).unwrap(), LinkMessage::Confirm);
//! ```

use chorus_crypto::{
    DeviceDhPublic, DevicePublicKey, DeviceSigningKey, IdentityDhSecret, RootSigningKey, Signature,
};
use prost::Message;
use zeroize::Zeroizing;

use crate::error::field;
use crate::invitation::check_relay_url;
use crate::limits::{MAX_LINK_MESSAGE_LEN, MAX_PROVISIONING_BUNDLE_LEN};
use crate::{
    WIRE_VERSION, WireError, check_display_name, check_version, decode_bounded, fixed, proto,
};

/// The hello's signature context.
pub const LINK_HELLO_CONTEXT: &[u8] = b"chorus-link-hello-v3";

/// The new device's announcement: its keys, a fresh nonce and its name, signed by its
/// device key. A decoded hello has valid keys and a valid name; its signature is checked
/// by [`LinkHello::verify`] against the channel it arrived on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkHello {
    /// The new device's signing key.
    pub device: DevicePublicKey,
    /// The new device's sealed-box key.
    pub dh: DeviceDhPublic,
    /// Chosen after the approver's commitment.
    pub nonce: [u8; 32],
    /// The device's display name.
    pub name: String,
    /// By `device`, over [`LinkHello::signed_part`].
    pub signature: Signature,
    /// The new device does not want the conversation history (`link new
    /// --no-history`). Not signed: the SAS the user compares covers the whole hello.
    pub skip_history: bool,
}

impl LinkHello {
    /// Builds and signs a hello for the channel `channel`, the code's key `code_key` and
    /// the approver's commitment `commit`.
    pub fn sign(
        key: &DeviceSigningKey,
        dh: DeviceDhPublic,
        nonce: [u8; 32],
        name: &str,
        channel: &[u8; 32],
        code_key: &[u8; 32],
        commit: &[u8; 32],
    ) -> Self {
        let device = key.public_key();
        let signed = signed_part(&device, &dh, &nonce, name, channel, code_key, commit);
        Self {
            device,
            dh,
            nonce,
            name: name.to_owned(),
            signature: key.sign(LINK_HELLO_CONTEXT, &signed),
            skip_history: false,
        }
    }

    /// Checks the signature: the sender holds the device key it names and said all this
    /// on this channel, to the holder of this code, after this commitment.
    pub fn verify(
        &self,
        channel: &[u8; 32],
        code_key: &[u8; 32],
        commit: &[u8; 32],
    ) -> Result<(), WireError> {
        let signed = signed_part(
            &self.device,
            &self.dh,
            &self.nonce,
            &self.name,
            channel,
            code_key,
            commit,
        );
        self.device
            .verify(LINK_HELLO_CONTEXT, &signed, &self.signature)
            .map_err(|_| WireError::BadSignature("link hello"))
    }
}

/// What a hello's signature covers: each part length-prefixed.
fn signed_part(
    device: &DevicePublicKey,
    dh: &DeviceDhPublic,
    nonce: &[u8; 32],
    name: &str,
    channel: &[u8; 32],
    code_key: &[u8; 32],
    commit: &[u8; 32],
) -> Vec<u8> {
    let parts: [&[u8]; 7] = [
        channel,
        code_key,
        commit,
        device.as_bytes(),
        dh.as_bytes(),
        nonce,
        name.as_bytes(),
    ];
    let mut m = Vec::with_capacity(7 * 8 + 6 * 32 + name.len());
    for part in parts {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part);
    }
    m
}

/// One message on a link channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkMessage {
    /// The approver's commitment to its ephemeral key.
    Commit([u8; 32]),
    /// The new device's keys and name.
    Hello(LinkHello),
    /// The approver's ephemeral key, revealed after the hello.
    Reveal([u8; 32]),
    /// The sealed [`ProvisioningBundle`].
    Bundle(Vec<u8>),
    /// The user confirmed the SAS on this side.
    Confirm,
    /// The user declined on this side.
    Decline,
}

/// Which step a [`LinkMessage`] is (what a side waits for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStep {
    /// [`LinkMessage::Commit`].
    Commit,
    /// [`LinkMessage::Hello`].
    Hello,
    /// [`LinkMessage::Reveal`].
    Reveal,
    /// [`LinkMessage::Bundle`].
    Bundle,
    /// [`LinkMessage::Confirm`].
    Confirm,
    /// [`LinkMessage::Decline`].
    Decline,
}

impl LinkMessage {
    /// Which step this is.
    pub fn step(&self) -> LinkStep {
        match self {
            Self::Commit(_) => LinkStep::Commit,
            Self::Hello(_) => LinkStep::Hello,
            Self::Reveal(_) => LinkStep::Reveal,
            Self::Bundle(_) => LinkStep::Bundle,
            Self::Confirm => LinkStep::Confirm,
            Self::Decline => LinkStep::Decline,
        }
    }

    /// The bytes posted on the channel.
    pub fn encode(&self) -> Vec<u8> {
        use proto::link_message::Body;
        let body = match self {
            Self::Commit(c) => Body::Commit(c.to_vec()),
            Self::Hello(h) => Body::Hello(proto::LinkHello {
                device_key: h.device.as_bytes().to_vec(),
                device_dh_key: h.dh.as_bytes().to_vec(),
                nonce: h.nonce.to_vec(),
                name: h.name.clone(),
                signature: h.signature.as_bytes().to_vec(),
                skip_history: h.skip_history,
            }),
            Self::Reveal(k) => Body::Reveal(k.to_vec()),
            Self::Bundle(b) => Body::Bundle(b.clone()),
            Self::Confirm => Body::Confirm(true),
            Self::Decline => Body::Decline(true),
        };
        proto::LinkMessage {
            version: WIRE_VERSION,
            body: Some(body),
        }
        .encode_to_vec()
    }

    /// Parses a channel message; keys must be valid and the name a valid display name.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        use proto::link_message::Body;
        let p: proto::LinkMessage = decode_bounded("link message", bytes, MAX_LINK_MESSAGE_LEN)?;
        check_version("link message", p.version)?;
        Ok(
            match p.body.ok_or(WireError::MissingField("link_message.body"))? {
                Body::Commit(c) => Self::Commit(fixed("link_message.commit", &c)?),
                Body::Hello(h) => {
                    let device = field(
                        "link_hello.device_key",
                        DevicePublicKey::from_slice(&h.device_key),
                    )?;
                    let dh = field(
                        "link_hello.device_dh_key",
                        DeviceDhPublic::from_slice(&h.device_dh_key),
                    )?;
                    let signature =
                        field("link_hello.signature", Signature::from_slice(&h.signature))?;
                    check_display_name("link_hello.name", &h.name)?;
                    Self::Hello(LinkHello {
                        device,
                        dh,
                        nonce: fixed("link_hello.nonce", &h.nonce)?,
                        name: h.name,
                        signature,
                        skip_history: h.skip_history,
                    })
                }
                Body::Reveal(k) => Self::Reveal(fixed("link_message.reveal", &k)?),
                Body::Bundle(b) if b.is_empty() => {
                    return Err(WireError::MissingField("link_message.bundle"));
                }
                Body::Bundle(b) => Self::Bundle(b),
                Body::Confirm(_) => Self::Confirm,
                Body::Decline(_) => Self::Decline,
            },
        )
    }
}

/// Everything a new device needs to be the identity: its log, relay and name, the
/// identity's keys (the root only in `shared-root`), the epoch key and where the
/// checkpoint is. Secret; encoded only into a wiped buffer, to be sealed.
pub struct ProvisioningBundle {
    /// The identity's log.
    pub log_id: [u8; 32],
    /// The identity's home relay.
    pub relay_url: String,
    /// The identity's display name.
    pub name: String,
    /// Where first messages from strangers go.
    pub intro_mailbox: [u8; 32],
    /// The root signing key in `shared-root`; `None` in `primary-root` (the roster entry
    /// the root signed for the device is its certificate).
    pub root: Option<RootSigningKey>,
    /// The identity's root-signed public keys (an encoded `IdentityKeys`).
    pub identity_keys: Vec<u8>,
    /// The identity's handshake key.
    pub dh: IdentityDhSecret,
    /// The log's epoch.
    pub epoch: u32,
    /// The log's epoch key.
    pub epoch_key: Zeroizing<[u8; 32]>,
    /// The blob id of the sealed checkpoint.
    pub checkpoint: [u8; 32],
    /// The key the history chunks are sealed under (`None`: no history comes).
    pub history_key: Option<Zeroizing<[u8; 32]>>,
    /// The blob ids of the history chunks, in order (at most
    /// [`MAX_HISTORY_CHUNKS`](crate::limits::MAX_HISTORY_CHUNKS)).
    pub history: Vec<[u8; 32]>,
}

impl ProvisioningBundle {
    /// The encoding (secret: wiped on drop, as is every intermediate copy).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut p = proto::ProvisioningBundle {
            version: WIRE_VERSION,
            log_id: self.log_id.to_vec(),
            relay_url: self.relay_url.clone(),
            name: self.name.clone(),
            intro_mailbox: self.intro_mailbox.to_vec(),
            root_secret: self
                .root
                .as_ref()
                .map(|r| r.to_secret_bytes().to_vec())
                .unwrap_or_default(),
            identity_keys: self.identity_keys.clone(),
            identity_dh_secret: self.dh.to_secret_bytes().to_vec(),
            epoch: self.epoch,
            epoch_key: self.epoch_key.to_vec(),
            checkpoint: self.checkpoint.to_vec(),
            history_key: self
                .history_key
                .as_ref()
                .map(|k| k.to_vec())
                .unwrap_or_default(),
            history: self.history.iter().map(|h| h.to_vec()).collect(),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(p.encoded_len()));
        let _ = p.encode(&mut *out);
        wipe_bundle(&mut p);
        out
    }

    /// Parses a bundle. Whether its keys belong to the log it names is the caller's
    /// check (it needs the log).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut p: proto::ProvisioningBundle =
            decode_bounded("provisioning bundle", bytes, MAX_PROVISIONING_BUNDLE_LEN)?;
        let parsed = Self::parse(&p);
        wipe_bundle(&mut p);
        parsed
    }

    fn parse(p: &proto::ProvisioningBundle) -> Result<Self, WireError> {
        check_version("provisioning bundle", p.version)?;
        check_relay_url("provisioning_bundle.relay_url", &p.relay_url)?;
        check_display_name("provisioning_bundle.name", &p.name)?;
        let root = match p.root_secret.len() {
            0 => None,
            _ => Some(RootSigningKey::from_secret_bytes(&Zeroizing::new(fixed(
                "provisioning_bundle.root_secret",
                &p.root_secret,
            )?))),
        };
        if p.identity_keys.is_empty() {
            return Err(WireError::MissingField("provisioning_bundle.identity_keys"));
        }
        Ok(Self {
            log_id: fixed("provisioning_bundle.log_id", &p.log_id)?,
            relay_url: p.relay_url.clone(),
            name: p.name.clone(),
            intro_mailbox: fixed("provisioning_bundle.intro_mailbox", &p.intro_mailbox)?,
            root,
            identity_keys: p.identity_keys.clone(),
            dh: IdentityDhSecret::from_secret_bytes(&Zeroizing::new(fixed(
                "provisioning_bundle.identity_dh_secret",
                &p.identity_dh_secret,
            )?)),
            epoch: p.epoch,
            epoch_key: Zeroizing::new(fixed("provisioning_bundle.epoch_key", &p.epoch_key)?),
            checkpoint: fixed("provisioning_bundle.checkpoint", &p.checkpoint)?,
            history_key: match p.history_key.len() {
                0 => None,
                _ => Some(Zeroizing::new(fixed(
                    "provisioning_bundle.history_key",
                    &p.history_key,
                )?)),
            },
            history: {
                if p.history.len() > crate::limits::MAX_HISTORY_CHUNKS
                    || (p.history_key.is_empty() && !p.history.is_empty())
                {
                    return Err(WireError::InvalidText {
                        field: "provisioning_bundle.history",
                        reason: "too many chunks, or chunks without a key",
                    });
                }
                p.history
                    .iter()
                    .map(|h| fixed("provisioning_bundle.history", h))
                    .collect::<Result<_, _>>()?
            },
        })
    }
}

fn wipe_bundle(p: &mut proto::ProvisioningBundle) {
    use zeroize::Zeroize;
    p.root_secret.zeroize();
    p.identity_dh_secret.zeroize();
    p.epoch_key.zeroize();
    p.history_key.zeroize();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn hello() -> (LinkHello, [u8; 32], [u8; 32], [u8; 32]) {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let key = DeviceSigningKey::generate(&mut rng);
        let dh = chorus_crypto::DeviceDhSecret::generate(&mut rng).public_key();
        let (channel, code_key, commit) = ([1; 32], [2; 32], [3; 32]);
        let h = LinkHello::sign(&key, dh, [4; 32], "tablet", &channel, &code_key, &commit);
        (h, channel, code_key, commit)
    }

    #[test]
    fn a_hello_verifies_only_where_it_was_said() {
        let (h, channel, code_key, commit) = hello();
        h.verify(&channel, &code_key, &commit).unwrap();
        for (c, k, m) in [
            ([9; 32], code_key, commit),
            (channel, [9; 32], commit),
            (channel, code_key, [9; 32]),
        ] {
            assert_eq!(
                h.verify(&c, &k, &m),
                Err(WireError::BadSignature("link hello"))
            );
        }
        let mut renamed = h.clone();
        renamed.name = "laptop".into();
        assert!(renamed.verify(&channel, &code_key, &commit).is_err());
    }

    #[test]
    fn every_message_round_trips() {
        let (h, ..) = hello();
        for m in [
            LinkMessage::Commit([5; 32]),
            LinkMessage::Hello(h),
            LinkMessage::Reveal([6; 32]),
            LinkMessage::Bundle(vec![7; 100]),
            LinkMessage::Confirm,
            LinkMessage::Decline,
        ] {
            assert_eq!(LinkMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn bad_messages_are_refused_with_the_field_at_fault() {
        let short = proto::LinkMessage {
            version: WIRE_VERSION,
            body: Some(proto::link_message::Body::Commit(vec![1; 31])),
        }
        .encode_to_vec();
        assert!(matches!(
            LinkMessage::decode(&short),
            Err(WireError::InvalidText {
                field: "link_message.commit",
                ..
            })
        ));
        let future = proto::LinkMessage {
            version: 9,
            body: Some(proto::link_message::Body::Confirm(true)),
        }
        .encode_to_vec();
        assert!(matches!(
            LinkMessage::decode(&future),
            Err(WireError::UnsupportedVersion { version: 9, .. })
        ));
        let empty = proto::LinkMessage {
            version: WIRE_VERSION,
            body: None,
        }
        .encode_to_vec();
        assert_eq!(
            LinkMessage::decode(&empty),
            Err(WireError::MissingField("link_message.body"))
        );
        let huge = vec![0u8; MAX_LINK_MESSAGE_LEN + 1];
        assert!(matches!(
            LinkMessage::decode(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_bundle_round_trips_and_a_truncated_key_is_refused() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let root = RootSigningKey::generate(&mut rng);
        let dh = IdentityDhSecret::generate(&mut rng);
        let b = ProvisioningBundle {
            log_id: [1; 32],
            relay_url: "http://127.0.0.1:1".into(),
            name: "alice".into(),
            intro_mailbox: [2; 32],
            root: Some(RootSigningKey::from_secret_bytes(&root.to_secret_bytes())),
            identity_keys: vec![3; 10],
            dh: IdentityDhSecret::from_secret_bytes(&dh.to_secret_bytes()),
            epoch: 1,
            epoch_key: Zeroizing::new([4; 32]),
            checkpoint: [5; 32],
            history_key: Some(Zeroizing::new([6; 32])),
            history: vec![[7; 32], [8; 32]],
        };
        let back = ProvisioningBundle::decode(&b.encode()).unwrap();
        assert_eq!(back.history, [[7; 32], [8; 32]]);
        assert_eq!(back.history_key.as_deref(), Some(&[6; 32]));
        let mut p = proto::ProvisioningBundle::decode(&b.encode()[..]).unwrap();
        p.history = vec![vec![9; 32]; crate::limits::MAX_HISTORY_CHUNKS + 1];
        assert!(matches!(
            ProvisioningBundle::decode(&p.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "provisioning_bundle.history",
                ..
            })
        ));
        p.history = vec![vec![9; 32]];
        p.history_key.clear();
        assert!(
            ProvisioningBundle::decode(&p.encode_to_vec()).is_err(),
            "chunks without a key"
        );
        assert_eq!(back.root.unwrap().public_key(), root.public_key());
        assert_eq!(back.dh.public_key(), dh.public_key());
        assert_eq!(
            (back.log_id, back.checkpoint, *back.epoch_key),
            ([1; 32], [5; 32], [4; 32])
        );
        let mut p = proto::ProvisioningBundle::decode(&b.encode()[..]).unwrap();
        p.identity_dh_secret.truncate(31);
        assert!(matches!(
            ProvisioningBundle::decode(&p.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "provisioning_bundle.identity_dh_secret",
                ..
            })
        ));
    }
}
