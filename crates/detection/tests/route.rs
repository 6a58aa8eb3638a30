//! Route-level pattern scenarios: each pattern on its own, with peers, with
//! own history and without baseline; pull/restore/credit life cycle;
//! duplicates, late calls and memory bounds.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::*;
use detection::{CallFacts, ConfigError, Credit, RouteAlert, RouteConfig, RouteMonitor};
use rust_decimal::Decimal;

/// 15-minute aligned.
const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn monitor() -> RouteMonitor {
    RouteMonitor::new(RouteConfig::default()).unwrap()
}

/// Feeds calls in the given order, draining post-pull credits after each.
fn run(m: &mut RouteMonitor, calls: &[CallFacts]) -> (Vec<RouteAlert>, Vec<Credit>) {
    let mut alerts = Vec::new();
    let mut credits = Vec::new();
    for c in calls {
        alerts.extend(m.observe(c, &verdict(c)));
        credits.extend(m.take_credits());
    }
    (alerts, credits)
}

fn patterns(a: &RouteAlert) -> Vec<&str> {
    a.patterns.iter().map(String::as_str).collect()
}

/// `minutes` of clean traffic on each trunk, one attempt every 2 s.
fn clean_trunks(
    seed: u64,
    trunks: &[&str],
    breakout: &str,
    start: i64,
    minutes: i64,
) -> Vec<CallFacts> {
    let mut out = Vec::new();
    for (i, t) in trunks.iter().enumerate() {
        let mut rng = Rng::new(seed + i as u64);
        out.extend(stream(
            (minutes * 30) as usize,
            start,
            2000,
            |id, ts| clean_call(&mut rng, id, t, breakout, ts, 0.5, 90.0),
            &format!("{t}-{breakout}-{start}"),
        ));
    }
    out
}

#[test]
fn fas_route_among_clean_peers_alerts_with_every_pattern() {
    // The peers carry traffic for 20 minutes before the route turns bad, so
    // they are a baseline from the FAS route's first judged window on.
    let mut rng = Rng::new(7);
    let mut calls = clean_trunks(100, &["c1", "c2", "c3"], "DE Mobile", T0, 50);
    calls.extend(stream(
        900,
        T0 + 20 * MIN,
        2000,
        |id, ts| fas_call(&mut rng, id, "fas", "DE Mobile", ts, 0.95),
        "fas",
    ));
    let calls = by_event_time(calls);
    let mut m = monitor();
    let (alerts, _) = run(&mut m, &calls);

    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.trunk_id, "fas");
    assert_eq!(a.breakout, "DE Mobile");
    assert_eq!(a.action, "pull");
    assert_eq!(
        patterns(a),
        vec![
            "uniform_acd",
            "instant_answer_rate",
            "silence_rate",
            "high_asr_low_acd"
        ]
    );
    assert_eq!(a.evidence["baseline_peers"], 1.0);
    assert!(a.evidence["acd_cv"] < 0.1, "{:?}", a.evidence);
    assert!(a.evidence["peer_acd_cv"] > 0.7, "{:?}", a.evidence);
    assert!(a.evidence["peer_answered"] >= 30.0);
    assert!(a.evidence["answered"] >= 30.0);
    assert!(a.window_end_ms - a.window_start_ms <= 15 * MIN);
    // Credited: exactly the FAS route's suspect calls in the window so far.
    let suspect: HashSet<&str> = calls
        .iter()
        .filter(|c| c.trunk_id == "fas" && verdict(c).suspect)
        .map(|c| c.cdr_id.as_str())
        .collect();
    assert!(!a.credited.is_empty());
    for c in &a.credited {
        assert!(suspect.contains(c.cdr_id.as_str()), "{c:?}");
        assert!(c.amount < Decimal::ZERO);
        assert_eq!(c.alert_id, a.alert_id);
        assert_eq!(c.reason, "fas_credit");
    }
    assert!(m.is_pulled("fas", "DE Mobile"));
    assert!(!m.is_pulled("c1", "DE Mobile"));
}

