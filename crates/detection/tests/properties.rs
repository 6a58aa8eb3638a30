//! Property tests over the public API: per-call score bounds and the
//! unanswered/missing-media rules, credit invariants, replay stability, and
//! the simulated clean-mix / FAS-route outcomes.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use common::Rng;
use common::*;
use detection::{
    evaluate_call, CallFacts, CallVerdict, Credit, FasConfig, FasSignal, ProfileConfig,
    ProfileMonitor, RouteAlert, RouteConfig, RouteMonitor, SignalWeights, TrafficProfile,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn opt_ts(base: i64) -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        (-5_000i64..60_000).prop_map(move |d| Some(base.saturating_add(d))),
        any::<i64>().prop_map(Some),
    ]
}

fn opt_count() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        (0i64..5000).prop_map(Some),
        any::<i64>().prop_map(Some),
    ]
}

fn opt_ratio() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        (0.0f64..=1.0).prop_map(Some),
        any::<f64>().prop_map(Some),
        Just(Some(f64::NAN)),
    ]
}

prop_compose! {
    fn arb_facts()(
        setup in prop_oneof![any::<i64>(), T0..T0 + 1000],
        answered in any::<bool>(),
        duration_ms in prop_oneof![Just(0i64), 0i64..600_000, any::<i64>()],
        billed_seconds in prop_oneof![Just(0i64), 0i64..600, any::<i64>()],
        code in prop_oneof![Just(None), Just(Some(180)), Just(Some(183)), any::<i32>().prop_map(Some)],
        amount_cents in any::<i32>(),
    )(
        progress in opt_ts(setup),
        answer in opt_ts(setup),
        end in opt_ts(setup),
        rx in opt_count(),
        rx_before in opt_count(),
        silence in opt_ratio(),
        setup in Just(setup),
        answered in Just(answered),
        duration_ms in Just(duration_ms),
        billed_seconds in Just(billed_seconds),
        code in Just(code),
        amount_cents in Just(amount_cents),
    ) -> CallFacts {
        CallFacts {
            currency: "USD".into(),
            cdr_id: "p".into(),
            account_id: "a".into(),
            trunk_id: "t".into(),
            breakout: "b".into(),
            setup_ts_ms: setup,
            progress_ts_ms: progress,
            progress_code: code,
            answer_ts_ms: answer,
            end_ts_ms: end,
            duration_ms,
            answered,
            disposition: if answered { "answered" } else { "no_answer" }.into(),
            rtp_rx_packets: rx,
            rtp_rx_before_answer: rx_before,
            silence_ratio: silence,
            billed_seconds,
            amount: Decimal::new(i64::from(amount_cents), 2),
        }
    }
}

prop_compose! {
    fn arb_config()(
        w in proptest::collection::vec(0.0f64..=1.0, 7),
        thr in 0.01f64..=1.0,
    ) -> FasConfig {
        FasConfig {
            weights: SignalWeights {
                instant_answer: w[0],
                answer_without_ringback: w[1],
                answer_at_progress_instant: w[2],
                progress_after_answer: w[3],
                media_silence: w[4],
                no_far_end_media: w[5],
                early_media_continues_across_answer: w[6],
            },
            call_threshold: thr,
            ..FasConfig::default()
        }
    }
}

fn run_routes(calls: &[CallFacts]) -> (Vec<RouteAlert>, Vec<Credit>, HashMap<String, CallVerdict>) {
    let mut m = RouteMonitor::new(RouteConfig::default()).unwrap();
    let mut alerts = Vec::new();
    let mut credits = Vec::new();
    let mut verdicts = HashMap::new();
    for c in calls {
        let v = verdict(c);
        alerts.extend(m.observe(c, &v));
        credits.extend(m.take_credits());
        verdicts.insert(c.cdr_id.clone(), v);
    }
    (alerts, credits, verdicts)
}

