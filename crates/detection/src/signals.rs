//! Per-call FAS (false answer supervision) signals and the per-call verdict.
//!
//! This module owns [`CallFacts`] (what the detector extracts from one rated
//! CDR), [`FasConfig`], the [`FasSignal`] catalogue and [`evaluate_call`].
//! Each signal is a plain predicate over one call that can be explained to a
//! customer on its own ("the far end answered 180 ms after the INVITE and
//! never sent ringback"); none of them needs any other call. Route-level
//! patterns, which do compare calls, live in [`crate::route`].
//!
//! FAS is a terminating route signalling "answered" (SIP 200 OK) when no one
//! answered, so the caller is billed for ringback or dead air. Its per-call
//! fingerprints are in the timing of the answer relative to setup/progress and
//! in the far-end media after the answer.
//!
//! Ground rules:
//! - An unanswered call never fires anything: there is nothing billed to be
//!   false about.
//! - Missing or nonsensical measurements (no media stats, NaN or out-of-range
//!   silence ratio, negative packet counts, answer before setup) disable only
//!   the signals that need them; the call is judged on what is available and
//!   evaluation never panics.
//! - The score combines the fired signals' weights as independent evidence:
//!   `score = 1 - Π(1 - w_i)`. With every weight in `[0, 1]` the score is in
//!   `[0, 1]`, adding a signal never lowers it, and no single weak signal can
//!   reach the threshold unless its weight alone does. The default weights are
//!   chosen so that "answer timing looks odd" or "media looks odd" alone is not
//!   enough, but timing plus media is (see the crate README for the table).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{check_range, invalid, ConfigError};

/// What the detector extracts from one rated CDR. Owned, plain values so the
/// core stays independent of the Avro record layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallFacts {
    pub cdr_id: String,
    pub account_id: String,
    /// Termination trunk/route ("" when unknown).
    pub trunk_id: String,
    /// Destination breakout name ("" when unknown/unrated).
    pub breakout: String,
    pub setup_ts_ms: i64,
    /// First 180/183.
    pub progress_ts_ms: Option<i64>,
    /// 180 or 183.
    pub progress_code: Option<i32>,
    pub answer_ts_ms: Option<i64>,
    pub end_ts_ms: Option<i64>,
    /// Answer to hangup, 0 if unanswered.
    pub duration_ms: i64,
    pub answered: bool,
    /// answered | busy | no_answer | failed | cancelled | stale
    pub disposition: String,
    /// Far-end RTP packets received after answer.
    pub rtp_rx_packets: Option<i64>,
    /// Early-media RTP packets received before answer.
    pub rtp_rx_before_answer: Option<i64>,
    /// 0..1 share of silence after answer.
    pub silence_ratio: Option<f64>,
    pub billed_seconds: i64,
    /// Rated amount of the call (what a credit would refund).
    pub amount: Decimal,
    /// Currency of `amount`.
    pub currency: String,
}

/// One per-call FAS signal. The serialized / [`FasSignal::as_str`] names are
/// stable: they are stored with the scored CDR and shown to customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FasSignal {
    /// Answered less than `instant_answer_ms` after setup with no 180/183
    /// before the answer. A human needs at least a ring to reach the phone;
    /// a switch that answers at once is answering for them.
    InstantAnswer,
    /// Answered with no 180/183 at all before the answer. Legitimate for
    /// IVRs and some PBXs, hence a low weight; a strong corroborator.
    AnswerWithoutRingback,
    /// A 180/183 came, and the answer followed within
    /// `progress_answer_gap_ms`. The "ringing" phase is a formality: a
    /// switch that sends the provisional and the 200 back to back fakes the
    /// ring to look like the normal sequence.
    AnswerAtProgressInstant,
    /// The first 180/183 was recorded after the 200 OK. Provisional
    /// responses after a final one are a protocol violation (RFC 3261); it
    /// is the trace of a switch that answered first and started "ringing"
    /// afterwards, which is textbook FAS (the caller hears ringback while
    /// being billed).
    ProgressAfterAnswer,
    /// The share of silence after answer is above
    /// `silence_ratio_threshold` on a billed call: billed dead air.
    MediaSilence,
    /// The far end sent fewer than `min_rtp_packets` RTP packets after the
    /// answer on a billed call: nothing at all came back.
    NoFarEndMedia,
    /// Early media (ringback) ran before the answer and the stream after the
    /// answer looks like the same ringback still playing: see
    /// [`evaluate_call`] for the exact definition.
    EarlyMediaContinuesAcrossAnswer,
}

