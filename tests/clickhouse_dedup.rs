//! Against the real ClickHouse: migrations are idempotent, and a redelivered
//! CDR never becomes a second row in the finance view — the most complete
//! copy (highest version) wins.

use cdr_clickhouse::rows::{dec18, RatedCdrRow};
use cdr_e2e::*;
use clickhouse::Row;
use serde::Deserialize;

#[derive(Row, Deserialize, Debug)]
struct Seen {
    n: u64,
    version: u64,
    amount: i128,
}

fn row(id: &str, version: u64, amount: &str) -> RatedCdrRow {
    RatedCdrRow {
        cdr_id: id.into(),
        version,
        call_id: id.into(),
        switch_id: "sw".into(),
        account_id: "acc-dedup".into(),
        direction: "outbound".into(),
        cli: None,
        dialed: "442079460000".into(),
        trunk_id: None,
        setup_ts: 1_790_000_000_000,
        progress_ts: None,
        progress_code: None,
        answer_ts: Some(1_790_000_001_000),
        end_ts: Some(1_790_000_029_000),
        final_sip_code: Some(200),
        disposition: "answered".into(),
        duration_ms: 28_000,
        billable_seconds: 28,
        pdd_ms: None,
        headers: vec![("X-CWU-maxrate".into(), "0.05".into())],
        source_ip: None,
        behind_nat: false,
        codec: None,
        rtp_rx_packets: None,
        rtp_rx_before_answer: None,
        silence_ratio: None,
        mos: None,
        jitter_ms: None,
        loss_pct: None,
        assembly_flags: vec![],
        assembled_at: 0,
        cli_e164: None,
        cli_valid: false,
        dialed_e164: "442079460000".into(),
        plan_selector: None,
        trunk_selector: None,
        lrn: None,
        ported: false,
        lrn_source: "not_applicable".into(),
        lrn_fee: 0,
        caller_country: None,
        callee_country: None,
        callee_number_type: None,
        jurisdiction: None,
        enrichment_flags: vec![],
        rating_status: "rated".into(),
        unrated_reason: None,
        plan: None,
        deck_id: None,
        deck_version: 0,
        matched_prefix: None,
        rated_number: None,
        row_effective_from: None,
        obr_tier: None,
        jurisdiction_applied: None,
        rated_trunk: None,
        destination: None,
        rate_per_min: dec18("r", "0.01").unwrap(),
        billed_seconds: 28,
        increment: Some("1/1".into()),
        connection_fee: 0,
        surcharge: 0,
        surcharge_per_min: 0,
        short_duration_surcharge: 0,
        amount: dec18("amount", amount).unwrap(),
        currency: "USD".into(),
        rating_flags: vec![],
        max_rate: None,
        max_route: None,
        fas_score: 0.0,
        fas_signals: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_rows_collapse_in_the_finance_view() {
    let _g = stack();
    let cfg = clickhouse();
    assert!(
        cdr_clickhouse::migrate::migrate(&cfg)
            .await
            .unwrap()
            .is_empty(),
        "second migrate must be a no-op"
    );
    let client = cfg.client();
    let id = unique_run("dedup");
    for (v, amt) in [
        (3u64, "0.004666666666666666"),
        (4, "0.004666666666666667"),
        (3, "0.004666666666666666"),
    ] {
        let mut ins = client.insert::<RatedCdrRow>("rated_cdrs").await.unwrap();
        ins.write(&row(&id, v, amt)).await.unwrap();
        ins.end().await.unwrap();
    }
    let raw: u64 = client
        .query("SELECT count() FROM rated_cdrs WHERE cdr_id = ?")
        .bind(&id)
        .fetch_one()
        .await
        .unwrap();
    // Three deliveries: stored as up to three rows, fewer once a background
    // merge of the ReplacingMergeTree collapsed them (merges run at any time).
    assert!(
        (1..=3).contains(&raw),
        "{raw} raw rows for three deliveries"
    );
    let seen = client
        .query("SELECT count() AS n, max(version) AS version, any(amount) AS amount FROM rated_cdrs_final WHERE cdr_id = ?")
        .bind(&id)
        .fetch_one::<Seen>()
        .await
        .unwrap();
    assert_eq!(seen.n, 1, "finance view shows one row: {seen:?}");
    assert_eq!(seen.version, 4);
    assert_eq!(
        seen.amount,
        dec18("a", "0.004666666666666667").unwrap(),
        "amount kept at 18 decimals"
    );
}
