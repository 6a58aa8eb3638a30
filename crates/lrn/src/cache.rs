//! LRN cache and dip-fee decision: this module owns *when a source is asked*
//! and *what that costs* — [`LrnCache`] (bounded moka cache + lock-free fast
//! layer + in-flight coalescing + retry-until-deadline), [`LrnOutcome`], the
//! replayable [`EnrichmentRecord`], and [`should_dip`].
//!
//! # Fee rule
//! A call whose number was **not in the cache** and was answered by the source
//! is charged the configured dip fee (default `0.0003`). A cache hit is charged
//! `0`. When the source keeps failing until the deadline the outcome is
//! [`LrnSourceKind::Unavailable`], with no LRN and fee `0` (the call is flagged,
//! rated on the dialed number, and never blocked). Concurrent misses for the
//! same number are coalesced into one dip: the call that performed it pays,
//! the calls that waited for it are reported as `Cache` with fee `0` — one
//! fee per dip actually performed.
//!
//! # Replay
//! The fee depends on cache state, which differs between processes, restarts
//! and consumer-group rebalances. The decision is therefore recorded once in an
//! [`EnrichmentRecord`] stored with the call; re-processing a call passes that
//! record to [`LrnCache::enrich`], which returns it untouched (no lookup, no
//! new fee) — see the crate README.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::source::{format_tn10, jitter, parse_tn10, LrnSource};

/// Default LRN dip fee in USD.
pub const DEFAULT_DIP_FEE: Decimal = dec!(0.0003);

/// Where an LRN outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LrnSourceKind {
    /// Served from the cache (fee 0).
    Cache,
    /// Looked up in the source (fee charged).
    Dip,
    /// Source failed until the deadline: no LRN, fee 0, flag the call.
    Unavailable,
}

/// Result of [`LrnCache::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LrnOutcome {
    /// 10-digit LRN (the number itself when not ported); `None` when unavailable.
    pub lrn: Option<String>,
    /// Whether the number is ported.
    pub ported: bool,
    /// Cache, Dip or Unavailable.
    pub source: LrnSourceKind,
    /// Dip fee charged to this call.
    pub fee: Decimal,
}

/// A cached answer in compact form (no allocation on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CachedLrn {
    /// LRN as integer (10 digits).
    pub lrn: u64,
    /// Whether the number is ported.
    pub ported: bool,
}

impl CachedLrn {
    /// LRN as 10-digit string.
    pub fn lrn10(&self) -> String {
        format_tn10(self.lrn)
    }
}

/// Configuration of [`LrnCache`].
#[derive(Debug, Clone)]
pub struct LrnCacheConfig {
    /// Maximum entries in the moka cache.
    pub max_capacity: u64,
    /// Time to live of a cached answer (ports take effect after at most this long).
    pub ttl: Duration,
    /// Fee charged per dip.
    pub dip_fee: Decimal,
    /// Give up on the source after this long and return `Unavailable`.
    pub deadline: Duration,
    /// First retry backoff (doubles up to `retry_backoff_max`).
    pub retry_backoff: Duration,
    /// Retry backoff cap.
    pub retry_backoff_max: Duration,
    /// Slots of the lock-free direct-mapped fast layer in front of moka
    /// (rounded up to a power of two; 0 disables it).
    pub fast_slots: usize,
}

impl Default for LrnCacheConfig {
    /// 1 M entries, 6 h TTL, fee 0.0003, 2 s deadline, 25 ms → 400 ms backoff, 128 Ki fast slots.
    fn default() -> Self {
        LrnCacheConfig {
            max_capacity: 1_000_000,
            ttl: Duration::from_secs(6 * 3600),
            dip_fee: DEFAULT_DIP_FEE,
            deadline: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(25),
            retry_backoff_max: Duration::from_millis(400),
            fast_slots: 1 << 17,
        }
    }
}

/// Counters (cheap, relaxed). Hits are not counted to keep the hit path free of shared writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Dips performed successfully (each charged).
    pub dips: u64,
    /// Lookups that ended `Unavailable`.
    pub unavailable: u64,
    /// Misses that waited for another call's dip.
    pub coalesced: u64,
    /// Entries currently in the moka cache (approximate).
    pub entries: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    val: CachedLrn,
    exp_ms: u64,
}

