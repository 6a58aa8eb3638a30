//! The pure assembly core: folds switch events into calls, decides when a
//! call is complete (hangup plus a short reorder grace, or stale after the
//! maximum call length), swallows duplicates, and tracks which input offsets
//! may be committed. No I/O: the service feeds events and wall-clock ticks.
//!
//! A call's fields are computed from the *set* of its distinct events at close
//! time (sorted canonically), so any arrival order and any duplication of the
//! same events yields the same call.

use std::collections::{BTreeMap, HashMap, HashSet};

use cdr_model::call::{AssembledCall, Disposition, Media};
use cdr_model::event::{EventError, EventKind, SwitchEvent};
use cdr_model::ids::cdr_id;
use cdr_model::offsets::PartitionTracker;

/// Tunables (milliseconds).
#[derive(Debug, Clone)]
pub struct AssemblyConfig {
    /// A call without hangup this long after its start is closed as stale.
    pub max_call_ms: i64,
    /// After a hangup, wait this long (wall clock) for stragglers (e.g. an
    /// answer that arrived out of order) before emitting.
    pub reorder_grace_ms: i64,
    /// Clock-skew tolerance between a call's milestones.
    pub skew_ms: i64,
    /// Closed calls are remembered this long to swallow late duplicates.
    pub closed_retention_ms: i64,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            max_call_ms: 4 * 3600 * 1000,
            reorder_grace_ms: 2000,
            skew_ms: 2000,
            closed_retention_ms: 600_000,
        }
    }
}

/// Where an event came from in the input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ingest {
    Accepted,
    Duplicate,
    Rejected(EventError),
}

struct CallState {
    key: u64,
    partition: i32,
    events: Vec<SwitchEvent>,
    ids: HashSet<String>,
    closing_since_wall: Option<i64>,
    closed_at_wall: Option<i64>,
    last_offset: i64,
}

/// The in-flight state of one assembler instance.
pub struct Assembler {
    cfg: AssemblyConfig,
    calls: HashMap<String, CallState>,
    trackers: BTreeMap<i32, PartitionTracker>,
    next_key: u64,
    /// Event-time watermark and the wall time it last advanced.
    watermark: Option<(i64, i64)>,
}

fn milestone_rank(k: EventKind) -> u8 {
    match k {
        EventKind::Cdr => 0,
        EventKind::Setup => 1,
        EventKind::Progress => 2,
        EventKind::Answer => 3,
        EventKind::Hangup => 4,
    }
}

impl Assembler {
    pub fn new(cfg: AssemblyConfig) -> Self {
        Assembler {
            cfg,
            calls: HashMap::new(),
            trackers: BTreeMap::new(),
            next_key: 0,
            watermark: None,
        }
    }