impl FasSignal {
    /// Every signal, in evaluation (and output) order.
    pub const ALL: [FasSignal; 7] = [
        FasSignal::InstantAnswer,
        FasSignal::AnswerWithoutRingback,
        FasSignal::AnswerAtProgressInstant,
        FasSignal::ProgressAfterAnswer,
        FasSignal::MediaSilence,
        FasSignal::NoFarEndMedia,
        FasSignal::EarlyMediaContinuesAcrossAnswer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstantAnswer => "instant_answer",
            Self::AnswerWithoutRingback => "answer_without_ringback",
            Self::AnswerAtProgressInstant => "answer_at_progress_instant",
            Self::ProgressAfterAnswer => "progress_after_answer",
            Self::MediaSilence => "media_silence",
            Self::NoFarEndMedia => "no_far_end_media",
            Self::EarlyMediaContinuesAcrossAnswer => "early_media_continues_across_answer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|sig| sig.as_str() == s)
    }

    /// True for the signals that say "the far-end media after answer is
    /// dead air" (used by the route silence-rate pattern).
    pub fn is_silence(self) -> bool {
        matches!(self, Self::MediaSilence | Self::NoFarEndMedia)
    }
}

impl std::fmt::Display for FasSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Weight of each signal in the combined score, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalWeights {
    pub instant_answer: f64,
    pub answer_without_ringback: f64,
    pub answer_at_progress_instant: f64,
    pub progress_after_answer: f64,
    pub media_silence: f64,
    pub no_far_end_media: f64,
    pub early_media_continues_across_answer: f64,
}

impl Default for SignalWeights {
    fn default() -> Self {
        Self {
            instant_answer: 0.35,
            answer_without_ringback: 0.15,
            answer_at_progress_instant: 0.30,
            progress_after_answer: 0.45,
            media_silence: 0.45,
            no_far_end_media: 0.45,
            early_media_continues_across_answer: 0.35,
        }
    }
}

impl SignalWeights {
    pub fn get(&self, s: FasSignal) -> f64 {
        match s {
            FasSignal::InstantAnswer => self.instant_answer,
            FasSignal::AnswerWithoutRingback => self.answer_without_ringback,
            FasSignal::AnswerAtProgressInstant => self.answer_at_progress_instant,
            FasSignal::ProgressAfterAnswer => self.progress_after_answer,
            FasSignal::MediaSilence => self.media_silence,
            FasSignal::NoFarEndMedia => self.no_far_end_media,
            FasSignal::EarlyMediaContinuesAcrossAnswer => self.early_media_continues_across_answer,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_range("weights.instant_answer", self.instant_answer, 0.0, 1.0)?;
        check_range(
            "weights.answer_without_ringback",
            self.answer_without_ringback,
            0.0,
            1.0,
        )?;
        check_range(
            "weights.answer_at_progress_instant",
            self.answer_at_progress_instant,
            0.0,
            1.0,
        )?;
        check_range(
            "weights.progress_after_answer",
            self.progress_after_answer,
            0.0,
            1.0,
        )?;
        check_range("weights.media_silence", self.media_silence, 0.0, 1.0)?;
        check_range("weights.no_far_end_media", self.no_far_end_media, 0.0, 1.0)?;
        check_range(
            "weights.early_media_continues_across_answer",
            self.early_media_continues_across_answer,
            0.0,
            1.0,
        )
    }
}

/// Per-call FAS thresholds. Every field has a default, unknown keys are
/// rejected (a typo must not silently fall back to a default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FasConfig {
    /// `instant_answer`: answer earlier than this after setup (ms).
    pub instant_answer_ms: i64,
    /// `answer_at_progress_instant`: answer at most this long after the
    /// first 180/183 (ms). A real callee needs at least part of a ring cycle
    /// (ringback cadences are 1–2 s on), so 250 ms is "at the same instant"
    /// with room for signalling jitter.
    pub progress_answer_gap_ms: i64,
    /// `media_silence`: silence share strictly above this.
    pub silence_ratio_threshold: f64,
    /// `no_far_end_media`: fewer far-end packets than this after answer.
    pub min_rtp_packets: i64,
    /// `early_media_continues_across_answer`: at least this many early-media
    /// packets before answer count as "ringback was playing" (25 packets is
    /// half a second at 20 ms ptime; a handful of stray packets is not).
    pub early_media_min_packets: i64,
    /// Lower bound of the post-answer silence band that matches a ringback
    /// cadence (tone on 1–2 s, off 2–4 s: 60–80 % silence).
    pub ringback_silence_min: f64,
    /// Upper bound (inclusive) of that band. Above it the call is plain dead
    /// air and `media_silence` covers it.
    pub ringback_silence_max: f64,
    /// Post-answer packet rate within `[pre / tol, pre * tol]` of the
    /// pre-answer early-media rate counts as "the same stream continuing".
    pub early_media_rate_tolerance: f64,
    pub weights: SignalWeights,
    /// Score at or above which the call is FAS-suspect.
    pub call_threshold: f64,
}