#[test]
fn a_second_fas_route_is_judged_against_clean_peers_not_the_pulled_one() {
    // Route `fas1` turns bad and is pulled; ten minutes later `fas2` on the
    // same breakout does the same. The pulled route's calls must not count
    // as `fas2`'s peers, or its instant answers would hide `fas2`.
    let mut r1 = Rng::new(11);
    let mut r2 = Rng::new(12);
    let mut calls = clean_trunks(200, &["c1"], "UK Mobile", T0, 50);
    // The pulled route keeps carrying heavy traffic (the switch has not
    // acted on the pull yet), four times the clean peer's volume.
    calls.extend(stream(
        2400,
        T0 + 10 * MIN,
        500,
        |id, ts| fas_call(&mut r1, id, "fas1", "UK Mobile", ts, 0.95),
        "fas1",
    ));
    calls.extend(stream(
        300,
        T0 + 24 * MIN,
        2000,
        |id, ts| fas_call(&mut r2, id, "fas2", "UK Mobile", ts, 0.95),
        "fas2",
    ));
    let calls = by_event_time(calls);
    let mut m = monitor();
    let (alerts, _) = run(&mut m, &calls);
    let pulled: BTreeSet<&str> = alerts.iter().map(|a| a.trunk_id.as_str()).collect();
    assert_eq!(pulled, BTreeSet::from(["fas1", "fas2"]), "{alerts:#?}");
    assert!(!m.is_pulled("c1", "UK Mobile"));
    // Against clean peers fas2's instant answers stand out; pooled with
    // fas1 they would not (its peers would answer instantly too).
    let a2 = alerts.iter().find(|a| a.trunk_id == "fas2").unwrap();
    assert!(patterns(a2).contains(&"instant_answer_rate"), "{a2:#?}");
    assert!(
        a2.evidence["peer_instant_answer_rate"] < 0.2,
        "{:?}",
        a2.evidence
    );
}

#[test]
fn fas_route_without_any_baseline_alerts_on_absolute_thresholds() {
    let mut rng = Rng::new(8);
    let calls = stream(
        600,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "fas", "", ts, 0.95),
        "f",
    );
    let (alerts, _) = run(&mut monitor(), &calls);
    assert_eq!(alerts.len(), 1);
    // ACD ~30 s is above the 20 s absolute bound, so that pattern stays out.
    assert_eq!(
        patterns(&alerts[0]),
        vec!["uniform_acd", "instant_answer_rate", "silence_rate"]
    );
    assert_eq!(alerts[0].evidence["baseline_peers"], 0.0);
    assert_eq!(alerts[0].evidence["baseline_history"], 0.0);
    assert!(!alerts[0].evidence.contains_key("peer_answered"));
}

/// Honest ringback and talking far end, but every call lasts 60 ± 1 s.
fn fixed_length_call(rng: &mut Rng, id: String, trunk: &str, breakout: &str, ts: i64) -> CallFacts {
    let mut c = clean_call(rng, id, trunk, breakout, ts, 0.5, 90.0);
    if c.answered {
        let answer = ts + 8000;
        c.progress_ts_ms = Some(ts + 2000);
        c.progress_code = Some(180);
        c.rtp_rx_before_answer = Some(0);
        c.answer_ts_ms = Some(answer);
        c.duration_ms = rng.range(59_000.0, 61_000.0) as i64;
        c.end_ts_ms = Some(answer + c.duration_ms);
        c.billed_seconds = (c.duration_ms + 999) / 1000;
        c.amount = amount_for(c.billed_seconds);
        c.rtp_rx_packets = Some(c.duration_ms / 20);
        c.silence_ratio = Some(0.5);
    }
    c
}

#[test]
fn uniform_acd_alone_pulls_but_credits_nothing() {
    let mut rng = Rng::new(9);
    let calls = stream(
        600,
        T0,
        2000,
        |id, ts| fixed_length_call(&mut rng, id, "t", "UK Fixed", ts),
        "u",
    );
    let (alerts, credits) = run(&mut monitor(), &calls);
    assert_eq!(alerts.len(), 1);
    assert_eq!(patterns(&alerts[0]), vec!["uniform_acd"]);
    // No call was suspect on its own: the route is pulled, nobody credited.
    assert!(alerts[0].credited.is_empty());
    assert!(credits.is_empty());
}

