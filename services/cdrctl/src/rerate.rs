//! `cdrctl rerate`: rates calls ClickHouse already holds again, with the
//! current (or a named) rater configuration (decks, accounts, surcharges)
//! and the plan history ClickHouse holds, and writes what changed as new
//! versions of the same `cdr_id`.
//!
//! Works from ClickHouse alone: every rated CDR row carries the whole
//! enriched call ([`RatedCdrRow::to_record`]), so no Kafka retention is
//! needed. The enrichment is kept as it was (the LRN dip was paid once and
//! its fee stays on the call: never doubled); only the rating is redone, by
//! the rater's own function ([`rater::rate_call`]).
//!
//! A call whose rating comes out the same is left alone, so running the
//! same re-rating twice changes nothing. A changed call gets the version
//! [`cdr_model::call::rerated_version`] (the re-rating generation above the
//! pipeline's bits: it outranks every pipeline copy, and the next
//! re-rating outranks it). Each run writes, in this order, so that an
//! interrupted run finishes by running it again:
//! 1. `rerate_history`: per call, old and new rating, who, when, why;
//! 2. `adjustments`: for a call with a FAS credit (minus its rated amount),
//!    a correction of minus the delta with an id derived from the credit
//!    and the new version, so the credit follows the amount once;
//! 3. `kpi_calls`: the call's KPI row at the new version (amount,
//!    destination, billed seconds);
//! 4. `rated_cdrs`: the new version, the step that makes the call count as
//!    re-rated.
//!
//! `rerate_runs` records the run (selection, tables, totals); the diff per
//! account and breakout is the view `rerate_diff`.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use cdr_clickhouse::rows::{dec18, from_dec18, AdjustmentRow, KpiCallRow, RatedCdrRow};
use cdr_model::call::{rerated_version, EnrichedCall};
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Which calls a re-rating selects (all given conditions hold).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Selection {
    pub account: Option<String>,
    /// Set up at or after (UTC, `YYYY-MM-DD[ hh:mm:ss]`).
    pub from: Option<String>,
    /// Set up before (UTC).
    pub to: Option<String>,
    /// Current destination (breakout) name, exact.
    pub destination: Option<String>,
    /// Current rating status: `rated`, `unrated`, `inbound`, …
    pub status: Option<String>,
    /// Current deck id.
    pub deck_id: Option<String>,
    /// Current unrated reason (e.g. `unknown_account`).
    pub unrated_reason: Option<String>,
}

/// Who re-rates, why, and with what.
#[derive(Debug, Clone)]
pub struct Request {
    pub selection: Selection,
    pub actor: String,
    pub reason: String,
    /// Compute and print the diff, write nothing.
    pub dry_run: bool,
    /// How the tables were loaded (recorded on the run).
    pub tables: String,
}

/// One re-rated call.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub old: RatedCdrRow,
    pub new: RatedCdrRow,
}

impl Change {
    pub fn delta(&self) -> Decimal {
        from_dec18(self.new.amount) - from_dec18(self.old.amount)
    }
}

/// The columns the rating decides: a call whose rating gives the same
/// values is unchanged.
fn rating_part(r: &RatedCdrRow) -> impl PartialEq + '_ {
    (
        (
            &r.rating_status,
            &r.unrated_reason,
            &r.plan,
            &r.deck_id,
            r.deck_version,
            &r.matched_prefix,
            &r.rated_number,
            r.row_effective_from,
            &r.obr_tier,
            &r.jurisdiction_applied,
            r.rated_trunk,
            &r.destination,
        ),
        (
            r.rate_per_min,
            r.billed_seconds,
            &r.increment,
            r.connection_fee,
            r.surcharge,
            r.surcharge_per_min,
            r.short_duration_surcharge,
            r.amount,
            &r.currency,
            &r.rating_flags,
            r.max_rate,
            r.max_route,
        ),
    )
}

