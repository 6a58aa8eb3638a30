//! Short-duration / dialer profiling scenarios.

mod common;

use std::collections::HashSet;

use common::*;
use detection::{
    AccountAlert, CallFacts, ConfigError, ProfileConfig, ProfileMonitor, TrafficProfile,
};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn monitor() -> ProfileMonitor {
    ProfileMonitor::new(ProfileConfig::default()).unwrap()
}

fn run(
    m: &mut ProfileMonitor,
    calls: &[CallFacts],
    declared: Option<TrafficProfile>,
) -> Vec<AccountAlert> {
    calls
        .iter()
        .flat_map(|c| m.observe(0, c, &|_: &str| declared))
        .collect()
}

/// 15 attempts a minute of dialer traffic for `minutes`.
fn dialer(seed: u64, account: &str, minutes: i64) -> Vec<CallFacts> {
    let mut rng = Rng::new(seed);
    by_event_time(stream(
        (minutes * 15) as usize,
        T0,
        4000,
        |id, ts| dialer_call(&mut rng, id, account, "t1", ts),
        account,
    ))
}

#[test]
fn undeclared_dialer_alerts_once_per_closed_window() {
    // 45 minutes: the windows 0–15 and 15–30 close (their end + 5 min
    // lateness is reached), 30–45 is still open.
    let calls = dialer(1, "acme", 45);
    let mut m = monitor();
    let alerts = run(&mut m, &calls, None);
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    for a in &alerts {
        assert_eq!(a.account_id, "acme");
        assert_eq!(a.declared, None);
        assert_eq!(a.observed, TrafficProfile::Dialer);
        assert_eq!(a.window_end_ms - a.window_start_ms, 15 * MIN);
        assert_eq!(a.window_start_ms % (15 * MIN), 0);
        assert!(a.evidence["asr"] <= 0.35, "{:?}", a.evidence);
        assert!(a.evidence["attempts_per_min"] >= 10.0);
        assert!(a.evidence["short_share"] >= 0.3);
        for k in ["attempts", "answered", "short_calls", "acd_s"] {
            assert!(a.evidence.contains_key(k), "{k}");
        }
    }
    assert_ne!(alerts[0].alert_id, alerts[1].alert_id);
    assert!(alerts[0].window_start_ms < alerts[1].window_start_ms);
}

#[test]
fn declared_dialer_is_not_alerted_and_declared_conversational_is() {
    let calls = dialer(2, "acme", 25);
    assert!(run(&mut monitor(), &calls, Some(TrafficProfile::Dialer)).is_empty());
    let a = run(&mut monitor(), &calls, Some(TrafficProfile::Conversational));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].declared, Some(TrafficProfile::Conversational));
}

#[test]
fn busy_conversational_traffic_is_not_a_dialer() {
    // 60 attempts a minute but ASR 50 % and long calls.
    let mut rng = Rng::new(3);
    let calls = by_event_time(stream(
        60 * 60,
        T0,
        1000,
        |id, ts| {
            let mut c = clean_call(&mut rng, id, "t", "DE", ts, 0.5, 120.0);
            c.account_id = "callcenter".into();
            c
        },
        "cc",
    ));
    let mut m = monitor();
    for (i, c) in calls.iter().enumerate() {
        assert!(m.observe(0, c, &|_: &str| None).is_empty());
        if i == 1350 {
            // Newest window (15–30 min) is half through: ~450 attempts.
            let snap = m.account_snapshot("callcenter").unwrap();
            assert_eq!(snap.window_start_ms, T0 + 15 * MIN);
            assert!(snap.attempts_per_min > 25.0, "{snap:?}");
            assert!(snap.asr > 0.4);
            assert_eq!(snap.observed, TrafficProfile::Conversational);
        }
    }
}

#[test]
fn low_volume_low_asr_is_not_a_dialer() {
    // 2 attempts a minute: even with dialer-like ASR and short calls there
    // is not the attempt rate of a dialer.
    let mut rng = Rng::new(4);
    let calls = by_event_time(stream(
        60,
        T0,
        30_000,
        |id, ts| dialer_call(&mut rng, id, "small", "t", ts),
        "s",
    ));
    assert!(run(&mut monitor(), &calls, None).is_empty());
}