#[test]
fn uniform_acd_is_not_flagged_when_peers_are_just_as_uniform() {
    // A breakout where every route sees fixed-length calls (e.g. recorded
    // services): uniform, but not below the peers.
    let mut calls = Vec::new();
    for (i, t) in ["a", "b", "c"].iter().enumerate() {
        let mut rng = Rng::new(20 + i as u64);
        calls.extend(stream(
            900,
            T0,
            2000,
            |id, ts| fixed_length_call(&mut rng, id, t, "Svc", ts),
            t,
        ));
    }
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn uniform_acd_flagged_against_natural_peers() {
    let mut calls = clean_trunks(30, &["p1", "p2"], "Svc", T0, 30);
    let mut rng = Rng::new(31);
    calls.extend(stream(
        900,
        T0,
        2000,
        |id, ts| fixed_length_call(&mut rng, id, "u", "Svc", ts),
        "u",
    ));
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].trunk_id, "u");
    assert_eq!(patterns(&alerts[0]), vec!["uniform_acd"]);
    assert_eq!(alerts[0].evidence["baseline_peers"], 1.0);
}

/// Clean call, but a share `p` of the answered ones answer instantly
/// without ringback (far end still talks, natural durations).
fn instant_mix(
    rng: &mut Rng,
    id: String,
    trunk: &str,
    breakout: &str,
    ts: i64,
    p: f64,
) -> CallFacts {
    let mut c = clean_call(rng, id, trunk, breakout, ts, 0.5, 90.0);
    if c.answered && rng.chance(p) {
        c.progress_ts_ms = None;
        c.progress_code = None;
        c.rtp_rx_before_answer = Some(0);
        let a = ts + rng.range(100.0, 800.0) as i64;
        c.answer_ts_ms = Some(a);
        c.end_ts_ms = Some(a + c.duration_ms);
    }
    c
}

#[test]
fn instant_answer_rate_against_peers() {
    let run_with_peer_rate = |peer_p: f64| {
        let mut calls = Vec::new();
        for (i, t) in ["p1", "p2", "p3"].iter().enumerate() {
            let mut rng = Rng::new(40 + i as u64);
            calls.extend(stream(
                900,
                T0,
                2000,
                |id, ts| instant_mix(&mut rng, id, t, "FR", ts, peer_p),
                t,
            ));
        }
        let mut rng = Rng::new(49);
        calls.extend(stream(
            900,
            T0,
            2000,
            |id, ts| instant_mix(&mut rng, id, "x", "FR", ts, 0.65),
            "x",
        ));
        run(&mut monitor(), &by_event_time(calls)).0
    };
    let alerts = run_with_peer_rate(0.03);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].trunk_id, "x");
    assert_eq!(patterns(&alerts[0]), vec!["instant_answer_rate"]);
    assert!(alerts[0].evidence["peer_instant_answer_rate"] < 0.1);
    // Peers at 30 %: 65 % is not 3× the baseline.
    assert!(run_with_peer_rate(0.30).is_empty());
}

#[test]
fn instant_answer_rate_without_baseline_uses_absolute_threshold() {
    let alone = |p: f64, seed: u64| {
        let mut rng = Rng::new(seed);
        let calls = stream(
            900,
            T0,
            2000,
            |id, ts| instant_mix(&mut rng, id, "x", "FR", ts, p),
            "x",
        );
        run(&mut monitor(), &calls).0
    };
    assert!(alone(0.6, 50).is_empty());
    let a = alone(0.9, 51);
    assert_eq!(a.len(), 1);
    assert_eq!(patterns(&a[0]), vec!["instant_answer_rate"]);
}