impl Default for FasConfig {
    fn default() -> Self {
        Self {
            instant_answer_ms: 1000,
            progress_answer_gap_ms: 250,
            silence_ratio_threshold: 0.9,
            min_rtp_packets: 1,
            early_media_min_packets: 25,
            ringback_silence_min: 0.6,
            ringback_silence_max: 0.85,
            early_media_rate_tolerance: 1.25,
            weights: SignalWeights::default(),
            call_threshold: 0.5,
        }
    }
}

impl FasConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.instant_answer_ms < 0 {
            return Err(invalid("instant_answer_ms", "must be >= 0"));
        }
        if self.progress_answer_gap_ms < 0 {
            return Err(invalid("progress_answer_gap_ms", "must be >= 0"));
        }
        check_range(
            "silence_ratio_threshold",
            self.silence_ratio_threshold,
            0.0,
            1.0,
        )?;
        if self.min_rtp_packets < 1 {
            // 0 would make the signal impossible; say so instead of silently
            // disabling it (set its weight to 0 to disable).
            return Err(invalid("min_rtp_packets", "must be >= 1"));
        }
        if self.early_media_min_packets < 1 {
            return Err(invalid("early_media_min_packets", "must be >= 1"));
        }
        check_range("ringback_silence_min", self.ringback_silence_min, 0.0, 1.0)?;
        check_range("ringback_silence_max", self.ringback_silence_max, 0.0, 1.0)?;
        if self.ringback_silence_min > self.ringback_silence_max {
            return Err(invalid(
                "ringback_silence_min",
                "must be <= ringback_silence_max",
            ));
        }
        check_range(
            "early_media_rate_tolerance",
            self.early_media_rate_tolerance,
            1.0,
            f64::MAX,
        )?;
        self.weights.validate()?;
        if !self.call_threshold.is_finite()
            || self.call_threshold <= 0.0
            || self.call_threshold > 1.0
        {
            // 0 would make every answered call suspect (and creditable).
            return Err(invalid("call_threshold", "must be within (0, 1]"));
        }
        Ok(())
    }
}

/// The per-call result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallVerdict {
    /// `1 - Π(1 - w_i)` over the fired signals, in `[0, 1]`.
    pub score: f64,
    /// Fired signals in [`FasSignal::ALL`] order.
    pub signals: Vec<FasSignal>,
    /// `score >= call_threshold` (and at least one signal fired).
    pub suspect: bool,
}

impl CallVerdict {
    pub fn clean() -> Self {
        Self {
            score: 0.0,
            signals: Vec::new(),
            suspect: false,
        }
    }

    pub fn has(&self, s: FasSignal) -> bool {
        self.signals.contains(&s)
    }

    pub fn signal_names(&self) -> Vec<String> {
        self.signals
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    }
}

/// A span shorter than this is too short to estimate a packet rate from
/// (one lost or late packet would swing it by more than the tolerance).
const MIN_RATE_SPAN_MS: i64 = 1000;

/// True when the call carries any usable post-answer media measurement
/// (the denominator of the route silence rate).
pub(crate) fn has_media_stats(facts: &CallFacts) -> bool {
    valid_count(facts.rtp_rx_packets).is_some() || valid_ratio(facts.silence_ratio).is_some()
}

/// A billed call: the customer pays (or, unrated, would pay) for answered
/// time. Media signals only mean something on such a call.
pub(crate) fn is_billed(facts: &CallFacts) -> bool {
    facts.answered && (facts.billed_seconds > 0 || facts.duration_ms > 0)
}

