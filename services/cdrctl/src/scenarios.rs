//! Labelled switch-traffic scenarios for detection and conformance tests
//! (and `cdrctl simulate --scenario`): every call carries its ground truth,
//! so tests can measure precision and recall instead of eyeballing.
//!
//! * `fas`: a FAS route (`trk-fas-<run>`, 10 calls a minute: instant answers with no ringback,
//!   durations clustered around 30 s, far-end silence) and a clean route on
//!   the same breakout (`trk-clean-<run>`), plus a dialer account (`acc-4001`:
//!   high attempt rate, ASR ~20%, most answered calls under 6 s) and a
//!   conversational account (`acc-4002`).
//! * `conformance`: wholesale accounts with ASR 40% (`acc-3001`), ACD 45 s
//!   (`acc-3002`), conforming traffic (`acc-3003`) and a non-conforming
//!   account under the minimum sample (`acc-3004`); groups 31xx..35xx
//!   repeat the pattern for re-runs.

use std::collections::BTreeSet;

use cdr_model::event::format_ts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::simulate::Msg;

/// One call to generate.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub call_id: String,
    pub account: String,
    pub trunk: String,
    pub cli: String,
    pub dialed: String,
    pub setup_ms: i64,
    /// Setup -> 180/183; `None` = no ringback/progress at all.
    pub pdd_ms: Option<i64>,
    /// Setup -> 200 OK; `None` = not answered.
    pub answer_after_ms: Option<i64>,
    pub talk_ms: i64,
    /// Final SIP code when not answered.
    pub fail_code: i32,
    pub silence_ratio: f64,
    pub rtp_rx_packets: i64,
    pub rtp_rx_before_answer: i64,
}

/// The events of one call, milestone by milestone.
pub fn events(c: &CallSpec) -> Vec<Msg> {
    let base = |kind: &str, ts: i64| {
        json!({"event_id": format!("{}-{kind}", c.call_id), "call_id": c.call_id, "type": kind,
               "ts": format_ts(ts), "switch_id": "sw-sim-2", "account_id": c.account})
    };
    let mut out = Vec::new();
    let mut s = base("setup", c.setup_ms);
    s["cli"] = json!(c.cli);
    s["dialed"] = json!(c.dialed);
    s["direction"] = json!("outbound");
    s["codec"] = json!("PCMA");
    out.push((c.setup_ms, s));
    if let Some(p) = c.pdd_ms {
        let mut e = base("progress", c.setup_ms + p);
        e["sip_code"] = json!(if c.rtp_rx_before_answer > 0 { 183 } else { 180 });
        out.push((c.setup_ms + p, e));
    }
    let end = match c.answer_after_ms {
        Some(a) => {
            let mut e = base("answer", c.setup_ms + a);
            e["trunk_id"] = json!(c.trunk);
            out.push((c.setup_ms + a, e));
            c.setup_ms + a + c.talk_ms
        }
        None => c.setup_ms + c.pdd_ms.unwrap_or(0) + 15_000,
    };
    let mut h = base("hangup", end);
    h["trunk_id"] = json!(c.trunk);
    h["sip_code"] = json!(if c.answer_after_ms.is_some() {
        200
    } else {
        c.fail_code
    });
    if c.answer_after_ms.is_some() {
        h["media"] = json!({"rtp_rx_packets": c.rtp_rx_packets, "rtp_rx_before_answer": c.rtp_rx_before_answer,
                            "silence_ratio": c.silence_ratio, "mos": 4.0, "jitter_ms": 9.0, "loss_pct": 0.3});
    }
    out.push((end, h));
    out.into_iter()
        .map(|(ts, v)| Msg {
            key: c.call_id.clone(),
            payload: serde_json::to_vec(&v).expect("json"),
            ts_ms: ts,
        })
        .collect()
}

/// Ground truth of a scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    pub calls: usize,
    /// Call ids of genuinely falsely-answered calls.
    pub fas_calls: BTreeSet<String>,
    /// (trunk, breakout-dialed number) routes that are FAS.
    pub fas_routes: BTreeSet<String>,
    pub clean_routes: BTreeSet<String>,
    pub dialer_accounts: BTreeSet<String>,
    pub conversational_accounts: BTreeSet<String>,
    /// Per account: (seizures, answered, answered seconds).
    pub per_account: std::collections::BTreeMap<String, (u64, u64, i64)>,
}