#[test]
fn instant_answer_rate_against_own_history() {
    // Two clean aligned windows build history, then the route turns bad at
    // a rate (55 %) well below the no-baseline bound (70 %): only the
    // history makes it stand out.
    let mut rng = Rng::new(60);
    let mut calls = stream(
        35 * 30,
        T0,
        2000,
        |id, ts| instant_mix(&mut rng, id, "x", "IT", ts, 0.03),
        "x-clean",
    );
    calls.extend(stream(
        30 * 30,
        T0 + 35 * MIN,
        2000,
        |id, ts| instant_mix(&mut rng, id, "x", "IT", ts, 0.55),
        "x-bad",
    ));
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(patterns(a), vec!["instant_answer_rate"]);
    assert_eq!(a.evidence["baseline_history"], 1.0);
    assert!(a.evidence["history_windows"] >= 2.0);
    assert!(a.evidence["history_instant_answer_rate"] < 0.1);
    assert!(a.window_start_ms >= T0 + 30 * MIN - 15 * MIN);

    // Control: the same bad traffic with no history does not alert.
    let mut rng = Rng::new(60);
    let calls = stream(
        30 * 30,
        T0,
        2000,
        |id, ts| instant_mix(&mut rng, id, "x", "IT", ts, 0.55),
        "x-bad",
    );
    assert!(run(&mut monitor(), &calls).0.is_empty());
}

/// Clean call, but a share `p` of the answered ones bill dead air.
fn silent_mix(
    rng: &mut Rng,
    id: String,
    trunk: &str,
    breakout: &str,
    ts: i64,
    p: f64,
) -> CallFacts {
    let mut c = clean_call(rng, id, trunk, breakout, ts, 0.5, 90.0);
    if c.answered && rng.chance(p) {
        c.silence_ratio = Some(0.97);
    }
    c
}

#[test]
fn silence_rate_against_peers_and_absolute() {
    let mut calls = clean_trunks(70, &["p1", "p2"], "ES", T0, 30);
    let mut rng = Rng::new(79);
    calls.extend(stream(
        900,
        T0,
        2000,
        |id, ts| silent_mix(&mut rng, id, "s", "ES", ts, 0.6),
        "s",
    ));
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].trunk_id, "s");
    assert_eq!(patterns(&alerts[0]), vec!["silence_rate"]);
    assert_eq!(alerts[0].evidence["peer_silence_rate"], 0.0);

    let alone = |p: f64| {
        let mut rng = Rng::new(80);
        let calls = stream(
            900,
            T0,
            2000,
            |id, ts| silent_mix(&mut rng, id, "s", "ES", ts, p),
            "s",
        );
        run(&mut monitor(), &calls).0
    };
    // Without a baseline only an absolute rate (>= 0.7) pulls.
    assert!(alone(0.5).is_empty());
    assert_eq!(patterns(&alone(0.9)[0]), vec!["silence_rate"]);
}

#[test]
fn silence_rate_needs_media_stats() {
    // All dead air, but no media stats on most calls: not judged.
    let mut rng = Rng::new(81);
    let calls = stream(
        900,
        T0,
        2000,
        |id, ts| {
            let mut c = silent_mix(&mut rng, id, "s", "ES", ts, 1.0);
            if !(c.cdr_id.ends_with('0') || c.cdr_id.ends_with('5')) {
                c.silence_ratio = None;
                c.rtp_rx_packets = None;
            }
            c
        },
        "s",
    );
    let (alerts, _) = run(&mut monitor(), &calls);
    // 20 % of the ~225 answered per window have stats: >= 30, so it fires…
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence["silence_rate"], 1.0);
    assert!(alerts[0].evidence["media_known"] < alerts[0].evidence["answered"]);
    // …but not when fewer than min_answered calls have stats.
    let mut rng = Rng::new(81);
    let calls = stream(
        900,
        T0,
        2000,
        |id, ts| {
            let mut c = silent_mix(&mut rng, id, "s", "ES", ts, 1.0);
            if !c.cdr_id.ends_with("00") {
                c.silence_ratio = None;
                c.rtp_rx_packets = None;
            }
            c
        },
        "s",
    );
    assert!(run(&mut monitor(), &calls).0.is_empty());
}

/// ASR `asr`, exponential durations with mean `mean_s`, otherwise clean.
fn asr_acd(
    rng: &mut Rng,
    id: String,
    trunk: &str,
    breakout: &str,
    ts: i64,
    asr: f64,
    mean_s: f64,
) -> CallFacts {
    let mut c = clean_call(rng, id, trunk, breakout, ts, asr, mean_s);
    if c.answered && c.progress_ts_ms.is_none() {
        // Keep this pattern isolated from the instant-answer one.
        c.progress_ts_ms = Some(ts + 2000);
        c.progress_code = Some(180);
        c.answer_ts_ms = Some(ts + 6000);
        c.end_ts_ms = Some(ts + 6000 + c.duration_ms);
    }
    c
}

