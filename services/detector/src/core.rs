//! Pure detector core: a rated CDR in, the scored CDR and every control
//! record it triggers out (route alerts and pulls, FAS credits, account
//! traffic alerts). Owns the mapping between pipeline records and the
//! `detection` crate; no Kafka, no clock (times are the calls' own, except
//! `raised_at`, which the caller passes in).

use std::collections::HashMap;
use std::str::FromStr;

use cdr_model::call::{Detection, RatedCdr};
use cdr_model::control::{AccountAlertEvent, Adjustment, RouteAlertEvent, RouteStatusEvent};
use cdr_model::ids::stable_id;
use detection::{
    evaluate_call, AccountAlert, CallFacts, Credit, FasConfig, ProfileMonitor, RouteAlert,
    RouteMonitor, TrafficProfile,
};
use rust_decimal::Decimal;

/// Everything one CDR produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outputs {
    pub scored: Option<RatedCdr>,
    pub alerts: Vec<RouteAlertEvent>,
    pub status: Vec<RouteStatusEvent>,
    pub adjustments: Vec<Adjustment>,
    pub account_alerts: Vec<AccountAlertEvent>,
}

/// The detector's state: per-route and per-account windows.
pub struct Detector {
    pub fas: FasConfig,
    pub routes: RouteMonitor,
    pub profiles: ProfileMonitor,
    /// Declared traffic profile per account (account setting).
    pub declared: HashMap<String, TrafficProfile>,
    /// Setup time and currency of CDRs that may still be credited, so a
    /// credit emitted later (by `take_credits`) can reference them.
    pending: HashMap<String, (i64, String)>,
}

/// Maps a rated CDR to the facts the detection crate judges.
pub fn facts(cdr: &RatedCdr) -> CallFacts {
    let c = &cdr.call;
    let m = c.media.as_ref();
    CallFacts {
        cdr_id: c.cdr_id.clone(),
        account_id: c.account_id.clone(),
        trunk_id: c.trunk_id.clone().unwrap_or_default(),
        breakout: cdr.rating.destination.clone().unwrap_or_default(),
        setup_ts_ms: c.setup_ts_ms,
        progress_ts_ms: c.progress_ts_ms,
        progress_code: c.progress_code,
        answer_ts_ms: c.answer_ts_ms,
        end_ts_ms: c.end_ts_ms,
        duration_ms: c.duration_ms,
        answered: c.disposition == "answered",
        disposition: c.disposition.clone(),
        rtp_rx_packets: m.and_then(|m| m.rtp_rx_packets),
        rtp_rx_before_answer: m.and_then(|m| m.rtp_rx_before_answer),
        silence_ratio: m.and_then(|m| m.silence_ratio),
        billed_seconds: cdr.rating.billed_seconds,
        amount: Decimal::from_str(&cdr.rating.amount).unwrap_or_default(),
    }
}

