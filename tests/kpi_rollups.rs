//! Property test against the real ClickHouse: the KPI arithmetic computed
//! straight from raw calls equals what `kpi_minute_final` and the
//! `kpi_hour` / `kpi_day` rollups report for the same calls, after the kpi
//! service's per-call rows were inserted *twice* (a redelivery) next to an
//! older, less complete version of every call (a replayed partial copy) —
//! so the KPIs are exact under at-least-once delivery, not just on a clean
//! run.

use std::collections::BTreeMap;
use std::str::FromStr;

use cdr_clickhouse::rows::{from_dec18, KpiCallRow};
use cdr_model::call::{AssembledCall, Enrichment, Media, RatedCdr, Rating};
use clickhouse::Row;
use kpi::core::{kpi_call, p95, KpiConfig};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde::Deserialize;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[derive(Debug, Clone)]
struct Raw {
    acct: usize,
    trunk: usize,
    dest: usize,
    setup_offset_s: i64,
    disp: usize,
    dur_ms: i64,
    pdd_ms: Option<i64>,
    mos: Option<f64>,
    amount_micro: i64,
    lrn: bool,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        0usize..2,
        0usize..2,
        0usize..2,
        0i64..(3 * 3600),
        0usize..6,
        0i64..400_000,
        proptest::option::of(100i64..9000),
        proptest::option::of(1.0f64..4.5),
        0i64..5_000_000,
        any::<bool>(),
    )
        .prop_map(
            |(acct, trunk, dest, setup_offset_s, disp, dur_ms, pdd_ms, mos, amount_micro, lrn)| {
                Raw {
                    acct,
                    trunk,
                    dest,
                    setup_offset_s,
                    disp,
                    dur_ms,
                    pdd_ms,
                    mos,
                    amount_micro,
                    lrn,
                }
            },
        )
}

const DISPS: [(&str, i32); 6] = [
    ("answered", 200),
    ("busy", 486),
    ("no_answer", 480),
    ("failed", 404),
    ("failed", 503),
    ("cancelled", 487),
];

fn cdr(case: &str, i: usize, r: &Raw) -> RatedCdr {
    let (disp, code) = DISPS[r.disp];
    let answered = disp == "answered";
    let setup = T0 + r.setup_offset_s * 1000;
    let dur = if answered { r.dur_ms } else { 0 };
    RatedCdr {
        call: AssembledCall {
            cdr_id: format!("{case}-{i}"),
            call_id: format!("{case}-{i}"),
            switch_id: "sw".into(),
            account_id: format!("{case}-acc{}", r.acct),
            direction: "outbound".into(),
            cli: None,
            dialed: "4930123456".into(),
            trunk_id: Some(format!("trk{}", r.trunk)),
            setup_ts_ms: setup,
            progress_ts_ms: r.pdd_ms.map(|p| setup + p),
            progress_code: r.pdd_ms.map(|_| 180),
            answer_ts_ms: answered.then_some(setup + 10_000),
            end_ts_ms: Some(setup + 10_000 + dur),
            final_sip_code: Some(code),
            disposition: disp.into(),
            duration_ms: dur,
            billable_seconds: (dur + 999) / 1000,
            pdd_ms: r.pdd_ms,
            headers: Default::default(),
            source_ip: None,
            behind_nat: false,
            codec: None,
            media: r.mos.map(|m| Media {
                mos: Some(m),
                ..Default::default()
            }),
            flags: vec![],
            event_count: 4,
            assembled_at_ms: 0,
        },
        enrichment: Enrichment::default(),
        rating: Rating {
            status: "rated".into(),
            destination: Some(["Germany", "France"][r.dest].into()),
            amount: Decimal::new(if answered { r.amount_micro } else { 0 }, 6).to_string(),
            lrn_fee: if r.lrn { "0.0003".into() } else { "0".into() },
            billed_seconds: (dur + 999) / 1000,
            ..Default::default()
        },
        detection: None,
    }
}

/// Expected figures per (hour, account, trunk, destination), from raw calls.
#[derive(Debug, Default, Clone, PartialEq)]
struct Want {
    seizures: i64,
    answered: i64,
    ner_ok: i64,
    short: i64,
    answered_ms: i64,
    pdd_sum: i64,
    pdd_n: i64,
    amount: Decimal,
    lrn_fee: Decimal,
    mos_sum: f64,
    mos_n: i64,
}

