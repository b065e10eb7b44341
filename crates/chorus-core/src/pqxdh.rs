//! The hybrid handshake, in the spirit of Signal's PQXDH.
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   (only if a one-time prekey was available)
//! (CT, SS) = ML-KEM-768.Encaps(PQPK_B)   (one-time PQ prekey, or the last-resort one)
//! SK = HKDF(0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS, info = KdfLabel::CHORUS.handshake)
//! ```
//!
//! The responder's signed prekey and PQ prekey signatures are verified by
//! [`PrekeyBundle::decode`] before a bundle value can exist, so `initiate` cannot be
//! handed an unverified key. Both identities (root ‖ DH key, initiator first) are bound
//! into the associated data of every message of the session. The session's ratchet tree
//! starts at the responder's signed prekey with `SK` as its root key.

use std::collections::BTreeMap;
use std::fmt;

use chorus_crypto::{
    CryptoRng, EphemeralSecret, HandshakeSecret, IdentityDhSecret, KdfLabel, OneTimePrekeySecret,
    PqPrekeySecret, RootSigningKey, SignedPrekeySecret,
};
use chorus_wire::{
    IdentityKeys, InitialMessage, OneTimePrekey, PqPrekey, PrekeyBundle, SignedPrekey,
};

use crate::SessionError;
use crate::consts::MAX_FIRST_MESSAGE_COUNTER;
use crate::session::{PendingInitial, Role, Session};
use crate::tree::{Profile, Tree};

/// Our identity's private keys as a device holds them: the identity DH key always, the
/// root signing key on every device in `shared-root` and only on the primary device in
/// `primary-root` (the others hold the root-signed public keys instead).
///
/// Holds secrets: `Debug` prints only the public keys.
pub struct LocalIdentity {
    root: Option<RootSigningKey>,
    dh: IdentityDhSecret,
    keys: IdentityKeys,
}

impl LocalIdentity {
    /// A new identity.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_parts(
            RootSigningKey::generate(rng),
            IdentityDhSecret::generate(rng),
        )
    }

    /// An identity from stored keys.
    pub fn from_parts(root: RootSigningKey, dh: IdentityDhSecret) -> Self {
        let keys = IdentityKeys::sign(&root, dh.public_key());
        Self {
            root: Some(root),
            dh,
            keys,
        }
    }

    /// An identity on a device without the root key: `keys` as the root signed them
    /// (their signature was checked when they were decoded). `None` if `dh` is not the
    /// DH key they name.
    pub fn without_root(keys: IdentityKeys, dh: IdentityDhSecret) -> Option<Self> {
        (keys.dh == dh.public_key()).then_some(Self {
            root: None,
            dh,
            keys,
        })
    }

    /// The public keys contacts pin.
    pub fn keys(&self) -> &IdentityKeys {
        &self.keys
    }

    /// The root key, for signing prekeys and roster entries (`None` on a device that
    /// does not hold it).
    pub fn root(&self) -> Option<&RootSigningKey> {
        self.root.as_ref()
    }
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("root", &self.keys.root)
            .field("dh", &self.keys.dh)
            .finish_non_exhaustive()
    }
}

/// Where the responder's private prekeys live (storage is passed in, never opened here).
pub trait PrekeyStore {
    /// The signed prekey with this id.
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeySecret>;
    /// The one-time prekey with this id, if not yet consumed.
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeySecret>;
    /// The PQ prekey with this id, and whether it is the last-resort one (kept after use)
    /// rather than a one-time one (deleted after use).
    fn pq_prekey(&self, id: u32) -> Option<(&PqPrekeySecret, bool)>;
}

/// An in-memory [`PrekeyStore`] that can also mint prekeys. Used by tests, the
/// simulator and as the client's working set.
///
/// Holds secrets: `Debug` prints only ids.
#[derive(Default)]
pub struct MemoryPrekeyStore {
    next_id: u32,
    signed: BTreeMap<u32, SignedPrekeySecret>,
    one_time: BTreeMap<u32, OneTimePrekeySecret>,
    pq: BTreeMap<u32, (PqPrekeySecret, bool)>,
}

