//! Assembly semantics: interleavings, duplicates, reordering, stale calls,
//! contradictory timestamps and the offset-commit rule.

use assembler::core::{Assembler, AssemblyConfig, Clock, Ingest, Pos};
use cdr_model::event::{EventKind, MediaStats, SwitchEvent};
use proptest::prelude::*;

const T0: i64 = 1_790_000_000_000;

fn ev(call: &str, id: &str, kind: EventKind, ts: i64, code: Option<i32>) -> SwitchEvent {
    SwitchEvent {
        event_id: id.into(),
        call_id: call.into(),
        kind,
        ts_ms: ts,
        switch_id: "sw1".into(),
        account_id: "acc1".into(),
        direction: Default::default(),
        cli: (kind == EventKind::Setup).then(|| "+12125550100".into()),
        dialed: (kind == EventKind::Setup).then(|| "*31442079460000".into()),
        trunk_id: matches!(kind, EventKind::Answer | EventKind::Hangup).then(|| "t7".into()),
        sip_code: code,
        headers: Default::default(),
        source_ip: None,
        behind_nat: None,
        media: (kind == EventKind::Hangup).then(|| MediaStats {
            mos: Some(4.2),
            ..Default::default()
        }),
        codec: None,
        setup_ts_ms: None,
        progress_ts_ms: None,
        answer_ts_ms: None,
        end_ts_ms: None,
    }
}

fn answered_call(call: &str, talk_ms: i64) -> Vec<SwitchEvent> {
    vec![
        ev(call, &format!("{call}-s"), EventKind::Setup, T0, None),
        ev(
            call,
            &format!("{call}-p"),
            EventKind::Progress,
            T0 + 1200,
            Some(183),
        ),
        ev(
            call,
            &format!("{call}-a"),
            EventKind::Answer,
            T0 + 5000,
            Some(200),
        ),
        ev(
            call,
            &format!("{call}-h"),
            EventKind::Hangup,
            T0 + 5000 + talk_ms,
            Some(200),
        ),
    ]
}

fn cfg() -> AssemblyConfig {
    AssemblyConfig {
        max_call_ms: 3_600_000,
        reorder_grace_ms: 1000,
        skew_ms: 2000,
        closed_retention_ms: 60_000,
        // Long talk times in the property test end hours after the feed's
        // log time; the clock check has its own tests.
        max_ahead_ms: 36_000_000,
        ..Default::default()
    }
}

fn feed(events: &[SwitchEvent]) -> (Assembler, Vec<cdr_model::AssembledCall>) {
    let mut a = Assembler::new(cfg());
    for (i, e) in events.iter().enumerate() {
        a.ingest(
            e.clone(),
            Pos {
                partition: 0,
                offset: i as i64,
            },
            Clock::at(T0 + 1000),
        );
    }
    let out = a.tick(T0 + 10_000);
    (a, out)
}

#[test]
fn answered_call_bills_answer_to_hangup_only() {
    let (_, out) = feed(&answered_call("c1", 61_500));
    assert_eq!(out.len(), 1);
    let c = &out[0];
    assert_eq!(c.disposition, "answered");
    assert_eq!(c.duration_ms, 61_500);
    assert_eq!(c.billable_seconds, 62);
    assert_eq!(c.pdd_ms, Some(1200));
    assert_eq!(c.progress_code, Some(183));
    assert_eq!(c.trunk_id.as_deref(), Some("t7"));
    assert_eq!(c.dialed, "*31442079460000");
    assert_eq!(c.event_count, 4);
    assert_eq!(c.media.as_ref().and_then(|m| m.mos), Some(4.2));
}

#[test]
fn hangup_before_answer_still_one_correct_call() {
    let mut evs = answered_call("c1", 30_000);
    evs.swap(2, 3);
    let (_, out) = feed(&evs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].disposition, "answered");
    assert_eq!(out[0].duration_ms, 30_000);
}

fn at(a: &mut Assembler, e: &SwitchEvent, partition: i32, offset: i64, log: i64) -> Ingest {
    a.ingest(e.clone(), Pos { partition, offset }, Clock::at(T0 + log))
}

#[test]
fn grace_holds_emission_until_stragglers_can_arrive() {
    let mut a = Assembler::new(cfg());
    let evs = answered_call("c1", 30_000);
    at(&mut a, &evs[0], 0, 0, 0);
    at(&mut a, &evs[3], 0, 1, 0);
    assert!(
        a.tick(T0 + 500).is_empty(),
        "emitted inside the reorder grace"
    );
    // The straggler arrives within the grace (partition clock 600 < 0 + 1000).
    at(&mut a, &evs[2], 0, 2, 600);
    assert!(a.take_closed().is_empty());
    // Idle for longer than idle_flush_ms: the clock runs on and the grace ends.
    let out = a.tick(T0 + 2000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].disposition, "answered");
}

