//! Shared test kit: a tiny deterministic PRNG and call generators for clean
//! conversational traffic, FAS traffic and dialer traffic. Integration tests
//! only use the crate's public API.
#![allow(dead_code)]

use detection::{evaluate_call, CallFacts, CallVerdict, FasConfig};
use rust_decimal::Decimal;

/// splitmix64: deterministic, seedable, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }
}

/// Amount at 1 cent a minute, per-second billing.
pub fn amount_for(billed_seconds: i64) -> Decimal {
    Decimal::from(billed_seconds) * Decimal::new(1, 2) / Decimal::from(60)
}

fn base(id: String, trunk: &str, breakout: &str, setup: i64) -> CallFacts {
    CallFacts {
        currency: "USD".into(),
        cdr_id: id,
        account_id: "acct-1".into(),
        trunk_id: trunk.into(),
        breakout: breakout.into(),
        setup_ts_ms: setup,
        progress_ts_ms: None,
        progress_code: None,
        answer_ts_ms: None,
        end_ts_ms: None,
        duration_ms: 0,
        answered: false,
        disposition: "no_answer".into(),
        rtp_rx_packets: None,
        rtp_rx_before_answer: None,
        silence_ratio: None,
        billed_seconds: 0,
        amount: Decimal::ZERO,
    }
}

fn answer(f: &mut CallFacts, answer_ts: i64, duration_ms: i64) {
    f.answered = true;
    f.disposition = "answered".into();
    f.answer_ts_ms = Some(answer_ts);
    f.duration_ms = duration_ms;
    f.end_ts_ms = Some(answer_ts + duration_ms);
    f.billed_seconds = (duration_ms + 999) / 1000;
    f.amount = amount_for(f.billed_seconds);
}

fn unanswered(rng: &mut Rng, f: &mut CallFacts) {
    let ring = rng.range(1500.0, 4000.0) as i64;
    f.progress_ts_ms = Some(f.setup_ts_ms + ring);
    f.progress_code = Some(180);
    f.end_ts_ms = Some(f.setup_ts_ms + ring + rng.range(3000.0, 40_000.0) as i64);
    f.disposition = if rng.chance(0.3) { "busy" } else { "no_answer" }.into();
}

/// Honest conversational traffic: ringback before answer (half of it as 183
/// early media), exponential durations (mean `mean_s`), talking far end,
/// ASR `asr`, and a few IVR-style instant answers.
pub fn clean_call(
    rng: &mut Rng,
    id: String,
    trunk: &str,
    breakout: &str,
    setup: i64,
    asr: f64,
    mean_s: f64,
) -> CallFacts {
    let mut f = base(id, trunk, breakout, setup);
    if !rng.chance(asr) {
        unanswered(rng, &mut f);
        return f;
    }
    let dur = (rng.exp(mean_s) * 1000.0).max(300.0) as i64;
    if rng.chance(0.03) {
        // IVR / auto attendant: answers at once, no ringback, but talks.
        answer(&mut f, setup + rng.range(200.0, 900.0) as i64, dur);
        f.rtp_rx_before_answer = Some(0);
    } else {
        let ring = rng.range(1500.0, 4000.0) as i64;
        let pickup = rng.range(3000.0, 20_000.0) as i64;
        f.progress_ts_ms = Some(setup + ring);
        if rng.chance(0.5) {
            f.progress_code = Some(183);
            f.rtp_rx_before_answer = Some(pickup / 20);
        } else {
            f.progress_code = Some(180);
            f.rtp_rx_before_answer = Some(0);
        }
        answer(&mut f, setup + ring + pickup, dur);
    }
    f.rtp_rx_packets = Some((dur as f64 / 20.0 * rng.range(0.9, 1.0)) as i64);
    f.silence_ratio = Some(rng.range(0.25, 0.7));
    f
}

/// FAS traffic: answers 100–700 ms after setup without ringback, bills a
/// fixed ~30 s (±2 s) of silence (ratio `silence`), ASR 95 %.
pub fn fas_call(
    rng: &mut Rng,
    id: String,
    trunk: &str,
    breakout: &str,
    setup: i64,
    silence: f64,
) -> CallFacts {
    let mut f = base(id, trunk, breakout, setup);
    if !rng.chance(0.95) {
        unanswered(rng, &mut f);
        return f;
    }
    let dur = rng.range(28_000.0, 32_000.0) as i64;
    answer(&mut f, setup + rng.range(100.0, 700.0) as i64, dur);
    f.rtp_rx_before_answer = Some(0);
    f.rtp_rx_packets = Some(dur / 20);
    f.silence_ratio = Some(silence);
    f
}

/// Predictive-dialer traffic: ASR ~20 %, most answered calls end within a
/// few seconds (machines, abandons).
pub fn dialer_call(rng: &mut Rng, id: String, account: &str, trunk: &str, setup: i64) -> CallFacts {
    let mut f = base(id, trunk, "US Fixed", setup);
    f.account_id = account.into();
    if !rng.chance(0.2) {
        unanswered(rng, &mut f);
        return f;
    }
    let dur = if rng.chance(0.6) {
        rng.range(1000.0, 5500.0)
    } else {
        rng.exp(60.0) * 1000.0 + 6000.0
    } as i64;
    let ring = rng.range(1500.0, 4000.0) as i64;
    f.progress_ts_ms = Some(setup + ring);
    f.progress_code = Some(180);
    answer(
        &mut f,
        setup + ring + rng.range(3000.0, 15_000.0) as i64,
        dur,
    );
    f.rtp_rx_packets = Some(dur / 20);
    f.silence_ratio = Some(rng.range(0.3, 0.6));
    f
}

pub fn verdict(f: &CallFacts) -> CallVerdict {
    evaluate_call(f, &FasConfig::default())
}

/// Merge several per-route call streams into event-time order (ties by
/// cdr_id, so the order is total and replays are identical).
pub fn by_event_time(mut calls: Vec<CallFacts>) -> Vec<CallFacts> {
    calls.sort_by(|a, b| {
        detection::event_ts_ms(a)
            .cmp(&detection::event_ts_ms(b))
            .then_with(|| a.cdr_id.cmp(&b.cdr_id))
    });
    calls
}

/// `n` calls on one route, one every `gap_ms` from `start`.
pub fn stream(
    n: usize,
    start: i64,
    gap_ms: i64,
    mut make: impl FnMut(String, i64) -> CallFacts,
    prefix: &str,
) -> Vec<CallFacts> {
    (0..n)
        .map(|i| make(format!("{prefix}-{i}"), start + i as i64 * gap_ms))
        .collect()
}