impl MemoryPrekeyStore {
    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Mints a signed prekey (needs the root key).
    pub fn new_signed_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        identity: &LocalIdentity,
        rng: &mut R,
    ) -> Result<SignedPrekey, SessionError> {
        let root = identity.root().ok_or(SessionError::NoRootKey)?;
        let id = self.id();
        let secret = SignedPrekeySecret::generate(rng);
        let public = SignedPrekey::sign(root, id, secret.public_key());
        self.signed.insert(id, secret);
        Ok(public)
    }

    /// Mints one one-time prekey.
    pub fn new_one_time_prekey<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> OneTimePrekey {
        let id = self.id();
        let secret = OneTimePrekeySecret::generate(rng);
        let public = OneTimePrekey {
            id,
            key: secret.public_key(),
        };
        self.one_time.insert(id, secret);
        public
    }

    /// Mints a PQ prekey, one-time or last-resort (needs the root key).
    pub fn new_pq_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        identity: &LocalIdentity,
        last_resort: bool,
        rng: &mut R,
    ) -> Result<PqPrekey, SessionError> {
        let root = identity.root().ok_or(SessionError::NoRootKey)?;
        let id = self.id();
        let secret = PqPrekeySecret::generate(rng);
        let public = PqPrekey::sign(root, id, secret.public_key(), last_resort);
        self.pq.insert(id, (secret, last_resort));
        Ok(public)
    }

    /// Deletes the one-time prekeys a handshake consumed.
    pub fn consume(&mut self, used: &ConsumedPrekeys) {
        if let Some(id) = used.one_time_prekey {
            self.one_time.remove(&id);
        }
        if let Some(id) = used.pq_prekey {
            self.pq.remove(&id);
        }
    }

    /// Number of one-time X25519 prekeys left.
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }
}

