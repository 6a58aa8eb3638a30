//! Deterministic ids for alerts and credits. Same construction as the
//! pipeline's other record ids (SHA-256 over NUL-separated parts, first 128
//! bits as hex) so they look alike in ClickHouse and replays collapse.

use sha2::{Digest, Sha256};

/// 32 hex chars of SHA-256 over `part0 NUL part1 NUL ...`. The separator
/// keeps `("ab","c")` and `("a","bc")` apart.
pub(crate) fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Stable 64-bit hash of a cdr_id (FNV-1a), the same in every process:
/// the monitors keep and persist these instead of the ids themselves.
pub(crate) fn id_hash(cdr_id: &str) -> u64 {
    cdr_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_separated() {
        assert_eq!(stable_id(&["a", "b"]), stable_id(&["a", "b"]));
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
        assert_eq!(stable_id(&["x"]).len(), 32);
    }
}
