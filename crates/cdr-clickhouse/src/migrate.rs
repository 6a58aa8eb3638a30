//! Ordered, idempotent migrations. The SQL files in `schemas/clickhouse/` are
//! compiled in (so `cdrctl migrate` works from any directory); each file is
//! applied once, in order, and recorded in `cdr.schema_migrations`. Every
//! statement is itself idempotent (`IF NOT EXISTS`), so a migration cut off
//! half-way is simply re-run.

use anyhow::Context;

pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "database",
        include_str!("../../../schemas/clickhouse/001_database.sql"),
    ),
    (
        2,
        "rated_cdrs",
        include_str!("../../../schemas/clickhouse/002_rated_cdrs.sql"),
    ),
    (
        3,
        "dead_letters",
        include_str!("../../../schemas/clickhouse/003_dead_letters.sql"),
    ),
    (
        4,
        "kpi_minute",
        include_str!("../../../schemas/clickhouse/004_kpi_minute.sql"),
    ),
    (
        5,
        "rate_decks",
        include_str!("../../../schemas/clickhouse/005_rate_decks.sql"),
    ),
    (
        6,
        "kpi_rollups",
        include_str!("../../../schemas/clickhouse/006_kpi_rollups.sql"),
    ),
    (
        7,
        "account_plan_changes",
        include_str!("../../../schemas/clickhouse/007_account_plan_changes.sql"),
    ),
    (
        8,
        "detection",
        include_str!("../../../schemas/clickhouse/008_detection.sql"),
    ),
    (
        9,
        "delivery",
        include_str!("../../../schemas/clickhouse/009_delivery.sql"),
    ),
    (
        10,
        "dead_letters_view",
        include_str!("../../../schemas/clickhouse/010_dead_letters_view.sql"),
    ),
    (
        11,
        "kpi_calls",
        include_str!("../../../schemas/clickhouse/011_kpi_calls.sql"),
    ),
    (
        12,
        "rating_inputs",
        include_str!("../../../schemas/clickhouse/012_rating_inputs.sql"),
    ),
    (
        13,
        "dead_letter_replays",
        include_str!("../../../schemas/clickhouse/013_dead_letter_replays.sql"),
    ),
    (
        14,
        "dead_letter_source_ts",
        include_str!("../../../schemas/clickhouse/014_dead_letter_source_ts.sql"),
    ),
    (
        15,
        "rerates",
        include_str!("../../../schemas/clickhouse/015_rerates.sql"),
    ),
    (
        16,
        "reconciliation",
        include_str!("../../../schemas/clickhouse/016_reconciliation.sql"),
    ),
    (
        17,
        "dead_letter_replay_fix",
        include_str!("../../../schemas/clickhouse/017_dead_letter_replay_fix.sql"),
    ),
];

/// Splits a migration file into statements (on `;` at line end), dropping
/// comment-only chunks.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if trimmed.ends_with(';') {
            let s = cur.trim().trim_end_matches(';').trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
            cur.clear();
        }
    }
    let s = cur.trim().to_string();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Applied {
    version: u32,
}

/// The statements of one migration for this deployment: as written on a
/// single node, their cluster form with `clickhouse.cluster` set.
pub fn deployment_statements(sql: &str, cluster: Option<&str>) -> anyhow::Result<Vec<String>> {
    let single = statements(sql);
    let Some(c) = cluster else {
        return Ok(single);
    };
    let mut out = Vec::new();
    for st in single {
        out.extend(crate::cluster::cluster_statements(&st, c)?);
    }
    Ok(out)
}

/// Applies pending migrations; returns the versions applied now.
pub async fn migrate(cfg: &crate::ClickHouseConfig) -> anyhow::Result<Vec<u32>> {
    let client = cfg.server_client();
    let cluster = cfg.cluster.as_deref();
    // The ledger itself comes from migration 1, which is idempotent.
    for stmt in deployment_statements(MIGRATIONS[0].2, cluster)? {
        client
            .query(&stmt)
            .execute()
            .await
            .with_context(|| format!("applying: {stmt}"))?;
    }
    let done: Vec<u32> = client
        .query("SELECT version FROM cdr.schema_migrations")
        .fetch_all::<Applied>()
        .await
        .context("reading cdr.schema_migrations")?
        .into_iter()
        .map(|a| a.version)
        .collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        for stmt in deployment_statements(sql, cluster)? {
            client
                .query(&stmt)
                .execute()
                .await
                .with_context(|| format!("migration {version} {name}: {stmt}"))?;
        }
        client
            .query("INSERT INTO cdr.schema_migrations (version, name) VALUES (?, ?)")
            .bind(*version)
            .bind(*name)
            .execute()
            .await
            .with_context(|| format!("recording migration {version}"))?;
        tracing::info!(version, name, "migration applied");
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_split() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.0).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted);
        let s = statements(MIGRATIONS[1].2);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS cdr.rated_cdrs"));
        for (_, _, sql) in MIGRATIONS {
            for st in statements(sql) {
                assert!(
                    st.contains("IF NOT EXISTS")
                        || st.starts_with("CREATE OR REPLACE VIEW")
                        || st.contains(" MODIFY SETTING ")
                        || st.starts_with("DROP TABLE IF EXISTS"),
                    "not idempotent: {st}"
                );
            }
        }
    }
}