#[test]
fn high_asr_low_acd_against_peers() {
    let mut calls = Vec::new();
    for (i, t) in ["p1", "p2"].iter().enumerate() {
        let mut rng = Rng::new(90 + i as u64);
        calls.extend(stream(
            900,
            T0,
            2000,
            |id, ts| asr_acd(&mut rng, id, t, "PL", ts, 0.4, 120.0),
            t,
        ));
    }
    let mut rng = Rng::new(99);
    calls.extend(stream(
        900,
        T0,
        2000,
        |id, ts| asr_acd(&mut rng, id, "h", "PL", ts, 0.95, 40.0),
        "h",
    ));
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].trunk_id, "h");
    assert_eq!(patterns(&alerts[0]), vec!["high_asr_low_acd"]);
    assert!(alerts[0].evidence["asr"] > 0.85);
    assert!(alerts[0].evidence["peer_asr"] < 0.5);
}

#[test]
fn high_asr_low_acd_without_peers() {
    let alone = |mean_s: f64| {
        let mut rng = Rng::new(100);
        let calls = stream(
            900,
            T0,
            2000,
            |id, ts| asr_acd(&mut rng, id, "h", "PL", ts, 0.97, mean_s),
            "h",
        );
        run(&mut monitor(), &calls).0
    };
    let a = alone(12.0);
    assert_eq!(a.len(), 1);
    assert_eq!(patterns(&a[0]), vec!["high_asr_low_acd"]);
    assert!(alone(40.0).is_empty());
}

#[test]
fn needs_min_answered_calls_in_the_window() {
    let mut rng = Rng::new(110);
    // Every call answered so the count is exact.
    let mk = |rng: &mut Rng, id: String, ts: i64| {
        let mut c = fas_call(rng, id, "f", "", ts, 0.95);
        while !c.answered {
            c = fas_call(rng, c.cdr_id.clone(), "f", "", ts, 0.95);
        }
        c
    };
    let calls = stream(30, T0, 2000, |id, ts| mk(&mut rng, id, ts), "f");
    // An unanswered call of the route 7 minutes later moves its clock past
    // the first minute's windows plus the 5 minutes of lateness.
    let mut tick = calls[0].clone();
    tick.cdr_id = "tick".into();
    tick.answered = false;
    tick.duration_ms = 0;
    tick.disposition = "no_answer".into();
    tick.answer_ts_ms = None;
    tick.setup_ts_ms = T0 + 7 * MIN;
    tick.end_ts_ms = Some(T0 + 7 * MIN + 1000);
    let mut m = monitor();
    assert!(run(&mut m, &calls[..29]).0.is_empty());
    assert!(run(&mut m, &[tick.clone()]).0.is_empty(), "29 answered");
    let mut m = monitor();
    assert!(
        run(&mut m, &calls).0.is_empty(),
        "not judged before it closes"
    );
    let (alerts, _) = run(&mut m, &[tick]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence["answered"], 30.0);
    assert_eq!(alerts[0].credited.len(), 30);
}

#[test]
fn pulled_route_alerts_once_and_keeps_crediting() {
    let mut rng = Rng::new(120);
    let calls = stream(
        3600,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "f", "NG", ts, 0.95),
        "f",
    );
    let mut m = monitor();
    let (alerts, later) = run(&mut m, &calls);
    assert_eq!(alerts.len(), 1, "two hours of FAS, one pull");
    let a = &alerts[0];
    assert!(!later.is_empty());
    assert!(later.iter().all(|c| c.alert_id == a.alert_id));
    // Every suspect call credited exactly once, in the alert or after it.
    let suspect: BTreeSet<&str> = calls
        .iter()
        .filter(|c| verdict(c).suspect)
        .map(|c| c.cdr_id.as_str())
        .collect();
    let credited: Vec<&str> = a
        .credited
        .iter()
        .chain(&later)
        .map(|c| c.cdr_id.as_str())
        .collect();
    let credited_set: BTreeSet<&str> = credited.iter().copied().collect();
    assert_eq!(credited.len(), credited_set.len(), "no double credit");
    assert_eq!(credited_set, suspect);
    let ids: HashSet<&str> = a
        .credited
        .iter()
        .chain(&later)
        .map(|c| c.adjustment_id.as_str())
        .collect();
    assert_eq!(ids.len(), credited.len());
    assert_eq!(
        m.pulled_routes(),
        vec![("f".to_string(), "NG".to_string(), a.alert_id.clone())]
    );
}

