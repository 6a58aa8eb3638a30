//! Latency at sustained load (ignored in the default run; `make bench`):
//! switch events are replayed in real time (each event published at its own
//! timestamp) at a steady call rate, and the bench reports
//! * hangup -> KPI minute row queryable in ClickHouse (p50 / p99), and
//! * FAS detection delay: first falsely-answered call's hangup (and the
//!   hangup that completed the evidence) -> route alert queryable.
//!
//! `BENCH_CPS` (calls/s, default 100) and `BENCH_SECS` (default 60) size it.

use std::time::{Duration, Instant};

use cdr_e2e::*;
use cdrctl::scenarios::{events, CallSpec};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with make bench"]
async fn kpi_and_detection_latency_at_sustained_load() {
    let _g = stack();
    assert_groups_whole();
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (cps, secs) = (env("BENCH_CPS", 100), env("BENCH_SECS", 60));
    let run = unique_run("lat");
    let base = cdr_kafka::now_ms() + 3_000;
    let fas_trunk = format!("trk-fas-{run}");
    let mut specs = Vec::new();
    let n = (cps * secs) as usize;
    for i in 0..n {
        let setup = base + (i as i64 * 1000) / cps as i64;
        let fas = i % 10 == 0; // 10% of the traffic on one FAS route
        specs.push(CallSpec {
            call_id: format!("{run}-{i:07}"),
            account: format!("lat-{run}-{}", i % 4),
            trunk: if fas {
                fas_trunk.clone()
            } else {
                format!("trk-lat-{}", i % 3)
            },
            cli: "+12125550100".into(),
            dialed: "447700900123".into(),
            setup_ms: setup,
            pdd_ms: (!fas).then_some(1_000),
            answer_after_ms: Some(if fas {
                300
            } else {
                3_000 + (i as i64 * 7919) % 4_000
            }),
            talk_ms: if fas {
                30_000
            } else {
                2_000 + (i as i64 * 104_729) % 25_000
            },
            fail_code: 0,
            silence_ratio: if fas { 0.97 } else { 0.2 },
            rtp_rx_packets: if fas { 0 } else { 500 },
            rtp_rx_before_answer: 0,
        });
    }
    let mut msgs: Vec<_> = specs.iter().flat_map(events).collect();
    msgs.sort_by_key(|m| m.ts_ms);
    let hangups: Vec<(String, i64)> = specs
        .iter()
        .map(|c| {
            (
                c.account.clone(),
                c.setup_ms + c.answer_after_ms.unwrap() + c.talk_ms,
            )
        })
        .collect();
    let mut fas_ends: Vec<i64> = specs
        .iter()
        .filter(|c| c.trunk == fas_trunk)
        .map(|c| c.setup_ms + c.answer_after_ms.unwrap() + c.talk_ms)
        .collect();
    fas_ends.sort();

    // Real-time replay in the background.
    let producer = cdr_kafka::runtime::producer(&kafka(), "bench-latency").unwrap();
    let publisher = tokio::spawn(async move {
        for m in msgs {
            let wait = m.ts_ms - cdr_kafka::now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            let ack = cdr_kafka::runtime::send(
                &producer,
                cdr_model::topics::CALL_EVENTS,
                m.key.as_bytes(),
                &m.payload,
            )
            .await
            .unwrap();
            drop(ack);
        }
        let _ = cdr_kafka::runtime::flush(&producer);
    });

    // Poll what is queryable: seizures per account in the KPI rows, and the alert.
    let ch = clickhouse().client();
    let mut seen: Vec<(i64, u64)> = Vec::new(); // (wall ms, KPI seizures visible)
    let mut alert_at = None;
    let deadline = Instant::now() + Duration::from_secs(secs + 180);
    loop {
        let visible: u64 = ch
            .query("SELECT toUInt64(sum(seizures)) FROM kpi_minute_final WHERE startsWith(account_id, ?)")
            .bind(format!("lat-{run}-"))
            .fetch_one()
            .await
            .unwrap_or(0);
        let now = cdr_kafka::now_ms();
        seen.push((now, visible));
        if alert_at.is_none() {
            let n: u64 = ch
                .query("SELECT count() FROM route_alerts WHERE trunk_id = ?")
                .bind(&fas_trunk)
                .fetch_one()
                .await
                .unwrap_or(0);
            if n > 0 {
                alert_at = Some(now);
            }
        }
        // The FAS alert is waited for at most 60 s past the KPI rows: the
        // bench's figure is the KPI latency; a missing alert is reported.
        if visible as usize >= n
            && (alert_at.is_some() || Instant::now() + Duration::from_secs(120) > deadline)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{visible} of {n} calls in KPI rows, alert {alert_at:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publisher.await.unwrap();
    // Call k (in hangup order) is queryable once the visible count passes k.
    let mut ends: Vec<i64> = hangups.iter().map(|h| h.1).collect();
    ends.sort();
    let mut lat: Vec<f64> = ends
        .iter()
        .enumerate()
        .map(|(k, end)| {
            let at = seen
                .iter()
                .find(|(_, v)| *v as usize > k)
                .map(|s| s.0)
                .unwrap();
            (at - end).max(0) as f64 / 1000.0
        })
        .collect();
    let (p50, p99) = (pct(&mut lat.clone(), 0.5), pct(&mut lat, 0.99));
    let evidence = fas_ends[29.min(fas_ends.len() - 1)];
    let alert = match alert_at {
        Some(alert) => format!(
            "FAS route alert {:.1}s after the first FAS hangup, {:.1}s after the 30th (evidence complete)",
            (alert - fas_ends[0]) as f64 / 1000.0,
            (alert - evidence) as f64 / 1000.0
        ),
        None => "no FAS route alert within 60 s of the last KPI row".to_string(),
    };
    println!(
        "latency at {cps} calls/s for {secs}s ({n} calls, real-time replay): hangup -> KPI row queryable p50 {p50:.2}s p99 {p99:.2}s; {alert}"
    );
    assert!(p99 < 120.0, "KPI rows must follow the traffic");
}