#[test]
fn the_log_clock_closes_calls_whatever_the_wall_clock_says() {
    let mut a = Assembler::new(cfg());
    let c1 = answered_call("c1", 30_000);
    let c2 = answered_call("c2", 30_000);
    at(&mut a, &c1[0], 0, 0, 0);
    at(&mut a, &c1[3], 0, 1, 100);
    at(&mut a, &c2[0], 0, 2, 900);
    assert!(a.take_closed().is_empty(), "grace of c1 not over at 900");
    // c1's answer is late, but within the grace by the log clock.
    at(&mut a, &c1[2], 0, 3, 1000);
    // A later record moves the clock past c1's grace (100 + 1000).
    at(&mut a, &c2[1], 0, 4, 1200);
    let out = a.take_closed();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].call_id, "c1");
    assert_eq!(
        out[0].disposition, "answered",
        "the straggler was folded in"
    );
}

#[test]
fn far_future_and_far_past_events_are_refused_and_poison_nothing() {
    let mut a = Assembler::new(cfg());
    let mut future = ev(
        "x",
        "x-s",
        EventKind::Setup,
        T0 + 73 * 365 * 86_400_000,
        None,
    );
    future.dialed = Some("4420".into());
    match at(&mut a, &future, 0, 0, 0) {
        Ingest::Rejected(e) => {
            assert_eq!((e.reason(), e.field()), ("clock_out_of_range", Some("ts")))
        }
        o => panic!("{o:?}"),
    }
    let past = ev("y", "y-s", EventKind::Setup, T0 - 30 * 86_400_000, None);
    assert!(
        matches!(at(&mut a, &past, 0, 1, 0), Ingest::Rejected(e) if e.reason() == "clock_out_of_range")
    );
    // The partition clock is untouched: a normal call is neither stale nor early.
    let c = answered_call("c1", 20_000);
    for (k, e) in c.iter().enumerate() {
        at(&mut a, e, 0, 2 + k as i64, e.ts_ms - T0);
    }
    assert_eq!(a.partition_clock(0), Some(c[3].ts_ms));
    let out = a.tick(T0 + 40_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].disposition, "answered");
    assert_eq!(out[0].duration_ms, 20_000);
    // Dead-lettered records are consumed: the commit passes them.
    assert_eq!(a.committable().get(&0), Some(&6));
}

#[test]
fn a_producer_clock_ahead_of_the_wall_is_refused() {
    let mut a = Assembler::new(cfg());
    let e = ev("c1", "s", EventKind::Setup, T0, None);
    let clock = Clock {
        log_ms: T0 + 86_400_000 * 365,
        wall_ms: T0,
    };
    let mut e2 = e.clone();
    e2.ts_ms = clock.log_ms;
    match a.ingest(
        e2,
        Pos {
            partition: 0,
            offset: 0,
        },
        clock,
    ) {
        Ingest::Rejected(err) => assert_eq!(err.field(), Some("kafka_timestamp")),
        o => panic!("{o:?}"),
    }
    assert_eq!(a.partition_clock(0), None);
}

#[test]
fn partitions_keep_their_own_clocks() {
    let mut a = Assembler::new(cfg());
    let c1 = answered_call("c1", 10_000);
    // Partition 0 holds c1 with its hangup at log time 0 ...
    at(&mut a, &c1[0], 0, 0, 0);
    at(&mut a, &c1[2], 0, 1, 0);
    at(&mut a, &c1[3], 0, 2, 0);
    // ... partition 1 runs an hour ahead: c1 must not close on its account.
    let c2 = answered_call("c2", 10_000);
    at(&mut a, &c2[0], 1, 0, 3_600_000);
    assert!(a.take_closed().is_empty());
    assert_eq!(a.partition_clock(0), Some(T0));
}

