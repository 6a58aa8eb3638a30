//! End-to-end FAS and dialer detection on labelled traffic (seeds 001, 002,
//! 004): over several random seeds the detector pulls the FAS route and
//! credits its calls (precision and recall >= 0.95 per call and per route),
//! never pulls the clean route on the same breakout, flags the undeclared
//! dialer and not the conversational account; credits change invoice totals
//! by exactly the credited amounts. Windows are judged once they close, so
//! each run ends with a call that moves its routes' clocks past them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cdr_e2e::*;
use clickhouse::Row;
use serde::Deserialize;

const BREAKOUT: &str = "United Kingdom Mobile Vodafone";

#[derive(Row, Deserialize, Debug)]
struct Cdr {
    cdr_id: String,
    call_id: String,
    amount: i128,
    fas_score: f64,
}

#[derive(Row, Deserialize, Debug)]
struct Credit {
    cdr_id: String,
    amount: i128,
}

#[derive(Row, Deserialize, Debug)]
struct Alert {
    trunk_id: String,
    breakout: String,
    patterns: Vec<String>,
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fas_route_pulled_and_credited_clean_route_untouched_dialer_flagged() {
    let _g = stack();
    // Its own pipeline: the rater's and the detector's partition clocks,
    // windows and plan history are this test's alone. On the shared
    // stack, traffic of other tests with later event times on the same
    // partition made this test's calls late (no dialer alert), and earlier
    // runs of this test downgraded its FAS route's account to retail.
    let pl = Pipeline::start(
        "det",
        &["assembler", "enricher", "rater", "detector", "sink"],
    );
    let ch = clickhouse().client();
    // Three 4-minute runs on fresh routes (trunk names carry the run id)
    // and fresh dialer / conversational accounts (so a re-run never meets
    // an earlier run's clocks). Windows are judged once their route's (or
    // account's) clock is 5 minutes past their end, so each run ends with
    // one unanswered call on each route 12 minutes after its start.
    let base = cdr_kafka::now_ms() - 40 * 60_000;
    let stamp = cdr_kafka::now_ms();
    let (dialer, talker) = (format!("acc-4001-x{stamp}"), format!("acc-4002-x{stamp}"));
    for (k, seed) in [21u64, 22, 23].into_iter().enumerate() {
        let run = unique_run(&format!("fas{seed}-"));
        let start = base + k as i64 * 5 * 60_000;
        let (fas_trunk, clean_trunk) = (format!("trk-fas-{run}"), format!("trk-clean-{run}"));
        let (mut msgs, truth) = cdrctl::scenarios::fas(&run, seed, start, 4);
        for m in &mut msgs {
            m.payload =
                rename_accounts(&m.payload, &[("acc-4001", &dialer), ("acc-4002", &talker)]);
        }
        let published = Instant::now();
        cdrctl::publish(&pl.kafka(), &msgs, 0)
            .await
            .expect("publish");
        // Once the run's calls are through, one later call on each route
        // moves its clock past the run's windows (published after them,
        // as time would pass: a call 12 minutes ahead of the others would
        // make them late).
        let like = format!("{run}-%");
        loop {
            let n: u64 = ch
                .query("SELECT count() FROM rated_cdrs_final WHERE call_id LIKE ?")
                .bind(&like)
                .fetch_one()
                .await
                .unwrap_or(0);
            if n as usize >= truth.calls {
                break;
            }
            assert!(
                published.elapsed() < Duration::from_secs(120),
                "seed {seed}: {n} of {} CDRs",
                truth.calls
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut ticks = Vec::new();
        // The scenario's own accounts, so each tick is priced on its
        // route's deck and lands on the route's breakout.
        for (trunk, account) in [(&fas_trunk, "acc-4003"), (&clean_trunk, "acc-1002")] {
            ticks.extend(tick(
                &format!("{run}-tick-{trunk}"),
                account,
                trunk,
                UK_MOBILE,
                start + 12 * 60_000,
            ));
        }
        cdrctl::publish(&pl.kafka(), &ticks, 0)
            .await
            .expect("publish");
        let (cdrs, alerts, delay) = loop {
            let cdrs: Vec<Cdr> = ch
                .query("SELECT cdr_id, call_id, amount, fas_score FROM rated_cdrs_final WHERE call_id LIKE ?")
                .bind(&like)
                .fetch_all()
                .await
                .unwrap_or_default();
            let alerts: Vec<Alert> = ch
                .query("SELECT trunk_id, breakout, patterns FROM route_alerts FINAL WHERE trunk_id IN (?, ?)")
                .bind(&fas_trunk)
                .bind(&clean_trunk)
                .fetch_all()
                .await
                .unwrap_or_default();
            let fas_alert = alerts.iter().any(|a| a.trunk_id == fas_trunk);
            if cdrs.len() >= truth.calls && fas_alert {
                let delay = published.elapsed();
                tokio::time::sleep(Duration::from_secs(4)).await;
                break (cdrs, alerts, delay);
            }
            assert!(
                published.elapsed() < Duration::from_secs(180),
                "seed {seed}: {} of {} CDRs, alerts {alerts:?}",
                cdrs.len(),
                truth.calls
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let ids: Vec<String> = cdrs.iter().map(|c| c.cdr_id.clone()).collect();
        let credits: Vec<Credit> = ch
            .query("SELECT cdr_id, amount FROM adjustments_final WHERE reason = 'fas_credit' AND has(?, cdr_id)")
            .bind(&ids)
            .fetch_all()
            .await
            .unwrap();
        let fas_ids: BTreeSet<String> = cdrs
            .iter()
            .filter(|c| truth.fas_calls.contains(&c.call_id))
            .map(|c| c.cdr_id.clone())
            .collect();
        let credited: BTreeSet<String> = credits.iter().map(|c| c.cdr_id.clone()).collect();
        let hit = credited.intersection(&fas_ids).count();
        let (precision, recall) = (ratio(hit, credited.len()), ratio(hit, fas_ids.len()));
        let suspect: BTreeSet<String> = cdrs
            .iter()
            .filter(|c| c.fas_score >= 0.5)
            .map(|c| c.cdr_id.clone())
            .collect();
        let shit = suspect.intersection(&fas_ids).count();
        let pulled: BTreeSet<String> = alerts
            .iter()
            .filter(|a| a.breakout == BREAKOUT)
            .map(|a| a.trunk_id.clone())
            .collect();
        println!(
            "seed {seed}: {} calls, {} FAS; credited {} (precision {precision:.3}, recall {recall:.3}); \
             scored suspect {} (precision {:.3}, recall {:.3}); routes pulled {pulled:?}; \
             alert visible {:.1}s after publishing started",
            truth.calls,
            fas_ids.len(),
            credited.len(),
            suspect.len(),
            ratio(shit, suspect.len()),
            ratio(shit, fas_ids.len()),
            delay.as_secs_f64()
        );
        assert_eq!(fas_ids.len(), truth.fas_calls.len());
        assert!(
            precision >= 0.95 && recall >= 0.95,
            "seed {seed}: precision {precision}, recall {recall}"
        );
        assert!(
            !pulled.contains(&clean_trunk),
            "clean route pulled: {alerts:?}"
        );
        assert!(
            alerts.iter().all(|a| !a.patterns.is_empty()),
            "every pull names its evidence: {alerts:?}"
        );
        // Route-level precision and recall: exactly the FAS route.
        assert_eq!(pulled, BTreeSet::from([fas_trunk.clone()]), "{alerts:?}");

        // Credits: exactly minus the credited calls' amounts, so invoice
        // totals move by the credited sum and nothing else.
        let by_id: std::collections::HashMap<&str, i128> =
            cdrs.iter().map(|c| (c.cdr_id.as_str(), c.amount)).collect();
        for c in &credits {
            assert_eq!(c.amount, -by_id[c.cdr_id.as_str()], "{c:?}");
            assert!(c.amount < 0);
        }
        let gross: i128 = cdrs.iter().map(|c| c.amount).sum();
        let credited_sum: i128 = credits.iter().map(|c| c.amount).sum();
        // Decimal(38, 18) arrives as its scaled i128, exactly.
        let net: i128 = ch
            .query("SELECT sum(a) FROM (SELECT amount AS a FROM rated_cdrs_final WHERE call_id LIKE ? UNION ALL SELECT amount AS a FROM adjustments_final WHERE has(?, cdr_id))")
            .bind(&like)
            .bind(&ids)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(net, gross + credited_sum, "invoice net = gross + credits");
    }

    // An operator restore lifts the pull with an audit row.
    let (trunk,): (String,) = (ch
        .query("SELECT trunk_id FROM route_status_current WHERE status = 'pulled' AND trunk_id LIKE 'trk-fas-fas23-%' LIMIT 1")
        .fetch_one::<String>()
        .await
        .expect("the last run's FAS route is pulled"),);
    let e = cdrctl::control::route_restore(
        &trunk,
        BREAKOUT,
        "vendor fixed answer supervision",
        "e2e",
        cdr_kafka::now_ms(),
    );
    cdrctl::control::publish_route_status(&pl.kafka(), &e)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status: Vec<(String, String)> = ch
            .query("SELECT status, actor FROM route_status_current WHERE trunk_id = ?")
            .bind(&trunk)
            .fetch_all()
            .await
            .unwrap_or_default();
        if status == [("active".to_string(), "e2e".to_string())] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "restore not recorded: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let history: u64 = ch
        .query("SELECT count() FROM route_status WHERE trunk_id = ?")
        .bind(&trunk)
        .fetch_one()
        .await
        .unwrap();
    assert!(history >= 2, "pull and restore both kept as history");

    // Dialer: the undeclared dialer account is flagged, the conversational
    // one never, once their windows closed (a call of each 36 minutes in).
    let mut closing = tick(
        "dialer-tick-1",
        &dialer,
        "trk-2",
        "4930123456",
        base + 36 * 60_000,
    );
    closing.extend(tick(
        "dialer-tick-2",
        &talker,
        "trk-3",
        "4930123456",
        base + 36 * 60_000,
    ));
    cdrctl::publish(&pl.kafka(), &closing, 0).await.unwrap();
    let started = Instant::now();
    let flagged = loop {
        let flagged: Vec<String> = ch
            .query("SELECT DISTINCT account_id FROM account_alerts WHERE account_id IN (?, ?)")
            .bind(&dialer)
            .bind(&talker)
            .fetch_all()
            .await
            .unwrap_or_default();
        if flagged.contains(&dialer) || started.elapsed() > Duration::from_secs(90) {
            break flagged;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(flagged.contains(&dialer), "{flagged:?}");
    assert!(!flagged.contains(&talker), "{flagged:?}");
}

const UK_MOBILE: &str = "447700900123";

/// One unanswered call: moves its route's and account's event-time clock.
fn tick(
    call_id: &str,
    account: &str,
    trunk: &str,
    dialed: &str,
    at_ms: i64,
) -> Vec<cdrctl::simulate::Msg> {
    cdrctl::scenarios::events(&cdrctl::scenarios::CallSpec {
        call_id: call_id.into(),
        account: account.into(),
        trunk: trunk.into(),
        cli: "+12125550100".into(),
        dialed: dialed.into(),
        setup_ms: at_ms,
        pdd_ms: Some(2_000),
        answer_after_ms: None,
        talk_ms: 0,
        fail_code: 480,
        silence_ratio: 0.0,
        rtp_rx_packets: 0,
        rtp_rx_before_answer: 0,
    })
}

/// The scenario's payloads with some account ids replaced.
fn rename_accounts(payload: &[u8], renames: &[(&str, &str)]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(payload).expect("scenario JSON");
    if let Some(a) = v.get("account_id").and_then(|a| a.as_str()) {
        if let Some((_, to)) = renames.iter().find(|(from, _)| *from == a) {
            v["account_id"] = serde_json::json!(to);
        }
    }
    serde_json::to_vec(&v).unwrap()
}
