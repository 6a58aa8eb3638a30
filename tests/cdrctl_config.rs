//! `cdrctl` takes its Kafka and ClickHouse settings as the services do
//! (issue 15): a `[kafka]` / `[clickhouse]` file and `CDR__KAFKA__…` /
//! `CDR__CLICKHOUSE__…` overrides; delivery settings cannot be overridden
//! through `properties`, and a numeric password stays a string.

use cdr_e2e::{cdrctl_command, repo};

fn cdrctl(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    cdrctl_command()
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .current_dir(repo())
        .output()
        .expect("cdrctl")
}

#[test]
fn cdrctl_refuses_properties_that_weaken_delivery() {
    for (k, v) in [
        ("CDR__KAFKA__PROPERTIES__acks", "0"),
        ("CDR__KAFKA__PROPERTIES__enable.auto.commit", "true"),
    ] {
        let out = cdrctl(&["topics"], &[(k, v)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{k}");
        assert!(err.contains("never overridable"), "{k}: {err}");
    }
}

#[test]
fn cdrctl_reads_the_kafka_section_of_its_configuration() {
    let dir = std::env::temp_dir().join(format!("cdrctl-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("cdrctl.toml");
    // An unreachable broker from the file: the command must try it (and
    // fail), proving the file is read; a bad property from the file is
    // refused before any connection.
    std::fs::write(
        &cfg,
        "[kafka]\nbrokers = \"nowhere.invalid:1\"\n[kafka.properties]\n\"acks\" = \"1\"\n",
    )
    .unwrap();
    let out = cdrctl(&["--ctl-config", cfg.to_str().unwrap(), "topics"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("kafka.properties.acks"), "{err}");
    // Unknown sections are refused, as in the services.
    std::fs::write(&cfg, "[kafka]\nbrokerz = \"x:1\"\n").unwrap();
    let out = cdrctl(&["--ctl-config", cfg.to_str().unwrap(), "topics"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("brokerz"));
    // A numeric ClickHouse password from the environment is a string: the
    // configuration loads and the command reaches ClickHouse (which may
    // refuse it as a wrong password, never as a bad configuration).
    let out = cdrctl(
        &["--clickhouse", "http://127.0.0.1:1", "dlq", "list"],
        &[("CDR__CLICKHOUSE__PASSWORD", "123456")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("invalid configuration"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