/// Rates one stored call again: `None` when its rating is unchanged, else
/// the row to write (the same call, enrichment and detection, the new
/// rating, the next re-rating version). Pure.
pub fn rerate_row(
    old: &RatedCdrRow,
    ctx: &rater::ratedeck::RatingContext<'_>,
) -> Result<Option<RatedCdrRow>, cdr_clickhouse::rows::BadDecimal> {
    let rec = old.to_record();
    let detection = rec.detection.clone();
    let mut cdr = rater::rate_call(
        EnrichedCall {
            call: rec.call,
            enrichment: rec.enrichment,
        },
        ctx,
    );
    cdr.detection = detection;
    let mut new = RatedCdrRow::from_record(&cdr)?;
    if rating_part(&new) == rating_part(old) {
        return Ok(None);
    }
    new.version = rerated_version(old.version);
    Ok(Some(new))
}

/// Totals of one account and breakout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffLine {
    pub calls: u64,
    pub old_amount: Decimal,
    pub new_amount: Decimal,
}

impl DiffLine {
    pub fn delta(&self) -> Decimal {
        self.new_amount - self.old_amount
    }
}

/// The breakout a change is shown under: its new destination, else its old.
pub fn breakout(c: &Change) -> String {
    c.new
        .destination
        .clone()
        .or_else(|| c.old.destination.clone())
        .unwrap_or_else(|| "(no destination)".to_string())
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub run_id: String,
    pub selected: u64,
    pub changed: u64,
    /// (account, breakout) -> totals of the changed calls.
    pub diff: BTreeMap<(String, String), DiffLine>,
    pub credit_corrections: u64,
    pub credit_correction_amount: Decimal,
    /// Calls whose new rating could not be written (record, field).
    pub rejected: Vec<String>,
}

impl Outcome {
    fn add(&mut self, c: &Change) {
        let line = self
            .diff
            .entry((c.new.account_id.clone(), breakout(c)))
            .or_default();
        line.calls += 1;
        line.old_amount += from_dec18(c.old.amount);
        line.new_amount += from_dec18(c.new.amount);
        self.changed += 1;
    }

    /// The diff as TSV: per account and breakout, then the total.
    pub fn diff_tsv(&self) -> String {
        let mut s = String::from("account\tbreakout\tcalls\told_amount\tnew_amount\tdelta\n");
        let mut total = DiffLine::default();
        for ((account, breakout), l) in &self.diff {
            s.push_str(&format!(
                "{account}\t{breakout}\t{}\t{}\t{}\t{}\n",
                l.calls,
                l.old_amount.normalize(),
                l.new_amount.normalize(),
                l.delta().normalize()
            ));
            total.calls += l.calls;
            total.old_amount += l.old_amount;
            total.new_amount += l.new_amount;
        }
        s.push_str(&format!(
            "TOTAL\t\t{}\t{}\t{}\t{}\n",
            total.calls,
            total.old_amount.normalize(),
            total.new_amount.normalize(),
            total.delta().normalize()
        ));
        s
    }
}

#[derive(Debug, Row, Serialize)]
struct HistoryRow {
    run_id: String,
    rerated_at: i64,
    actor: String,
    reason: String,
    cdr_id: String,
    account_id: String,
    setup_ts: i64,
    old_version: u64,
    new_version: u64,
    old_status: String,
    new_status: String,
    old_unrated_reason: Option<String>,
    new_unrated_reason: Option<String>,
    old_deck_id: Option<String>,
    old_deck_version: i64,
    new_deck_id: Option<String>,
    new_deck_version: i64,
    old_destination: Option<String>,
    new_destination: Option<String>,
    old_rate_per_min: i128,
    new_rate_per_min: i128,
    old_billed_seconds: i64,
    new_billed_seconds: i64,
    old_amount: i128,
    new_amount: i128,
    credit_correction: i128,
}

#[derive(Debug, Row, Serialize)]
struct RunRow {
    run_id: String,
    started_at: i64,
    finished_at: i64,
    actor: String,
    reason: String,
    selection: String,
    tables: String,
    calls_selected: u64,
    calls_changed: u64,
    old_amount: i128,
    new_amount: i128,
    dry_run: bool,
}

#[derive(Debug, Row, Deserialize)]
struct Credit {
    adjustment_id: String,
    cdr_id: String,
    currency: String,
    alert_id: Option<String>,
    call_setup_ts: i64,
}

