//! The migrations for a ClickHouse cluster. The SQL in `schemas/clickhouse/`
//! is written for one node; with `clickhouse.cluster` set, every statement
//! is rewritten here into its cluster form, so one set of files serves both:
//!
//! - `CREATE DATABASE` and views get `ON CLUSTER '<cluster>'`;
//! - a table `cdr.T` becomes `cdr.T_local` on every node, with the
//!   `Replicated*` form of its engine (`/clickhouse/tables/{shard}/{database}/{table}`,
//!   `{replica}` macros), plus `cdr.T` as a `Distributed` table over it, so
//!   every reader and writer (services, finance views, Grafana) keeps using
//!   the plain name;
//! - `ALTER TABLE … ADD COLUMN` goes to both; `DROP TABLE` drops both.
//!
//! Sharding key: `account_id` where the table has it (every call of an
//! account, and so every copy and re-rated version of one CDR, lives on one
//! shard), else the table's first sorting column — the deduplication key.
//! ReplacingMergeTree collapses copies only within a shard, so the key must
//! send all copies of one row to the same shard: both choices do, because
//! they are functions of the row's identity. Across the replicas of one
//! shard, replication carries the same parts, and insert deduplication
//! drops a retried identical block.

/// Why a migration statement has no cluster form.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClusterError {
    #[error("cluster name `{0}` must be letters, digits, `_` or `-`")]
    BadClusterName(String),
    #[error("statement not understood for cluster migration: {0}")]
    Unsupported(String),
    #[error("table `{table}`: no ENGINE clause")]
    NoEngine { table: String },
    #[error("table `{table}`: engine `{engine}` has no replicated form here")]
    UnknownEngine { table: String, engine: String },
    #[error("table `{table}`: no ORDER BY to derive a sharding key")]
    NoSortingKey { table: String },
}

/// Suffix of the per-node replicated table under a `Distributed` one.
pub const LOCAL_SUFFIX: &str = "_local";

/// Checks a cluster name for use inside quotes in DDL.
pub fn check_cluster_name(cluster: &str) -> Result<(), ClusterError> {
    if cluster.is_empty()
        || !cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ClusterError::BadClusterName(cluster.to_string()));
    }
    Ok(())
}

/// The cluster form of one single-node migration statement (one or more
/// statements, in order).
pub fn cluster_statements(stmt: &str, cluster: &str) -> Result<Vec<String>, ClusterError> {
    check_cluster_name(cluster)?;
    let on = format!("ON CLUSTER '{cluster}'");
    let s = stmt.trim();
    let upper = s.to_ascii_uppercase();
    if let Some(rest) = strip_keyword(s, &upper, "CREATE DATABASE IF NOT EXISTS ") {
        let name = first_word(rest);
        return Ok(vec![format!("CREATE DATABASE IF NOT EXISTS {name} {on}")]);
    }
    if let Some(rest) = strip_keyword(s, &upper, "CREATE TABLE IF NOT EXISTS ") {
        return create_table(rest, cluster, &on);
    }
    for head in ["CREATE OR REPLACE VIEW ", "CREATE VIEW IF NOT EXISTS "] {
        if let Some(rest) = strip_keyword(s, &upper, head) {
            let name = first_word(rest);
            let body = &rest[name.len()..];
            return Ok(vec![format!("{head}{name} {on}{body}")]);
        }
    }
    if let Some(rest) = strip_keyword(s, &upper, "ALTER TABLE ") {
        let name = first_word(rest);
        let body = &rest[name.len()..];
        let body_upper = body.to_ascii_uppercase();
        let local = format!("ALTER TABLE {name}{LOCAL_SUFFIX} {on}{body}");
        // Column changes must reach the Distributed table too (its columns
        // are what readers see); settings and mutations are the local
        // table's alone.
        if body_upper.contains("COLUMN") {
            return Ok(vec![local, format!("ALTER TABLE {name} {on}{body}")]);
        }
        return Ok(vec![local]);
    }
    if let Some(rest) = strip_keyword(s, &upper, "DROP TABLE IF EXISTS ") {
        let name = first_word(rest);
        return Ok(vec![
            format!("DROP TABLE IF EXISTS {name} {on} SYNC"),
            format!("DROP TABLE IF EXISTS {name}{LOCAL_SUFFIX} {on} SYNC"),
        ]);
    }
    Err(ClusterError::Unsupported(first_line(s)))
}