#[test]
fn alerts_are_a_function_of_the_calls_not_of_copies_order_or_restarts() {
    let calls = dialer(5, "acme", 50);
    let a = run(&mut monitor(), &calls, None);
    assert_eq!(a.len(), 3);
    // Every call twice, neighbours swapped (within the lateness bound).
    let mut noisy = Vec::new();
    for pair in calls.chunks(2) {
        noisy.extend(pair.iter().rev().cloned());
        noisy.push(pair[0].clone());
    }
    assert_eq!(run(&mut monitor(), &noisy, None), a);
    // Killed at any point and restored from what it persisted, then the
    // input replayed from an earlier point.
    for cut in [1, calls.len() / 3, calls.len() / 2, calls.len() - 1] {
        let mut m = monitor();
        let mut out = run(&mut m, &calls[..cut], None);
        let mut fresh = monitor();
        for ch in m.take_changes() {
            if let Some(r) = ch.record {
                fresh.restore(ch.partition, r);
            }
        }
        out.extend(run(&mut fresh, &calls[cut.saturating_sub(40)..], None));
        assert_eq!(out, a, "restart after {cut} calls");
    }
}

#[test]
fn persisted_state_round_trips_and_tombstones_judged_slots() {
    let calls = dialer(11, "acme", 25);
    let mut m = monitor();
    run(&mut m, &calls, None);
    let changes = m.take_changes();
    assert!(
        changes.iter().any(|c| c.record.is_none()),
        "judged slots are deleted"
    );
    assert!(changes.iter().all(|c| c.partition == 0));
    for c in changes.iter().filter_map(|c| c.record.as_ref()) {
        let json = serde_json::to_vec(c).unwrap();
        assert_eq!(
            &serde_json::from_slice::<detection::ProfileRecord>(&json).unwrap(),
            c
        );
    }
    assert!(m.take_changes().is_empty(), "nothing changed since");
    m.revoke(0);
    assert_eq!(m.tracked(), 0);
}

#[test]
fn snapshots_per_account_and_route() {
    // Exact figures on hand-made calls: 200 attempts in one window,
    // 40 answered, 20 of them 3 s long and 20 of them 60 s long.
    let mut m = monitor();
    for i in 0..200i64 {
        let mut rng = Rng::new(i as u64);
        let mut c = dialer_call(&mut rng, format!("c{i}"), "acct", "trk", T0 + i * 1000);
        c.answered = i < 40;
        c.duration_ms = if i < 20 {
            3000
        } else if i < 40 {
            60_000
        } else {
            0
        };
        c.end_ts_ms = Some(T0 + i * 1000 + 500);
        m.observe(0, &c, &|_: &str| Some(TrafficProfile::Dialer));
    }
    let s = m.account_snapshot("acct").unwrap();
    assert_eq!((s.attempts, s.answered, s.short_calls), (200, 40, 20));
    assert!((s.asr - 0.2).abs() < 1e-12);
    assert!((s.short_share - 0.5).abs() < 1e-12);
    assert!((s.acd_s - 31.5).abs() < 1e-9);
    assert!((s.attempts_per_min - 200.0 / 15.0).abs() < 1e-9);
    assert_eq!(s.observed, TrafficProfile::Dialer);
    assert_eq!(m.account_snapshot("nope"), None);
}

#[test]
fn every_account_judged_on_its_own() {
    let mut calls = dialer(6, "dialer-co", 25);
    let mut rng = Rng::new(7);
    calls.extend(stream(
        1500,
        T0,
        1000,
        |id, ts| {
            let mut c = clean_call(&mut rng, id, "t1", "US Fixed", ts, 0.5, 120.0);
            c.account_id = "talk-co".into();
            c
        },
        "talk",
    ));
    let alerts = run(&mut monitor(), &by_event_time(calls), None);
    let accounts: HashSet<&str> = alerts.iter().map(|a| a.account_id.as_str()).collect();
    assert_eq!(accounts, HashSet::from(["dialer-co"]));
}

