//! End-to-end rating: simulated switch traffic through every service into
//! ClickHouse, then every row of the run in `rated_cdrs_final` is re-rated
//! offline with `rater::rate_call` and the same decks the service loaded
//! (`deploy/local/config/rater.toml`), from the call and enrichment fields
//! read back from ClickHouse. Amounts must agree to the last of the 18
//! stored decimals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cdr_clickhouse::rows::{dec18, from_dec18, RatedCdrRow};
use cdr_e2e::*;
use cdr_model::call::EnrichedCall;
use cdrctl::simulate::{generate, SimConfig};

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct RowForCdr {
    #[allow(dead_code)]
    cdr_id: String,
    scope: String,
    ok: u8,
}

/// Rebuilds the rater's input from a stored row (as `cdrctl rerate` does).
fn enriched_from_row(r: &RatedCdrRow) -> EnrichedCall {
    let rec = r.to_record();
    EnrichedCall {
        call: rec.call,
        enrichment: rec.enrichment,
    }
}

fn d18(field: &'static str, s: &str) -> i128 {
    dec18(field, s).unwrap_or_else(|e| panic!("{e}"))
}

/// Destinations the shipped per-trunk deck does not carry on trunk 007
/// (deploy/local/data/per_trunk.txt): wholesale calls dialed `*4007` to these
/// cannot be rated.
const NOT_ON_TRUNK_007: &[&str] = &["597", "88216"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_calls_are_rated_exactly_as_rate_call_computes() {
    let _g = stack();
    let run = unique_run("rating");
    let cfg = SimConfig {
        calls: 800,
        seed: 29,
        run_id: run.clone(),
        malformed_pct: 0.0,
        start_ms: cdr_kafka::now_ms() - 7_200_000,
        ..Default::default()
    };
    let (msgs, expected) = generate(&cfg);
    cdrctl::publish(&kafka(), &msgs, 0).await.expect("publish");
    let r = wait_for(
        &run,
        expected.calls as u64,
        expected.dead_letters as u64,
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(r.calls as usize, expected.calls, "{r}");

    let rows: Vec<RatedCdrRow> = clickhouse()
        .client()
        .query("SELECT ?fields FROM rated_cdrs_final WHERE startsWith(call_id, ?) ORDER BY call_id")
        .bind(&run)
        .fetch_all()
        .await
        .expect("read rated_cdrs_final");
    assert_eq!(rows.len(), expected.calls);

    let repo = repo();
    let (tables, summary) =
        rater::load_from_config_file(&repo.join("deploy/local/config/rater.toml"), &repo)
            .expect("load the rater's decks");
    assert!(summary.rejected.is_empty(), "{:?}", summary.rejected);
    let ctx = tables.context();

    let mut rated_dests: BTreeSet<String> = BTreeSet::new();
    let mut unrated_reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected_unknown = 0usize;
    let mut blocked = 0usize;
    let mut mismatches = Vec::new();
    let mut exact_checks: Vec<String> = Vec::new();
    for row in &rows {
        let want = rater::rate_call(enriched_from_row(row), &ctx).rating;
        let got = (
            row.rating_status.as_str(),
            row.unrated_reason.as_deref(),
            row.plan.as_deref(),
            row.deck_id.as_deref(),
            row.deck_version,
            row.matched_prefix.as_deref(),
            row.destination.as_deref(),
        );
        let got = (
            got,
            row.billed_seconds,
            row.increment.as_deref(),
            row.rate_per_min,
            row.surcharge,
            row.amount,
            &row.rating_flags,
        );
        // What priced the call (issue 12): recorded, and the same offline.
        let got_inputs = (
            row.rated_number.as_deref(),
            row.row_effective_from,
            row.obr_tier.as_deref(),
            row.jurisdiction_applied.as_deref(),
            row.rated_trunk,
            row.surcharge_per_min,
        );
        let exp_inputs = (
            want.rated_number.as_deref(),
            want.row_effective_from_ms,
            want.obr_tier.as_deref(),
            want.jurisdiction_applied.as_deref(),
            want.rated_trunk.and_then(|t| u32::try_from(t).ok()),
            d18("surcharge_per_min", &want.surcharge_per_min),
        );
        let exp = (
            want.status.as_str(),
            want.unrated_reason.as_deref(),
            want.plan.as_deref(),
            want.deck_id.as_deref(),
            want.deck_version,
            want.matched_prefix.as_deref(),
            want.destination.as_deref(),
        );
        let exp = (
            exp,
            want.billed_seconds,
            want.increment.as_deref(),
            d18("rate_per_min", &want.rate_per_min),
            d18("surcharge", &want.surcharge),
            d18("amount", &want.amount),
            &want.flags,
        );
        if got != exp || got_inputs != exp_inputs {
            mismatches.push(format!(
                "{}:\n  stored   {got:?} {got_inputs:?}\n  computed {exp:?} {exp_inputs:?}",
                row.call_id
            ));
        }

        assert!(
            row.rating_status == "rated" || row.unrated_reason.is_some(),
            "{}: unrated without a reason",
            row.call_id
        );
        if row.rating_status == "unrated" {
            *unrated_reasons
                .entry(row.unrated_reason.clone().unwrap_or_default())
                .or_default() += 1;
        }
        if row.disposition != "answered" {
            // No talk time is billed; a rated attempt still owes its LRN dip.
            let owed = if row.rating_status == "rated" {
                row.lrn_fee
            } else {
                0
            };
            assert_eq!(row.amount, owed, "{}: unanswered call billed", row.call_id);
            assert_eq!(row.billed_seconds, 0, "{}", row.call_id);
            continue;
        }
        let number = row.dialed.trim_start_matches('*');
        let via_007 = row.dialed.starts_with("*4007");
        let wholesale = row.account_id != "acc-2001";
        let off_trunk = via_007
            && wholesale
            && NOT_ON_TRUNK_007
                .iter()
                .any(|p| number["4007".len()..].starts_with(p));
        if row.rating_status == "blocked" {
            // Seed 000: a UK number whose origin surcharge the account has
            // not allowed (acc-1002 allows it) is a blocked attempt.
            assert!(row.dialed_e164.starts_with("44"), "{}", row.call_id);
            assert_ne!(row.account_id, "acc-1002", "{}", row.call_id);
            assert_eq!(
                row.unrated_reason.as_deref(),
                Some("uk_surcharge_not_allowed"),
                "{}",
                row.call_id
            );
            assert_eq!((row.amount, row.billed_seconds), (0, 0), "{}", row.call_id);
            blocked += 1;
        } else if off_trunk {
            expected_unknown += 1;
            assert_eq!(row.rating_status, "unrated", "{}", row.call_id);
            assert_eq!(
                row.unrated_reason.as_deref(),
                Some("no_matching_prefix"),
                "{}",
                row.call_id
            );
            assert_eq!(row.amount, 0);
        } else {
            assert_eq!(
                row.rating_status, "rated",
                "{}: answered call to a known destination not rated: {:?}",
                row.call_id, row.unrated_reason
            );
            assert!(row.amount > 0, "{}: rated answered call at 0", row.call_id);
            assert!(row.billed_seconds >= row.billable_seconds);
            assert!(row.deck_id.is_some() && row.matched_prefix.is_some());
            assert!(
                row.rated_number.is_some() && row.row_effective_from.is_some(),
                "{}: a rated CDR records its rated number and row date",
                row.call_id
            );
            if rated_dests.insert(row.dialed_e164.clone()) {
                exact_checks.push(row.cdr_id.clone());
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} rows differ from rater::rate_call:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
    // deploy/finance/rate_for_cdr.sql names exactly the deck row that
    // priced each call (the decks were published when the stack started).
    let sql = std::fs::read_to_string(repo.join("deploy/finance/rate_for_cdr.sql")).unwrap();
    for cdr_id in &exact_checks {
        let hits: Vec<RowForCdr> = clickhouse()
            .client()
            .query(&format!(
                "SELECT cdr_id, toString(deck_scope) AS scope, toUInt8(rate_matches) AS ok FROM ({sql})"
            ))
            .param("cdr_id", cdr_id)
            .fetch_all()
            .await
            .expect("rate_for_cdr");
        assert_eq!(hits.len(), 1, "{cdr_id}: one deck row, got {hits:?}");
        assert!(!hits[0].scope.is_empty(), "{cdr_id}: no deck row found");
        assert_eq!(
            hits[0].ok, 1,
            "{cdr_id}: the row's rate is the applied rate"
        );
    }
    assert!(
        rated_dests.len() >= 8,
        "answered calls to most simulator destinations must be rated: {rated_dests:?}"
    );
    assert!(
        expected_unknown > 0,
        "the scenario must include a wholesale *4007 call to a destination trunk 007 lacks"
    );
    assert!(
        blocked > 0,
        "the simulator's UK calls from US caller ids on acc-1001 must be blocked"
    );
    assert!(
        unrated_reasons
            .get("no_matching_prefix")
            .copied()
            .unwrap_or(0)
            >= expected_unknown,
        "{unrated_reasons:?}"
    );
    assert!(
        !unrated_reasons.contains_key("no_rate_deck_loaded"),
        "the rater runs without decks (restart it after building): {unrated_reasons:?}"
    );
    let total: i128 = rows.iter().map(|r| r.amount).sum();
    assert!(total > 0);
    eprintln!(
        "{} rows, {} rated destinations, unrated {unrated_reasons:?}, total {} USD (invoice {})",
        rows.len(),
        rated_dests.len(),
        from_dec18(total),
        from_dec18(total).round_dp(2)
    );
}