fn create_table(rest: &str, cluster: &str, on: &str) -> Result<Vec<String>, ClusterError> {
    let name = first_word(rest).to_string();
    let body = &rest[name.len()..];
    let (db, table) = match name.split_once('.') {
        Some((d, t)) => (d.to_string(), t.to_string()),
        None => (String::new(), name.clone()),
    };
    let upper = body.to_ascii_uppercase();
    let at = upper.find("ENGINE").ok_or_else(|| ClusterError::NoEngine {
        table: name.clone(),
    })?;
    let after = body[at + "ENGINE".len()..].trim_start();
    let after = after.strip_prefix('=').unwrap_or(after).trim_start();
    let engine_name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut engine_end = at + (body[at..].len() - after.len()) + engine_name.len();
    let args = if body[engine_end..].starts_with('(') {
        let close = body[engine_end..]
            .find(')')
            .ok_or_else(|| ClusterError::Unsupported(first_line(body)))?;
        let a = body[engine_end + 1..engine_end + close].trim().to_string();
        engine_end += close + 1;
        a
    } else {
        String::new()
    };
    const FAMILIES: &[&str] = &[
        "MergeTree",
        "ReplacingMergeTree",
        "SummingMergeTree",
        "AggregatingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
    ];
    if !FAMILIES.contains(&engine_name.as_str()) {
        return Err(ClusterError::UnknownEngine {
            table: name.clone(),
            engine: engine_name,
        });
    }
    let mut replicated_args = vec![
        "'/clickhouse/tables/{shard}/{database}/{table}'".to_string(),
        "'{replica}'".into(),
    ];
    if !args.is_empty() {
        replicated_args.push(args);
    }
    let local_name = format!("{name}{LOCAL_SUFFIX}");
    let local = format!(
        "CREATE TABLE IF NOT EXISTS {local_name} {on}{}ENGINE = Replicated{engine_name}({}){}",
        &body[..at],
        replicated_args.join(", "),
        &body[engine_end..]
    );
    let key = sharding_key(body, &upper).ok_or(ClusterError::NoSortingKey {
        table: name.clone(),
    })?;
    let db_arg = if db.is_empty() {
        "currentDatabase()".to_string()
    } else {
        db
    };
    let distributed = format!(
        "CREATE TABLE IF NOT EXISTS {name} {on} AS {local_name} \
         ENGINE = Distributed('{cluster}', {db_arg}, {table}{LOCAL_SUFFIX}, cityHash64({key}))"
    );
    Ok(vec![local, distributed])
}

/// `account_id` when the column list declares it, else the first column
/// of ORDER BY.
fn sharding_key(body: &str, upper: &str) -> Option<String> {
    let engine_at = upper.find("ENGINE")?;
    let columns = &body[..engine_at];
    if columns
        .lines()
        .any(|l| l.trim_start().starts_with("account_id "))
    {
        return Some("account_id".into());
    }
    let ob = upper[engine_at..].find("ORDER BY")? + engine_at + "ORDER BY".len();
    let keys = body[ob..].trim_start();
    let keys = keys.strip_prefix('(').unwrap_or(keys);
    let first: String = keys
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!first.is_empty()).then_some(first)
}

fn strip_keyword<'a>(s: &'a str, upper: &str, head: &str) -> Option<&'a str> {
    upper.starts_with(head).then(|| &s[head.len()..])
}