#[test]
fn restore_allows_a_new_pull_with_a_new_id() {
    let mut rng = Rng::new(130);
    let calls = stream(
        1800,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "f", "NG", ts, 0.95),
        "f",
    );
    let mut m = monitor();
    let (first, _) = run(&mut m, &calls[..900]);
    assert_eq!(first.len(), 1);
    assert!(!m.restore("f", "other"));
    assert!(m.restore("f", "NG"));
    assert!(!m.restore("f", "NG"), "already restored");
    assert!(!m.is_pulled("f", "NG"));
    let (second, _) = run(&mut m, &calls[900..]);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].alert_id, first[0].alert_id);
    assert!(second[0].window_start_ms > calls[899].setup_ts_ms);
    // The second pull only credits calls after the restore.
    let before: HashSet<&str> = calls[..900].iter().map(|c| c.cdr_id.as_str()).collect();
    assert!(second[0]
        .credited
        .iter()
        .all(|c| !before.contains(c.cdr_id.as_str())));
}

#[test]
fn duplicate_delivery_is_credited_once() {
    let mut rng = Rng::new(140);
    let calls = stream(
        900,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "f", "NG", ts, 0.95),
        "f",
    );
    let doubled: Vec<CallFacts> = calls.iter().flat_map(|c| [c.clone(), c.clone()]).collect();
    let (a1, c1) = run(&mut monitor(), &calls);
    let (a2, c2) = run(&mut monitor(), &doubled);
    // Stats are not de-duplicated (only money is), so compare the decision
    // and the money, not the evidence figures.
    assert_eq!(a1.len(), 1);
    assert_eq!(a2.len(), 1);
    assert_eq!(a1[0].alert_id, a2[0].alert_id);
    assert_eq!(a1[0].credited, a2[0].credited);
    assert_eq!(c1, c2);
    let ids: HashSet<&str> = a2[0]
        .credited
        .iter()
        .chain(&c2)
        .map(|c| c.cdr_id.as_str())
        .collect();
    assert_eq!(ids.len(), a2[0].credited.len() + c2.len());
}

#[test]
fn alert_ids_are_deterministic_and_route_specific() {
    let make = |trunk: &str| {
        let mut rng = Rng::new(150);
        let calls = stream(
            600,
            T0,
            2000,
            |id, ts| fas_call(&mut rng, id, trunk, "NG", ts, 0.95),
            "f",
        );
        run(&mut monitor(), &calls)
    };
    let (a, c) = make("f");
    let (b, d) = make("f");
    assert_eq!(a, b);
    assert_eq!(c, d);
    assert_eq!(a[0].alert_id.len(), 32);
    let (other, _) = make("g");
    assert_ne!(other[0].alert_id, a[0].alert_id);
    // Same cdr on another route: the credit id only depends on the cdr.
    assert_eq!(
        other[0].credited[0].adjustment_id,
        a[0].credited[0].adjustment_id
    );
}

#[test]
fn late_calls_do_not_count() {
    let mut m = monitor();
    let mut rng = Rng::new(160);
    let now = stream(
        10,
        T0 + 120 * MIN,
        1000,
        |id, ts| clean_call(&mut rng, id, "c", "NG", ts, 0.5, 90.0),
        "now",
    );
    run(&mut m, &now);
    let old = stream(
        900,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "f", "NG", ts, 0.95),
        "old",
    );
    let (alerts, credits) = run(&mut m, &old);
    assert!(alerts.is_empty());
    assert!(credits.is_empty());
    assert_eq!(m.stats().late_calls, 900);
}

