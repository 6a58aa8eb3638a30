//! Realistic switch traffic, generated deterministically from a seed: a mix
//! of answered, busy, no-answer, failed and cancelled calls, as milestone
//! events or end-of-call `cdr` records, with duplicated events, reordered
//! answer/hangup pairs and a few malformed messages. The generator is pure;
//! it also returns the expected outcome so tests can check what landed.

use std::collections::BTreeMap;

use cdr_model::event::format_ts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub calls: usize,
    /// Event time of the first setup (ms).
    pub start_ms: i64,
    /// Mean gap between call setups (ms of event time).
    pub mean_gap_ms: i64,
    pub duplicate_pct: f64,
    pub reorder_pct: f64,
    pub malformed_pct: f64,
    pub cdr_record_pct: f64,
    /// Distinguishes runs so call ids never collide across runs.
    pub run_id: String,
    pub accounts: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            calls: 1000,
            start_ms: 1_790_000_000_000,
            mean_gap_ms: 200,
            duplicate_pct: 3.0,
            reorder_pct: 5.0,
            malformed_pct: 1.0,
            cdr_record_pct: 10.0,
            run_id: "run".into(),
            accounts: vec!["acc-1001".into(), "acc-1002".into(), "acc-2001".into()],
        }
    }
}

/// One message for `call-events`.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub key: String,
    pub payload: Vec<u8>,
    pub ts_ms: i64,
}

/// What the pipeline must produce from the traffic.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Expected {
    pub calls: usize,
    pub by_disposition: BTreeMap<String, usize>,
    pub dead_letters: usize,
    pub dead_by_reason: BTreeMap<String, usize>,
    pub answered_seconds: i64,
    pub events: usize,
}

const DESTS: &[&str] = &[
    "442079460123",
    "447700900123",
    "4930123456",
    "4915112345678",
    "12125550199",
    "13105550123",
    "525512345678",
    "33123456789",
    "8821612345678",
    "5978123456",
];
const CLIS: &[&str] = &[
    "+12125550100",
    "+442079460000",
    "+4930111111",
    "2125550111",
    "anonymous",
    "+33144556677",
];

fn base_event(
    _cfg: &SimConfig,
    call: &str,
    id: &str,
    kind: &str,
    ts: i64,
    acct: &str,
) -> serde_json::Value {
    json!({"event_id": id, "call_id": call, "type": kind, "ts": format_ts(ts), "switch_id": "sw-nyc-1", "account_id": acct})
}

pub fn generate(cfg: &SimConfig) -> (Vec<Msg>, Expected) {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut msgs: Vec<Msg> = Vec::new();
    let mut exp = Expected::default();
    let mut t = cfg.start_ms;
    for i in 0..cfg.calls {
        t += rng.gen_range(0..=2 * cfg.mean_gap_ms.max(1));
        let call = format!("{}-{i:07}", cfg.run_id);
        let acct = cfg.accounts[rng.gen_range(0..cfg.accounts.len())].clone();
        let dest = DESTS[rng.gen_range(0..DESTS.len())];
        let prefix = ["", "", "", "*31", "*32", "*30", "*4007"][rng.gen_range(0..7)];
        let dialed = format!("{prefix}{dest}");
        let cli = CLIS[rng.gen_range(0..CLIS.len())];
        let trunk = format!("trk-{}", rng.gen_range(1..=4));
        let roll: f64 = rng.gen_range(0.0..100.0);
        let (disp, code) = match roll {
            // ASR ~70%: the default mix is conforming wholesale traffic
            // (seed 000 requires ASR > 50%), so the conformance monitor must
            // leave these accounts alone.
            r if r < 70.0 => ("answered", 200),
            r if r < 78.0 => ("busy", 486),
            r if r < 86.0 => ("no_answer", 480),
            r if r < 95.0 => ("failed", [503, 404, 403][rng.gen_range(0..3)]),
            _ => ("cancelled", 487),
        };
        let pdd = rng.gen_range(800..6000);
        let ring = rng.gen_range(2000..20000);
        // Talk time: a long-tailed mix of short and conversational calls.
        let talk_ms: i64 = if rng.gen_bool(0.2) {
            rng.gen_range(1000..6000)
        } else {
            rng.gen_range(20_000..400_000)
        };
        let setup = t;
        let progress = setup + pdd;
        let answer = progress + ring;
        let end = if disp == "answered" {
            answer + talk_ms
        } else {
            progress + ring
        };
        let media = json!({"rtp_rx_packets": talk_ms / 20, "rtp_rx_before_answer": 0, "silence_ratio": 0.12, "mos": 4.1, "jitter_ms": 7.5, "loss_pct": 0.2});
        let mut call_msgs = Vec::new();
        if rng.gen_range(0.0..100.0) < cfg.cdr_record_pct {
            let mut e = base_event(cfg, &call, &format!("{call}-cdr"), "cdr", end, &acct);
            e["setup_ts"] = json!(format_ts(setup));
            e["progress_ts"] = json!(format_ts(progress));
            if disp == "answered" {
                e["answer_ts"] = json!(format_ts(answer));
            }
            e["end_ts"] = json!(format_ts(end));
            e["sip_code"] = json!(code);
            e["cli"] = json!(cli);
            e["dialed"] = json!(dialed);
            e["trunk_id"] = json!(trunk);
            e["media"] = media;
            call_msgs.push((end, e));
        } else {
            let mut s = base_event(cfg, &call, &format!("{call}-s"), "setup", setup, &acct);
            s["cli"] = json!(cli);
            s["dialed"] = json!(dialed);
            s["direction"] = json!("outbound");
            s["source_ip"] = json!("198.51.100.7");
            s["behind_nat"] = json!(false);
            s["codec"] = json!("PCMU");
            s["headers"] = json!({"X-CWU-maxrate": "0.0500", "X-CWU-maxroute": "2"});
            call_msgs.push((setup, s));
            let mut p = base_event(
                cfg,
                &call,
                &format!("{call}-p"),
                "progress",
                progress,
                &acct,
            );
            p["sip_code"] = json!(if rng.gen_bool(0.5) { 180 } else { 183 });
            call_msgs.push((progress, p));
            if disp == "answered" {
                let mut a = base_event(cfg, &call, &format!("{call}-a"), "answer", answer, &acct);
                a["trunk_id"] = json!(trunk);
                call_msgs.push((answer, a));
            }
            let mut h = base_event(cfg, &call, &format!("{call}-h"), "hangup", end, &acct);
            h["sip_code"] = json!(code);
            h["trunk_id"] = json!(trunk);
            if disp == "answered" {
                h["media"] = media;
            }
            call_msgs.push((end, h));
            if disp == "answered" && rng.gen_range(0.0..100.0) < cfg.reorder_pct {
                // Hangup delivered before its answer.
                let n = call_msgs.len();
                call_msgs.swap(n - 1, n - 2);
                let a_ts = call_msgs[n - 2].0;
                call_msgs[n - 1].0 = a_ts;
            }
            // Duplicates of any milestone.
            let dups: Vec<_> = call_msgs
                .iter()
                .filter(|_| rng.gen_range(0.0..100.0) < cfg.duplicate_pct)
                .cloned()
                .collect();
            call_msgs.extend(dups);
        }
        exp.calls += 1;
        *exp.by_disposition.entry(disp.to_string()).or_default() += 1;
        if disp == "answered" {
            exp.answered_seconds += (talk_ms + 999) / 1000;
        }
        for (ts, v) in call_msgs {
            msgs.push(Msg {
                key: call.clone(),
                payload: serde_json::to_vec(&v).unwrap(),
                ts_ms: ts,
            });
        }
        if rng.gen_range(0.0..100.0) < cfg.malformed_pct {
            let (reason, payload) = malformed(&mut rng, cfg, i, setup);
            *exp.dead_by_reason.entry(reason.to_string()).or_default() += 1;
            exp.dead_letters += 1;
            msgs.push(Msg {
                key: format!("{}-bad-{i}", cfg.run_id),
                payload,
                ts_ms: setup,
            });
        }
    }
    // Switches publish in event-time order (stable for ties, which keeps the
    // deliberate hangup-before-answer swaps).
    msgs.sort_by_key(|m| m.ts_ms);
    exp.events = msgs.len();
    (msgs, exp)
}

