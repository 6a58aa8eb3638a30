//! KPI classification: every CDR becomes exactly one KPI row whose flags
//! and measures follow from the call alone, so copies of a call give equal
//! rows (the ClickHouse side is proven in tests/kpi_rollups.rs).

use cdr_model::call::{AssembledCall, Enrichment, RatedCdr, Rating};
use kpi::core::{kpi_call, ner_ok, KpiConfig};
use proptest::prelude::*;

const T0: i64 = 1_790_000_000_000 - (1_790_000_000_000 % 60_000);

fn cdr(i: usize, disp: &str, end_offset_ms: i64, dur_ms: i64, acct: &str) -> RatedCdr {
    RatedCdr {
        call: AssembledCall {
            cdr_id: format!("id{i}"),
            call_id: format!("c{i}"),
            switch_id: "sw".into(),
            account_id: acct.into(),
            direction: "outbound".into(),
            cli: None,
            dialed: "4420".into(),
            trunk_id: Some("t1".into()),
            setup_ts_ms: T0 + end_offset_ms - dur_ms - 5000,
            progress_ts_ms: Some(T0 + end_offset_ms - dur_ms - 4000),
            progress_code: Some(180),
            answer_ts_ms: (disp == "answered").then_some(T0 + end_offset_ms - dur_ms),
            end_ts_ms: Some(T0 + end_offset_ms),
            final_sip_code: Some(200),
            disposition: disp.into(),
            duration_ms: if disp == "answered" { dur_ms } else { 0 },
            billable_seconds: if disp == "answered" {
                (dur_ms + 999) / 1000
            } else {
                0
            },
            pdd_ms: Some(1000),
            headers: Default::default(),
            source_ip: None,
            behind_nat: false,
            codec: None,
            media: None,
            flags: vec![],
            event_count: 4,
            assembled_at_ms: 0,
        },
        enrichment: Enrichment::default(),
        rating: Rating {
            amount: "0.001".into(),
            lrn_fee: "0".into(),
            billed_seconds: (dur_ms + 999) / 1000,
            ..Default::default()
        },
        detection: None,
    }
}

proptest! {
    #[test]
    fn one_row_per_call_with_exactly_one_disposition(d in 0usize..6, end in 0i64..600_000, dur in 0i64..300_000, code in 100i32..700) {
        let disps = ["answered", "busy", "no_answer", "failed", "cancelled", "stale"];
        let mut c = cdr(7, disps[d], end, dur, "a1");
        c.call.final_sip_code = Some(code);
        let cfg = KpiConfig::default();
        let k = kpi_call(&c, &cfg).unwrap();
        let flags = [k.answered, k.busy, k.no_answer, k.failed, k.cancelled, k.stale];
        prop_assert_eq!(flags.iter().filter(|f| **f).count(), 1);
        prop_assert!(flags[d]);
        prop_assert_eq!(k.disposition.as_str(), disps[d]);
        prop_assert_eq!(k.minute_ms % 60_000, 0);
        prop_assert!(k.minute_ms <= c.call.end_ts_ms.unwrap() && c.call.end_ts_ms.unwrap() < k.minute_ms + 60_000);
        prop_assert_eq!(k.short_call, d == 0 && dur < cfg.short_call_ms);
        prop_assert_eq!(k.answered_ms, if d == 0 { dur } else { 0 });
        prop_assert_eq!(k.ner_ok, ner_ok(&c));
        prop_assert_eq!(&k.cdr_id, &c.call.cdr_id);
        prop_assert_eq!(
            k.version,
            cdr_model::call::row_version(c.call.event_count, &c.enrichment.lrn_source) as i64
        );
        prop_assert!(k.version >= 2 * i64::from(c.call.event_count));
        // A copy of the call (redelivery) gives the identical row.
        prop_assert_eq!(kpi_call(&c.clone(), &cfg).unwrap(), k);
    }
}

#[test]
fn ner_counts_answered_busy_no_answer_and_terminal_rejections_only() {
    let mut c = cdr(1, "failed", 1000, 0, "a1");
    for (code, want) in [
        (404, true),
        (603, true),
        (503, false),
        (408, false),
        (487, false),
    ] {
        c.call.final_sip_code = Some(code);
        assert_eq!(ner_ok(&c), want, "failed with {code}");
    }
    for d in ["answered", "busy", "no_answer"] {
        assert!(ner_ok(&cdr(2, d, 1000, 5000, "a1")), "{d}");
    }
    assert!(!ner_ok(&cdr(3, "cancelled", 1000, 0, "a1")));
}

#[test]
fn money_is_exact_and_a_bad_amount_names_its_field() {
    let mut c = cdr(4, "answered", 1000, 61_000, "a1");
    c.rating.amount = "0.123456789012345678".into();
    c.rating.lrn_fee = "0.0003".into();
    let k = kpi_call(&c, &KpiConfig::default()).unwrap();
    assert_eq!(k.amount, "0.123456789012345678");
    assert_eq!(k.lrn_fee, "0.0003");
    c.rating.amount = "12,5".into();
    let e = kpi_call(&c, &KpiConfig::default()).unwrap_err();
    assert_eq!(e.field, "rating.amount");
    assert_eq!(e.cdr_id, c.call.cdr_id);
}

#[test]
fn unended_call_counts_in_its_setup_minute() {
    let mut c = cdr(5, "stale", 125_000, 0, "a1");
    c.call.end_ts_ms = None;
    let k = kpi_call(&c, &KpiConfig::default()).unwrap();
    let setup = c.call.setup_ts_ms;
    assert_eq!(k.minute_ms, setup - setup.rem_euclid(60_000));
    assert!(k.stale);
}
