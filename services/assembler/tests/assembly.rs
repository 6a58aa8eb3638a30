//! Assembly semantics: interleavings, duplicates, reordering, stale calls,
//! contradictory timestamps and the offset-commit rule.

use assembler::core::{Assembler, AssemblyConfig, Ingest, Pos};
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
            1000,
        );
    }
    let out = a.tick(10_000);
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

#[test]
fn grace_holds_emission_until_stragglers_can_arrive() {
    let mut a = Assembler::new(cfg());
    let evs = answered_call("c1", 30_000);
    a.ingest(
        evs[0].clone(),
        Pos {
            partition: 0,
            offset: 0,
        },
        0,
    );
    a.ingest(
        evs[3].clone(),
        Pos {
            partition: 0,
            offset: 1,
        },
        0,
    );
    assert!(a.tick(500).is_empty(), "emitted inside the reorder grace");
    a.ingest(
        evs[2].clone(),
        Pos {
            partition: 0,
            offset: 2,
        },
        600,
    );
    let out = a.tick(1500);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].disposition, "answered");
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
            11_000
        ),
        Ingest::Duplicate
    );
    assert!(a.tick(12_000).is_empty());
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
        11_000,
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
        0,
    );
    a.ingest(
        ev("c1", "a", EventKind::Answer, T0 + 3000, None),
        Pos {
            partition: 0,
            offset: 1,
        },
        0,
    );
    assert!(a.tick(3_000_000).is_empty());
    let out = a.tick(3_700_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].disposition, "stale");
    assert!(out[0].flags.contains(&"stale".to_string()));
    assert_eq!(out[0].billable_seconds, 0);
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
        0,
    );
    match a.ingest(
        ev("c1", "a", EventKind::Answer, T0 - 60_000, None),
        Pos {
            partition: 0,
            offset: 1,
        },
        0,
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
        0,
    );
    match a.ingest(
        ev("c1", "h", EventKind::Hangup, T0 + 1000, Some(200)),
        Pos {
            partition: 0,
            offset: 3,
        },
        0,
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
        0,
    );
    a.ingest(
        c2[0].clone(),
        Pos {
            partition: 0,
            offset: 1,
        },
        0,
    );
    a.ingest(
        c2[2].clone(),
        Pos {
            partition: 0,
            offset: 2,
        },
        0,
    );
    a.ingest(
        c2[3].clone(),
        Pos {
            partition: 0,
            offset: 3,
        },
        0,
    );
    a.tick(5000);
    // c1 still open at offset 0: nothing beyond it may be committed.
    assert_eq!(a.committable().get(&0), Some(&0));
    a.ingest(
        c1[3].clone(),
        Pos {
            partition: 0,
            offset: 4,
        },
        6000,
    );
    a.ingest(
        c1[2].clone(),
        Pos {
            partition: 0,
            offset: 5,
        },
        6000,
    );
    assert_eq!(a.tick(8000).len(), 1);
    assert_eq!(a.committable().get(&0), Some(&6));
}

proptest! {
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