#[test]
fn late_calls_are_ignored_and_memory_is_bounded() {
    let mut m = monitor();
    let mut rng = Rng::new(8);
    for h in 0..24i64 {
        for a in 0..20 {
            let acct = format!("a{h}-{a}");
            let calls = stream(
                3,
                T0 + h * 60 * MIN,
                1000,
                |id, ts| {
                    let mut c = clean_call(&mut rng, id, &acct, "B", ts, 0.5, 60.0);
                    c.account_id = acct.clone();
                    c
                },
                &acct,
            );
            run(&mut m, &calls, None);
        }
        let accounts = m.tracked();
        assert!(accounts <= 40, "{accounts}");
    }
    let before = m.late_calls();
    let old = dialer(9, "old", 15);
    assert!(run(&mut m, &old, None).is_empty());
    assert_eq!(m.late_calls() - before, old.len() as u64);
}

#[test]
fn config_validation_names_the_field() {
    let bad = |f: fn(&mut ProfileConfig)| {
        let mut c = ProfileConfig::default();
        f(&mut c);
        match ProfileMonitor::new(c) {
            Err(ConfigError::Invalid { field, .. }) => field,
            Ok(_) => "ok",
        }
    };
    assert_eq!(bad(|_| {}), "ok");
    assert_eq!(bad(|c| c.window_ms = 1000), "window_ms");
    assert_eq!(bad(|c| c.short_call_ms = 0), "short_call_ms");
    assert_eq!(bad(|c| c.dialer_max_asr = 2.0), "dialer_max_asr");
    assert_eq!(
        bad(|c| c.dialer_min_attempts_per_min = f64::NAN),
        "dialer_min_attempts_per_min"
    );
}

#[test]
fn profile_names_round_trip() {
    for p in [TrafficProfile::Conversational, TrafficProfile::Dialer] {
        assert_eq!(TrafficProfile::parse(p.as_str()), Some(p));
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!(TrafficProfile::parse("robocall"), None);
}

/// State taken a little at a time, as the rater writes it after every
/// batch, rebuilds the same monitor: a take carries every account changed
/// since the last one (and only those), so a restore from the compacted
/// store then gives the same alerts as an uninterrupted run.
#[test]
fn incremental_takes_persist_everything_a_restart_needs() {
    let mut calls: Vec<CallFacts> = ["acme", "bolt", "core"]
        .iter()
        .enumerate()
        .flat_map(|(i, a)| dialer(20 + i as u64, a, 40))
        .collect();
    calls.sort_by_key(|c| (c.end_ts_ms.unwrap_or(c.setup_ts_ms), c.cdr_id.clone()));
    let a = run(&mut monitor(), &calls, None);
    assert!(a.len() >= 3, "{}", a.len());
    let apply = |store: &mut std::collections::BTreeMap<String, detection::ProfileRecord>,
                 m: &mut ProfileMonitor| {
        for ch in m.take_changes() {
            match ch.record {
                Some(r) => store.insert(ch.key, r),
                None => store.remove(&ch.key),
            };
        }
    };
    for cut in [calls.len() / 4, calls.len() / 2, calls.len() * 3 / 4] {
        let mut m = monitor();
        let mut store = std::collections::BTreeMap::new();
        let mut out = Vec::new();
        for (i, c) in calls[..cut].iter().enumerate() {
            out.extend(m.observe(0, c, &|_: &str| None));
            if i % 7 == 6 {
                apply(&mut store, &mut m);
            }
        }
        apply(&mut store, &mut m);
        let second = m.take_changes();
        assert!(second.is_empty(), "a take right after a take: {second:?}");
        let mut fresh = monitor();
        for r in store.into_values() {
            fresh.restore(0, r);
        }
        out.extend(run(&mut fresh, &calls[cut..], None));
        assert_eq!(out, a, "restart after {cut} calls");
    }
}