    pub fn open_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.closed_at_wall.is_none())
            .count()
    }

    pub fn retained_calls(&self) -> usize {
        self.calls.len()
    }

    /// Folds one valid event in. Events that contradict what the call already
    /// holds (answer before setup, hangup before answer beyond the skew) are
    /// rejected so they can be dead-lettered; a new event for a call that
    /// already closed is rejected too.
    pub fn ingest(&mut self, ev: SwitchEvent, pos: Pos, wall_ms: i64) -> Ingest {
        self.watermark = match self.watermark {
            Some((w, at)) if w >= ev.ts_ms => Some((w, at)),
            _ => Some((ev.ts_ms, wall_ms)),
        };
        let tracker = self.trackers.entry(pos.partition).or_default();
        let id = cdr_id(&ev.switch_id, &ev.call_id);
        if let Some(st) = self.calls.get_mut(&id) {
            if st.ids.contains(&ev.event_id) {
                tracker.touch(st.key, pos.offset, st.closed_at_wall.is_none());
                st.last_offset = st.last_offset.max(pos.offset);
                return Ingest::Duplicate;
            }
            if st.closed_at_wall.is_some() {
                tracker.touch(st.key, pos.offset, false);
                st.last_offset = st.last_offset.max(pos.offset);
                return Ingest::Rejected(EventError::EventAfterClose(format!(
                    "call {} already emitted",
                    ev.call_id
                )));
            }
            if let Err(e) = check_consistency(&st.events, &ev, self.cfg.skew_ms) {
                tracker.seen(pos.offset);
                return Ingest::Rejected(e);
            }
            tracker.touch(st.key, pos.offset, true);
            st.last_offset = st.last_offset.max(pos.offset);
            if matches!(ev.kind, EventKind::Hangup | EventKind::Cdr)
                && st.closing_since_wall.is_none()
            {
                st.closing_since_wall = Some(wall_ms);
            }
            st.ids.insert(ev.event_id.clone());
            st.events.push(ev);
            return Ingest::Accepted;
        }
        let key = self.next_key;
        self.next_key += 1;
        tracker.touch(key, pos.offset, true);
        let closing = matches!(ev.kind, EventKind::Hangup | EventKind::Cdr).then_some(wall_ms);
        let mut ids = HashSet::new();
        ids.insert(ev.event_id.clone());
        self.calls.insert(
            id,
            CallState {
                key,
                partition: pos.partition,
                events: vec![ev],
                ids,
                closing_since_wall: closing,
                closed_at_wall: None,
                last_offset: pos.offset,
            },
        );
        Ingest::Accepted
    }

    /// Records an input offset that did not become part of any call (e.g. a
    /// malformed message that was dead-lettered).
    pub fn skip(&mut self, pos: Pos) {
        self.trackers
            .entry(pos.partition)
            .or_default()
            .seen(pos.offset);
    }

    fn event_now(&self, wall_ms: i64) -> i64 {
        match self.watermark {
            Some((w, at)) => w + (wall_ms - at).max(0),
            None => wall_ms,
        }
    }

    /// Emits every call whose reorder grace has passed or that went stale, and
    /// forgets closed calls past their retention.
    pub fn tick(&mut self, wall_ms: i64) -> Vec<AssembledCall> {
        let now_ev = self.event_now(wall_ms);
        let mut out = Vec::new();
        let mut forget = Vec::new();
        for (id, st) in self.calls.iter_mut() {
            if let Some(closed) = st.closed_at_wall {
                let committed = self
                    .trackers
                    .get(&st.partition)
                    .is_some_and(|t| t.safely_committed(st.key));
                if wall_ms - closed >= self.cfg.closed_retention_ms && committed {
                    forget.push(id.clone());
                }
                continue;
            }
            let complete = st.closing_since_wall.is_some_and(|t| {
                wall_ms - t >= self.cfg.reorder_grace_ms
                    || st.events.iter().any(|e| e.kind == EventKind::Cdr)
            });
            let start = st
                .events
                .iter()
                .map(|e| e.setup_ts_ms.unwrap_or(e.ts_ms))
                .min()
                .unwrap_or(now_ev);
            let stale = !complete && now_ev - start > self.cfg.max_call_ms;
            if complete || stale {
                out.push(build_call(id, &st.events, stale, wall_ms));
                st.closed_at_wall = Some(wall_ms);
                self.trackers
                    .entry(st.partition)
                    .or_default()
                    .close(st.key, st.last_offset);
            }
        }
        for id in forget {
            if let Some(st) = self.calls.remove(&id) {
                self.trackers
                    .entry(st.partition)
                    .or_default()
                    .forget(st.key);
            }
        }
        // Hangup order (then id, for determinism): downstream per-account
        // monitors see calls in event-time order, as switches produced them.
        out.sort_by(|a, b| {
            (a.end_ts_ms.unwrap_or(a.setup_ts_ms), &a.cdr_id)
                .cmp(&(b.end_ts_ms.unwrap_or(b.setup_ts_ms), &b.cdr_id))
        });
        out
    }

    /// Drops every call of a revoked partition: its new owner replays from
    /// the last commit, which never splits a call.
    pub fn revoke(&mut self, partition: i32) {
        self.calls.retain(|_, st| st.partition != partition);
        self.trackers.remove(&partition);
    }

    /// Tells the core which offsets were committed, so closed calls wholly
    /// before them may be forgotten once their retention is over.
    pub fn committed(&mut self, partition: i32, offset: i64) {
        self.trackers
            .entry(partition)
            .or_default()
            .mark_committed(offset);
    }

    /// Offsets safe to commit, per partition.
    pub fn committable(&self) -> BTreeMap<i32, i64> {
        self.trackers
            .iter()
            .filter_map(|(p, t)| t.committable().map(|c| (*p, c)))
            .collect()
    }
}

