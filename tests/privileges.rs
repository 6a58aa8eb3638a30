//! Least privilege on the local stack, checked on the running processes and
//! the real ClickHouse: only the sink holds ClickHouse credentials (by a
//! password file, not argv), no password appears on any command line, the
//! built-in `default` user reads and changes nothing, and each role can do
//! what it is for and no more.

use cdr_e2e::chttp::{request, User};
use cdr_e2e::*;

fn environ(pid: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn cmdline(pid: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

fn is_ch_credential(var: &str) -> bool {
    let name = var.split('=').next().unwrap_or("");
    name.starts_with("CDR_CLICKHOUSE_USER")
        || name.starts_with("CDR_CLICKHOUSE_PASSWORD")
        || name.starts_with("CDR__CLICKHOUSE__")
        || (name.starts_with("CDR_CH_") && name.ends_with("_PASSWORD"))
}

#[test]
fn only_the_sink_has_clickhouse_credentials_and_no_password_is_on_argv() {
    let _g = stack();
    let secrets: Vec<String> = ["admin", "writer", "finance", "grafana"]
        .iter()
        .map(|r| User::role(r).password)
        .collect();
    for s in SERVICES {
        let pid = pid_of(&format!("svc-{s}"));
        let creds: Vec<String> = environ(&pid)
            .into_iter()
            .filter(|v| is_ch_credential(v))
            .map(|v| v.split('=').next().unwrap().to_string())
            .collect();
        if s == "sink" {
            assert!(
                creds.contains(&"CDR_CLICKHOUSE_USER".to_string())
                    && creds.contains(&"CDR_CLICKHOUSE_PASSWORD_FILE".to_string()),
                "the sink logs in as cdr_writer by its password file: {creds:?}"
            );
            assert!(environ(&pid).contains(&"CDR_CLICKHOUSE_USER=cdr_writer".to_string()));
        } else {
            assert!(
                creds.is_empty(),
                "{s} holds ClickHouse credentials: {creds:?}"
            );
        }
        let argv = cmdline(&pid);
        for pw in &secrets {
            assert!(
                !argv.contains(pw.as_str()),
                "{s}: a password on its command line"
            );
        }
    }
}

/// Every statement is refused to `u` for want of a privilege.
fn denied(u: &User, statements: &[&str]) {
    for sql in statements {
        let e = request(u, &[], &[], sql).expect_err(sql);
        assert!(
            e.contains("ACCESS_DENIED") || e.contains("Not enough privileges"),
            "{}: {sql}: {e}",
            u.name
        );
    }
}

#[test]
fn each_clickhouse_user_can_do_its_job_and_no_more() {
    let _g = stack();
    let q = |u: &User, sql: &str| request(u, &[], &[], sql);
    let default = User {
        name: "default".into(),
        password: String::new(),
    };
    // `default` (the embedded server's own session) reads and changes nothing.
    denied(
        &default,
        &[
            "SELECT count() FROM cdr.rated_cdrs",
            "DROP TABLE cdr.rated_cdrs",
            "CREATE DATABASE pwned",
            "INSERT INTO cdr.schema_migrations (version, name) VALUES (999, 'x')",
        ],
    );
    let writer = User::role("writer");
    q(&writer, "SELECT count() FROM cdr.rated_cdrs").expect("the writer reads");
    denied(
        &writer,
        &[
            "DROP TABLE cdr.rated_cdrs",
            "ALTER TABLE cdr.rated_cdrs DELETE WHERE 1",
            "CREATE TABLE cdr.x (a Int8) ENGINE = Memory",
        ],
    );
    for role in ["finance", "grafana"] {
        let u = User::role(role);
        q(&u, "SELECT count() FROM cdr.rated_cdrs_final").expect("readers read");
        let e = q(
            &u,
            "INSERT INTO cdr.schema_migrations (version, name) VALUES (998, 'x')",
        )
        .expect_err("readers write nothing");
        assert!(!e.is_empty());
    }
    let admin = User::admin();
    assert_eq!(admin.name, "cdr_admin");
    q(
        &admin,
        "SELECT count() FROM system.tables WHERE database = 'cdr'",
    )
    .expect("the admin reads system tables");
    let e = q(&admin, "CREATE DATABASE other_db").expect_err("the admin owns cdr.* only");
    assert!(
        e.contains("Not enough privileges") || e.contains("ACCESS_DENIED"),
        "{e}"
    );
}