fn first_word(s: &str) -> &str {
    let end = s
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(s.len());
    &s[..end]
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::{statements, MIGRATIONS};

    #[test]
    fn a_replacing_table_becomes_replicated_local_plus_distributed_by_account() {
        let sql = "CREATE TABLE IF NOT EXISTS cdr.t\n(\n    cdr_id String,\n    account_id String,\n    version UInt64\n)\nENGINE = ReplacingMergeTree(version)\nPARTITION BY x\nORDER BY (account_id, cdr_id)";
        let out = cluster_statements(sql, "cdr").unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with("CREATE TABLE IF NOT EXISTS cdr.t_local ON CLUSTER 'cdr'\n("));
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)\nPARTITION BY x\nORDER BY (account_id, cdr_id)"
        ), "{}", out[0]);
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS cdr.t ON CLUSTER 'cdr' AS cdr.t_local ENGINE = Distributed('cdr', cdr, t_local, cityHash64(account_id))"
        );
    }

    #[test]
    fn without_account_the_first_sorting_column_shards() {
        let sql = "CREATE TABLE IF NOT EXISTS cdr.d (id String, at DateTime)\nENGINE = MergeTree\nORDER BY (id, at)";
        let out = cluster_statements(sql, "c1").unwrap();
        assert!(out[0].contains("ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\nORDER BY (id, at)"), "{}", out[0]);
        assert!(out[1].ends_with("cityHash64(id))"), "{}", out[1]);
    }

    #[test]
    fn alters_views_drops_and_databases() {
        let a = cluster_statements(
            "ALTER TABLE cdr.k ADD COLUMN IF NOT EXISTS x Int64 DEFAULT 0",
            "c",
        )
        .unwrap();
        assert_eq!(
            a,
            vec![
                "ALTER TABLE cdr.k_local ON CLUSTER 'c' ADD COLUMN IF NOT EXISTS x Int64 DEFAULT 0",
                "ALTER TABLE cdr.k ON CLUSTER 'c' ADD COLUMN IF NOT EXISTS x Int64 DEFAULT 0"
            ]
        );
        let v = cluster_statements("CREATE OR REPLACE VIEW cdr.v AS\nSELECT 1", "c").unwrap();
        assert_eq!(
            v,
            vec!["CREATE OR REPLACE VIEW cdr.v ON CLUSTER 'c' AS\nSELECT 1"]
        );
        let d = cluster_statements("DROP TABLE IF EXISTS cdr.k", "c").unwrap();
        assert_eq!(d.len(), 2);
        assert!(d[1].starts_with("DROP TABLE IF EXISTS cdr.k_local ON CLUSTER 'c'"));
        assert_eq!(
            cluster_statements("CREATE DATABASE IF NOT EXISTS cdr", "c").unwrap(),
            vec!["CREATE DATABASE IF NOT EXISTS cdr ON CLUSTER 'c'"]
        );
    }

    #[test]
    fn bad_names_and_unknown_statements_are_refused() {
        assert!(matches!(
            cluster_statements("CREATE DATABASE IF NOT EXISTS cdr", "c'; DROP"),
            Err(ClusterError::BadClusterName(_))
        ));
        assert!(matches!(
            cluster_statements("INSERT INTO cdr.t VALUES (1)", "c"),
            Err(ClusterError::Unsupported(_))
        ));
        assert!(matches!(
            cluster_statements(
                "CREATE TABLE IF NOT EXISTS cdr.t (a Int8) ENGINE = Log",
                "c"
            ),
            Err(ClusterError::UnknownEngine { .. })
        ));
    }

    #[test]
    fn every_shipped_migration_has_a_cluster_form() {
        let mut tables = 0;
        for (v, name, sql) in MIGRATIONS {
            for st in statements(sql) {
                let out = cluster_statements(&st, "cdr_cluster")
                    .unwrap_or_else(|e| panic!("migration {v} {name}: {e}"));
                for o in &out {
                    assert!(o.contains("ON CLUSTER 'cdr_cluster'"), "{o}");
                }
                if st.starts_with("CREATE TABLE") {
                    tables += 1;
                    assert!(out[0].contains("ENGINE = Replicated"), "{}", out[0]);
                    assert!(
                        out[1].contains("ENGINE = Distributed('cdr_cluster'"),
                        "{}",
                        out[1]
                    );
                }
            }
        }
        assert!(tables >= 15, "{tables}");
    }
}
