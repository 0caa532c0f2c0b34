//! FNV-1a (64 bit), written once: the hash behind identifiers that files already written
//! store, so it must stay bit for bit what it was. It gives the vocabulary hash of token and
//! model files ([`super::Vocab::hash`]) and the data fingerprints that model files record
//! ([`super::Ids::fingerprint`]).
//!
//! Not for anything new: fed units wider than a byte, a flip of a unit's top bit reaches only
//! the hash's top bit, so two such flips cancel (the flaw of format-1 token files' content
//! hash, see [`super::tokens`]).

/// FNV-1a's 64-bit offset basis: the hash of nothing.
pub(crate) const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a step: the hash `h` continued with `unit` (a byte, or a wider unit taken whole).
pub(crate) fn step(h: u64, unit: u64) -> u64 {
    (h ^ unit).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The hash `h` continued over `bytes`, one byte at a time.
pub(crate) fn bytes(h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(h, |h, b| step(h, b.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_fnv1a() {
        // The published 64-bit FNV-1a test vectors.
        assert_eq!(bytes(OFFSET, []), 0xcbf2_9ce4_8422_2325);
        assert_eq!(bytes(OFFSET, *b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(bytes(OFFSET, *b"foobar"), 0x8594_4171_f739_67e8);
    }
}
