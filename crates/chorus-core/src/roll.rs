//! Following a contact's identity rolls (`chorus identity roll` on their side).
//!
//! A contact's messages carry their latest rolls until we answer with the root we now
//! hold for them. Each roll is a statement signed by the root it leaves and by the
//! root it moves to (checked when it was decoded); what this module decides is whether
//! the statements *follow from what we know*: the root we pinned for the contact and
//! every step we already followed.
//!
//! Rolling is the answer to a lost device, and in `shared-root` the lost device holds
//! the root too: a thief can roll as well as the owner. Both rolls are signed by the
//! same previous root, and nothing in them says which is the owner's. So the first roll
//! from a root is followed, and a second, different roll from a root already left is a
//! [`RollVerdict::Conflict`]: the client marks the contact as compromised and asks the
//! person to compare safety numbers again, rather than pick one. A chain that starts at
//! no root we know for the contact is [`RollVerdict::Unrelated`]: signed by keys that
//! were never theirs, it is an impostor's.
//!
//! Pure and deterministic: every device of ours reads the same messages and decides
//! the same.

use chorus_crypto::RootPublicKey;
use chorus_wire::{IdentityKeys, IdentityRoll};

/// One followed step: the root left, the root moved to.
pub type RollStep = ([u8; 32], [u8; 32]);

/// What a message's rolls mean for the contact's pinned root.
#[derive(Debug, PartialEq, Eq)]
pub enum RollVerdict {
    /// Nothing new: no rolls, or only steps already followed.
    Unchanged,
    /// The contact rolled: pin `identity` from now on; `steps` are the new steps.
    Rolled {
        /// The contact's identity after the last step.
        identity: IdentityKeys,
        /// The steps followed, in order.
        steps: Vec<RollStep>,
    },
    /// A roll from a root the contact already left, to another key than the one
    /// followed: two rolls signed by one key. The pin does not move.
    Conflict {
        /// The identity the other roll names.
        other: IdentityKeys,
    },
    /// Rolls that start at no root we know for the contact.
    Unrelated,
}

/// Decides `rolls` (oldest first) against the contact's pinned root and the steps
/// already followed (`known`, in any order).
pub fn follow_rolls(
    pinned: &RootPublicKey,
    known: &[RollStep],
    rolls: &[IdentityRoll],
) -> RollVerdict {
    let mut current = *pinned;
    let mut steps: Vec<RollStep> = Vec::new();
    let mut identity = None;
    for roll in rolls {
        let (old, new) = (
            *roll.old_root.as_bytes(),
            *roll.new_identity.root.as_bytes(),
        );
        if let Some((_, followed)) = known.iter().chain(&steps).find(|(o, _)| *o == old) {
            if *followed == new {
                continue;
            }
            return RollVerdict::Conflict {
                other: roll.new_identity.clone(),
            };
        }
        if roll.old_root == current {
            steps.push((old, new));
            current = roll.new_identity.root;
            identity = Some(roll.new_identity.clone());
        } else if roll.new_identity.root != current {
            // Neither from nor to the root we hold: a chain of someone else's keys
            // (a step to the root we hold is one we learned another way, by the
            // handshake that made the contact).
            return RollVerdict::Unrelated;
        }
    }
    match identity {
        Some(identity) => RollVerdict::Rolled { identity, steps },
        None => RollVerdict::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_crypto::{IdentityDhSecret, RootSigningKey};
    use rand::SeedableRng;

    struct Keys {
        rng: rand::rngs::StdRng,
    }

    impl Keys {
        fn root(&mut self) -> RootSigningKey {
            RootSigningKey::generate(&mut self.rng)
        }
        fn roll(&mut self, old: &RootSigningKey, new: &RootSigningKey) -> IdentityRoll {
            let keys =
                IdentityKeys::sign(new, IdentityDhSecret::generate(&mut self.rng).public_key());
            IdentityRoll::sign(old, new, keys)
        }
    }

    fn keys() -> Keys {
        Keys {
            rng: rand::rngs::StdRng::seed_from_u64(11),
        }
    }

    #[test]
    fn a_roll_from_the_pinned_root_is_followed_and_a_second_time_is_nothing_new() {
        let mut k = keys();
        let (a1, a2) = (k.root(), k.root());
        let roll = k.roll(&a1, &a2);
        let RollVerdict::Rolled { identity, steps } =
            follow_rolls(&a1.public_key(), &[], std::slice::from_ref(&roll))
        else {
            panic!("a roll from the pinned root is followed");
        };
        assert_eq!(identity.root, a2.public_key());
        assert_eq!(
            steps,
            vec![(*a1.public_key().as_bytes(), *a2.public_key().as_bytes())]
        );
        assert_eq!(
            follow_rolls(&a2.public_key(), &steps, &[roll]),
            RollVerdict::Unchanged
        );
    }

    #[test]
    fn two_steps_are_followed_in_one_message() {
        let mut k = keys();
        let (a1, a2, a3) = (k.root(), k.root(), k.root());
        let rolls = [k.roll(&a1, &a2), k.roll(&a2, &a3)];
        let RollVerdict::Rolled { identity, steps } = follow_rolls(&a1.public_key(), &[], &rolls)
        else {
            panic!("a chain from the pinned root is followed");
        };
        assert_eq!(identity.root, a3.public_key());
        assert_eq!(steps.len(), 2);
        // A contact that met the identity after the first roll follows only the second.
        let RollVerdict::Rolled { steps, .. } = follow_rolls(&a2.public_key(), &[], &rolls) else {
            panic!("the chain's tail is followed");
        };
        assert_eq!(steps.len(), 1);
    }

    #[test]
    fn a_second_different_roll_from_a_root_left_is_a_conflict() {
        let mut k = keys();
        let (a1, owner, thief) = (k.root(), k.root(), k.root());
        let first = k.roll(&a1, &thief);
        let RollVerdict::Rolled { steps, .. } = follow_rolls(&a1.public_key(), &[], &[first])
        else {
            panic!("the first roll is followed");
        };
        let second = k.roll(&a1, &owner);
        assert_eq!(
            follow_rolls(&thief.public_key(), &steps, std::slice::from_ref(&second)),
            RollVerdict::Conflict {
                other: second.new_identity.clone()
            }
        );
        // Within one message too.
        let (b1, b2, b3) = (k.root(), k.root(), k.root());
        let both = [k.roll(&b1, &b2), k.roll(&b1, &b3)];
        assert!(matches!(
            follow_rolls(&b1.public_key(), &[], &both),
            RollVerdict::Conflict { .. }
        ));
    }

    #[test]
    fn rolls_from_keys_never_the_contacts_are_unrelated() {
        let mut k = keys();
        let (a1, m1, m2) = (k.root(), k.root(), k.root());
        let forged = k.roll(&m1, &m2);
        assert_eq!(
            follow_rolls(&a1.public_key(), &[], &[forged]),
            RollVerdict::Unrelated
        );
    }
}
