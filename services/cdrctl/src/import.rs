//! `cdrctl import --format F FILE…`: batch CDR files from a switch (Asterisk
//! Master.csv, a day of FreeSWITCH JSON CDRs as NDJSON or an array, AMI
//! dumps, OpenSIPS datagram captures, …) through the same adapters the
//! ingest service runs, onto `call-events`.
//!
//! Every record is adapted on its own: a bad row is reported (file, record
//! number, reason, field, message) and never stops the others; the rest is
//! published, each event keyed by its call id, and the command returns once
//! the broker acknowledged all of them. Event ids come from the switch's own
//! ids, so importing the same file twice bills every call once.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cdr_kafka::KafkaConfig;
use switch_adapters::{adapt_file, AdapterConfig, Format, SwitchEvent};

/// One refused record, as written to the rejected-rows report (JSON lines).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RejectedRow {
    pub file: String,
    pub record: usize,
    pub format: String,
    pub reason: String,
    pub field: Option<String>,
    pub message: String,
}

/// What one file gave.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileReport {
    pub events: Vec<SwitchEvent>,
    pub rejected: Vec<RejectedRow>,
    /// Records of a call that another record of the same call bills.
    pub superseded: usize,
}

/// Adapts one file's bytes (pure).
pub fn adapt(name: &str, format: Format, bytes: &[u8], cfg: &AdapterConfig) -> FileReport {
    let out = adapt_file(format, bytes, cfg);
    FileReport {
        events: out.events,
        superseded: out.superseded,
        rejected: out
            .rejected
            .into_iter()
            .map(|(record, e)| RejectedRow {
                file: name.to_string(),
                record,
                format: format.as_str().to_string(),
                reason: e.reason().to_string(),
                field: e.field().map(str::to_string),
                message: e.to_string(),
            })
            .collect(),
    }
}

/// The adapter configuration of `switch` in an ingest configuration file.
pub fn switch_config(ingest_config: &Path, switch: Option<&str>) -> anyhow::Result<AdapterConfig> {
    let cfg: ingest::Config = cdr_kafka::config::load_config_from(Some(ingest_config), &[])
        .with_context(|| format!("loading {}", ingest_config.display()))?;
    Ok(cfg
        .switch(switch)
        .with_context(|| format!("in {}", ingest_config.display()))?
        .clone())
}

/// Totals of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub files: usize,
    pub events: usize,
    pub rejected: usize,
    pub superseded: usize,
}

/// Imports `files`: adapts each, writes refused records to `rejects` (JSON
/// lines), publishes the events unless `dry_run`. Progress on stderr.
pub async fn import(
    kafka: &KafkaConfig,
    format: Format,
    cfg: &AdapterConfig,
    files: &[PathBuf],
    mut rejects: Option<&mut dyn Write>,
    dry_run: bool,
) -> anyhow::Result<Totals> {
    let producer = if dry_run {
        None
    } else {
        Some(cdr_kafka::runtime::producer(kafka, "cdrctl-import")?)
    };
    let mut t = Totals::default();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f.display().to_string();
        let r = adapt(&name, format, &bytes, cfg);
        if let Some(w) = rejects.as_deref_mut() {
            for row in &r.rejected {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")?;
            }
        }
        for row in r.rejected.iter().take(5) {
            eprintln!(
                "{}: record {}: {} ({})",
                row.file, row.record, row.message, row.reason
            );
        }
        if let Some(p) = &producer {
            let mut acks = Vec::with_capacity(r.events.len().min(4096));
            for e in &r.events {
                acks.push(
                    cdr_kafka::runtime::send(
                        p,
                        cdr_model::topics::CALL_EVENTS,
                        e.call_id.as_bytes(),
                        &e.to_json(),
                    )
                    .await?,
                );
                if acks.len() >= 4096 {
                    cdr_kafka::runtime::await_acks(std::mem::take(&mut acks)).await?;
                }
            }
            cdr_kafka::runtime::await_acks(acks)
                .await
                .with_context(|| format!("publishing the events of {name}"))?;
        }
        eprintln!(
            "{name}: {} events{}, {} records rejected, {} superseded",
            r.events.len(),
            if dry_run {
                " (dry run, not published)"
            } else {
                " published"
            },
            r.rejected.len(),
            r.superseded
        );
        t.files += 1;
        t.events += r.events.len();
        t.rejected += r.rejected.len();
        t.superseded += r.superseded;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../crates/switch-adapters/tests/fixtures")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn a_bad_row_is_reported_and_the_others_kept() {
        let mut csv = fixture("asterisk_master.csv");
        let good = adapt(
            "m.csv",
            Format::AsteriskCsv,
            &csv,
            &AdapterConfig::new("ast-1"),
        );
        assert!(good.rejected.is_empty(), "{:?}", good.rejected);
        assert!(!good.events.is_empty());
        csv.extend_from_slice(b"\"acc\",\"1\",\"2\"\n");
        let r = adapt(
            "m.csv",
            Format::AsteriskCsv,
            &csv,
            &AdapterConfig::new("ast-1"),
        );
        assert_eq!(r.events, good.events, "the good rows are unaffected");
        assert_eq!(r.rejected.len(), 1);
        let row = &r.rejected[0];
        assert_eq!(row.file, "m.csv");
        assert!(row.record > 1);
        assert_eq!(row.format, "asterisk-csv");
        assert!(!row.reason.is_empty() && !row.message.is_empty());
    }

    #[test]
    fn the_same_file_twice_gives_the_same_events() {
        let doc = fixture("freeswitch_aleg_answered.json");
        let cfg = AdapterConfig::new("fs-1");
        let a = adapt("a.json", Format::FreeswitchJson, &doc, &cfg);
        let b = adapt("b.json", Format::FreeswitchJson, &doc, &cfg);
        assert!(!a.events.is_empty());
        assert_eq!(a.events, b.events);
    }

    #[test]
    fn shipped_ingest_config_names_every_lab_switch() {
        let p =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/config/ingest.toml");
        for s in ["fs-lab-1", "ast-lab-1", "osips-lab-1", "kam-lab-1"] {
            assert_eq!(switch_config(&p, Some(s)).unwrap().switch_id, s);
        }
        assert_eq!(switch_config(&p, None).unwrap().switch_id, "fs-lab-1");
        assert!(switch_config(&p, Some("nope")).is_err());
    }
}