#[allow(clippy::too_many_arguments)]
fn normal(
    rng: &mut StdRng,
    run: &str,
    i: usize,
    account: &str,
    trunk: &str,
    dialed: &str,
    t: i64,
    asr: f64,
    talk: (i64, i64),
) -> CallSpec {
    let answered = rng.gen_bool(asr);
    CallSpec {
        call_id: format!("{run}-{account}-{trunk}-{i:06}"),
        account: account.into(),
        trunk: trunk.into(),
        cli: "+12125550100".into(),
        dialed: dialed.into(),
        setup_ms: t,
        pdd_ms: Some(rng.gen_range(1_500..5_000)),
        answer_after_ms: answered.then(|| rng.gen_range(8_000..25_000)),
        // Exponential-ish talk times between the bounds.
        talk_ms: {
            let u: f64 = rng.gen_range(0.0001..1.0);
            let mean = (talk.0 + talk.1) as f64 / 2.0;
            ((-u.ln() * mean) as i64).clamp(talk.0, talk.1)
        },
        fail_code: [486, 480, 404, 503][rng.gen_range(0..4)],
        silence_ratio: rng.gen_range(0.05..0.35),
        rtp_rx_packets: 0, // filled below from the talk time
        rtp_rx_before_answer: 0,
    }
    .with_packets()
}

impl CallSpec {
    fn with_packets(mut self) -> Self {
        if self.answer_after_ms.is_some() && self.rtp_rx_packets == 0 && self.silence_ratio < 0.9 {
            self.rtp_rx_packets = self.talk_ms / 20;
        }
        self
    }
}

fn finish(truth: &mut Truth, specs: &[CallSpec]) -> Vec<Msg> {
    let mut msgs = Vec::new();
    for c in specs {
        truth.calls += 1;
        let e = truth.per_account.entry(c.account.clone()).or_default();
        e.0 += 1;
        if c.answer_after_ms.is_some() {
            e.1 += 1;
            e.2 += (c.talk_ms + 999) / 1000;
        }
        msgs.extend(events(c));
    }
    msgs.sort_by_key(|m| m.ts_ms);
    msgs
}

/// The FAS / dialer scenario over `minutes` of event time from `start_ms`.
pub fn fas(run: &str, seed: u64, start_ms: i64, minutes: i64) -> (Vec<Msg>, Truth) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut specs = Vec::new();
    let mut truth = Truth::default();
    let uk_mobile = "447700900123";
    // Trunk names carry the run id, so every run judges fresh routes.
    let fas_trunk = format!("trk-fas-{run}");
    let clean_trunk = format!("trk-clean-{run}");
    truth.fas_routes.insert(fas_trunk.clone());
    truth.clean_routes.insert(clean_trunk.clone());
    truth.dialer_accounts.insert("acc-4001".into());
    truth.conversational_accounts.insert("acc-4002".into());
    let span = minutes * 60_000;
    // FAS route: 10 answered calls a minute, all falsely answered.
    for i in 0..(minutes * 10) as usize {
        let t = start_ms + rng.gen_range(0..span);
        let c = CallSpec {
            call_id: format!("{run}-fas-{i:06}"),
            // Dedicated accounts: the FAS route's 30 s calls (and any ASR
            // dip of the clean route) may trip the conformance rule, which
            // must not downgrade accounts other tests rate.
            account: "acc-4003".into(),
            trunk: fas_trunk.clone(),
            cli: "+12125550100".into(),
            dialed: uk_mobile.into(),
            setup_ms: t,
            pdd_ms: None,
            answer_after_ms: Some(rng.gen_range(150..900)),
            talk_ms: rng.gen_range(28_000..32_000),
            fail_code: 0,
            silence_ratio: rng.gen_range(0.93..1.0),
            rtp_rx_packets: rng.gen_range(0..3),
            rtp_rx_before_answer: 0,
        };
        truth.fas_calls.insert(c.call_id.clone());
        specs.push(c);
    }
    // Clean route on the same breakout, similar volume.
    for i in 0..(minutes * 14) as usize {
        let t = start_ms + rng.gen_range(0..span);
        specs.push(normal(
            &mut rng,
            run,
            i,
            "acc-1002",
            &clean_trunk,
            uk_mobile,
            t,
            0.6,
            (20_000, 240_000),
        ));
    }
    // Dialer: 40 attempts a minute, ASR 20%, answered mostly 2-5 s.
    for i in 0..(minutes * 40) as usize {
        let t = start_ms + rng.gen_range(0..span);
        specs.push(normal(
            &mut rng,
            run,
            i,
            "acc-4001",
            "trk-2",
            "4930123456",
            t,
            0.2,
            (2_000, 5_000),
        ));
    }
    // Conversational account: 3 calls a minute, ASR 65%, minutes-long calls.
    for i in 0..(minutes * 3) as usize {
        let t = start_ms + rng.gen_range(0..span);
        specs.push(normal(
            &mut rng,
            run,
            i,
            "acc-4002",
            "trk-3",
            "4930123456",
            t,
            0.65,
            (30_000, 240_000),
        ));
    }
    let msgs = finish(&mut truth, &specs);
    (msgs, truth)
}

