//! `cdrctl rate`: offline rating of calls from a JSON-lines file with the
//! same decks and the same pure function (`rater::rate_call`) as the rater
//! service, for re-rating disputes and checking a new deck before it ships.
//!
//! Input: one call per line: a switch `cdr` event (the one-record form of
//! the switch contract, `schemas/examples/cdr.json`; it is validated and
//! built into a call exactly as the assembler does), an enriched call (`{"call": {...},
//! "enrichment": {...}}`, the `calls.enriched` record as JSON) or a bare
//! assembled call (the `calls.assembled` record; it is rated with an empty
//! enrichment, so the caller id falls back to a simple E.164 check and no
//! LRN applies). Blank lines and lines starting with `#` are skipped.
//! Output: one rated CDR (`cdrs.rated` record) per input line, as JSON.

use std::io::{BufRead, Write};

use anyhow::Context;
use cdr_model::call::{AssembledCall, EnrichedCall, Enrichment};
use cdr_model::event::{EventKind, SwitchEvent};

/// Progress on stderr: a line rewritten in place at most every 250 ms when
/// stderr is a terminal, one line per million calls otherwise (so logs of a
/// batch job still show it moving).
struct Progress {
    tty: bool,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let now = std::time::Instant::now();
        Progress {
            tty: std::io::stderr().is_terminal(),
            started: now,
            last: now,
        }
    }

    fn tick(&mut self, n: usize, done: bool) {
        let due = if self.tty {
            self.last.elapsed() >= std::time::Duration::from_millis(250)
        } else {
            n.is_multiple_of(1_000_000)
        };
        if !(due || done && self.tty) {
            return;
        }
        self.last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let line = format!("rated {n} calls ({:.0} calls/s)", n as f64 / secs);
        if self.tty {
            eprint!("\r{line}{}", if done { "\n" } else { "" });
        } else {
            eprintln!("{line}");
        }
    }
}

/// Parses one input line.
pub fn parse_call(line: &str) -> anyhow::Result<EnrichedCall> {
    let is_event = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .is_some_and(|v| v.get("type").is_some());
    if is_event {
        let ev = SwitchEvent::from_json(line.as_bytes(), 5_000).map_err(|e| {
            anyhow::anyhow!(
                "switch event rejected: {e} (field `{}`)",
                e.field().unwrap_or("-")
            )
        })?;
        anyhow::ensure!(
            ev.kind == EventKind::Cdr,
            "switch event of type `{}`: only complete `cdr` events can be rated offline",
            ev.kind.as_str()
        );
        let id = cdr_model::ids::cdr_id(&ev.switch_id, &ev.call_id);
        // The event's own time stands in for the assembly time so the output
        // is the same on every run.
        let at = ev.ts_ms;
        let call = assembler::core::build_call(&id, std::slice::from_ref(&ev), false, at);
        return Ok(EnrichedCall {
            call,
            enrichment: Enrichment::default(),
        });
    }
    match serde_json::from_str::<EnrichedCall>(line) {
        Ok(c) => Ok(c),
        Err(enriched_err) => match serde_json::from_str::<AssembledCall>(line) {
            Ok(call) => Ok(EnrichedCall {
                call,
                enrichment: Enrichment::default(),
            }),
            Err(_) => Err(anyhow::anyhow!(
                "neither an enriched nor an assembled call: {enriched_err}"
            )),
        },
    }
}