/// The correction that keeps a FAS credit equal to minus the call's amount.
pub fn credit_correction(credit_id: &str, c: &Change, at_ms: i64) -> AdjustmentRow {
    let id = hex::encode(sha2::Sha256::digest(
        format!("rerate-credit|{credit_id}|{}", c.new.version).as_bytes(),
    ));
    AdjustmentRow {
        adjustment_id: format!("rr-{}", &id[..24]),
        cdr_id: c.new.cdr_id.clone(),
        account_id: c.new.account_id.clone(),
        amount: c.old.amount - c.new.amount,
        currency: c.new.currency.clone(),
        reason: "rerate_credit_correction".into(),
        alert_id: None,
        call_setup_ts: c.new.setup_ts,
        created_at: at_ms,
    }
}

/// Loads the plan history ClickHouse holds into the tables (every
/// downgrade and operator change with its effective instant).
pub async fn load_plan_history(
    client: &clickhouse::Client,
    tables: &mut rater::RatingTables,
) -> anyhow::Result<usize> {
    #[derive(Row, Deserialize)]
    struct P {
        change_id: String,
        account_id: String,
        new_plan: String,
        decided_at: i64,
    }
    let rows: Vec<P> = client
        .query(
            "SELECT change_id, toString(account_id) AS account_id, toString(new_plan) AS new_plan, \
             toUnixTimestamp64Milli(decided_at) AS decided_at \
             FROM cdr.account_plan_changes FINAL ORDER BY decided_at, change_id",
        )
        .fetch_all()
        .await
        .context("reading account_plan_changes")?;
    let mut n = 0;
    for p in rows {
        let Some(kind) = rater::conformance::category(&p.new_plan) else {
            eprintln!(
                "plan change {}: unknown plan `{}`, skipped",
                p.change_id, p.new_plan
            );
            continue;
        };
        let at = chrono::DateTime::from_timestamp_millis(p.decided_at).unwrap_or_default();
        if tables.plans.record(&p.account_id, at, kind, &p.change_id) {
            n += 1;
        }
    }
    Ok(n)
}

const CHUNK: usize = 2_000;

