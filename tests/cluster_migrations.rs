//! The cluster form of every migration (`clickhouse.cluster` set: `ON
//! CLUSTER`, `Replicated*` local tables, `Distributed` tables) parsed by
//! the real ClickHouse's own parser (`formatQuerySingleLine`). No cluster
//! runs here, so the statements are parsed, not executed; the single-node
//! form is what every other test applies and runs.

use cdr_clickhouse::migrate::{deployment_statements, MIGRATIONS};
use cdr_e2e::*;

async fn parse(sql: &str) -> Result<String, clickhouse::error::Error> {
    clickhouse()
        .server_client()
        .query("SELECT formatQuerySingleLine(?)")
        .bind(sql)
        .fetch_one::<String>()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_migration_parses_in_clickhouse() {
    let _g = stack();
    let (mut n, mut replicated, mut distributed) = (0, 0, 0);
    for (v, name, sql) in MIGRATIONS {
        for st in deployment_statements(sql, Some("cdr_cluster")).expect("cluster form") {
            let formatted = parse(&st).await.unwrap_or_else(|e| {
                panic!("migration {v} {name}: ClickHouse cannot parse\n{st}\n{e}")
            });
            assert!(formatted.contains("ON CLUSTER cdr_cluster"), "{formatted}");
            if formatted.contains("ENGINE = Replicated") {
                replicated += 1;
                assert!(formatted.contains("'{replica}'"), "{formatted}");
            }
            if formatted.contains("ENGINE = Distributed('cdr_cluster', cdr, ") {
                distributed += 1;
                assert!(formatted.contains("cityHash64("), "{formatted}");
            }
            n += 1;
        }
    }
    assert_eq!(
        replicated, distributed,
        "one Distributed table per replicated table"
    );
    assert!(
        replicated >= 15,
        "{replicated} replicated tables of {n} statements"
    );
    println!("{n} cluster statements parsed, {replicated} replicated + distributed tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parser_check_can_fail() {
    let _g = stack();
    // The check above means something only if ClickHouse refuses broken DDL.
    assert!(parse("CREATE TABLE IF NOT EXISTS cdr.x ON CLUSTER 'c' (a Int8) ENGINE = Distributed('c', cdr, x_local, cityHash64(").await.is_err());
    let single = deployment_statements(MIGRATIONS[1].2, None).unwrap();
    assert!(!single.iter().any(|s| s.contains("ON CLUSTER")));
}