#[test]
fn too_many_events_for_one_call_are_refused() {
    let mut c = cfg();
    c.max_events_per_call = 3;
    let mut a = Assembler::new(c);
    let evs = answered_call("c1", 10_000);
    for (k, e) in evs[..3].iter().enumerate() {
        assert_eq!(at(&mut a, e, 0, k as i64, 0), Ingest::Accepted);
    }
    match at(&mut a, &evs[3], 0, 3, 0) {
        Ingest::Rejected(e) => assert_eq!(e.reason(), "too_many_events"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn the_open_call_cap_closes_the_oldest_call_as_stale() {
    let mut c = cfg();
    c.max_open_calls = 2;
    let mut a = Assembler::new(c);
    for (k, call) in ["c1", "c2", "c3"].iter().enumerate() {
        at(
            &mut a,
            &ev(call, &format!("{call}-s"), EventKind::Setup, T0, None),
            0,
            k as i64,
            0,
        );
    }
    let out = a.take_closed();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].call_id, "c1");
    assert_eq!(out[0].disposition, "stale");
    assert!(out[0].flags.contains(&"open_call_cap".to_string()));
    assert_eq!(a.open_calls(), 2);
}

#[test]
fn dispositions_from_final_codes() {
    for (code, disp) in [
        (486, "busy"),
        (480, "no_answer"),
        (408, "no_answer"),
        (487, "cancelled"),
        (503, "failed"),
        (404, "failed"),
    ] {
        let evs = vec![
            ev("c", "s", EventKind::Setup, T0, None),
            ev("c", "h", EventKind::Hangup, T0 + 9000, Some(code)),
        ];
        let (_, out) = feed(&evs);
        assert_eq!(out[0].disposition, disp, "code {code}");
        assert_eq!(out[0].duration_ms, 0);
        assert_eq!(out[0].billable_seconds, 0);
    }
}

#[test]
fn duplicate_event_changes_nothing_and_late_duplicate_is_swallowed() {
    let evs = answered_call("c1", 10_000);
    let mut with_dups = evs.clone();
    with_dups.push(evs[2].clone());
    with_dups.insert(1, evs[0].clone());
    let (mut a, out) = feed(&with_dups);
    let (_, base) = feed(&evs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event_count, base[0].event_count);
    assert_eq!(
        a.ingest(
            evs[3].clone(),
            Pos {
                partition: 0,
                offset: 99
            },
            Clock::at(T0 + 11_000)
        ),
        Ingest::Duplicate
    );
    assert!(a.tick(T0 + 12_000).is_empty());
}

#[test]
fn new_event_after_close_is_rejected() {
    let (mut a, _) = feed(&answered_call("c1", 10_000));
    let late = ev("c1", "c1-x", EventKind::Progress, T0 + 100, Some(180));
    match a.ingest(
        late,
        Pos {
            partition: 0,
            offset: 50,
        },
        Clock::at(T0 + 11_000),
    ) {
        Ingest::Rejected(e) => assert_eq!(e.reason(), "event_after_close"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn call_without_hangup_closes_stale_after_max_length() {
    let mut a = Assembler::new(cfg());
    a.ingest(
        ev("c1", "s", EventKind::Setup, T0, None),
        Pos {
            partition: 0,
            offset: 0,
        },
        Clock::at(T0),
    );
    a.ingest(
        ev("c1", "a", EventKind::Answer, T0 + 3000, None),
        Pos {
            partition: 0,
            offset: 1,
        },
        Clock::at(T0),
    );
    assert!(a.tick(T0 + 3_000_000).is_empty());
    let out = a.tick(T0 + 3_700_000);
    assert_eq!(out.len(), 1);
    // Answered: billed provisionally, answer to its last evidence (the
    // answer itself here).
    assert_eq!(out[0].disposition, "answered");
    assert!(out[0].flags.contains(&"stale".to_string()));
    assert!(out[0].flags.contains(&"provisional".to_string()));
    assert_eq!(out[0].billable_seconds, 0);
    // Never answered: stale, nothing billed.
    let mut a = Assembler::new(cfg());
    at(&mut a, &ev("c2", "s", EventKind::Setup, T0, None), 0, 0, 0);
    let out = a.tick(T0 + 3_700_000);
    assert_eq!(out[0].disposition, "stale");
    assert!(!out[0].flags.contains(&"provisional".to_string()));
}

/// Issue 12: a lost BYE or a call over the maximum length is billed
/// provisionally (answer to the last evidence, capped), and its hangup,
/// arriving later, makes a complete new version of the same cdr_id.
#[test]
fn a_late_hangup_replaces_the_provisional_call_with_a_new_version() {
    let call = answered_call("long", 5_000_000); // hangup 83 min after answer
    let mut a = Assembler::new(cfg()); // max call 1 h
    at(&mut a, &call[0], 0, 0, 0);
    at(&mut a, &call[1], 0, 1, 1_200);
    at(&mut a, &call[2], 0, 2, 5_000);
    // A late progress re-INVITE-like event is the last evidence at +20 min.
    let evidence = ev(
        "long",
        "long-x",
        EventKind::Progress,
        T0 + 1_200_000,
        Some(183),
    );
    at(&mut a, &evidence, 0, 3, 1_200_000);
    let first = a.tick(T0 + 3_700_000);
    assert_eq!(first.len(), 1);
    let p = &first[0];
    assert_eq!(p.disposition, "answered");
    assert!(p.flags.contains(&"provisional".to_string()));
    assert_eq!(p.duration_ms, 1_200_000 - 5_000, "answer to last evidence");
    // The hangup arrives after the stale closure: accepted, not dead-lettered.
    assert_eq!(at(&mut a, &call[3], 0, 4, 5_005_000), Ingest::Accepted);
    let second = a.tick(T0 + 5_010_000);
    assert_eq!(second.len(), 1);
    let f = &second[0];
    assert_eq!(f.cdr_id, p.cdr_id);
    assert_eq!(f.disposition, "answered");
    assert!(!f.flags.iter().any(|x| x == "provisional" || x == "stale"));
    assert_eq!(f.duration_ms, 5_000_000);
    assert!(
        f.event_count > p.event_count,
        "a higher row version replaces it"
    );
    // A duplicate of the hangup changes nothing more.
    assert_eq!(at(&mut a, &call[3], 0, 5, 5_020_000), Ingest::Duplicate);
    assert!(a.tick(T0 + 5_100_000).is_empty());
}

#[test]
fn a_provisional_call_is_capped_at_the_maximum_length() {
    let mut a = Assembler::new(cfg());
    let call = answered_call("cap", 0);
    at(&mut a, &call[0], 0, 0, 0);
    at(&mut a, &call[2], 0, 1, 5_000);
    // Evidence far later than the cap (within the clock tolerance).
    let late = ev(
        "cap",
        "cap-x",
        EventKind::Progress,
        T0 + 5_000_000,
        Some(183),
    );
    at(&mut a, &late, 0, 2, 3_000_000);
    let out = a.tick(T0 + 3_700_000);
    assert_eq!(out[0].duration_ms, 3_600_000, "capped at max_call_ms");
}

#[test]
fn a_new_owner_can_still_complete_a_provisional_call() {
    let call = answered_call("long", 5_000_000);
    let mut a = Assembler::new(ckpt_cfg());
    at(&mut a, &call[0], 0, 0, 0);
    at(&mut a, &call[2], 0, 1, 5_000);
    a.tick(T0 + 100_000);
    assert_eq!(a.checkpoints_due().len(), 1);
    let first = a.tick(T0 + 3_700_000);
    assert!(first[0].flags.contains(&"provisional".to_string()));
    let cps = a.checkpoints_due();
    assert_eq!(cps.len(), 1);
    assert!(cps[0].provisional, "kept as a provisional checkpoint");
    assert!(
        a.take_tombstones().is_empty(),
        "not tombstoned while reopenable"
    );
    // Restart: the new owner restores it, then reads the hangup.
    let mut b = Assembler::new(ckpt_cfg());
    for oc in cps {
        let json = serde_json::to_string(&oc).unwrap();
        b.restore(serde_json::from_str(&json).unwrap());
    }
    assert_eq!(b.open_calls(), 0, "restored closed, not open");
    assert_eq!(at(&mut b, &call[3], 0, 2, 5_005_000), Ingest::Accepted);
    let out = b.tick(T0 + 5_010_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].duration_ms, 5_000_000);
    assert!(out[0].event_count > first[0].event_count);
    assert!(b.take_tombstones().is_empty(), "not before the commit");
    b.tick(T0 + 5_010_000 + 48 * 3_600_000); // past its retention
    b.committed(0, 3);
    assert_eq!(
        b.take_tombstones().len(),
        1,
        "complete and committed: checkpoint tombstoned"
    );
}

#[test]
fn contradictory_timestamps_are_rejected() {
    let mut a = Assembler::new(cfg());
    a.ingest(
        ev("c1", "s", EventKind::Setup, T0, None),
        Pos {
            partition: 0,
            offset: 0,
        },
        Clock::at(T0),
    );
    match a.ingest(
        ev("c1", "a", EventKind::Answer, T0 - 60_000, None),
        Pos {
            partition: 0,
            offset: 1,
        },
        Clock::at(T0),
    ) {
        Ingest::Rejected(e) => assert_eq!(e.reason(), "answer_before_setup"),
        o => panic!("{o:?}"),
    }
    a.ingest(
        ev("c1", "a2", EventKind::Answer, T0 + 5000, None),
        Pos {
            partition: 0,
            offset: 2,
        },
        Clock::at(T0),
    );
    match a.ingest(
        ev("c1", "h", EventKind::Hangup, T0 + 1000, Some(200)),
        Pos {
            partition: 0,
            offset: 3,
        },
        Clock::at(T0),
    ) {
        Ingest::Rejected(e) => assert_eq!(e.reason(), "negative_duration"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn commit_point_never_splits_an_open_call() {
    let mut a = Assembler::new(cfg());
    let c1 = answered_call("c1", 1000);
    let c2 = answered_call("c2", 1000);
    a.ingest(
        c1[0].clone(),
        Pos {
            partition: 0,
            offset: 0,
        },
        Clock::at(T0),
    );
    a.ingest(
        c2[0].clone(),
        Pos {
            partition: 0,
            offset: 1,
        },
        Clock::at(T0),
    );
    a.ingest(
        c2[2].clone(),
        Pos {
            partition: 0,
            offset: 2,
        },
        Clock::at(T0),
    );
    a.ingest(
        c2[3].clone(),
        Pos {
            partition: 0,
            offset: 3,
        },
        Clock::at(T0),
    );
    a.tick(T0 + 5000);
    // c1 still open at offset 0: nothing beyond it may be committed.
    assert_eq!(a.committable().get(&0), Some(&0));
    a.ingest(
        c1[3].clone(),
        Pos {
            partition: 0,
            offset: 4,
        },
        Clock::at(T0 + 6000),
    );
    a.ingest(
        c1[2].clone(),
        Pos {
            partition: 0,
            offset: 5,
        },
        Clock::at(T0 + 6000),
    );
    assert_eq!(a.tick(T0 + 8000).len(), 1);
    assert_eq!(a.committable().get(&0), Some(&6));
}

/// A log: calls on one partition, each record with its log time.
fn log_of(calls: usize, seed: u64) -> Vec<(SwitchEvent, i64)> {
    let mut out = Vec::new();
    for c in 0..calls {
        let id = format!("c{c}");
        let start = (c as i64) * 700 + (seed as i64 % 300);
        for (k, e) in answered_call(&id, 1_000 + (c as i64 * 37 % 9) * 1000)
            .into_iter()
            .enumerate()
        {
            // Milestones reach the log in order, a little apart.
            out.push((e, start + k as i64 * 400));
        }
    }
    out.sort_by_key(|(_, t)| *t);
    out
}

fn replay(log: &[(SwitchEvent, i64)], ticks: &[bool]) -> Vec<cdr_model::AssembledCall> {
    let mut a = Assembler::new(cfg());
    let mut out = Vec::new();
    for (i, (e, t)) in log.iter().enumerate() {
        a.ingest(
            e.clone(),
            Pos {
                partition: 0,
                offset: i as i64,
            },
            Clock::at(T0 + t),
        );
        // Ticks between records (never idle long enough to matter) must not
        // change what closes when.
        if ticks.get(i).copied().unwrap_or(false) {
            out.extend(a.tick(T0 + t + 10));
        }
        out.extend(a.take_closed());
    }
    out.extend(a.tick(T0 + 10_000_000));
    for c in &mut out {
        c.assembled_at_ms = 0;
    }
    out
}

proptest! {
    /// The same log gives the same calls, in the same order, whatever ticks
    /// of the wall clock fall between its records.
    #[test]
    fn replay_of_the_same_log_gives_the_same_calls(
        calls in 1usize..12,
        seed in 0u64..1000,
        ticks in proptest::collection::vec(any::<bool>(), 0..60),
    ) {
        let log = log_of(calls, seed);
        let reference = replay(&log, &[]);
        prop_assert_eq!(reference.len(), calls);
        prop_assert_eq!(replay(&log, &ticks), reference);
    }

    /// Any interleaving and duplication of a call's events yields the same call.
    #[test]
    fn any_order_and_duplication_same_call(
        talk in 0i64..4_000_000,
        order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0..4usize, 0..6),
        code in prop_oneof![Just(200), Just(486), Just(487)],
    ) {
        let mut base = answered_call("cx", talk);
        if code != 200 { base.remove(2); base.last_mut().unwrap().sip_code = Some(code); }
        let n = base.len();
        let mut seq: Vec<SwitchEvent> = order.iter().filter(|i| **i < n).map(|i| base[*i].clone()).collect();
        for d in &dups { let e = base[d % n].clone(); let at = (d * 7) % (seq.len() + 1); seq.insert(at, e); }
        let (_, reference) = feed(&base);
        let (_, got) = feed(&seq);
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(&got[0], &reference[0]);
    }
}

fn ckpt_cfg() -> AssemblyConfig {
    AssemblyConfig {
        checkpoint_after_ms: Some(60_000),
        ..cfg()
    }
}

#[test]
fn a_long_open_call_is_checkpointed_and_stops_holding_the_commit_point() {
    let mut a = Assembler::new(ckpt_cfg());
    let stuck = answered_call("stuck", 3_000_000);
    at(&mut a, &stuck[0], 0, 0, 0);
    at(&mut a, &stuck[2], 0, 1, 5_000);
    // Short calls keep flowing after it.
    let mut off = 2;
    for k in 0..5 {
        for e in answered_call(&format!("c{k}"), 1_000) {
            at(&mut a, &e, 0, off, 10_000 + k * 20_000);
            off += 1;
        }
    }
    a.tick(T0 + 200_000);
    assert_eq!(
        a.committable().get(&0),
        Some(&0),
        "the open call pins the commit"
    );
    let cps = a.checkpoints_due();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].cdr_id, cdr_model::ids::cdr_id("sw1", "stuck"));
    assert_eq!(cps[0].events.len(), 2);
    assert!(
        a.checkpoints_due().is_empty(),
        "unchanged: no second checkpoint"
    );
    assert_eq!(
        a.committable().get(&0),
        Some(&off),
        "checkpointed: the commit passes it"
    );
    // Its hangup arrives: it closes as answered. Its checkpoint stays until
    // the commit has passed the hangup (a restart before that re-reads the
    // hangup and needs the checkpoint), then it is tombstoned.
    at(&mut a, &stuck[3], 0, off, 3_005_000);
    let out = a.tick(T0 + 3_010_000);
    assert!(out
        .iter()
        .any(|c| c.call_id == "stuck" && c.disposition == "answered"));
    assert!(a.take_tombstones().is_empty(), "not before the commit");
    a.tick(T0 + 3_010_000 + 48 * 3_600_000); // past its retention
    a.committed(0, off);
    assert!(
        a.take_tombstones().is_empty(),
        "the hangup is not committed yet"
    );
    a.committed(0, off + 1);
    assert_eq!(a.take_tombstones(), vec![(0, cps[0].cdr_id.clone())]);
}

#[test]
fn a_new_owner_restores_the_checkpoint_and_builds_the_same_call() {
    let stuck = answered_call("stuck", 3_000_000);
    // Uninterrupted run.
    let mut a = Assembler::new(ckpt_cfg());
    at(&mut a, &stuck[0], 0, 0, 0);
    at(&mut a, &stuck[2], 0, 1, 5_000);
    a.tick(T0 + 100_000);
    let cps = a.checkpoints_due();
    assert_eq!(cps.len(), 1);
    let committed = *a.committable().get(&0).unwrap();
    assert_eq!(committed, 2);
    at(&mut a, &stuck[3], 0, 2, 3_005_000);
    let mut reference = a.tick(T0 + 3_010_000);
    // A new owner: restores the checkpoint, reads from the commit point.
    let mut b = Assembler::new(ckpt_cfg());
    for oc in cps {
        b.restore(oc);
    }
    at(&mut b, &stuck[3], 0, 2, 3_005_000);
    let mut got = b.tick(T0 + 3_010_000);
    for c in reference.iter_mut().chain(got.iter_mut()) {
        c.assembled_at_ms = 0;
    }
    assert_eq!(got, reference);
    assert_eq!(got[0].duration_ms, 3_000_000);
}

#[test]
fn a_checkpointed_stale_call_leaves_memory_after_its_retention() {
    let mut a = Assembler::new(AssemblyConfig {
        provisional_retention_ms: 60_000,
        ..ckpt_cfg()
    });
    at(&mut a, &ev("s", "s-s", EventKind::Setup, T0, None), 0, 0, 0);
    a.tick(T0 + 100_000);
    assert_eq!(a.checkpoints_due().len(), 1);
    // Stale after max_call_ms (1 h), forgotten after the retention (60 s).
    let out = a.tick(T0 + 3_700_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].disposition, "stale");
    assert_eq!(a.checkpoints_due().len(), 1, "provisional checkpoint");
    a.tick(T0 + 3_800_000);
    assert_eq!(
        a.retained_calls(),
        1,
        "released calls wait for the commit to pass their last event"
    );
    assert!(a.take_tombstones().is_empty());
    a.committed(0, 1);
    assert_eq!(a.retained_calls(), 0);
    assert_eq!(a.take_tombstones().len(), 1, "its checkpoint is tombstoned");
}

/// Calls overlapping without a quiet moment, as on a busy trunk group: a
/// call starts every second and each spans 8 s of log, so about eight are
/// open at any record.
fn busy_log(calls: usize) -> Vec<(SwitchEvent, i64)> {
    let mut out = Vec::new();
    for c in 0..calls {
        let start = c as i64 * 1_000;
        for (e, dt) in answered_call(&format!("b{c}"), 1_000)
            .into_iter()
            .zip([0, 1_200, 5_000, 8_000])
        {
            out.push((e, start + dt));
        }
    }
    out.sort_by_key(|(_, t)| *t);
    out
}

/// What a stage holds between records: the core, the compacted checkpoint
/// topic (latest value per key, tombstones applied), the committed offset
/// and the calls emitted.
struct StageSim {
    a: Assembler,
    topic: std::collections::BTreeMap<String, assembler::core::OpenCall>,
    committed: i64,
    out: Vec<cdr_model::AssembledCall>,
}

impl StageSim {
    fn new(cfg: AssemblyConfig) -> Self {
        StageSim {
            a: Assembler::new(cfg),
            topic: Default::default(),
            committed: 0,
            out: Vec::new(),
        }
    }

    /// A new owner after a crash: the checkpoints restored, reading on
    /// from the commit.
    fn restarted(&self, cfg: AssemblyConfig) -> Self {
        let mut b = Assembler::new(cfg);
        for oc in self.topic.values() {
            b.restore(oc.clone());
        }
        StageSim {
            a: b,
            topic: self.topic.clone(),
            committed: self.committed,
            out: Vec::new(),
        }
    }

    /// Feeds the log from the committed offset up to `to`; every ten
    /// records it ticks, writes tombstones and checkpoints and commits, in
    /// the stage loop's order.
    fn run(&mut self, log: &[(SwitchEvent, i64)], to: usize) {
        for (i, (e, t)) in log
            .iter()
            .enumerate()
            .take(to)
            .skip(self.committed as usize)
        {
            at(&mut self.a, e, 0, i as i64, *t);
            self.out.extend(self.a.take_closed());
            if i % 10 == 9 {
                self.out.extend(self.a.tick(T0 + t + 10));
                for (_, id) in self.a.take_tombstones() {
                    self.topic.remove(&id);
                }
                for oc in self.a.checkpoints_due() {
                    self.topic.insert(oc.cdr_id.clone(), oc);
                }
                if let Some(c) = self.a.committable().get(&0) {
                    self.committed = *c;
                    self.a.committed(0, *c);
                }
            }
        }
    }
}

fn busy_cfg() -> AssemblyConfig {
    AssemblyConfig {
        checkpoint_after_ms: Some(20_000),
        ..cfg()
    }
}

#[test]
fn under_continuous_traffic_the_commit_point_keeps_up_and_closed_calls_leave_memory() {
    let log = busy_log(600);
    let mut s = StageSim::new(busy_cfg());
    s.run(&log, log.len());
    let end = log.last().unwrap().1;
    // The commit trails the log by at most two cut intervals and a call.
    let lag_from = log
        .iter()
        .position(|(_, t)| *t >= end - 2 * 20_000 - 8_000)
        .unwrap() as i64;
    assert!(
        s.committed >= lag_from,
        "commit at {} of {}, expected ≥ {lag_from}",
        s.committed,
        log.len()
    );
    // Retained: the retention (60 s of calls) and what the commit has not
    // passed yet, not all 600.
    assert!(s.a.retained_calls() < 150, "{}", s.a.retained_calls());
    assert!(s.topic.len() < 100, "checkpoints left: {}", s.topic.len());
    assert_eq!(s.out.len(), 600 - s.a.open_calls());
}

#[test]
fn a_restart_after_a_commit_cut_emits_no_partial_or_different_call() {
    let log = busy_log(300);
    let mut reference = StageSim::new(busy_cfg());
    reference.run(&log, log.len());
    reference.out.extend(reference.a.tick(T0 + 100_000_000));
    let want: std::collections::BTreeMap<String, cdr_model::AssembledCall> = reference
        .out
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.assembled_at_ms = 0;
            (c.cdr_id.clone(), c)
        })
        .collect();
    assert_eq!(want.len(), 300);
    let mut cut_seen = false;
    for crash_at in (97..log.len()).step_by(113) {
        let mut first = StageSim::new(busy_cfg());
        first.run(&log, crash_at);
        cut_seen |= first.topic.values().any(|oc| oc.closed_at.is_some());
        let mut second = first.restarted(busy_cfg());
        second.run(&log, log.len());
        second.out.extend(second.a.tick(T0 + 100_000_000));
        let mut got = std::collections::BTreeMap::new();
        for mut c in first.out.into_iter().chain(second.out) {
            c.assembled_at_ms = 0;
            if let Some(prev) = got.insert(c.cdr_id.clone(), c.clone()) {
                assert_eq!(prev, c, "crash at {crash_at}: a call emitted twice differs");
            }
        }
        assert_eq!(got, want, "crash at {crash_at}");
    }
    assert!(cut_seen, "no crash point fell after a commit cut");
}