fn check_consistency(
    events: &[SwitchEvent],
    ev: &SwitchEvent,
    skew: i64,
) -> Result<(), EventError> {
    let first = |k: EventKind| events.iter().filter(|e| e.kind == k).map(|e| e.ts_ms).min();
    match ev.kind {
        EventKind::Answer => {
            if let Some(s) = first(EventKind::Setup) {
                if ev.ts_ms + skew < s {
                    return Err(EventError::AnswerBeforeSetup {
                        setup_ms: s,
                        answer_ms: ev.ts_ms,
                    });
                }
            }
            if let Some(h) = first(EventKind::Hangup) {
                if h + skew < ev.ts_ms {
                    return Err(EventError::NegativeDuration {
                        answer_ms: ev.ts_ms,
                        end_ms: h,
                    });
                }
            }
        }
        EventKind::Setup => {
            if let Some(a) = first(EventKind::Answer) {
                if a + skew < ev.ts_ms {
                    return Err(EventError::AnswerBeforeSetup {
                        setup_ms: ev.ts_ms,
                        answer_ms: a,
                    });
                }
            }
        }
        EventKind::Hangup => {
            if let Some(a) = first(EventKind::Answer) {
                if ev.ts_ms + skew < a {
                    return Err(EventError::NegativeDuration {
                        answer_ms: a,
                        end_ms: ev.ts_ms,
                    });
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn disposition_for(code: Option<i32>) -> Disposition {
    match code {
        Some(486) | Some(600) => Disposition::Busy,
        Some(408) | Some(480) => Disposition::NoAnswer,
        Some(487) => Disposition::Cancelled,
        _ => Disposition::Failed,
    }
}

/// Builds the call from its distinct events. Pure and order-independent.
pub fn build_call(id: &str, events: &[SwitchEvent], stale: bool, wall_ms: i64) -> AssembledCall {
    let mut evs: Vec<&SwitchEvent> = events.iter().collect();
    evs.sort_by(|a, b| {
        (milestone_rank(a.kind), a.ts_ms, &a.event_id).cmp(&(
            milestone_rank(b.kind),
            b.ts_ms,
            &b.event_id,
        ))
    });
    let of = |k: EventKind| evs.iter().copied().filter(move |e| e.kind == k);
    let cdr = of(EventKind::Cdr).next();
    let setup = of(EventKind::Setup).next();
    let first_progress =
        of(EventKind::Progress).min_by_key(|e| (e.ts_ms, e.sip_code, e.event_id.clone()));
    let answer = of(EventKind::Answer).next();
    let hangup = of(EventKind::Hangup).next();
    // The "identity" event carries caller, dialed number and headers.
    let ident = cdr.or(setup).unwrap_or(evs[0]);
    let mut flags = Vec::new();
    if cdr.is_none() && setup.is_none() {
        flags.push("missing_setup".to_string());
    }
    for k in [EventKind::Setup, EventKind::Answer, EventKind::Hangup] {
        if of(k).count() > 1 {
            flags.push(format!("duplicate_{}", format!("{k:?}").to_lowercase()));
        }
    }

    let (setup_ts, progress_ts, answer_ts, end_ts, final_code) = match cdr {
        Some(c) => (
            c.setup_ts_ms.unwrap_or(c.ts_ms),
            c.progress_ts_ms,
            c.answer_ts_ms,
            c.end_ts_ms,
            c.sip_code,
        ),
        None => (
            setup
                .map(|e| e.ts_ms)
                .unwrap_or_else(|| evs.iter().map(|e| e.ts_ms).min().unwrap_or(0)),
            first_progress.map(|e| e.ts_ms),
            answer.map(|e| e.ts_ms),
            hangup.map(|e| e.ts_ms),
            hangup.and_then(|e| e.sip_code),
        ),
    };
    // A `cdr` record has no progress code field; only milestone events carry it.
    let progress_code = if cdr.is_some() {
        None
    } else {
        first_progress.and_then(|e| e.sip_code)
    };
    let (disposition, answer_ts, end_ts) = if stale {
        flags.push("stale".to_string());
        (Disposition::Stale, answer_ts, None)
    } else if answer_ts.is_some() && end_ts.is_some() {
        (Disposition::Answered, answer_ts, end_ts)
    } else {
        if final_code == Some(200) {
            flags.push("answer_missing".to_string());
        }
        (disposition_for(final_code), None, end_ts)
    };
    let duration_ms = match (disposition, answer_ts, end_ts) {
        (Disposition::Answered, Some(a), Some(e)) => (e - a).max(0),
        _ => 0,
    };
    // Trunk: the termination trunk is reported on answer/hangup.
    let trunk_id = answer
        .and_then(|e| e.trunk_id.clone())
        .or_else(|| hangup.and_then(|e| e.trunk_id.clone()))
        .or_else(|| ident.trunk_id.clone())
        .or_else(|| evs.iter().find_map(|e| e.trunk_id.clone()));
    let mut headers: std::collections::HashMap<String, String> = Default::default();
    for e in evs.iter().rev() {
        headers.extend(e.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let media_src = cdr.or(hangup).and_then(|e| e.media.clone());
    let media = media_src.map(|m| Media {
        rtp_rx_packets: m.rtp_rx_packets,
        rtp_rx_before_answer: m.rtp_rx_before_answer,
        silence_ratio: m.silence_ratio,
        mos: m.mos,
        jitter_ms: m.jitter_ms,
        loss_pct: m.loss_pct,
    });
    AssembledCall {
        cdr_id: id.to_string(),
        call_id: ident.call_id.clone(),
        switch_id: ident.switch_id.clone(),
        account_id: ident.account_id.clone(),
        direction: match ident.direction {
            cdr_model::event::Direction::Outbound => "outbound".into(),
            cdr_model::event::Direction::Inbound => "inbound".into(),
        },
        cli: ident
            .cli
            .clone()
            .or_else(|| evs.iter().find_map(|e| e.cli.clone())),
        dialed: ident
            .dialed
            .clone()
            .or_else(|| evs.iter().find_map(|e| e.dialed.clone()))
            .unwrap_or_default(),
        trunk_id,
        setup_ts_ms: setup_ts,
        progress_ts_ms: progress_ts,
        progress_code,
        answer_ts_ms: answer_ts,
        end_ts_ms: end_ts,
        final_sip_code: final_code,
        disposition: disposition.as_str().to_string(),
        duration_ms,
        billable_seconds: (duration_ms + 999) / 1000,
        pdd_ms: progress_ts.map(|p| (p - setup_ts).max(0)),
        headers,
        source_ip: ident
            .source_ip
            .clone()
            .or_else(|| evs.iter().find_map(|e| e.source_ip.clone())),
        behind_nat: evs.iter().any(|e| e.behind_nat == Some(true)),
        codec: hangup
            .and_then(|e| e.codec.clone())
            .or_else(|| evs.iter().find_map(|e| e.codec.clone())),
        media,
        flags,
        event_count: events.len() as i32,
        assembled_at_ms: wall_ms,
    }
}