#[derive(Row, Deserialize, Debug)]
struct Got {
    bucket: i64,
    account_id: String,
    trunk_id: String,
    destination: String,
    seizures: i64,
    answered: i64,
    ner_ok: i64,
    short_calls: i64,
    answered_ms: i64,
    pdd_sum_ms: i64,
    pdd_count: i64,
    amount: i128,
    lrn_fee: i128,
    mos_sum: f64,
    mos_count: i64,
    asr: f64,
    acd_s: f64,
    ner: f64,
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

fn check(case: &str, raws: &[Raw]) -> Result<(), TestCaseError> {
    let cdrs: Vec<RatedCdr> = raws
        .iter()
        .enumerate()
        .map(|(i, r)| cdr(case, i, r))
        .collect();
    let rows: Vec<KpiCallRow> = cdrs
        .iter()
        .map(|c| KpiCallRow::from_record(&kpi_call(c, &KpiConfig::default()).unwrap()).unwrap())
        .collect();
    // An older copy of every call that must lose: fewer events, other figures.
    let stale_copies: Vec<KpiCallRow> = rows
        .iter()
        .map(|r| KpiCallRow {
            version: r.version - 1,
            disposition: "failed".into(),
            answered: 0,
            failed: 1,
            answered_ms: 0,
            amount: 7,
            ..r.clone()
        })
        .collect();
    let mut want_m: BTreeMap<(i64, String, String, String), Vec<i64>> = BTreeMap::new();
    for c in &cdrs {
        let t = c.call.end_ts_ms.unwrap();
        let pdds = want_m
            .entry((
                t - t.rem_euclid(60_000),
                c.call.account_id.clone(),
                c.call.trunk_id.clone().unwrap(),
                c.rating.destination.clone().unwrap(),
            ))
            .or_default();
        pdds.extend(c.call.pdd_ms);
    }
    let mut want_h: BTreeMap<(i64, String, String, String), Want> = BTreeMap::new();
    let mut want_d: BTreeMap<(i64, String, String, String), Want> = BTreeMap::new();
    for c in &cdrs {
        let t = c.call.end_ts_ms.unwrap();
        let keyed = |unit: i64| {
            (
                (t - t.rem_euclid(unit)) / 1000,
                c.call.account_id.clone(),
                c.call.trunk_id.clone().unwrap(),
                c.rating.destination.clone().unwrap(),
            )
        };
        for (m, unit) in [(&mut want_h, 3_600_000), (&mut want_d, 86_400_000)] {
            let w = m.entry(keyed(unit)).or_default();
            w.seizures += 1;
            let answered = c.call.disposition == "answered";
            if answered {
                w.answered += 1;
                w.answered_ms += c.call.duration_ms;
                if c.call.duration_ms < 6_000 {
                    w.short += 1;
                }
            }
            if answered
                || c.call.disposition == "busy"
                || c.call.disposition == "no_answer"
                || c.call.final_sip_code == Some(404)
            {
                w.ner_ok += 1;
            }
            if let Some(p) = c.call.pdd_ms {
                w.pdd_sum += p;
                w.pdd_n += 1;
            }
            w.amount += Decimal::from_str(&c.rating.amount).unwrap();
            w.lrn_fee += Decimal::from_str(&c.rating.lrn_fee).unwrap();
            if let Some(m) = c.call.media.as_ref().and_then(|m| m.mos) {
                w.mos_sum += m;
                w.mos_n += 1;
            }
        }
    }
    let ch = cdr_e2e::clickhouse().client();
    rt().block_on(async {
        // Every call twice (a redelivered batch), around an older copy.
        for batch in [&rows, &stale_copies, &rows] {
            let mut ins = ch.insert::<KpiCallRow>("kpi_calls").await.unwrap();
            for r in batch.iter() {
                ins.write(r).await.unwrap();
            }
            ins.end().await.unwrap();
        }
    });
    #[derive(Row, Deserialize, Debug)]
    struct Minute {
        bucket_id: String,
        minute_s: i64,
        account_id: String,
        trunk_id: String,
        destination: String,
        seizures: i64,
        pdd_p95_ms: i64,
    }
    let minutes: Vec<Minute> = rt().block_on(async {
        ch.query(
            "SELECT bucket_id, toInt64(toUnixTimestamp(minute)) AS minute_s, toString(account_id) AS account_id, \
             toString(trunk_id) AS trunk_id, toString(destination) AS destination, seizures, pdd_p95_ms \
             FROM kpi_minute_final WHERE startsWith(account_id, ?)",
        )
        .bind(format!("{case}-"))
        .fetch_all()
        .await
        .unwrap()
    });
    prop_assert_eq!(minutes.len(), want_m.len(), "kpi_minute_final rows");
    for m in &minutes {
        let minute_ms = m.minute_s * 1000;
        let key = (
            minute_ms,
            m.account_id.clone(),
            m.trunk_id.clone(),
            m.destination.clone(),
        );
        let pdds = want_m.get(&key);
        prop_assert!(pdds.is_some(), "unexpected minute bucket {:?}", key);
        prop_assert_eq!(m.pdd_p95_ms, p95(pdds.unwrap()), "p95 of {:?}", key);
        // The bucket id comes from its dimensions and minute only.
        let id = cdr_model::ids::bucket_id(&[
            &minute_ms.to_string(),
            &m.account_id,
            &m.trunk_id,
            &m.destination,
        ]);
        prop_assert_eq!(&m.bucket_id, &id);
        prop_assert!(m.seizures > 0);
    }
    for (view, unit_col, want) in [("kpi_hour", "hour", &want_h), ("kpi_day", "day", &want_d)] {
        let q = format!(
            "SELECT toInt64(toUnixTimestamp(toDateTime({unit_col}, 'UTC'))) AS bucket, toString(account_id) AS account_id, \
             toString(trunk_id) AS trunk_id, toString(destination) AS destination, seizures, answered, ner_ok, \
             short_calls, answered_ms, pdd_sum_ms, pdd_count, amount, lrn_fee, mos_sum, mos_count, asr, acd_s, ner \
             FROM {view} WHERE startsWith(account_id, ?) ORDER BY bucket, account_id, trunk_id, destination"
        );
        let got: Vec<Got> = rt().block_on(async {
            ch.query(&q)
                .bind(format!("{case}-"))
                .fetch_all()
                .await
                .unwrap()
        });
        prop_assert_eq!(got.len(), want.len(), "{} rows", view);
        for g in &got {
            let key = (
                g.bucket,
                g.account_id.clone(),
                g.trunk_id.clone(),
                g.destination.clone(),
            );
            let w = want.get(&key);
            prop_assert!(w.is_some(), "{view}: unexpected {:?}", key);
            let w = w.unwrap();
            prop_assert_eq!(
                (
                    g.seizures,
                    g.answered,
                    g.ner_ok,
                    g.short_calls,
                    g.answered_ms,
                    g.pdd_sum_ms,
                    g.pdd_count,
                    g.mos_count
                ),
                (
                    w.seizures,
                    w.answered,
                    w.ner_ok,
                    w.short,
                    w.answered_ms,
                    w.pdd_sum,
                    w.pdd_n,
                    w.mos_n
                ),
                "{} {:?}",
                view,
                key
            );
            prop_assert_eq!(from_dec18(g.amount), w.amount.normalize());
            prop_assert_eq!(from_dec18(g.lrn_fee), w.lrn_fee.normalize());
            prop_assert!((g.mos_sum - w.mos_sum).abs() < 1e-6);
            let asr = w.answered as f64 / w.seizures as f64;
            let acd = if w.answered == 0 {
                0.0
            } else {
                w.answered_ms as f64 / 1000.0 / w.answered as f64
            };
            let ner = w.ner_ok as f64 / w.seizures as f64;
            prop_assert!(
                (g.asr - asr).abs() < 1e-9
                    && (g.acd_s - acd).abs() < 1e-6
                    && (g.ner - ner).abs() < 1e-9,
                "{} {:?}: asr {} vs {}, acd {} vs {}, ner {} vs {}",
                view,
                key,
                g.asr,
                asr,
                g.acd_s,
                acd,
                g.ner,
                ner
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn rollups_equal_raw_arithmetic_under_redelivery(raws in proptest::collection::vec(raw(), 1..120)) {
        // ClickHouse only: no services needed.
        let case = format!("kp{}", cdr_kafka::now_ms());
        check(&case, &raws)?;
    }
}