/// Runs a re-rating: selects, rates, writes (unless dry-run), records.
pub async fn rerate(
    client: &clickhouse::Client,
    tables: &rater::RatingTables,
    req: &Request,
) -> anyhow::Result<Outcome> {
    let started = cdr_kafka::now_ms();
    let selection = serde_json::to_string(&req.selection)?;
    let run_id = hex::encode(sha2::Sha256::digest(
        format!("{}|{}|{started}|{selection}", req.actor, req.reason).as_bytes(),
    ))[..16]
        .to_string();
    let s = &req.selection;
    let from = crate::dlq::bound("from", &s.from, "1970-01-01")?;
    let to = crate::dlq::bound("to", &s.to, "2299-12-31")?;
    // The newest version of each call in the period, then the conditions
    // on what that version says.
    let sql = "SELECT ?fields FROM (SELECT * FROM cdr.rated_cdrs \
         WHERE ({account:String} = '' OR account_id = {account:String}) \
           AND setup_ts >= parseDateTime64BestEffort({from:String}, 3, 'UTC') \
           AND setup_ts < parseDateTime64BestEffort({to:String}, 3, 'UTC') \
         ORDER BY cdr_id, version DESC, inserted_at DESC LIMIT 1 BY cdr_id) \
         WHERE ({status:String} = '' OR rating_status = {status:String}) \
           AND ({destination:String} = '' OR destination = {destination:String}) \
           AND ({deck:String} = '' OR deck_id = {deck:String}) \
           AND ({why:String} = '' OR unrated_reason = {why:String}) \
         ORDER BY account_id, cdr_id";
    let p = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut cursor = client
        .query(sql)
        .param("account", p(&s.account))
        .param("from", from)
        .param("to", to)
        .param("status", p(&s.status))
        .param("destination", p(&s.destination))
        .param("deck", p(&s.deck_id))
        .param("why", p(&s.unrated_reason))
        .fetch::<RatedCdrRow>()
        .context("selecting calls")?;
    let ctx = tables.context();
    let mut out = Outcome {
        run_id: run_id.clone(),
        ..Default::default()
    };
    let mut chunk: Vec<Change> = Vec::new();
    let mut last_progress = std::time::Instant::now();
    while let Some(row) = cursor.next().await.context("reading rated_cdrs")? {
        out.selected += 1;
        match rerate_row(&row, &ctx) {
            Ok(None) => {}
            Ok(Some(new)) => chunk.push(Change { old: row, new }),
            Err(e) => out.rejected.push(format!("cdr {}: {e}", row.cdr_id)),
        }
        if chunk.len() >= CHUNK {
            let c = std::mem::take(&mut chunk);
            write_chunk(client, req, &run_id, &c, &mut out).await?;
        }
        if last_progress.elapsed().as_secs() >= 2 {
            eprintln!(
                "rerate {run_id}: {} selected, {} changed so far",
                out.selected,
                out.changed + chunk.len() as u64
            );
            last_progress = std::time::Instant::now();
        }
    }
    if !chunk.is_empty() {
        write_chunk(client, req, &run_id, &chunk, &mut out).await?;
    }
    let old_total: Decimal = out.diff.values().map(|l| l.old_amount).sum();
    let new_total: Decimal = out.diff.values().map(|l| l.new_amount).sum();
    let mut insert = client.insert::<RunRow>("rerate_runs").await?;
    insert
        .write(&RunRow {
            run_id: run_id.clone(),
            started_at: started,
            finished_at: cdr_kafka::now_ms(),
            actor: req.actor.clone(),
            reason: req.reason.clone(),
            selection,
            tables: req.tables.clone(),
            calls_selected: out.selected,
            calls_changed: out.changed,
            // The run's totals are the diff's (every changed call is in it).
            old_amount: dec18("old_amount", &old_total.to_string())?,
            new_amount: dec18("new_amount", &new_total.to_string())?,
            dry_run: req.dry_run,
        })
        .await?;
    insert.end().await.context("recording the run")?;
    Ok(out)
}