/// A busy log with what real traffic adds: calls whose hangup is lost
/// (closed stale, provisional), hangups that arrive after the stale close
/// (reopen), and duplicated events.
fn rough_log(calls: usize, seed: u64) -> Vec<(SwitchEvent, i64)> {
    let mut out = Vec::new();
    let mut r = seed;
    let mut next = || {
        r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (r >> 33) as i64
    };
    for c in 0..calls {
        let start = c as i64 * 1_000;
        let evs = answered_call(&format!("r{c}"), 1_000);
        let kind = next() % 10;
        for (k, (e, dt)) in evs.into_iter().zip([0, 1_200, 5_000, 8_000]).enumerate() {
            let dt = match (kind, k) {
                (0, 3) => continue,    // lost hangup: stale
                (1, 3) => dt + 45_000, // hangup after the stale close
                _ => dt,
            };
            if kind == 2 {
                out.push((e.clone(), start + dt + 3_000)); // a duplicate, later
            }
            out.push((e, start + dt));
        }
    }
    out.sort_by_key(|(_, t)| *t);
    out
}

fn rough_cfg() -> AssemblyConfig {
    AssemblyConfig {
        checkpoint_after_ms: Some(20_000),
        max_call_ms: 30_000,
        provisional_retention_ms: 60_000,
        // Shorter than the commit lag: restored calls outlive their
        // retention by the time their re-read events come.
        closed_retention_ms: 5_000,
        ..cfg()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Crashed anywhere and restarted from its checkpoints and commit, the
    /// assembler emits the same calls (a call emitted twice is emitted
    /// identically), with stale, reopened and duplicated calls in the log.
    #[test]
    fn restarts_anywhere_in_rough_traffic_emit_the_same_calls(
        seed in 0u64..10_000,
        crash in 0.05f64..0.95,
    ) {
        let log = rough_log(200, seed);
        let mut reference = StageSim::new(rough_cfg());
        reference.run(&log, log.len());
        reference.out.extend(reference.a.tick(T0 + 100_000_000));
        let mut want = std::collections::BTreeMap::new();
        for mut c in reference.out {
            c.assembled_at_ms = 0;
            want.insert(c.cdr_id.clone(), c); // the last version wins
        }
        let crash_at = (log.len() as f64 * crash) as usize;
        let mut first = StageSim::new(rough_cfg());
        first.run(&log, crash_at);
        let mut second = first.restarted(rough_cfg());
        second.run(&log, log.len());
        second.out.extend(second.a.tick(T0 + 100_000_000));
        let mut got = std::collections::BTreeMap::new();
        for mut c in first.out.into_iter().chain(second.out) {
            c.assembled_at_ms = 0;
            got.insert(c.cdr_id.clone(), c);
        }
        prop_assert_eq!(got, want);
    }
}

/// A damaged checkpoint (an open call without events) is refused and
/// stops nothing: the partition's other calls assemble as before.
#[test]
fn a_checkpoint_without_events_is_refused_and_harms_nothing() {
    let mut a = Assembler::new(ckpt_cfg());
    let bad = assembler::core::OpenCall {
        cdr_id: "x".into(),
        partition: 0,
        first_log_ms: T0,
        closing_since: Some(T0),
        events: Vec::new(),
        provisional: false,
        closed_at: None,
        event_ids: Vec::new(),
    };
    assert!(!a.restore(bad.clone()));
    assert!(!a.restore(assembler::core::OpenCall {
        provisional: true,
        closed_at: Some(T0),
        ..bad.clone()
    }));
    assert!(a.restore(assembler::core::OpenCall {
        closed_at: Some(T0),
        event_ids: vec!["x-s".into()],
        ..bad
    }));
    for (i, e) in answered_call("ok", 1_000).iter().enumerate() {
        at(&mut a, e, 0, i as i64, 0);
    }
    let out = a.tick(T0 + 100_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].call_id, "ok");
}

/// After the traffic stops, the idle partition's clock runs on wall time:
/// closed calls leave memory once their retention is over and the commit
/// has passed them, without another record.
#[test]
fn closed_calls_leave_memory_on_an_idle_partition() {
    let mut a = Assembler::new(AssemblyConfig {
        idle_flush_ms: 1_000,
        ..ckpt_cfg()
    });
    let wall0 = T0 + 5_000;
    for (i, e) in answered_call("idle", 1_000).iter().enumerate() {
        a.ingest(
            e.clone(),
            Pos {
                partition: 0,
                offset: i as i64,
            },
            Clock {
                log_ms: T0 + i as i64 * 100,
                wall_ms: wall0,
            },
        );
    }
    let mut wall = wall0;
    let mut emitted = 0;
    while wall < wall0 + 200_000 {
        wall += 250;
        emitted += a.tick(wall).len();
        for (p, c) in a.committable() {
            a.committed(p, c);
        }
    }
    assert_eq!(emitted, 1);
    assert_eq!(a.retained_calls(), 0);
}