#[test]
fn memory_is_bounded_by_event_time() {
    let mut m = monitor();
    let mut rng = Rng::new(170);
    let mut max_routes = 0;
    for hour in 0..48i64 {
        for r in 0..50 {
            let trunk = format!("t{hour}-{r}");
            let calls = stream(
                5,
                T0 + hour * 60 * MIN + r * 1000,
                100,
                |id, ts| clean_call(&mut rng, id, &trunk, "B", ts, 0.5, 60.0),
                &trunk,
            );
            run(&mut m, &calls);
        }
        max_routes = max_routes.max(m.stats().routes);
    }
    let s = m.stats();
    // Idle routes are forgotten after 6 h: never more than ~7 hours' worth.
    assert!(max_routes <= 7 * 50, "{max_routes}");
    assert!(s.routes <= 7 * 50, "{s:?}");
    // Slices only within window + lateness (20 one-minute slices).
    assert!(s.retained_slices <= 20 * (s.routes + s.breakouts), "{s:?}");
    assert_eq!(s.pending_credits, 0);
}

#[test]
fn unknown_breakout_has_no_peers() {
    let mut calls = clean_trunks(180, &["c"], "", T0, 30);
    let mut rng = Rng::new(181);
    calls.extend(stream(
        900,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "f", "", ts, 0.95),
        "f",
    ));
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].evidence["baseline_peers"], 0.0);
    assert!(!alerts[0].evidence.contains_key("peer_answered"));
}

#[test]
fn zero_amount_calls_are_not_credited() {
    let mut rng = Rng::new(190);
    let calls = stream(
        900,
        T0,
        2000,
        |id, ts| {
            let mut c = fas_call(&mut rng, id, "f", "", ts, 0.95);
            c.amount = Decimal::ZERO; // unrated
            c
        },
        "f",
    );
    let (alerts, credits) = run(&mut monitor(), &calls);
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].credited.is_empty());
    assert!(credits.is_empty());
}

#[test]
fn config_validation_names_the_field() {
    let bad = |f: fn(&mut RouteConfig)| {
        let mut c = RouteConfig::default();
        f(&mut c);
        match RouteMonitor::new(c) {
            Err(ConfigError::Invalid { field, .. }) => field,
            Ok(_) => "ok",
        }
    };
    assert_eq!(bad(|_| {}), "ok");
    assert_eq!(bad(|c| c.window_ms = 61_000), "window_ms");
    assert_eq!(bad(|c| c.slide_ms = 0), "slide_ms");
    assert_eq!(bad(|c| c.min_answered = 1), "min_answered");
    assert_eq!(bad(|c| c.rate_min = 1.5), "rate_min");
    assert_eq!(
        bad(|c| c.rate_baseline_multiple = 0.5),
        "rate_baseline_multiple"
    );
    assert_eq!(bad(|c| c.idle_route_ms = 1), "idle_route_ms");
    assert_eq!(bad(|c| c.min_patterns = 0), "min_patterns");
    assert_eq!(bad(|c| c.history_windows = 1), "history_windows");
}

#[test]
fn evidence_has_the_documented_keys() {
    let mut calls = clean_trunks(200, &["c1", "c2"], "DE", T0, 30);
    let mut rng = Rng::new(201);
    calls.extend(stream(
        900,
        T0,
        2000,
        |id, ts| fas_call(&mut rng, id, "f", "DE", ts, 0.95),
        "f",
    ));
    let (alerts, _) = run(&mut monitor(), &by_event_time(calls));
    let keys: BTreeSet<&str> = alerts[0].evidence.keys().map(String::as_str).collect();
    for k in [
        "answered",
        "seizures",
        "asr",
        "acd_s",
        "acd_cv",
        "instant_answer_rate",
        "silence_rate",
        "media_known",
        "suspect_calls",
        "credited_calls",
        "credited_amount",
        "peer_answered",
        "peer_seizures",
        "peer_asr",
        "peer_acd_s",
        "peer_acd_cv",
        "peer_instant_answer_rate",
        "peer_silence_rate",
        "baseline_peers",
        "baseline_history",
    ] {
        assert!(keys.contains(k), "missing {k}: {keys:?}");
    }
    let credited: Decimal = alerts[0].credited.iter().map(|c| c.amount).sum();
    assert!(alerts[0].evidence["credited_amount"] < 0.0);
    assert_eq!(
        alerts[0].evidence["credited_calls"],
        alerts[0].credited.len() as f64
    );
    // Every suspect call of the window was creditable (positive amount).
    assert_eq!(
        alerts[0].evidence["suspect_calls"],
        alerts[0].evidence["credited_calls"]
    );
    assert_eq!(alerts[0].evidence["peer_suspect_calls"], 0.0);
    assert!(credited < Decimal::ZERO);
}