/// Writes one chunk of changes in the order the module doc gives.
async fn write_chunk(
    client: &clickhouse::Client,
    req: &Request,
    run_id: &str,
    changes: &[Change],
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let now = cdr_kafka::now_ms();
    let ids: Vec<&str> = changes.iter().map(|c| c.new.cdr_id.as_str()).collect();
    let credits: Vec<Credit> = client
        .query(
            "SELECT adjustment_id, cdr_id, toString(currency) AS currency, alert_id, \
             toUnixTimestamp64Milli(call_setup_ts) AS call_setup_ts \
             FROM cdr.adjustments_final WHERE reason = 'fas_credit' AND cdr_id IN ? \
             ORDER BY adjustment_id",
        )
        .bind(&ids)
        .fetch_all()
        .await
        .context("reading the credits of the re-rated calls")?;
    let credit_of: HashMap<&str, &Credit> =
        credits.iter().map(|c| (c.cdr_id.as_str(), c)).collect();
    let corrections: Vec<(usize, AdjustmentRow)> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.old.amount != c.new.amount)
        .filter_map(|(i, c)| {
            credit_of.get(c.new.cdr_id.as_str()).map(|cr| {
                let mut a = credit_correction(&cr.adjustment_id, c, now);
                a.alert_id = cr.alert_id.clone();
                a.currency = cr.currency.clone();
                a.call_setup_ts = cr.call_setup_ts;
                (i, a)
            })
        })
        .collect();
    let correction_of: HashMap<usize, i128> =
        corrections.iter().map(|(i, a)| (*i, a.amount)).collect();
    for c in changes {
        out.add(c);
    }
    for (_, a) in &corrections {
        out.credit_corrections += 1;
        out.credit_correction_amount += from_dec18(a.amount);
    }
    if req.dry_run {
        return Ok(());
    }
    let mut h = client.insert::<HistoryRow>("rerate_history").await?;
    for (i, c) in changes.iter().enumerate() {
        h.write(&HistoryRow {
            run_id: run_id.to_string(),
            rerated_at: now,
            actor: req.actor.clone(),
            reason: req.reason.clone(),
            cdr_id: c.new.cdr_id.clone(),
            account_id: c.new.account_id.clone(),
            setup_ts: c.new.setup_ts,
            old_version: c.old.version,
            new_version: c.new.version,
            old_status: c.old.rating_status.clone(),
            new_status: c.new.rating_status.clone(),
            old_unrated_reason: c.old.unrated_reason.clone(),
            new_unrated_reason: c.new.unrated_reason.clone(),
            old_deck_id: c.old.deck_id.clone(),
            old_deck_version: c.old.deck_version,
            new_deck_id: c.new.deck_id.clone(),
            new_deck_version: c.new.deck_version,
            old_destination: c.old.destination.clone(),
            new_destination: c.new.destination.clone(),
            old_rate_per_min: c.old.rate_per_min,
            new_rate_per_min: c.new.rate_per_min,
            old_billed_seconds: c.old.billed_seconds,
            new_billed_seconds: c.new.billed_seconds,
            old_amount: c.old.amount,
            new_amount: c.new.amount,
            credit_correction: correction_of.get(&i).copied().unwrap_or(0),
        })
        .await?;
    }
    h.end().await.context("writing rerate_history")?;
    if !corrections.is_empty() {
        let mut a = client.insert::<AdjustmentRow>("adjustments").await?;
        for (_, row) in &corrections {
            a.write(row).await?;
        }
        a.end().await.context("writing credit corrections")?;
    }
    let old_kpi: Vec<KpiCallRow> = client
        .query("SELECT ?fields FROM cdr.kpi_calls_final WHERE cdr_id IN ?")
        .bind(&ids)
        .fetch_all()
        .await
        .context("reading the calls' KPI rows")?;
    let old_kpi: HashMap<String, KpiCallRow> =
        old_kpi.into_iter().map(|k| (k.cdr_id.clone(), k)).collect();
    let mut k = client.insert::<KpiCallRow>("kpi_calls").await?;
    for c in changes {
        let row = kpi_row(c, old_kpi.get(&c.new.cdr_id))
            .with_context(|| format!("KPI row of cdr {}", c.new.cdr_id))?;
        k.write(&row).await?;
    }
    k.end().await.context("writing kpi_calls")?;
    let mut r = client.insert::<RatedCdrRow>("rated_cdrs").await?;
    for c in changes {
        r.write(&c.new).await?;
    }
    r.end().await.context("writing rated_cdrs")?;
    Ok(())
}