/// Clean trunks on a shared breakout, one clean trunk alone on its own
/// breakout and one on the unknown breakout, each with its own ASR and ACD.
fn clean_mix(seed: u64, minutes: i64) -> Vec<CallFacts> {
    let mut meta = Rng::new(seed);
    let mut calls = Vec::new();
    let routes = [
        ("c1", "DE"),
        ("c2", "DE"),
        ("c3", "DE"),
        ("c4", "DE"),
        ("solo", "FR"),
        ("unk", ""),
    ];
    for (i, (t, b)) in routes.iter().enumerate() {
        let asr = meta.range(0.3, 0.6);
        let mean = meta.range(60.0, 180.0);
        let gap = meta.range(1000.0, 4000.0) as i64;
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(i as u64));
        let n = (minutes * MIN / gap) as usize;
        calls.extend(stream(
            n,
            T0,
            gap,
            |id, ts| clean_call(&mut rng, id, t, b, ts, asr, mean),
            &format!("{seed}-{t}"),
        ));
    }
    by_event_time(calls)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn score_is_in_unit_interval_and_matches_its_signals(f in arb_facts(), cfg in arb_config()) {
        prop_assert!(cfg.validate().is_ok());
        let v = evaluate_call(&f, &cfg);
        prop_assert!((0.0..=1.0).contains(&v.score), "{v:?}");
        let expect = 1.0 - v.signals.iter().map(|s| 1.0 - cfg.weights.get(*s)).product::<f64>();
        prop_assert!((v.score - expect.clamp(0.0, 1.0)).abs() < 1e-12);
        prop_assert_eq!(v.suspect, !v.signals.is_empty() && v.score >= cfg.call_threshold);
        let sorted: BTreeSet<FasSignal> = v.signals.iter().copied().collect();
        prop_assert_eq!(sorted.into_iter().collect::<Vec<_>>(), v.signals.clone());
    }

    #[test]
    fn unanswered_calls_never_fire(mut f in arb_facts(), cfg in arb_config()) {
        f.answered = false;
        let v = evaluate_call(&f, &cfg);
        prop_assert!(!v.suspect);
        prop_assert!(v.signals.is_empty());
        prop_assert_eq!(v.score, 0.0);
    }

    #[test]
    fn missing_media_never_panics_nor_fires_media_signals(mut f in arb_facts()) {
        f.rtp_rx_packets = None;
        f.rtp_rx_before_answer = None;
        f.silence_ratio = None;
        let v = evaluate_call(&f, &FasConfig::default());
        prop_assert!(!v.has(FasSignal::MediaSilence));
        prop_assert!(!v.has(FasSignal::NoFarEndMedia));
        prop_assert!(!v.has(FasSignal::EarlyMediaContinuesAcrossAnswer));
        // Routes and profiles take such calls too.
        let mut m = RouteMonitor::new(RouteConfig::default()).unwrap();
        let _ = m.observe(&f, &v);
        let mut p = ProfileMonitor::new(ProfileConfig::default()).unwrap();
        let _ = p.observe(0, &f, &|_: &str| None);
    }

    #[test]
    fn arbitrary_calls_never_panic_the_monitors(fs in proptest::collection::vec(arb_facts(), 1..40)) {
        let mut m = RouteMonitor::new(RouteConfig::default()).unwrap();
        let mut p = ProfileMonitor::new(ProfileConfig::default()).unwrap();
        for f in &fs {
            let v = verdict(f);
            for a in m.observe(f, &v) {
                prop_assert!(a.credited.iter().all(|c| c.amount < Decimal::ZERO));
            }
            prop_assert!(m.take_credits().iter().all(|c| c.amount < Decimal::ZERO));
            let _ = p.observe(0, f, &|_: &str| None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn credits_are_negative_and_only_for_suspect_calls(seed in any::<u64>(), dead_air_share in 0.2f64..1.0) {
        let mut calls = clean_mix(seed, 40);
        let mut rng = Rng::new(seed ^ 0xFA5);
        // A FAS route where only part of the calls bill dead air: the rest
        // answer instantly but talk, and are not suspect on their own.
        calls.extend(stream(1800, T0 + 5 * MIN, 1500, |id, ts| {
            let s = if rng.chance(dead_air_share) { 0.95 } else { 0.5 };
            fas_call(&mut rng, id, "fas", "DE", ts, s)
        }, "fas"));
        let calls = by_event_time(calls);
        let by_id: HashMap<&str, &CallFacts> = calls.iter().map(|c| (c.cdr_id.as_str(), c)).collect();
        let (alerts, credits, verdicts) = run_routes(&calls);
        prop_assert_eq!(alerts.len(), 1);
        let alert_ids: HashSet<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
        let all: Vec<&Credit> = alerts.iter().flat_map(|a| &a.credited).chain(&credits).collect();
        prop_assert!(!all.is_empty());
        let mut seen = HashSet::new();
        for c in all {
            prop_assert!(verdicts[&c.cdr_id].suspect, "{c:?}");
            prop_assert!(c.amount < Decimal::ZERO);
            prop_assert_eq!(c.amount, -by_id[c.cdr_id.as_str()].amount);
            prop_assert!(alert_ids.contains(c.alert_id.as_str()));
            prop_assert!(seen.insert(c.adjustment_id.clone()), "duplicate credit");
        }
    }

    #[test]
    fn replay_gives_identical_alerts_and_credits(seed in any::<u64>()) {
        let mut calls = clean_mix(seed, 30);
        let mut rng = Rng::new(seed);
        calls.extend(stream(900, T0, 2000, |id, ts| fas_call(&mut rng, id, "fas", "DE", ts, 0.95), "fas"));
        let calls = by_event_time(calls);
        let (a1, c1, _) = run_routes(&calls);
        let (a2, c2, _) = run_routes(&calls);
        prop_assert!(!a1.is_empty());
        prop_assert_eq!(a1, a2);
        prop_assert_eq!(c1, c2);
    }

    #[test]
    fn clean_mix_never_alerts(seed in any::<u64>()) {
        let calls = clean_mix(seed, 60);
        let (alerts, credits, _) = run_routes(&calls);
        prop_assert!(alerts.is_empty(), "{alerts:#?}");
        prop_assert!(credits.is_empty());
    }

    #[test]
    fn fas_route_always_alerts(seed in any::<u64>(), silence in 0.92f64..=1.0, with_peers in any::<bool>()) {
        let mut calls = if with_peers { clean_mix(seed, 30) } else { Vec::new() };
        let mut rng = Rng::new(seed);
        calls.extend(stream(900, T0, 2000, |id, ts| fas_call(&mut rng, id, "fas", "DE", ts, silence), "fas"));
        let (alerts, _, _) = run_routes(&by_event_time(calls));
        prop_assert_eq!(alerts.len(), 1, "{:#?}", alerts);
        let a = &alerts[0];
        prop_assert_eq!(a.trunk_id.as_str(), "fas");
        for p in ["uniform_acd", "instant_answer_rate", "silence_rate"] {
            prop_assert!(a.patterns.iter().any(|x| x == p), "{p} missing: {:?}", a.patterns);
        }
        prop_assert!(!a.credited.is_empty());
    }

    #[test]
    fn conversational_accounts_are_never_dialers(seed in any::<u64>()) {
        let mut meta = Rng::new(seed);
        let asr = meta.range(0.4, 0.7);
        let gap = meta.range(500.0, 5000.0) as i64;
        let mut rng = Rng::new(seed ^ 1);
        let calls = by_event_time(stream((45 * MIN / gap) as usize, T0, gap, |id, ts| clean_call(&mut rng, id, "t", "DE", ts, asr, 120.0), "c"));
        let mut p = ProfileMonitor::new(ProfileConfig::default()).unwrap();
        for c in &calls {
            prop_assert!(p.observe(0, c, &|_: &str| None).is_empty());
        }
    }

    #[test]
    fn dialers_alert_once_per_window_unless_declared(seed in any::<u64>(), declared_dialer in any::<bool>()) {
        let mut rng = Rng::new(seed);
        let calls = by_event_time(stream(50 * 15, T0, 4000, |id, ts| dialer_call(&mut rng, id, "d", "t", ts), "d"));
        let declared = declared_dialer.then_some(TrafficProfile::Dialer);
        let mut p = ProfileMonitor::new(ProfileConfig::default()).unwrap();
        let alerts: Vec<_> = calls.iter().flat_map(|c| p.observe(0, c, &|_: &str| declared)).collect();
        if declared_dialer {
            prop_assert!(alerts.is_empty());
        } else {
            prop_assert_eq!(alerts.len(), 3);
            let windows: HashSet<i64> = alerts.iter().map(|a| a.window_start_ms).collect();
            prop_assert_eq!(windows.len(), 3);
        }
    }
}
