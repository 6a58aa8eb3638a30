//! Pure detector core: a rated CDR in, the scored CDR and every control
//! record it triggers out (route alerts and pulls, FAS credits). Owns the
//! mapping between pipeline records and the `detection` crate; no Kafka,
//! no clock: every time in an output is an event time of the calls, so a
//! replay writes identical rows.

use std::collections::HashMap;
use std::str::FromStr;

use cdr_model::call::{Detection, RatedCdr};
use cdr_model::control::{Adjustment, RouteAlertEvent, RouteStatusEvent};
use cdr_model::ids::stable_id;
use detection::{
    evaluate_call, CallFacts, Credit, FasConfig, RouteAlert, RouteChange, RouteMonitor, RouteRecord,
};
use rust_decimal::Decimal;

/// Everything one CDR produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outputs {
    pub scored: Option<RatedCdr>,
    pub alerts: Vec<RouteAlertEvent>,
    pub status: Vec<RouteStatusEvent>,
    pub adjustments: Vec<Adjustment>,
}

/// The detector's state for one input partition: the route windows of the
/// breakouts keyed to it.
pub struct Detector {
    pub fas: FasConfig,
    pub routes: RouteMonitor,
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
        currency: cdr.rating.currency.clone(),
    }
}

fn evidence(m: &std::collections::BTreeMap<String, f64>) -> HashMap<String, f64> {
    m.iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

impl Detector {
    pub fn new(fas: FasConfig, routes: RouteMonitor) -> Self {
        Detector { fas, routes }
    }

    fn adjustment(c: &Credit) -> Adjustment {
        Adjustment {
            adjustment_id: c.adjustment_id.clone(),
            cdr_id: c.cdr_id.clone(),
            account_id: c.account_id.clone(),
            amount: c.amount.normalize().to_string(),
            currency: c.currency.clone(),
            reason: c.reason.clone(),
            alert_id: Some(c.alert_id.clone()),
            call_setup_ts_ms: c.call_setup_ts_ms,
            // Dated by the call it refunds (its billing period).
            created_at_ms: c.call_event_ts_ms,
        }
    }

    fn alert_events(&self, a: &RouteAlert, out: &mut Outputs) {
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
            // The event time at which the window could be judged.
            raised_at_ms: a
                .window_end_ms
                .saturating_add(self.routes.config().allowed_lateness_ms),
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
            out.adjustments.push(Self::adjustment(c));
        }
    }

    /// Judges one CDR: scores it, feeds the route windows, and returns the
    /// scored CDR with whatever it triggered.
    pub fn process(&mut self, mut cdr: RatedCdr) -> Outputs {
        let f = facts(&cdr);
        let verdict = evaluate_call(&f, &self.fas);
        let mut out = Outputs::default();
        for a in self.routes.observe(&f, &verdict) {
            self.alert_events(&a, &mut out);
        }
        for c in self.routes.take_credits() {
            out.adjustments.push(Self::adjustment(&c));
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

    /// State records changed since the last call.
    pub fn take_changes(&mut self) -> Vec<RouteChange> {
        self.routes.take_changes()
    }

    pub fn restore_record(&mut self, r: RouteRecord) {
        self.routes.restore_record(r)
    }
}