/// The one-line rule for which numbers are dipped: NANP (country code 1)
/// geographic numbers. Takes E.164 digits (optional `+`), returns the 10-digit
/// number to dip. Toll-free NPAs are excluded (they are portable through the
/// SMS/800 database, not LNP; no LRN applies and no fee is charged).
pub fn should_dip(e164_digits: &str) -> Option<&str> {
    let d = e164_digits.strip_prefix('+').unwrap_or(e164_digits);
    let tn = d.strip_prefix('1').filter(|_| d.len() == 11)?;
    parse_tn10(tn)?;
    if crate::numbering::NANP_TOLL_FREE_NPAS.contains(&&tn[..3]) {
        return None;
    }
    Some(tn)
}

/// The LRN decision recorded on an enriched call. Pure data, serialisable:
/// store it with the CDR and pass it back on replay so the fee is never
/// recomputed from a cache state that no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichmentRecord {
    /// The 10-digit number that was (or would have been) dipped; `None` when not eligible.
    pub tn10: Option<String>,
    /// LRN used for rating (`None`: not eligible or unavailable — rate on the dialed number).
    pub lrn: Option<String>,
    /// Whether the number is ported.
    pub ported: bool,
    /// How the LRN was obtained; `None` when the number was not eligible for a dip.
    pub source: Option<LrnSourceKind>,
    /// Fee charged for this call's LRN lookup.
    pub fee: Decimal,
}

impl EnrichmentRecord {
    /// Record of a resolved outcome.
    pub fn from_outcome(tn10: &str, o: &LrnOutcome) -> Self {
        EnrichmentRecord {
            tn10: Some(tn10.to_string()),
            lrn: o.lrn.clone(),
            ported: o.ported,
            source: Some(o.source),
            fee: o.fee,
        }
    }

    /// Record for a number that is not dipped (non-NANP, toll-free, invalid).
    pub fn not_eligible() -> Self {
        EnrichmentRecord {
            tn10: None,
            lrn: None,
            ported: false,
            source: None,
            fee: Decimal::ZERO,
        }
    }

    /// `true` when the lookup was attempted and failed (flag the call).
    pub fn lrn_unavailable(&self) -> bool {
        self.source == Some(LrnSourceKind::Unavailable)
    }

    /// The `enrichment.lrn_source` kind of this decision (the cache's own
    /// [`LrnSourceKind`] stays as persisted on `lrn.decisions`).
    pub fn lrn_source(&self) -> cdr_model::kinds::LrnSource {
        use cdr_model::kinds::LrnSource;
        match self.source {
            None => LrnSource::NotApplicable,
            Some(LrnSourceKind::Cache) => LrnSource::Cache,
            Some(LrnSourceKind::Dip) => LrnSource::Dip,
            Some(LrnSourceKind::Unavailable) => LrnSource::Unavailable,
        }
    }

    /// The number to rate on: the LRN when known, else the given dialed number.
    pub fn rated_number<'a>(&'a self, dialed: &'a str) -> &'a str {
        self.lrn.as_deref().unwrap_or(dialed)
    }
}

/// Bounded, TTL'd LRN cache in front of an [`LrnSource`]. Cheap to share behind an `Arc`.
pub struct LrnCache<S> {
    source: S,
    cfg: LrnCacheConfig,
    moka: moka::sync::Cache<u64, Entry>,
    fast: Option<FastLayer>,
    inflight: Mutex<HashMap<u64, Arc<OnceCell<Option<Entry>>>>>,
    epoch: Instant,
    dips: AtomicU64,
    unavailable: AtomicU64,
    coalesced: AtomicU64,
}