fn malformed(rng: &mut StdRng, cfg: &SimConfig, i: usize, ts: i64) -> (&'static str, Vec<u8>) {
    let call = format!("{}-bad-{i}", cfg.run_id);
    match rng.gen_range(0..6) {
        0 => (
            "bad_json",
            format!("{{\"event_id\":\"{call}\",\"call_id\":").into_bytes(),
        ),
        1 => (
            "unknown_type",
            serde_json::to_vec(&base_event(cfg, &call, &call, "ringing", ts, "acc-1001")).unwrap(),
        ),
        2 => {
            let mut e = base_event(cfg, &call, &call, "hangup", ts, "acc-1001");
            e.as_object_mut().unwrap().remove("call_id");
            ("missing_field", serde_json::to_vec(&e).unwrap())
        }
        3 => {
            let mut e = base_event(cfg, &call, &call, "answer", ts, "acc-1001");
            e["ts"] = json!("21/11/2026 10:00");
            ("bad_timestamp", serde_json::to_vec(&e).unwrap())
        }
        4 => {
            let mut e = base_event(cfg, &call, &call, "cdr", ts, "acc-1001");
            e["dialed"] = json!("442079460000");
            e["setup_ts"] = json!(format_ts(ts));
            e["answer_ts"] = json!(format_ts(ts - 60_000));
            e["end_ts"] = json!(format_ts(ts + 30_000));
            ("answer_before_setup", serde_json::to_vec(&e).unwrap())
        }
        _ => {
            let mut e = base_event(cfg, &call, &call, "cdr", ts, "acc-1001");
            e["dialed"] = json!("442079460000");
            e["setup_ts"] = json!(format_ts(ts));
            e["answer_ts"] = json!(format_ts(ts + 5_000));
            e["end_ts"] = json!(format_ts(ts + 1_000));
            ("negative_duration", serde_json::to_vec(&e).unwrap())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdr_model::event::SwitchEvent;

    #[test]
    fn deterministic_and_labelled() {
        let cfg = SimConfig {
            calls: 2000,
            malformed_pct: 5.0,
            ..Default::default()
        };
        let (a, ea) = generate(&cfg);
        let (b, eb) = generate(&cfg);
        assert_eq!(a, b);
        assert_eq!(ea, eb);
        assert_eq!(ea.calls, 2000);
        assert_eq!(ea.by_disposition.values().sum::<usize>(), 2000);
        for d in ["answered", "busy", "no_answer", "failed", "cancelled"] {
            assert!(ea.by_disposition.get(d).copied().unwrap_or(0) > 0, "no {d}");
        }
        // Every malformed message fails to parse with its labelled reason;
        // every other message parses.
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for m in &a {
            if let Err(e) = SwitchEvent::from_json(&m.payload, 2000) {
                *reasons.entry(e.reason().to_string()).or_default() += 1;
            }
        }
        assert_eq!(reasons, ea.dead_by_reason);
        assert!(ea.dead_letters > 50);
    }
}