fn evidence(m: &std::collections::BTreeMap<String, f64>) -> HashMap<String, f64> {
    m.iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

impl Detector {
    pub fn new(
        fas: FasConfig,
        routes: RouteMonitor,
        profiles: ProfileMonitor,
        declared: HashMap<String, TrafficProfile>,
    ) -> Self {
        Detector {
            fas,
            routes,
            profiles,
            declared,
            pending: HashMap::new(),
        }
    }

    fn adjustment(&self, c: &Credit, created_at_ms: i64) -> Adjustment {
        let (setup, currency) = self
            .pending
            .get(&c.cdr_id)
            .cloned()
            .unwrap_or((0, "USD".to_string()));
        Adjustment {
            adjustment_id: c.adjustment_id.clone(),
            cdr_id: c.cdr_id.clone(),
            account_id: c.account_id.clone(),
            amount: c.amount.normalize().to_string(),
            currency,
            reason: c.reason.clone(),
            alert_id: Some(c.alert_id.clone()),
            call_setup_ts_ms: setup,
            created_at_ms,
        }
    }

    fn alert_events(&self, a: &RouteAlert, now_ms: i64, out: &mut Outputs) {
        let credited: Decimal = a.credited.iter().map(|c| c.amount).sum();
        out.alerts.push(RouteAlertEvent {
            alert_id: a.alert_id.clone(),
            trunk_id: a.trunk_id.clone(),
            breakout: a.breakout.clone(),
            window_start_ms: a.window_start_ms,
            window_end_ms: a.window_end_ms,
            patterns: a.patterns.clone(),
            evidence: evidence(&a.evidence),
            action: a.action.clone(),
            credited_calls: a.credited.len() as i64,
            credited_amount: credited.normalize().to_string(),
            raised_at_ms: now_ms,
        });
        out.status.push(RouteStatusEvent {
            event_id: stable_id(&["route_status", &a.alert_id, "pulled"]),
            trunk_id: a.trunk_id.clone(),
            breakout: a.breakout.clone(),
            status: "pulled".into(),
            reason: format!("FAS: {}", a.patterns.join(", ")),
            alert_id: Some(a.alert_id.clone()),
            actor: "detector".into(),
            // The evidence's own time, so replays write the same row.
            changed_at_ms: a.window_end_ms,
        });
        for c in &a.credited {
            out.adjustments.push(self.adjustment(c, now_ms));
        }
    }

    fn account_alert(&self, a: &AccountAlert, now_ms: i64) -> AccountAlertEvent {
        AccountAlertEvent {
            alert_id: a.alert_id.clone(),
            account_id: a.account_id.clone(),
            kind: "undeclared_dialer".into(),
            declared: a
                .declared
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "undeclared".into()),
            observed: a.observed.as_str().to_string(),
            evidence: evidence(&a.evidence),
            window_start_ms: a.window_start_ms,
            window_end_ms: a.window_end_ms,
            raised_at_ms: now_ms,
        }
    }

    /// Judges one CDR: scores it, feeds the route and profile windows, and
    /// returns the scored CDR with whatever it triggered.
    pub fn process(&mut self, mut cdr: RatedCdr, now_ms: i64) -> Outputs {
        let f = facts(&cdr);
        let verdict = evaluate_call(&f, &self.fas);
        if verdict.suspect {
            self.pending.insert(
                f.cdr_id.clone(),
                (cdr.call.setup_ts_ms, cdr.rating.currency.clone()),
            );
        }
        let mut out = Outputs::default();
        for a in self.routes.observe(&f, &verdict) {
            self.alert_events(&a, now_ms, &mut out);
        }
        for c in self.routes.take_credits() {
            out.adjustments.push(self.adjustment(&c, now_ms));
        }
        for a in &out.adjustments {
            self.pending.remove(&a.cdr_id);
        }
        // Suspect calls of routes that never get pulled stay pending only
        // while they could still be credited (the route window).
        if self.pending.len() > 200_000 {
            let horizon = f.setup_ts_ms - self.routes.config().window_ms * 2;
            self.pending.retain(|_, (t, _)| *t >= horizon);
        }
        let declared = self.declared.get(&f.account_id).copied();
        if let Some(a) = self.profiles.observe(&f, declared) {
            out.account_alerts.push(self.account_alert(&a, now_ms));
        }
        cdr.detection = Some(Detection {
            fas_score: verdict.score,
            fas_signals: verdict.signal_names(),
            evaluated: true,
        });
        out.scored = Some(cdr);
        out
    }

    /// An operator restored a route: lift the pull so new evidence can
    /// pull it again.
    pub fn restore(&mut self, trunk_id: &str, breakout: &str) -> bool {
        self.routes.restore(trunk_id, breakout)
    }
}

/// Parses the declared-profile file: `account;profile` lines
/// (`conversational` | `dialer`), `#` comments. Bad lines are returned as
/// `line: message` errors, the rest loads.
pub fn parse_profiles(text: &str) -> (HashMap<String, TrafficProfile>, Vec<String>) {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("account;") {
            continue;
        }
        let mut it = l.split(';').map(str::trim);
        match (it.next(), it.next().and_then(TrafficProfile::parse)) {
            (Some(a), Some(p)) if !a.is_empty() => {
                out.insert(a.to_string(), p);
            }
            _ => errors.push(format!(
                "line {}: field `profile`: expected `account;conversational|dialer`, got `{l}`",
                i + 1
            )),
        }
    }
    (out, errors)
}