/// Account groups for the conformance scenario (low ASR, low ACD,
/// conforming, under the minimum sample). Several groups exist so a test
/// can be re-run while an earlier run's decisions are still in force.
pub const CONFORMANCE_GROUPS: [[&str; 4]; 6] = [
    ["acc-3001", "acc-3002", "acc-3003", "acc-3004"],
    ["acc-3101", "acc-3102", "acc-3103", "acc-3104"],
    ["acc-3201", "acc-3202", "acc-3203", "acc-3204"],
    ["acc-3301", "acc-3302", "acc-3303", "acc-3304"],
    ["acc-3401", "acc-3402", "acc-3403", "acc-3404"],
    ["acc-3501", "acc-3502", "acc-3503", "acc-3504"],
];

/// The conformance scenario: `n` seizures for each of the group's first
/// three accounts and 50 for the fourth, over `minutes` of event time.
pub fn conformance(
    run: &str,
    seed: u64,
    start_ms: i64,
    minutes: i64,
    n: usize,
    group: [&str; 4],
) -> (Vec<Msg>, Truth) {
    let mut rng = StdRng::seed_from_u64(seed);
    let span = minutes * 60_000;
    let mut specs = Vec::new();
    let accounts = [
        (group[0], n, 0.4, (90_000, 300_000)),
        (group[1], n, 0.8, (40_000, 50_000)),
        (group[2], n, 0.75, (80_000, 300_000)),
        (group[3], 50, 0.1, (90_000, 300_000)),
    ];
    for (acct, count, asr, talk) in accounts {
        for i in 0..count {
            let t = start_ms + (span * i as i64) / count as i64 + rng.gen_range(0..1_000);
            let mut c = normal(&mut rng, run, i, acct, "trk-1", "4930123456", t, asr, talk);
            if acct == group[1] {
                // ACD 45 s: talk times uniform around it.
                c.talk_ms = rng.gen_range(40_000..50_000);
            }
            specs.push(c);
        }
    }
    let mut truth = Truth::default();
    let msgs = finish(&mut truth, &specs);
    (msgs, truth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdr_model::event::SwitchEvent;

    #[test]
    fn fas_scenario_is_labelled_and_parses() {
        let (msgs, t) = fas("r", 3, 1_790_000_000_000, 30);
        assert_eq!(t.fas_calls.len(), 300);
        assert!(t.calls > 800);
        for m in &msgs {
            SwitchEvent::from_json(&m.payload, 2000).expect("every event parses");
        }
        let (again, t2) = fas("r", 3, 1_790_000_000_000, 30);
        assert_eq!(msgs, again);
        assert_eq!(t, t2);
        let (_, t3) = fas("r", 4, 1_790_000_000_000, 30);
        assert_ne!(
            t.per_account, t3.per_account,
            "the seed changes the traffic"
        );
    }

    #[test]
    fn conformance_accounts_have_the_intended_figures() {
        let (_, t) = conformance("r", 1, 1_790_000_000_000, 60, 400, CONFORMANCE_GROUPS[0]);
        let (s, a, secs) = t.per_account["acc-3001"];
        let asr = a as f64 / s as f64;
        assert!((0.33..0.47).contains(&asr), "acc-3001 ASR {asr}");
        let (_, a, secs2) = t.per_account["acc-3002"];
        let acd = secs2 as f64 / a as f64;
        assert!((40.0..51.0).contains(&acd), "acc-3002 ACD {acd}");
        let (s, a, secs3) = t.per_account["acc-3003"];
        assert!(a as f64 / s as f64 > 0.6 && secs3 as f64 / a as f64 > 60.0);
        assert_eq!(t.per_account["acc-3004"].0, 50);
        assert!(secs > 0);
    }
}
