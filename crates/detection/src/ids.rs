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
