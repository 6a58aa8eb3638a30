//! `cdrctl deck`: compare two deck files (`diff`) and publish the decks the
//! rater loads into ClickHouse (`publish`), both with the `ratedeck` library
//! the rater uses, so what finance sees is what the rater rated with.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use cdr_clickhouse::rows::{decimal18, RateDeckLineRow, RateDeckRow};
use chrono::{DateTime, Duration, Utc};
use rater::ratedeck::{self, DeckDiff, DeckKind, DeckVersion, ImportMode, ObrTier, Plan, Scope};
use rater::tables::{DeckFormat, PlanName};
use sha2::{Digest, Sha256};

/// Parses a deck file for `diff` (lenient: bad rows are reported on stderr
/// by the caller and left out of the comparison).
pub fn parse_file(
    path: &Path,
    format: DeckFormat,
    plan: Option<PlanName>,
) -> anyhow::Result<ratedeck::ParsedDeck> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let plan: Plan = plan.map(Plan::from).unwrap_or(Plan::Standard);
    let kind = match format {
        DeckFormat::Az => DeckKind::AZ(plan),
        DeckFormat::Us48 => DeckKind::Us48,
        DeckFormat::PerTrunk => DeckKind::PerTrunk,
        DeckFormat::Breakout => DeckKind::Breakout,
    };
    // The reader, as the rater loads decks (Latin-1 lines included).
    ratedeck::parse_deck_reader(
        &path.display().to_string(),
        std::io::BufReader::new(file),
        kind,
        ImportMode::Lenient,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `diff` between two files; `notice_days` is the notice period for
/// increases, `now` the moment the new deck is announced.
pub fn diff_files(
    old: &Path,
    new: &Path,
    format: DeckFormat,
    plan: Option<PlanName>,
    notice_days: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<(DeckDiff, Vec<String>)> {
    let o = parse_file(old, format, plan)?;
    let n = parse_file(new, format, plan)?;
    let rejected = o
        .rejected
        .iter()
        .chain(n.rejected.iter())
        .map(|e| e.to_string())
        .collect();
    Ok((
        ratedeck::diff(&o.rows, &n.rows, Duration::days(notice_days), now),
        rejected,
    ))
}

fn trunk_tag(trunk: Option<u32>, tier: Option<ObrTier>) -> String {
    let mut s = String::new();
    if let Some(t) = trunk {
        let _ = write!(s, " trunk={t}");
    }
    if let Some(t) = tier {
        let _ = write!(s, " tier={}", t.as_str());
    }
    s
}

/// Human-readable report: one line per change, short-notice increases
/// marked `SHORT-NOTICE`, and a summary line.
pub fn render_diff(d: &DeckDiff, notice_days: i64) -> String {
    let mut out = String::new();
    for r in &d.added {
        let _ = writeln!(
            out,
            "ADDED     {:<12} {:<32} {}{}",
            r.prefix,
            r.destination,
            r.rate,
            trunk_tag(r.trunk, r.obr_tier)
        );
    }
    for r in &d.removed {
        let _ = writeln!(
            out,
            "REMOVED   {:<12} {:<32} {}{}",
            r.prefix,
            r.destination,
            r.rate,
            trunk_tag(r.trunk, r.obr_tier)
        );
    }
    for (label, list) in [("INCREASED", &d.increased), ("DECREASED", &d.decreased)] {
        for c in list.iter() {
            let eff = c
                .effective_from
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "immediately".into());
            let via = c
                .via_prefix
                .map(|p| format!(" via {p}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{label:<9} {:<12} {:<32} {}{via} effective {eff}{}{}",
                c.prefix,
                c.destination,
                c.terms.join(", "),
                trunk_tag(c.trunk, c.obr_tier),
                if c.short_notice {
                    format!("  SHORT-NOTICE (< {notice_days} days)")
                } else {
                    String::new()
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "summary: {} added, {} removed, {} increased ({} short notice), {} decreased, {} unchanged",
        d.added.len(),
        d.removed.len(),
        d.increased.len(),
        d.short_notice().count(),
        d.decreased.len(),
        d.unchanged
    );
    out
}

/// `az:standard`, `us48:premium`, `trunk:7`.
pub fn scope_name(s: Scope) -> String {
    match s {
        Scope::Az(p) => format!("az:{}", p.as_str()),
        Scope::Us48(p) => format!("us48:{}", p.as_str()),
        Scope::Trunk(t) => format!("trunk:{t}"),
    }
}

/// Rows for ClickHouse of one loaded deck version: its own rows.
pub fn version_rows(
    v: &DeckVersion,
    format: &str,
    source_file: &str,
    rejected: u64,
    sha: &str,
    published_at: i64,
) -> anyhow::Result<(RateDeckRow, Vec<RateDeckLineRow>)> {
    let scope = scope_name(v.scope);
    let head = RateDeckRow {
        deck_id: v.deck_id.to_string(),
        deck_version: v.version as i64,
        scope: scope.clone(),
        format: format.to_string(),
        source_file: source_file.to_string(),
        effective_from: v.effective_from.timestamp_millis(),
        effective_to: v.effective_to.map(|t| t.timestamp_millis()),
        rows: v.own_rows().count() as u64,
        rejected_rows: rejected,
        content_sha256: sha.to_string(),
        published_at,
    };
    // Only the rows this version published: rows of earlier versions still
    // in force under it are published (and referenced by CDRs) under the
    // version that published them.
    let mut lines = Vec::new();
    for r in v.own_rows() {
        lines.push(RateDeckLineRow {
            deck_id: head.deck_id.clone(),
            deck_version: head.deck_version,
            scope: scope.clone(),
            prefix: r.prefix.to_string(),
            destination: r.destination.to_string(),
            rate_per_min: decimal18("rate", r.rate)?,
            rate_intrastate: r
                .rate_intrastate
                .map(|d| decimal18("rate_intrastate", d))
                .transpose()?,
            increment: r.increment.to_string(),
            connection_fee: decimal18("connection_fee", r.connection_fee)?,
            min_billed_seconds: r.min_billed_seconds,
            short_surcharge: decimal18("short_surcharge", r.short_surcharge)?,
            short_threshold_s: r.short_threshold_s,
            row_effective_from: r.effective_from.map(|t| t.timestamp_millis()),
            row_effective_to: r.effective_to.map(|t| t.timestamp_millis()),
            trunk: r.trunk,
            trunk_plan: r.trunk_plan.map(|p| p.as_str().to_string()),
            obr_tier: r.obr_tier.map(|t| t.as_str().to_string()),
            source_line: r.line as u64,
            published_at,
        });
    }
    Ok((head, lines))
}

/// Loads the decks of a rater configuration exactly as the rater does and
/// writes every version and row to ClickHouse. Returns (versions, rows).
pub async fn publish(
    client: &clickhouse::Client,
    rater_config: &Path,
    base: &Path,
) -> anyhow::Result<(usize, usize)> {
    let config: rater::Config = cdr_kafka::config::load_config_from(Some(rater_config), &[])
        .with_context(|| format!("loading {}", rater_config.display()))?;
    let rating = config.rating().resolve(base)?;
    let (tables, summary) = rater::load(&rating, base)?;
    let published_at = cdr_kafka::now_ms();
    let mut heads = Vec::new();
    let mut lines = Vec::new();
    for v in tables.decks.all_versions() {
        let cfg = rating
            .decks
            .iter()
            .find(|d| *d.deck_id == *v.deck_id)
            .context("loaded deck missing from its configuration")?;
        let loaded = summary
            .decks
            .iter()
            .find(|d| *d.deck_id == *v.deck_id)
            .context("loaded deck missing from the load summary")?;
        let full = if cfg.path.is_absolute() {
            cfg.path.clone()
        } else {
            base.join(&cfg.path)
        };
        let bytes = std::fs::read(&full).with_context(|| format!("reading {}", full.display()))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let (h, l) = version_rows(
            v,
            cfg.kind.as_str(),
            &loaded.path,
            loaded.rejected as u64,
            &sha,
            published_at,
        )?;
        heads.push(h);
        lines.extend(l);
    }
    let mut ins = client.insert::<RateDeckRow>("rate_decks").await?;
    for h in &heads {
        ins.write(h).await?;
    }
    ins.end().await.context("inserting rate_decks")?;
    let mut ins = client.insert::<RateDeckLineRow>("rate_deck_rows").await?;
    for l in &lines {
        ins.write(l).await?;
    }
    ins.end().await.context("inserting rate_deck_rows")?;
    Ok((heads.len(), lines.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cdrctl-deck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn diff_reports_each_kind_of_change_and_short_notice_increases() {
        let old = write(
            "old.csv",
            "destination;code;rate_usd;increment;effective_from\n\
             UK;44;0.0100;1/1;2026-01-01\n\
             France;33;0.0200;1/1;2026-01-01\n\
             Gone;999;0.5;60/60;2026-01-01\n",
        );
        let new = write(
            "new.csv",
            "destination;code;rate_usd;increment;effective_from\n\
             UK;44;0.0120;1/1;2026-03-03\n\
             France;33;0.0150;1/1;2026-03-03\n\
             Germany;49;0.0300;1/1;2026-04-01\n\
             Spain;34;0.04;1/1;2026-03-05\n",
        );
        // Announced 2026-03-01: the UK increase effective 03-03 gives two
        // days' notice (< 7), France is a decrease (may apply at once).
        let now = "2026-03-01T00:00:00Z".parse().unwrap();
        let (d, rejected) = diff_files(
            &old,
            &new,
            DeckFormat::Breakout,
            Some(PlanName::Standard),
            7,
            now,
        )
        .unwrap();
        assert!(rejected.is_empty());
        assert_eq!(d.added.len(), 2);
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0].prefix.to_string(), "999");
        assert_eq!(d.increased.len(), 1);
        assert!(d.increased[0].short_notice);
        assert_eq!(d.decreased.len(), 1);
        assert!(!d.decreased[0].short_notice);
        let text = render_diff(&d, 7);
        assert!(text.contains("INCREASED 44"), "{text}");
        assert!(text.contains("SHORT-NOTICE"), "{text}");
        assert!(text.contains("DECREASED 33"), "{text}");
        assert!(text.contains("1 increased (1 short notice)"), "{text}");
        // With ten days' lead the same increase is not short notice.
        let early = "2026-02-20T00:00:00Z".parse().unwrap();
        let (d, _) = diff_files(
            &old,
            &new,
            DeckFormat::Breakout,
            Some(PlanName::Standard),
            7,
            early,
        )
        .unwrap();
        assert_eq!(d.short_notice().count(), 0);
    }

    #[test]
    fn published_rows_carry_exact_rates_and_scope() {
        let p = write(
            "az.txt",
            "44;United Kingdom;0.0123456789;1;1\n4420;London;0.01;60;60\n",
        );
        let parsed = parse_file(&p, DeckFormat::Az, Some(PlanName::Premium)).unwrap();
        let mut set = ratedeck::DeckSet::new();
        set.insert(
            "prem-1",
            ratedeck::DeckTarget::Az(Plan::Premium),
            parsed.rows,
            "2026-01-01T00:00:00Z".parse().unwrap(),
            None,
        );
        let v = set.all_versions()[0];
        let (h, l) = version_rows(v, "az", "az.txt", 0, "abc", 1).unwrap();
        assert_eq!(h.scope, "az:premium");
        assert_eq!(h.rows, 2);
        let uk = l.iter().find(|r| r.prefix == "44").unwrap();
        assert_eq!(uk.rate_per_min, 12_345_678_900_000_000);
        assert_eq!(uk.increment, "1/1");
        let lon = l.iter().find(|r| r.prefix == "4420").unwrap();
        assert_eq!(lon.increment, "60/60");
        assert_eq!(lon.source_line, 2);
    }
}