/// Rates every call of `input` and writes the rated CDRs to `out`. Returns
/// (rated, unrated) counts; a line that is not a call is an error naming it.
pub fn rate_lines(
    input: impl BufRead,
    name: &str,
    ctx: &rater::ratedeck::RatingContext<'_>,
    mut out: impl Write,
) -> anyhow::Result<(usize, usize)> {
    let (mut rated, mut unrated) = (0, 0);
    let mut progress = Progress::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name}"))?;
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let call = parse_call(l).with_context(|| format!("{name}:{}", i + 1))?;
        let cdr = rater::rate_call(call, ctx);
        if cdr.rating.status == "rated" {
            rated += 1;
        } else {
            unrated += 1;
        }
        serde_json::to_writer(&mut out, &cdr)?;
        out.write_all(b"\n")?;
        progress.tick(rated + unrated, false);
    }
    out.flush()?;
    progress.tick(rated + unrated, true);
    Ok((rated, unrated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_assembled_and_enriched_lines() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (t, _) =
            rater::load_from_config_file(&repo.join("deploy/local/config/rater.toml"), &repo)
                .unwrap();
        let call = serde_json::json!({
            "cdr_id": "x1", "call_id": "c1", "switch_id": "sw", "account_id": "acc-1001",
            "direction": "outbound", "cli": "+12125550100", "dialed": "525512345678",
            "trunk_id": null, "setup_ts_ms": 1790000000000i64, "progress_ts_ms": null,
            "progress_code": null, "answer_ts_ms": 1790000005000i64, "end_ts_ms": 1790000066000i64,
            "final_sip_code": 200, "disposition": "answered", "duration_ms": 61000,
            "billable_seconds": 61, "pdd_ms": null, "headers": {}, "source_ip": null,
            "behind_nat": false, "codec": null, "media": null, "flags": [],
            "event_count": 4, "assembled_at_ms": 1790000066000i64
        });
        let mut enriched = serde_json::json!({"call": call.clone(), "enrichment": {
            "cli_e164": "12125550100", "cli_valid": true, "dialed_e164": "525512345678",
            "plan_selector": null, "trunk_selector": null, "lrn": null, "ported": false,
            "lrn_source": "not_applicable", "lrn_fee": "0.001", "caller_country": null,
            "callee_country": null, "callee_number_type": null, "jurisdiction": null, "flags": []
        }});
        enriched["call"]["account_id"] = "acc-404".into();
        let input = format!("# calls\n{call}\n\n{enriched}\n");
        let mut out = Vec::new();
        let n = rate_lines(input.as_bytes(), "calls.jsonl", &t.context(), &mut out).unwrap();
        assert_eq!(n, (1, 1));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["rating"]["amount"], "0.0360");
        assert_eq!(lines[1]["rating"]["unrated_reason"], "unknown_account");
        let err = rate_lines(
            "{\"nope\":1}\n".as_bytes(),
            "bad.jsonl",
            &t.context(),
            Vec::new(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("bad.jsonl:1"), "{err:#}");
    }

    #[test]
    fn rates_switch_cdr_events_like_the_assembler_builds_them() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (t, _) =
            rater::load_from_config_file(&repo.join("deploy/local/config/rater.toml"), &repo)
                .unwrap();
        let ev = std::fs::read_to_string(repo.join("schemas/examples/cdr.json")).unwrap();
        let c = parse_call(ev.trim()).unwrap();
        assert_eq!(c.call.call_id, "88911");
        assert_eq!(c.call.cdr_id, cdr_model::ids::cdr_id("sw-lon-2", "88911"));
        // 10:03:11 -> 10:05:40 answered: 149 s.
        assert_eq!(c.call.billable_seconds, 149);
        assert_eq!(c.call.disposition, "answered");
        let mut out = Vec::new();
        rate_lines(
            format!("{}\n", ev.trim()).as_bytes(),
            "x",
            &t.context(),
            &mut out,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["call"]["call_id"], "88911");
        // A setup event alone is refused with a reason, not rated.
        let setup = std::fs::read_to_string(repo.join("schemas/examples/setup.json")).unwrap();
        let e = format!("{:#}", parse_call(setup.trim()).unwrap_err());
        assert!(e.contains("only complete `cdr` events"), "{e}");
        let bad = r#"{"type":"cdr","event_id":"e","call_id":"c","switch_id":"s","ts":"2026-11-21T10:00:00Z"}"#;
        let e = format!("{:#}", parse_call(bad).unwrap_err());
        assert!(e.contains("field `"), "{e}");
    }
}