impl<S> std::fmt::Debug for LrnCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LrnCache")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<S: LrnSource> LrnCache<S> {
    /// Wrap a source.
    pub fn new(source: S, cfg: LrnCacheConfig) -> Self {
        let moka = moka::sync::Cache::builder()
            .max_capacity(cfg.max_capacity)
            .time_to_live(cfg.ttl)
            .build();
        let fast = (cfg.fast_slots > 0).then(|| FastLayer::new(cfg.fast_slots));
        LrnCache {
            source,
            moka,
            fast,
            inflight: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            dips: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            cfg,
        }
    }

    /// The wrapped source (e.g. to `reload` a [`crate::PortedDb`]).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The configuration in use.
    pub fn config(&self) -> &LrnCacheConfig {
        &self.cfg
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Synchronous cache-only lookup (never asks the source, never charges).
    #[inline]
    pub fn get_cached(&self, tn10: &str) -> Option<CachedLrn> {
        self.get_cached_u64(parse_tn10(tn10)?)
    }

    /// [`get_cached`](Self::get_cached) with the number already parsed by [`parse_tn10`].
    #[inline]
    pub fn get_cached_u64(&self, tn: u64) -> Option<CachedLrn> {
        let now = self.now_ms();
        if let Some(f) = &self.fast {
            if let Some(v) = f.get(tn, now) {
                return Some(v);
            }
        }
        let e = self.moka.get(&tn)?;
        if e.exp_ms <= now {
            return None;
        }
        if let Some(f) = &self.fast {
            f.put(tn, e.val, e.exp_ms);
        }
        Some(e.val)
    }

    fn outcome(&self, v: CachedLrn, source: LrnSourceKind) -> LrnOutcome {
        let fee = if source == LrnSourceKind::Dip {
            self.cfg.dip_fee
        } else {
            Decimal::ZERO
        };
        LrnOutcome {
            lrn: Some(v.lrn10()),
            ported: v.ported,
            source,
            fee,
        }
    }

    fn unavailable(&self) -> LrnOutcome {
        LrnOutcome {
            lrn: None,
            ported: false,
            source: LrnSourceKind::Unavailable,
            fee: Decimal::ZERO,
        }
    }

    /// Resolve a 10-digit NANP number: cache hit (fee 0), else dip (fee charged),
    /// retrying retryable failures with backoff until the configured deadline,
    /// after which `Unavailable` (no LRN, fee 0) is returned. Invalid input →
    /// `Unavailable` at once. Never panics on source failures.
    pub async fn resolve(&self, tn10: &str) -> LrnOutcome {
        let Some(tn) = parse_tn10(tn10) else {
            self.unavailable.fetch_add(1, Ordering::Relaxed);
            return self.unavailable();
        };
        if let Some(v) = self.get_cached_u64(tn) {
            return self.outcome(v, LrnSourceKind::Cache);
        }
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            let c = map.entry(tn).or_default();
            if matches!(c.get(), Some(None)) {
                // A failed attempt that is being cleaned up: start afresh.
                *c = Arc::default();
            }
            c.clone()
        };
        let mut performed = false;
        let result = *cell
            .get_or_init(|| {
                performed = true;
                self.dip(tn, tn10)
            })
            .await;
        if performed {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(&tn).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(&tn);
            }
        }
        match (result, performed) {
            (Some(e), true) => self.outcome(e.val, LrnSourceKind::Dip),
            (Some(e), false) => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                self.outcome(e.val, LrnSourceKind::Cache)
            }
            (None, _) => self.unavailable(),
        }
    }

    async fn dip(&self, tn: u64, tn10: &str) -> Option<Entry> {
        let deadline = tokio::time::Instant::now() + self.cfg.deadline;
        let attempts = async {
            let mut backoff = self.cfg.retry_backoff;
            loop {
                match self.source.lookup(tn10).await {
                    Ok(a) => {
                        return parse_tn10(&a.lrn).map(|lrn| CachedLrn {
                            lrn,
                            ported: a.ported,
                        })
                    }
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(jitter(backoff)).await;
                        backoff = (backoff * 2).min(self.cfg.retry_backoff_max);
                    }
                    Err(_) => return None,
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(Some(val)) => {
                self.dips.fetch_add(1, Ordering::Relaxed);
                let e = Entry {
                    val,
                    exp_ms: self.now_ms() + self.cfg.ttl.as_millis() as u64,
                };
                self.moka.insert(tn, e);
                if let Some(f) = &self.fast {
                    f.put(tn, val, e.exp_ms);
                }
                Some(e)
            }
            _ => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Enrich one call: on replay (`prior` is `Some`) the recorded decision is
    /// returned unchanged without any lookup; otherwise the number is resolved
    /// if [`should_dip`] says so. `dialed_e164` is E.164 digits (optional `+`).
    pub async fn enrich(
        &self,
        dialed_e164: &str,
        prior: Option<EnrichmentRecord>,
    ) -> EnrichmentRecord {
        if let Some(r) = prior {
            return r;
        }
        match should_dip(dialed_e164) {
            Some(tn10) => EnrichmentRecord::from_outcome(tn10, &self.resolve(tn10).await),
            None => EnrichmentRecord::not_eligible(),
        }
    }

    /// Drop every cached answer (both layers).
    pub fn flush(&self) {
        self.moka.invalidate_all();
        if let Some(f) = &self.fast {
            f.clear();
        }
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            dips: self.dips.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            entries: self.moka.entry_count(),
        }
    }
}

// ---------------------------------------------------------------------------
// Fast layer: direct-mapped, lossy, lock-free (per-slot seqlock).
// ---------------------------------------------------------------------------

const PORTED_BIT: u64 = 1 << 63;
const EMPTY: u64 = u64::MAX;
const GEN_SHIFT: u32 = 48;
const EXP_MASK: u64 = (1 << GEN_SHIFT) - 1;

#[repr(align(32))]
struct Slot {
    seq: AtomicU64,
    key: AtomicU64,
    /// lrn | PORTED_BIT
    val: AtomicU64,
    /// exp_ms (48 bits) | generation << 48
    exp: AtomicU64,
}

/// Read-mostly layer in front of moka: one slot per hash bucket, last writer
/// wins, readers never write shared memory. Entries carry the same absolute
/// expiry as the moka entry, so they are never served past their TTL; they may
/// outlive a size-based moka eviction (still within TTL, so still correct).
/// `clear` bumps a generation instead of touching every slot.
struct FastLayer {
    slots: Box<[Slot]>,
    shift: u32,
    gen: AtomicU64,
}

impl FastLayer {
    fn new(n: usize) -> Self {
        let n = n.next_power_of_two().max(2);
        let slots = (0..n)
            .map(|_| Slot {
                seq: AtomicU64::new(0),
                key: AtomicU64::new(EMPTY),
                val: AtomicU64::new(0),
                exp: AtomicU64::new(0),
            })
            .collect();
        FastLayer {
            slots,
            shift: 64 - n.trailing_zeros(),
            gen: AtomicU64::new(0),
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> &Slot {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift;
        &self.slots[h as usize]
    }

    #[inline]
    fn get(&self, key: u64, now_ms: u64) -> Option<CachedLrn> {
        let s = self.slot(key);
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let k = s.key.load(Ordering::Relaxed);
        let v = s.val.load(Ordering::Relaxed);
        let x = s.exp.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        let gen = self.gen.load(Ordering::Relaxed) & 0xFFFF;
        if k != key || x >> GEN_SHIFT != gen || x & EXP_MASK <= now_ms {
            return None;
        }
        Some(CachedLrn {
            lrn: v & !PORTED_BIT,
            ported: v & PORTED_BIT != 0,
        })
    }

    #[inline]
    fn put(&self, key: u64, val: CachedLrn, exp_ms: u64) {
        let s = self.slot(key);
        let s1 = s.seq.load(Ordering::Relaxed);
        if s1 & 1 == 1
            || s.seq
                .compare_exchange(s1, s1 + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return; // another writer is in this slot; the cache is lossy, skip
        }
        fence(Ordering::Release);
        let gen = self.gen.load(Ordering::Relaxed) & 0xFFFF;
        s.key.store(key, Ordering::Relaxed);
        s.val.store(
            val.lrn | if val.ported { PORTED_BIT } else { 0 },
            Ordering::Relaxed,
        );
        s.exp
            .store((exp_ms & EXP_MASK) | (gen << GEN_SHIFT), Ordering::Relaxed);
        s.seq.store(s1 + 2, Ordering::Release);
    }

    fn clear(&self) {
        self.gen.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_dip_rule() {
        assert_eq!(should_dip("12125550001"), Some("2125550001"));
        assert_eq!(should_dip("+12125550001"), Some("2125550001"));
        assert_eq!(should_dip("18005550001"), None);
        assert_eq!(should_dip("442071838750"), None);
        assert_eq!(should_dip("11125550001"), None);
        assert_eq!(should_dip("2125550001"), None);
    }

    #[test]
    fn fast_layer_roundtrip_expiry_and_clear() {
        let f = FastLayer::new(8);
        let v = CachedLrn {
            lrn: 7185550000,
            ported: true,
        };
        f.put(2125550001, v, 1000);
        assert_eq!(f.get(2125550001, 999), Some(v));
        assert_eq!(f.get(2125550001, 1000), None);
        assert_eq!(f.get(2125550002, 0), None);
        f.clear();
        assert_eq!(f.get(2125550001, 0), None);
        f.put(
            2125550001,
            CachedLrn {
                lrn: 2125550001,
                ported: false,
            },
            10,
        );
        assert_eq!(
            f.get(2125550001, 0),
            Some(CachedLrn {
                lrn: 2125550001,
                ported: false
            })
        );
    }
}