/// Alerts and credits, as a set of ids with their figures, of a run.
fn outcome(alerts: &[RouteAlert], credits: &[Credit]) -> Outcome {
    let a = alerts
        .iter()
        .map(|a| {
            format!(
                "{} {} {} {:?}",
                a.alert_id, a.window_start_ms, a.window_end_ms, a.evidence
            )
        })
        .collect();
    let c = alerts
        .iter()
        .flat_map(|a| a.credited.iter())
        .chain(credits)
        .map(|c| {
            (
                c.adjustment_id.clone(),
                format!("{} {}", c.amount, c.alert_id),
            )
        })
        .collect();
    (a, c)
}

type Outcome = (Vec<String>, BTreeSet<(String, String)>);

/// Compares two outcomes with a short message (credit sets are long).
fn same(o: &Outcome, control: &Outcome, what: &str) {
    assert_eq!(o.0, control.0, "{what}: alerts");
    let extra = o.1.difference(&control.1).count();
    let missing = control.1.difference(&o.1).count();
    assert!(
        extra == 0 && missing == 0,
        "{what}: {extra} credits more, {missing} fewer than the control's {}",
        control.1.len()
    );
}

/// Restarts a monitor from what it persisted (through JSON, as the
/// detector stores it).
fn reborn(m: &mut RouteMonitor) -> RouteMonitor {
    let mut fresh = monitor();
    let mut changes = m.take_changes();
    // Any order: a compacted topic does not keep write order across keys.
    changes.reverse();
    for c in changes {
        if let Some(r) = c.record {
            let json = serde_json::to_vec(&r).unwrap();
            fresh.restore_record(serde_json::from_slice(&json).unwrap());
        }
    }
    fresh
}

#[test]
fn outcome_is_a_function_of_the_calls_not_of_copies_order_or_restarts() {
    let mut rng = Rng::new(900);
    let mut calls = clean_trunks(901, &["c1", "c2", "c3"], "DE Mobile", T0, 50);
    calls.extend(stream(
        900,
        T0 + 20 * MIN,
        2000,
        |id, ts| fas_call(&mut rng, id, "fas", "DE Mobile", ts, 0.95),
        "fas",
    ));
    let calls = by_event_time(calls);
    let (a, c) = run(&mut monitor(), &calls);
    let control = outcome(&a, &c);
    assert_eq!(control.0.len(), 1);
    assert!(control.1.len() > 100, "credits: {}", control.1.len());

    // Every call twice, neighbours swapped (well within the lateness).
    let mut noisy = Vec::new();
    for pair in calls.chunks(3) {
        noisy.extend(pair.iter().rev().cloned());
        noisy.push(pair[0].clone());
    }
    let (a, c) = run(&mut monitor(), &noisy);
    same(&outcome(&a, &c), &control, "copies and swaps");

    // Killed after any call, restored from its persisted state (written
    // after every batch of 50), the input replayed from the last commit.
    for cut in [10, calls.len() / 4, calls.len() / 2, calls.len() * 3 / 4] {
        let mut m = monitor();
        let (mut alerts, mut credits) = (Vec::new(), Vec::new());
        let committed = cut - cut % 50;
        let (a, c) = run(&mut m, &calls[..committed]);
        alerts.extend(a);
        credits.extend(c);
        let mut m2 = reborn(&mut m);
        // Outputs of calls after the commit were produced, then it died.
        let (a, c) = run(&mut m, &calls[committed..cut]);
        alerts.extend(a);
        credits.extend(c);
        let (a, c) = run(&mut m2, &calls[committed..]);
        alerts.extend(a);
        credits.extend(c);
        alerts.dedup_by(|x, y| x.alert_id == y.alert_id);
        same(
            &outcome(&alerts, &credits),
            &control,
            &format!("killed after {cut}"),
        );
    }
}