/// Packet counts must be non-negative to mean anything.
fn valid_count(v: Option<i64>) -> Option<i64> {
    v.filter(|n| *n >= 0)
}

/// A silence ratio must be a finite share.
fn valid_ratio(v: Option<f64>) -> Option<f64> {
    v.filter(|r| r.is_finite() && (0.0..=1.0).contains(r))
}

/// Evaluates every signal on one call and combines them.
///
/// Precise definitions (all on answered calls only; `answer`, `setup`,
/// `progress` are the timestamps):
/// - timing signals need `answer_ts_ms` and `answer >= setup`; a clock
///   that puts the answer before the setup disables them all;
/// - "ringback before answer" means `progress <= answer`;
/// - `instant_answer`: `answer - setup < instant_answer_ms` and no ringback
///   before answer;
/// - `answer_without_ringback`: no ringback before answer;
/// - `answer_at_progress_instant`: ringback before answer and
///   `answer - progress <= progress_answer_gap_ms`;
/// - `progress_after_answer`: `progress > answer`;
/// - media signals need a billed call (`billed_seconds > 0` or
///   `duration_ms > 0`, so unrated calls are judged too);
/// - `media_silence`: `silence_ratio > silence_ratio_threshold`;
/// - `no_far_end_media`: `rtp_rx_packets < min_rtp_packets`;
/// - `early_media_continues_across_answer`: ringback before answer, and
///   1. `rtp_rx_before_answer >= early_media_min_packets` (in-band ringback
///      or announcement was actually streaming before the answer),
///   2. the far end kept streaming after the answer
///      (`rtp_rx_packets >= min_rtp_packets`) at the same packet rate as
///      before it: post rate (`rtp_rx_packets / duration`) within a factor
///      `early_media_rate_tolerance` of the pre rate
///      (`rtp_rx_before_answer / (answer - progress)`), both spans at least
///      1 s;
///   3. `silence_ratio` within `[ringback_silence_min,
///      ringback_silence_max]`, the on/off share of a ringback cadence.
///
///   Why: when a route answers during ringback, the gateway does not switch
///   streams at all. The tone that was early media keeps playing, now
///   billed, at the same packetisation; a voice activity detector sees
///   tone-on as "not silent" and tone-off as silent, so the silence share
///   sits in the cadence band instead of the ~40–60 % of a conversation or
///   the ~100 % of dead air. Condition 2 alone describes most G.711 calls
///   and condition 3 alone can be a listener-heavy conversation, so the
///   signal needs all three, is weighted below the threshold on its own, and
///   is not evaluated without a silence measurement.
pub fn evaluate_call(facts: &CallFacts, cfg: &FasConfig) -> CallVerdict {
    if !facts.answered {
        return CallVerdict::clean();
    }
    let mut fired: Vec<FasSignal> = Vec::new();

    let rx_after = valid_count(facts.rtp_rx_packets);
    let rx_before = valid_count(facts.rtp_rx_before_answer);
    let silence = valid_ratio(facts.silence_ratio);
    let billed = is_billed(facts);

    // Timing: only with a usable answer timestamp.
    let answer = facts.answer_ts_ms.filter(|a| *a >= facts.setup_ts_ms);
    let mut ringback_before_answer = false;
    let mut progress_to_answer_ms: Option<i64> = None;
    if let Some(answer) = answer {
        let setup_to_answer = answer.saturating_sub(facts.setup_ts_ms);
        match facts.progress_ts_ms {
            Some(p) if p <= answer => {
                ringback_before_answer = true;
                progress_to_answer_ms = answer.checked_sub(p);
            }
            Some(_) => fired.push(FasSignal::ProgressAfterAnswer),
            None => {}
        }
        if !ringback_before_answer {
            if setup_to_answer < cfg.instant_answer_ms {
                fired.push(FasSignal::InstantAnswer);
            }
            fired.push(FasSignal::AnswerWithoutRingback);
        } else if progress_to_answer_ms.is_some_and(|g| g <= cfg.progress_answer_gap_ms) {
            fired.push(FasSignal::AnswerAtProgressInstant);
        }
    }

    if billed {
        if silence.is_some_and(|s| s > cfg.silence_ratio_threshold) {
            fired.push(FasSignal::MediaSilence);
        }
        if rx_after.is_some_and(|n| n < cfg.min_rtp_packets) {
            fired.push(FasSignal::NoFarEndMedia);
        }
        if ringback_before_answer
            && early_media_continues(
                cfg,
                rx_before,
                rx_after,
                silence,
                progress_to_answer_ms,
                facts.duration_ms,
            )
        {
            fired.push(FasSignal::EarlyMediaContinuesAcrossAnswer);
        }
    }

    // Output in the catalogue order so verdicts compare and serialize
    // identically whatever order the checks above run in.
    fired.sort();
    fired.dedup();
    let keep = 1.0
        - fired
            .iter()
            .map(|s| 1.0 - cfg.weights.get(*s))
            .product::<f64>();
    let score = if keep.is_finite() {
        keep.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let suspect = !fired.is_empty() && score >= cfg.call_threshold;
    CallVerdict {
        score,
        signals: fired,
        suspect,
    }
}

fn early_media_continues(
    cfg: &FasConfig,
    rx_before: Option<i64>,
    rx_after: Option<i64>,
    silence: Option<f64>,
    progress_to_answer_ms: Option<i64>,
    duration_ms: i64,
) -> bool {
    let (Some(before), Some(after), Some(silence), Some(pre_span)) =
        (rx_before, rx_after, silence, progress_to_answer_ms)
    else {
        return false;
    };
    if before < cfg.early_media_min_packets || after < cfg.min_rtp_packets {
        return false;
    }
    if pre_span < MIN_RATE_SPAN_MS || duration_ms < MIN_RATE_SPAN_MS {
        return false;
    }
    if !(cfg.ringback_silence_min..=cfg.ringback_silence_max).contains(&silence) {
        return false;
    }
    let pre_rate = before as f64 / (pre_span as f64 / 1000.0);
    let post_rate = after as f64 / (duration_ms as f64 / 1000.0);
    if !(pre_rate > 0.0 && post_rate.is_finite()) {
        return false;
    }
    let ratio = post_rate / pre_rate;
    let tol = cfg.early_media_rate_tolerance;
    ratio >= 1.0 / tol && ratio <= tol
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// A clean, genuinely answered call: 180 after 2.5 s, answer 8 s later,
    /// 60 s of conversation at 50 pps with 45 % far-end silence.
    pub(crate) fn clean() -> CallFacts {
        CallFacts {
            currency: "USD".into(),
            cdr_id: "c1".into(),
            account_id: "acct".into(),
            trunk_id: "t1".into(),
            breakout: "Germany Mobile".into(),
            setup_ts_ms: 1_000_000,
            progress_ts_ms: Some(1_002_500),
            progress_code: Some(180),
            answer_ts_ms: Some(1_010_500),
            end_ts_ms: Some(1_070_500),
            duration_ms: 60_000,
            answered: true,
            disposition: "answered".into(),
            rtp_rx_packets: Some(3000),
            rtp_rx_before_answer: Some(0),
            silence_ratio: Some(0.45),
            billed_seconds: 60,
            amount: dec!(0.021),
        }
    }

    fn eval(f: &CallFacts) -> CallVerdict {
        evaluate_call(f, &FasConfig::default())
    }

    #[test]
    fn clean_call_fires_nothing() {
        let v = eval(&clean());
        assert!(v.signals.is_empty(), "{v:?}");
        assert_eq!(v.score, 0.0);
        assert!(!v.suspect);
    }

    #[test]
    fn instant_answer_without_progress() {
        let mut f = clean();
        f.progress_ts_ms = None;
        f.progress_code = None;
        f.answer_ts_ms = Some(f.setup_ts_ms + 400);
        let v = eval(&f);
        assert_eq!(
            v.signals,
            vec![FasSignal::InstantAnswer, FasSignal::AnswerWithoutRingback]
        );
        // Timing alone (an IVR answers like this) stays below the threshold.
        assert!(!v.suspect);
        assert!((v.score - (1.0 - 0.65 * 0.85)).abs() < 1e-12);
    }

    #[test]
    fn instant_answer_boundary_is_exclusive() {
        let mut f = clean();
        f.progress_ts_ms = None;
        f.answer_ts_ms = Some(f.setup_ts_ms + 1000);
        let v = eval(&f);
        assert!(!v.has(FasSignal::InstantAnswer));
        assert!(v.has(FasSignal::AnswerWithoutRingback));
        f.answer_ts_ms = Some(f.setup_ts_ms + 999);
        assert!(eval(&f).has(FasSignal::InstantAnswer));
    }

    #[test]
    fn fast_answer_after_ringback_is_not_instant() {
        let mut f = clean();
        f.progress_ts_ms = Some(f.setup_ts_ms + 100);
        f.answer_ts_ms = Some(f.setup_ts_ms + 900);
        let v = eval(&f);
        assert!(!v.has(FasSignal::InstantAnswer));
        assert!(!v.has(FasSignal::AnswerWithoutRingback));
        assert!(!v.has(FasSignal::AnswerAtProgressInstant), "{v:?}");
    }

    #[test]
    fn slow_answer_without_ringback() {
        let mut f = clean();
        f.progress_ts_ms = None;
        f.answer_ts_ms = Some(f.setup_ts_ms + 5000);
        let v = eval(&f);
        assert_eq!(v.signals, vec![FasSignal::AnswerWithoutRingback]);
        assert!((v.score - 0.15).abs() < 1e-12);
    }

    #[test]
    fn answer_at_progress_instant() {
        let mut f = clean();
        f.progress_ts_ms = Some(f.setup_ts_ms + 3000);
        f.answer_ts_ms = Some(f.setup_ts_ms + 3100);
        assert_eq!(eval(&f).signals, vec![FasSignal::AnswerAtProgressInstant]);
        f.answer_ts_ms = Some(f.setup_ts_ms + 3251);
        assert!(eval(&f).signals.is_empty());
    }

    #[test]
    fn progress_after_answer() {
        let mut f = clean();
        f.answer_ts_ms = Some(f.setup_ts_ms + 3000);
        f.progress_ts_ms = Some(f.setup_ts_ms + 3500);
        let v = eval(&f);
        assert_eq!(
            v.signals,
            vec![
                FasSignal::AnswerWithoutRingback,
                FasSignal::ProgressAfterAnswer
            ]
        );
        assert!(v.suspect, "{v:?}");
    }

    #[test]
    fn media_silence_on_billed_call() {
        let mut f = clean();
        f.silence_ratio = Some(0.95);
        assert_eq!(eval(&f).signals, vec![FasSignal::MediaSilence]);
        f.silence_ratio = Some(0.9);
        assert!(eval(&f).signals.is_empty(), "threshold is strict");
        // Unbilled (zero duration, zero billed) answered call: nothing to
        // be false about in media.
        f.silence_ratio = Some(1.0);
        f.duration_ms = 0;
        f.billed_seconds = 0;
        assert!(!eval(&f).has(FasSignal::MediaSilence));
    }

    #[test]
    fn no_far_end_media() {
        let mut f = clean();
        f.rtp_rx_packets = Some(0);
        assert_eq!(eval(&f).signals, vec![FasSignal::NoFarEndMedia]);
        f.rtp_rx_packets = None;
        assert!(eval(&f).signals.is_empty(), "missing stats are not absence");
        f.rtp_rx_packets = Some(-5);
        assert!(eval(&f).signals.is_empty(), "garbage is not absence");
    }

    #[test]
    fn silence_plus_instant_answer_is_suspect() {
        let mut f = clean();
        f.progress_ts_ms = None;
        f.answer_ts_ms = Some(f.setup_ts_ms + 300);
        f.silence_ratio = Some(0.97);
        let v = eval(&f);
        assert!(v.suspect);
        assert!((v.score - (1.0 - 0.65 * 0.85 * 0.55)).abs() < 1e-12);
    }

    /// 183 with 8 s of early media at 50 pps, answered, then 20 s at 50 pps
    /// with a 1 s on / 4 s off cadence (80 % silence).
    fn ringback_billed() -> CallFacts {
        let mut f = clean();
        f.progress_code = Some(183);
        f.progress_ts_ms = Some(f.setup_ts_ms + 2000);
        f.answer_ts_ms = Some(f.setup_ts_ms + 10_000);
        f.rtp_rx_before_answer = Some(400);
        f.duration_ms = 20_000;
        f.billed_seconds = 20;
        f.rtp_rx_packets = Some(1000);
        f.silence_ratio = Some(0.8);
        f
    }

    #[test]
    fn early_media_continues_across_answer() {
        let f = ringback_billed();
        assert_eq!(
            eval(&f).signals,
            vec![FasSignal::EarlyMediaContinuesAcrossAnswer]
        );
    }

    #[test]
    fn early_media_continuation_needs_every_condition() {
        // Conversation-like silence share.
        let mut f = ringback_billed();
        f.silence_ratio = Some(0.4);
        assert!(eval(&f).signals.is_empty());
        // No silence measurement: not judged.
        f.silence_ratio = None;
        assert!(eval(&f).signals.is_empty());
        // Too few early packets.
        let mut f = ringback_billed();
        f.rtp_rx_before_answer = Some(10);
        assert!(eval(&f).signals.is_empty());
        // Stream changed: post rate is a third of pre rate (DTX on a real
        // answer).
        let mut f = ringback_billed();
        f.rtp_rx_packets = Some(330);
        assert!(eval(&f).signals.is_empty());
        // Early-media span too short to estimate a rate.
        let mut f = ringback_billed();
        f.progress_ts_ms = Some(f.answer_ts_ms.unwrap() - 500);
        f.rtp_rx_before_answer = Some(25);
        assert!(eval(&f).signals.is_empty());
    }

    #[test]
    fn unanswered_never_fires() {
        let mut f = clean();
        f.answered = false;
        f.disposition = "no_answer".into();
        f.answer_ts_ms = None;
        f.duration_ms = 0;
        f.rtp_rx_packets = Some(0);
        f.silence_ratio = Some(1.0);
        assert_eq!(eval(&f), CallVerdict::clean());
    }

    #[test]
    fn answer_before_setup_disables_timing_only() {
        let mut f = clean();
        f.progress_ts_ms = None;
        f.answer_ts_ms = Some(f.setup_ts_ms - 10);
        f.silence_ratio = Some(0.99);
        assert_eq!(eval(&f).signals, vec![FasSignal::MediaSilence]);
    }

    #[test]
    fn nan_and_out_of_range_silence_are_missing() {
        let mut f = clean();
        for bad in [f64::NAN, f64::INFINITY, 1.5, -0.2] {
            f.silence_ratio = Some(bad);
            assert!(eval(&f).signals.is_empty(), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in FasSignal::ALL {
            assert_eq!(FasSignal::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(FasSignal::parse("nope"), None);
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = |f: fn(&mut FasConfig)| {
            let mut c = FasConfig::default();
            f(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { field, .. }) => field,
                Ok(()) => "ok",
            }
        };
        assert_eq!(bad(|_| {}), "ok");
        assert_eq!(
            bad(|c| c.weights.media_silence = 1.5),
            "weights.media_silence"
        );
        assert_eq!(bad(|c| c.call_threshold = 0.0), "call_threshold");
        assert_eq!(
            bad(|c| {
                c.ringback_silence_min = 0.9;
                c.ringback_silence_max = 0.8;
            }),
            "ringback_silence_min"
        );
        assert_eq!(
            bad(|c| c.silence_ratio_threshold = f64::NAN),
            "silence_ratio_threshold"
        );
        assert_eq!(bad(|c| c.min_rtp_packets = 0), "min_rtp_packets");
        assert_eq!(bad(|c| c.instant_answer_ms = -1), "instant_answer_ms");
        assert_eq!(
            bad(|c| c.early_media_rate_tolerance = 0.5),
            "early_media_rate_tolerance"
        );
        let mut c = FasConfig::default();
        c.weights.media_silence = 1.5;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("weights.media_silence"), "{err}");
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        use serde::de::value::{Error as DeError, MapDeserializer};
        let empty: MapDeserializer<'_, std::vec::IntoIter<(&str, f64)>, DeError> =
            MapDeserializer::new(Vec::new().into_iter());
        assert_eq!(FasConfig::deserialize(empty).unwrap(), FasConfig::default());

        let one = MapDeserializer::<_, DeError>::new(vec![("call_threshold", 0.7f64)].into_iter());
        assert_eq!(FasConfig::deserialize(one).unwrap().call_threshold, 0.7);

        let typo = MapDeserializer::<_, DeError>::new(vec![("call_treshold", 0.7f64)].into_iter());
        let err = FasConfig::deserialize(typo).unwrap_err();
        assert!(err.to_string().contains("call_treshold"), "{err}");
    }
}