/// The call's KPI row at the new version: the KPI service's own function
/// over the new record; the short-call flag (the one field that depends on
/// the KPI service's configuration) is kept from the row it wrote.
pub fn kpi_row(c: &Change, old: Option<&KpiCallRow>) -> anyhow::Result<KpiCallRow> {
    let rec = c.new.to_record();
    let k = kpi::core::kpi_call(&rec, &kpi::core::KpiConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut row = KpiCallRow::from_record(&k)?;
    row.version = c.new.version;
    if let Some(o) = old {
        row.short_call = o.short_call;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn tables() -> rater::RatingTables {
        rater::load_from_config_file(&repo().join("deploy/local/config/rater.toml"), &repo())
            .unwrap()
            .0
    }

    /// A stored row as the pipeline would have written it: the call rated
    /// with `t`, or left unrated as an unknown account.
    fn stored(t: &rater::RatingTables, account: &str, dialed: &str, secs: i64) -> RatedCdrRow {
        let setup = 1_780_000_000_000i64;
        let call = cdr_model::call::AssembledCall {
            cdr_id: format!("cdr-{account}-{dialed}-{secs}"),
            call_id: "c".into(),
            switch_id: "sw".into(),
            account_id: account.into(),
            direction: "outbound".into(),
            cli: Some("+12125550100".into()),
            dialed: dialed.into(),
            trunk_id: None,
            setup_ts_ms: setup,
            progress_ts_ms: None,
            progress_code: None,
            answer_ts_ms: Some(setup + 2_000),
            end_ts_ms: Some(setup + 2_000 + secs * 1000),
            final_sip_code: Some(200),
            disposition: "answered".into(),
            duration_ms: secs * 1000,
            billable_seconds: secs,
            pdd_ms: Some(2000),
            headers: Default::default(),
            source_ip: None,
            behind_nat: false,
            codec: None,
            media: None,
            flags: vec![],
            event_count: 3,
            assembled_at_ms: setup + 70_000,
        };
        let enrichment = cdr_model::call::Enrichment {
            cli_e164: Some("+12125550100".into()),
            cli_valid: true,
            dialed_e164: format!("+{dialed}"),
            lrn_source: "not_applicable".into(),
            lrn_fee: "0".into(),
            caller_country: Some("US".into()),
            callee_country: Some("DE".into()),
            ..Default::default()
        };
        let mut cdr = rater::rate_call(EnrichedCall { call, enrichment }, &t.context());
        cdr.detection = Some(Default::default());
        RatedCdrRow::from_record(&cdr).unwrap()
    }

    #[test]
    fn same_tables_change_nothing() {
        let t = tables();
        let row = stored(&t, "acc-1001", "4930123456789", 61);
        assert_eq!(row.rating_status, "rated");
        assert_eq!(rerate_row(&row, &t.context()).unwrap(), None);
    }

    #[test]
    fn an_account_added_later_rates_its_calls() {
        let t = tables();
        let row = stored(&t, "acc-new-1", "4930123456789", 61);
        assert_eq!(row.rating_status, "unrated");
        assert_eq!(row.unrated_reason.as_deref(), Some("unknown_account"));
        let mut t2 = t.clone();
        let acc = t2.accounts["acc-1001"].clone();
        t2.accounts.insert("acc-new-1".into(), acc);
        let new = rerate_row(&row, &t2.context()).unwrap().expect("changed");
        let as_known = stored(&t2, "acc-new-1", "4930123456789", 61);
        assert_eq!(new.amount, as_known.amount);
        assert!(new.amount > 0);
        assert_eq!(new.rating_status, "rated");
        assert_eq!(new.version, rerated_version(row.version));
        assert_eq!(cdr_model::call::rerate_generation(new.version), 1);
        // Everything but the rating and the version is the stored call.
        let mut same = new.clone();
        same.version = row.version;
        assert_eq!(same.cdr_id, row.cdr_id);
        assert_eq!(same.to_record().call, row.to_record().call);
        assert_eq!(same.to_record().enrichment, row.to_record().enrichment);
        // Rated again with the same tables: nothing more.
        assert_eq!(rerate_row(&new, &t2.context()).unwrap(), None);
    }

    #[test]
    fn credit_corrections_follow_the_amount_once() {
        let t = tables();
        let old = stored(&t, "acc-1001", "4930123456789", 61);
        let mut new = old.clone();
        new.amount = old.amount * 3;
        new.version = rerated_version(old.version);
        let c = Change { old, new };
        let a = credit_correction("fas-1", &c, 5);
        // credit (-old) + correction = -new
        assert_eq!(-c.old.amount + a.amount, -c.new.amount);
        assert_eq!(
            a.adjustment_id,
            credit_correction("fas-1", &c, 9).adjustment_id
        );
        let mut next = c.clone();
        next.new.version = rerated_version(c.new.version);
        assert_ne!(
            a.adjustment_id,
            credit_correction("fas-1", &next, 5).adjustment_id
        );
    }

    #[test]
    fn diff_is_per_account_and_breakout_with_a_total() {
        let t = tables();
        let old = stored(&t, "acc-1001", "4930123456789", 61);
        let mut new = old.clone();
        new.amount = old.amount + 1_000_000_000_000_000_000; // +1 USD
        let c = Change { old, new };
        let mut o = Outcome::default();
        o.add(&c);
        o.add(&c);
        let tsv = o.diff_tsv();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines.len(), 3, "{tsv}");
        assert!(lines[1].starts_with(&format!("acc-1001\t{}\t2\t", breakout(&c))));
        assert!(lines[1].ends_with("\t2"), "{tsv}");
        assert!(lines[2].starts_with("TOTAL\t\t2\t") && lines[2].ends_with("\t2"));
        assert_eq!(c.delta(), Decimal::ONE);
    }
}
