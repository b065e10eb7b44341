//! Serialising secrets without leaving copies behind.
//!
//! `postcard::to_allocvec` grows a `Vec` as it writes, and every reallocation frees the
//! previous buffer — with the secret bytes in it — unwiped. Here the size is measured
//! first and the value is written once into a wiped buffer of exactly that size.

use serde::Serialize;
use zeroize::Zeroizing;

/// Encodes `value` with postcard after `prefix`, into one wiped allocation. `None` if
/// the value does not serialise (in-memory state of supported types always does).
pub fn encode_wiped<T: Serialize + ?Sized>(prefix: &[u8], value: &T) -> Option<Zeroizing<Vec<u8>>> {
    let size =
        postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).ok()?;
    let mut out = Zeroizing::new(vec![0u8; prefix.len() + size]);
    let (head, body) = out.split_at_mut(prefix.len());
    head.copy_from_slice(prefix);
    postcard::to_slice(value, body).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_encoding_is_postcards_after_the_prefix_and_exactly_sized() {
        let value = (7u32, vec![1u8, 2, 3], "name");
        let out = encode_wiped(&[9], &value).unwrap();
        let plain = postcard::to_allocvec(&value).unwrap();
        assert_eq!(out[0], 9);
        assert_eq!(&out[1..], &plain[..]);
        assert_eq!(out.capacity(), 1 + plain.len(), "one exact allocation");
    }
}