impl fmt::Debug for MemoryPrekeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPrekeyStore")
            .field("signed", &self.signed.keys().collect::<Vec<_>>())
            .field("one_time", &self.one_time.keys().collect::<Vec<_>>())
            .field(
                "pq",
                &self
                    .pq
                    .iter()
                    .map(|(k, (_, lr))| (k, lr))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PrekeyStore for MemoryPrekeyStore {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeySecret> {
        self.signed.get(&id)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeySecret> {
        self.one_time.get(&id)
    }
    fn pq_prekey(&self, id: u32) -> Option<(&PqPrekeySecret, bool)> {
        self.pq.get(&id).map(|(k, lr)| (k, *lr))
    }
}

/// One-time prekeys the responder must now delete (a last-resort PQ key is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumedPrekeys {
    /// The one-time X25519 prekey used, if any.
    pub one_time_prekey: Option<u32>,
    /// The one-time PQ prekey used, if it was not the last-resort one.
    pub pq_prekey: Option<u32>,
}

/// Starts a session with the owner of `bundle`. The first [`Session::encrypt`] produces
/// an initial message; every message is initial until the responder answers.
pub fn initiate<R: CryptoRng + ?Sized>(
    ours: &LocalIdentity,
    bundle: &PrekeyBundle,
    rng: &mut R,
) -> Result<Session, SessionError> {
    let ephemeral = EphemeralSecret::generate(rng);
    let theirs = &bundle.identity;
    let spk = &bundle.signed_prekey.key;
    let mut secret = HandshakeSecret::new(KdfLabel::CHORUS);
    secret.mix_dh(
        &ours
            .dh
            .diffie_hellman(spk)
            .map_err(SessionError::InvalidKey)?,
    );
    secret.mix_dh(
        &ephemeral
            .diffie_hellman(&theirs.dh)
            .map_err(SessionError::InvalidKey)?,
    );
    secret.mix_dh(
        &ephemeral
            .diffie_hellman(spk)
            .map_err(SessionError::InvalidKey)?,
    );
    if let Some(otk) = &bundle.one_time_prekey {
        secret.mix_dh(
            &ephemeral
                .diffie_hellman(&otk.key)
                .map_err(SessionError::InvalidKey)?,
        );
    }
    let (kem_ciphertext, kem_secret) = bundle
        .pq_prekey
        .key
        .encapsulate(rng)
        .map_err(SessionError::InvalidKey)?;
    secret.mix_kem(&kem_secret);
    let tree = Tree::for_initiator(
        Profile::Chorus,
        spk.to_ratchet_public(),
        secret.into_root_key(),
    );
    let pending = PendingInitial {
        ephemeral: ephemeral.public_key(),
        signed_prekey_id: bundle.signed_prekey.id,
        one_time_prekey_id: bundle.one_time_prekey.as_ref().map(|o| o.id),
        pq_prekey_id: bundle.pq_prekey.id,
        kem_ciphertext: kem_ciphertext.as_bytes().to_vec(),
    };
    Ok(Session::new(
        tree,
        Role::Initiator,
        ours.keys.clone(),
        theirs.clone(),
        Some(pending),
        None,
    ))
}

/// The result of answering an initial message.
///
/// `Debug` omits the plaintext.
pub struct Responded {
    /// The new session.
    pub session: Session,
    /// The first message's plaintext.
    pub plaintext: zeroize::Zeroizing<Vec<u8>>,
    /// Prekeys to delete now.
    pub consumed: ConsumedPrekeys,
}

/// Accepts an initial message and creates the responder's session. Deterministic: reads
/// no randomness. Nothing is consumed unless the first message authenticates.
pub fn respond(
    ours: &LocalIdentity,
    prekeys: &impl PrekeyStore,
    message: &[u8],
) -> Result<Responded, SessionError> {
    let initial = InitialMessage::decode(message)?;
    // Checked before any key is looked up or derived: it costs a stranger nothing.
    let counter = initial.message.header.counter;
    if counter > MAX_FIRST_MESSAGE_COUNTER {
        return Err(SessionError::FirstMessageTooFarAhead {
            counter,
            max: MAX_FIRST_MESSAGE_COUNTER,
        });
    }
    let spk =
        prekeys
            .signed_prekey(initial.signed_prekey_id)
            .ok_or(SessionError::UnknownPrekey {
                kind: "signed",
                id: initial.signed_prekey_id,
            })?;
    let otk = match initial.one_time_prekey_id {
        Some(id) => Some(
            prekeys
                .one_time_prekey(id)
                .ok_or(SessionError::UnknownPrekey {
                    kind: "one-time",
                    id,
                })?,
        ),
        None => None,
    };
    let (pq, pq_last_resort) =
        prekeys
            .pq_prekey(initial.pq_prekey_id)
            .ok_or(SessionError::UnknownPrekey {
                kind: "PQ",
                id: initial.pq_prekey_id,
            })?;

    let mut secret = HandshakeSecret::new(KdfLabel::CHORUS);
    secret.mix_dh(
        &spk.diffie_hellman(&initial.sender.dh)
            .map_err(SessionError::InvalidKey)?,
    );
    secret.mix_dh(
        &ours
            .dh
            .diffie_hellman(&initial.ephemeral)
            .map_err(SessionError::InvalidKey)?,
    );
    secret.mix_dh(
        &spk.diffie_hellman(&initial.ephemeral)
            .map_err(SessionError::InvalidKey)?,
    );
    if let Some(otk) = otk {
        secret.mix_dh(
            &otk.diffie_hellman(&initial.ephemeral)
                .map_err(SessionError::InvalidKey)?,
        );
    }
    secret.mix_kem(&pq.decapsulate(&initial.kem_ciphertext));

    let tree = Tree::for_responder(
        Profile::Chorus,
        spk.to_ratchet_secret(),
        secret.into_root_key(),
    );
    let mut session = Session::new(
        tree,
        Role::Responder,
        ours.keys.clone(),
        initial.sender.clone(),
        None,
        Some(initial.ephemeral),
    );
    let plaintext = session.decrypt_parsed(&initial.message)?;
    Ok(Responded {
        session,
        plaintext,
        consumed: ConsumedPrekeys {
            one_time_prekey: initial.one_time_prekey_id,
            pq_prekey: if pq_last_resort {
                None
            } else {
                Some(initial.pq_prekey_id)
            },
        },
    })
}

impl fmt::Debug for Responded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responded")
            .field("session", &self.session)
            .field("plaintext_len", &self.plaintext.len())
            .field("consumed", &self.consumed)
            .finish()
    }
}

/// A private prekey as it travels in `PrekeysCreated` events and is stored: one of the
/// three kinds, encoded with postcard.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum PrekeyPrivate {
    /// A signed X25519 prekey.
    Signed(SignedPrekeySecret),
    /// A one-time X25519 prekey.
    OneTime(OneTimePrekeySecret),
    /// An ML-KEM prekey.
    Pq(PqPrekeySecret),
}

impl PrekeyPrivate {
    /// Parses the stored form; `None` if it is not a private prekey.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// Whether this is the kind the logged key claims.
    pub fn is(&self, logged: &chorus_wire::PrekeySecret) -> bool {
        use chorus_wire::PrekeyKind;
        matches!(
            (self, logged.kind),
            (Self::Signed(_), PrekeyKind::Signed)
                | (Self::OneTime(_), PrekeyKind::OneTime)
                | (Self::Pq(_), PrekeyKind::Pq)
        )
    }
}
