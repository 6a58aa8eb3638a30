//! The pure assembly core: folds switch events into calls, decides when a
//! call is complete (hangup plus a short reorder grace, or stale after the
//! maximum call length), swallows duplicates, and tracks which input offsets
//! may be committed. No I/O.
//!
//! A call's fields are computed from the *set* of its distinct events at close
//! time (sorted canonically), so any arrival order and any duplication of the
//! same events yields the same call.
//!
//! # Time
//! Every partition has its own clock: the largest log time (the Kafka record
//! timestamp) of the records read from it. Closing a call (grace after the
//! hangup), stale closure and forgetting closed calls are decided against
//! that clock only, and evaluated after every record, so a replay of the same
//! log closes the same calls at the same records. The wall clock moves a
//! partition's clock only while the partition is idle (no record for
//! `idle_flush_ms`), so the last calls before a lull are still emitted.
//!
//! # Long calls
//! A call still open `checkpoint_after_ms` after it was first seen is
//! checkpointed (its events, to the compacted topic `assembler.open-calls`,
//! same partition as its input) and stops holding the commit point back;
//! when it closes its checkpoint is tombstoned. A new owner of the partition
//! restores the checkpoints before reading on, so a call that never hangs up
//! costs a restart minutes of replay, not hours.
//!
//! # Commit cut
//! Closed calls keep their offset interval while retained (a restart must
//! not re-read a suffix of one and take it for a new call). Under
//! continuous traffic those intervals overlap without a gap, so once per
//! `checkpoint_after_ms` the commit point is cut at the oldest open call:
//! the closed calls the cut splits are checkpointed as closed (event ids
//! and close time) and released. Restored, they swallow their re-read
//! events as duplicates, exactly as in memory.
//!
//! # Lost hangups
//! A call still without hangup `max_call_ms` after it was first seen is
//! closed as stale. An answered one is billed **provisionally**: answer to
//! its last evidence (its latest event), capped at `max_call_ms`, flags
//! `stale` and `provisional`. It stays reopenable for
//! `provisional_retention_ms` (checkpointed, so a restart keeps it): a
//! later event for it (the hangup, typically) reopens it, and it is emitted
//! again as a new version of the same `cdr_id` (one more distinct event, so
//! a higher row version), which replaces the provisional one everywhere
//! downstream. Nothing is lost and nothing is counted twice.
//!
//! Switch clocks never move a partition clock: an event whose timestamps lie
//! more than `max_behind_ms` before or `max_ahead_ms` after its own record's
//! log time is refused (`clock_out_of_range`) and affects nothing else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cdr_model::call::{AssembledCall, Disposition, Media};
use cdr_model::event::{EventError, EventKind, SwitchEvent};
use cdr_model::ids::cdr_id;
use cdr_model::offsets::PartitionTracker;

/// Tunables (milliseconds).
#[derive(Debug, Clone)]
pub struct AssemblyConfig {
    /// A call without hangup this long after it was first seen is closed as stale.
    pub max_call_ms: i64,
    /// After a hangup, wait this long (partition clock) for stragglers (e.g.
    /// an answer that arrived out of order) before emitting.
    pub reorder_grace_ms: i64,
    /// Clock-skew tolerance between a call's milestones.
    pub skew_ms: i64,
    /// Closed calls are remembered this long to swallow late duplicates.
    pub closed_retention_ms: i64,
    /// An event timestamp may lie at most this far before its record's log time.
    pub max_behind_ms: i64,
    /// ... and at most this far after it.
    pub max_ahead_ms: i64,
    /// A partition without records for this long (wall clock) lets its
    /// clock run on wall time.
    pub idle_flush_ms: i64,
    /// Open calls per partition; at the cap the oldest open call is closed
    /// as stale (flag `open_call_cap`) to make room.
    pub max_open_calls: usize,
    /// Distinct events one call may hold; further ones are refused
    /// (`too_many_events`).
    pub max_events_per_call: usize,
    /// Open calls older than this (partition clock) are checkpointed so they
    /// stop holding the commit point; None disables checkpoints.
    pub checkpoint_after_ms: Option<i64>,
    /// A call closed as stale stays reopenable this long (partition clock):
    /// its late hangup makes a new, complete version of it.
    pub provisional_retention_ms: i64,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            max_call_ms: 4 * 3600 * 1000,
            reorder_grace_ms: 2000,
            skew_ms: 2000,
            closed_retention_ms: 600_000,
            max_behind_ms: 7 * 24 * 3600 * 1000,
            max_ahead_ms: 15 * 60 * 1000,
            idle_flush_ms: 1000,
            max_open_calls: 500_000,
            max_events_per_call: 64,
            checkpoint_after_ms: Some(5 * 60 * 1000),
            provisional_retention_ms: 24 * 3600 * 1000,
        }
    }
}

/// Where an event came from in the input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub partition: i32,
    pub offset: i64,
}

/// The two clocks of one record: when it entered the log (Kafka timestamp)
/// and when this process read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub log_ms: i64,
    pub wall_ms: i64,
}

impl Clock {
    /// A record read at the moment it was written (tests, tools).
    pub fn at(ms: i64) -> Self {
        Clock {
            log_ms: ms,
            wall_ms: ms,
        }
    }
}

/// The durable form of an open call (value on `assembler.open-calls`, key
/// `cdr_id`, partition = its input partition).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenCall {
    pub cdr_id: String,
    pub partition: i32,
    pub first_log_ms: i64,
    pub closing_since: Option<i64>,
    pub events: Vec<SwitchEvent>,
    /// Closed as stale and emitted provisionally; a later event reopens it.
    #[serde(default)]
    pub provisional: bool,
    /// Emitted (complete) at this partition clock: checkpointed at a commit
    /// cut (see [`Assembler::checkpoints_due`]) only so that its events
    /// re-read after the cut are known as its duplicates. `events` is then
    /// empty and `event_ids` holds what a re-read is matched against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ingest {
    Accepted,
    Duplicate,
    Rejected(EventError),
}

struct CallState {
    seq: u64,
    events: Vec<SwitchEvent>,
    ids: HashSet<String>,
    first_log_ms: i64,
    /// Partition clock when the hangup (or `cdr` record) arrived.
    closing_since: Option<i64>,
    /// Partition clock when the call was emitted.
    closed_at: Option<i64>,
    last_offset: i64,
    /// The call's events are in a checkpoint (tombstone it at close).
    checkpointed: bool,
    /// Events were folded in since the last checkpoint (or since the
    /// tracker interval was released).
    dirty: bool,
    /// Closed as stale: a later event reopens it (see the module doc).
    reopenable: bool,
}

/// One input partition: its calls, clock, deadlines and commit tracker.
#[derive(Default)]
struct Part {
    calls: HashMap<String, CallState>,
    tracker: PartitionTracker,
    next_seq: u64,
    clock: Option<i64>,
    last_wall: i64,
    /// The clock when the partition went idle (wall time then runs it on).
    idle_base: Option<i64>,
    /// (deadline, seq, cdr_id): when to look at an open call again (grace
    /// over, or stale).
    due: BTreeSet<(i64, u64, String)>,
    /// Open calls by age, for the open-call cap.
    open: BTreeSet<(u64, String)>,
    /// (forget after, seq, cdr_id) for closed calls.
    retained: BTreeSet<(i64, u64, String)>,
    /// Retention over but the commit has not passed them yet.
    awaiting_commit: Vec<String>,
    /// Checkpointed calls that closed: their checkpoints must be tombstoned.
    tombstones: Vec<String>,
    /// Calls closed as stale, to checkpoint as provisional (reopenable).
    provisional: Vec<OpenCall>,
    /// Partition clock of the last commit cut.
    last_cut: Option<i64>,
}

/// The in-flight state of one assembler instance.
pub struct Assembler {
    cfg: AssemblyConfig,
    parts: BTreeMap<i32, Part>,
    closed: Vec<AssembledCall>,
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

impl Part {
    fn close(
        &mut self,
        id: &str,
        stale: bool,
        flag: Option<&str>,
        wall_ms: i64,
        cfg: &AssemblyConfig,
        out: &mut Vec<AssembledCall>,
    ) {
        let clock = self.clock.unwrap_or(0);
        let Some(st) = self.calls.get_mut(id) else {
            return;
        };
        if st.closed_at.is_some() {
            return;
        }
        let mut call = build_call(id, &st.events, stale.then_some(cfg.max_call_ms), wall_ms);
        if let Some(f) = flag {
            call.flags.push(f.to_string());
        }
        out.push(call);
        st.closed_at = Some(clock);
        self.open.remove(&(st.seq, id.to_string()));
        self.tracker.close(st.seq, st.last_offset);
        st.reopenable = stale;
        let retention = if stale {
            cfg.provisional_retention_ms
        } else {
            cfg.closed_retention_ms
        };
        self.retained
            .insert((clock + retention, st.seq, id.to_string()));
        if stale && cfg.checkpoint_after_ms.is_some() {
            // Kept (not tombstoned) so a new owner can still reopen it.
            st.checkpointed = true;
            self.provisional.push(OpenCall {
                cdr_id: id.to_string(),
                partition: 0,
                first_log_ms: st.first_log_ms,
                closing_since: st.closing_since,
                events: st.events.clone(),
                provisional: true,
                closed_at: None,
                event_ids: Vec::new(),
            });
        }
        // A checkpointed call's checkpoint is tombstoned when the call is
        // forgotten (see `forget_committed`), not here: until the commit
        // passes its last events, a restart may re-read them and needs the
        // checkpoint to rebuild the call whole.
    }

    /// Moves the clock to `to` (never back) and closes what became due.
    fn advance(
        &mut self,
        to: i64,
        wall_ms: i64,
        cfg: &AssemblyConfig,
        out: &mut Vec<AssembledCall>,
    ) {
        let clock = self.clock.map_or(to, |c| c.max(to));
        self.clock = Some(clock);
        let mut batch = Vec::new();
        while let Some(first) = self.due.first() {
            if first.0 > clock {
                break;
            }
            let (_, _, id) = self.due.pop_first().expect("non-empty");
            let Some(st) = self.calls.get(&id) else {
                continue;
            };
            if st.closed_at.is_some() {
                continue;
            }
            let complete = st.closing_since.is_some_and(|t| {
                clock >= t + cfg.reorder_grace_ms
                    || st.events.iter().any(|e| e.kind == EventKind::Cdr)
            });
            let stale = clock >= st.first_log_ms + cfg.max_call_ms;
            if complete || (stale && st.closing_since.is_none()) {
                batch.push((id, !complete));
            }
        }
        let start = out.len();
        for (id, stale) in batch {
            self.close(&id, stale, None, wall_ms, cfg, out);
        }
        sort_emitted(&mut out[start..]);
        while let Some(first) = self.retained.first() {
            if first.0 > clock {
                break;
            }
            let (_, seq, id) = self.retained.pop_first().expect("non-empty");
            // A reopened call is open again (and re-keyed): not forgotten.
            if self
                .calls
                .get(&id)
                .is_some_and(|st| st.closed_at.is_some() && st.seq == seq)
            {
                self.awaiting_commit.push(id);
            }
        }
        self.forget_committed();
    }

    /// Cuts the commit point loose from closed calls: every closed call a
    /// commit at the oldest open call's first offset would split is
    /// checkpointed (as closed, with its event ids; a provisional one is
    /// checkpointed already) and released from the tracker, so the commit
    /// reaches that offset. Without this, under continuous traffic closed
    /// calls overlapping open ones would chain the commit point back to the
    /// last quiet moment and retained calls would never be forgotten.
    fn cut(&mut self, partition: i32) -> Vec<OpenCall> {
        let Some(at) = self.tracker.open_floor() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut ids: Vec<&String> = self
            .calls
            .iter()
            .filter(|(_, st)| st.closed_at.is_some() && self.tracker.splits(st.seq, at))
            .map(|(id, _)| id)
            .collect();
        // Deterministic record order (the map's is not).
        ids.sort_unstable();
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        for id in ids {
            let st = self.calls.get_mut(&id).expect("listed above");
            self.tracker.forget(st.seq);
            if st.reopenable {
                continue;
            }
            st.checkpointed = true;
            let mut event_ids: Vec<String> = st.ids.iter().cloned().collect();
            event_ids.sort_unstable();
            out.push(OpenCall {
                cdr_id: id,
                partition,
                first_log_ms: st.first_log_ms,
                closing_since: st.closing_since,
                events: Vec::new(),
                provisional: false,
                closed_at: st.closed_at,
                event_ids,
            });
        }
        out
    }

    fn forget_committed(&mut self) {
        let mut keep = Vec::new();
        for id in std::mem::take(&mut self.awaiting_commit) {
            let Some(st) = self.calls.get(&id) else {
                continue;
            };
            // A call released from the tracker (checkpointed at a cut, or
            // restored) waits only until the commit has passed its last
            // event, so its checkpoint outlives every re-read of it.
            let released = !self.tracker.tracks(st.seq)
                && (st.last_offset < 0
                    || self.tracker.committed().is_some_and(|c| c > st.last_offset));
            if released || self.tracker.safely_committed(st.seq) {
                let seq = st.seq;
                if st.checkpointed {
                    self.tombstones.push(id.clone());
                }
                self.calls.remove(&id);
                self.tracker.forget(seq);
            } else {
                keep.push(id);
            }
        }
        self.awaiting_commit = keep;
    }
}

/// Hangup order (then id, for determinism): downstream per-account monitors
/// see calls in event-time order, as switches produced them.
fn sort_emitted(calls: &mut [AssembledCall]) {
    calls.sort_by(|a, b| {
        (a.end_ts_ms.unwrap_or(a.setup_ts_ms), &a.cdr_id)
            .cmp(&(b.end_ts_ms.unwrap_or(b.setup_ts_ms), &b.cdr_id))
    });
}

impl Assembler {
    pub fn new(cfg: AssemblyConfig) -> Self {
        Assembler {
            cfg,
            parts: BTreeMap::new(),
            closed: Vec::new(),
        }
    }

    pub fn open_calls(&self) -> usize {
        self.parts.values().map(|p| p.open.len()).sum()
    }

    pub fn retained_calls(&self) -> usize {
        self.parts.values().map(|p| p.calls.len()).sum()
    }

    /// The clock of a partition (None before its first record).
    pub fn partition_clock(&self, partition: i32) -> Option<i64> {
        self.parts.get(&partition).and_then(|p| p.clock)
    }

    /// Folds one parsed event in, then closes whatever the record's log time
    /// made due. Events that contradict what the call already holds, whose
    /// clock is out of range, or that arrive for a call already emitted are
    /// rejected so they can be dead-lettered.
    pub fn ingest(&mut self, ev: SwitchEvent, pos: Pos, clock: Clock) -> Ingest {
        let cfg = &self.cfg;
        let part = self.parts.entry(pos.partition).or_default();
        part.last_wall = clock.wall_ms;
        part.idle_base = None;
        // A producer whose own clock runs ahead must not drag the partition
        // clock (and with it every other call) into the future.
        if clock.log_ms > clock.wall_ms + cfg.max_ahead_ms {
            part.tracker.seen(pos.offset);
            return Ingest::Rejected(EventError::ClockOutOfRange {
                field: "kafka_timestamp",
                ts_ms: clock.log_ms,
                log_ms: clock.wall_ms,
                delta_ms: clock.log_ms - clock.wall_ms,
                min_ms: i64::MIN,
                max_ms: cfg.max_ahead_ms,
            });
        }
        if let Err(e) = ev.check_clock(clock.log_ms, cfg.max_behind_ms, cfg.max_ahead_ms) {
            part.tracker.seen(pos.offset);
            return Ingest::Rejected(e);
        }
        let now = part.clock.map_or(clock.log_ms, |c| c.max(clock.log_ms));
        part.clock = Some(now);
        let result = Self::fold(cfg, part, ev, pos, now, clock.wall_ms, &mut self.closed);
        part.advance(now, clock.wall_ms, cfg, &mut self.closed);
        result
    }

    fn fold(
        cfg: &AssemblyConfig,
        part: &mut Part,
        ev: SwitchEvent,
        pos: Pos,
        now: i64,
        wall_ms: i64,
        out: &mut Vec<AssembledCall>,
    ) -> Ingest {
        let id = cdr_id(&ev.switch_id, &ev.call_id);
        let closing_kind = matches!(ev.kind, EventKind::Hangup | EventKind::Cdr);
        let grace = if ev.kind == EventKind::Cdr {
            0
        } else {
            cfg.reorder_grace_ms
        };
        if let Some(st) = part.calls.get_mut(&id) {
            if st.ids.contains(&ev.event_id) {
                part.tracker
                    .touch(st.seq, pos.offset, st.closed_at.is_none());
                st.last_offset = st.last_offset.max(pos.offset);
                return Ingest::Duplicate;
            }
            if st.closed_at.is_some() && !st.reopenable {
                part.tracker.touch(st.seq, pos.offset, false);
                st.last_offset = st.last_offset.max(pos.offset);
                return Ingest::Rejected(EventError::EventAfterClose(format!(
                    "call {} already emitted",
                    cdr_model::dlq::bounded(&ev.call_id, 128)
                )));
            }
            if st.events.len() >= cfg.max_events_per_call {
                part.tracker.seen(pos.offset);
                return Ingest::Rejected(EventError::TooManyEvents {
                    limit: cfg.max_events_per_call,
                });
            }
            if let Err(e) = check_consistency(&st.events, &ev, cfg.skew_ms) {
                part.tracker.seen(pos.offset);
                return Ingest::Rejected(e);
            }
            if st.closed_at.is_some() {
                // New evidence for a call closed as stale: reopen it under a
                // fresh sequence number (its old interval is closed). Due
                // again after the grace: with a hangup it completes, without
                // one it is stale (provisional) again.
                let seq = part.next_seq;
                part.next_seq += 1;
                st.seq = seq;
                st.closed_at = None;
                st.reopenable = false;
                part.open.insert((seq, id.clone()));
                part.due.insert((now + grace, seq, id.clone()));
            }
            part.tracker.touch(st.seq, pos.offset, true);
            st.last_offset = st.last_offset.max(pos.offset);
            st.dirty = true;
            if closing_kind && st.closing_since.is_none() {
                st.closing_since = Some(now);
                part.due.insert((now + grace, st.seq, id.clone()));
            } else if ev.kind == EventKind::Cdr {
                // A self-contained record completes the call at once.
                part.due.insert((now, st.seq, id.clone()));
            }
            st.ids.insert(ev.event_id.clone());
            st.events.push(ev);
            return Ingest::Accepted;
        }
        if part.open.len() >= cfg.max_open_calls {
            if let Some((_, oldest)) = part.open.first().cloned() {
                part.close(&oldest, true, Some("open_call_cap"), wall_ms, cfg, out);
            }
        }
        let seq = part.next_seq;
        part.next_seq += 1;
        part.tracker.touch(seq, pos.offset, true);
        let mut ids = HashSet::new();
        ids.insert(ev.event_id.clone());
        part.calls.insert(
            id.clone(),
            CallState {
                seq,
                events: vec![ev],
                ids,
                first_log_ms: now,
                closing_since: closing_kind.then_some(now),
                closed_at: None,
                last_offset: pos.offset,
                checkpointed: false,
                dirty: true,
                reopenable: false,
            },
        );
        part.open.insert((seq, id.clone()));
        part.due.insert((now + cfg.max_call_ms, seq, id.clone()));
        if closing_kind {
            part.due.insert((now + grace, seq, id));
        }
        Ingest::Accepted
    }

    /// Records an input offset that did not become part of any call (e.g. a
    /// malformed message that was dead-lettered).
    pub fn skip(&mut self, pos: Pos, wall_ms: i64) {
        let part = self.parts.entry(pos.partition).or_default();
        part.tracker.seen(pos.offset);
        part.last_wall = wall_ms;
        part.idle_base = None;
    }

    /// Calls closed since the last call, in hangup order within each close.
    pub fn take_closed(&mut self) -> Vec<AssembledCall> {
        std::mem::take(&mut self.closed)
    }

    /// Lets the clock of every partition idle for `idle_flush_ms` run on
    /// wall time, and returns every call closed since the last call.
    pub fn tick(&mut self, wall_ms: i64) -> Vec<AssembledCall> {
        let cfg = &self.cfg;
        for part in self.parts.values_mut() {
            let idle = wall_ms - part.last_wall;
            if let Some(c) = part.clock {
                if idle >= cfg.idle_flush_ms {
                    // Run on from where the log left off, by the wall time
                    // that passed since its last record.
                    let to = c.max(part.idle_base.unwrap_or(c) + idle);
                    part.idle_base.get_or_insert(c);
                    part.advance(to, wall_ms, cfg, &mut self.closed);
                }
            }
        }
        self.take_closed()
    }

    /// Open calls of `partition`... of every partition, that are older than
    /// `checkpoint_after_ms` and changed since their last checkpoint. Each
    /// returned call stops holding the commit point: the caller must have
    /// the checkpoint acknowledged before it commits (the stage loop flushes
    /// outputs before every commit).
    pub fn checkpoints_due(&mut self) -> Vec<OpenCall> {
        let Some(after) = self.cfg.checkpoint_after_ms else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (p, part) in self.parts.iter_mut() {
            let provisional: Vec<OpenCall> = part
                .provisional
                .drain(..)
                .map(|oc| OpenCall {
                    partition: *p,
                    ..oc
                })
                .collect();
            let Some(clock) = part.clock else {
                out.extend(provisional);
                continue;
            };
            let before = out.len();
            for (seq, id) in part.open.iter() {
                let Some(st) = part.calls.get_mut(id) else {
                    continue;
                };
                if !st.dirty || clock < st.first_log_ms + after {
                    continue;
                }
                out.push(OpenCall {
                    cdr_id: id.clone(),
                    partition: *p,
                    first_log_ms: st.first_log_ms,
                    closing_since: st.closing_since,
                    events: st.events.clone(),
                    provisional: false,
                    closed_at: None,
                    event_ids: Vec::new(),
                });
                st.dirty = false;
                st.checkpointed = true;
                // Released: the events up to here are in the checkpoint. A
                // later event opens a new interval (fresh sequence number).
                part.tracker.forget(*seq);
            }
            // Re-key released calls so a later touch starts a new interval
            // instead of extending the forgotten one.
            for oc in out[before..].iter() {
                if let Some(st) = part.calls.get_mut(&oc.cdr_id) {
                    let old = st.seq;
                    let new = part.next_seq;
                    part.next_seq += 1;
                    st.seq = new;
                    part.open.remove(&(old, oc.cdr_id.clone()));
                    part.open.insert((new, oc.cdr_id.clone()));
                    // Deadlines keep their old sequence numbers: they are
                    // looked up by id.
                }
            }
            out.extend(provisional);
            match part.last_cut {
                None => part.last_cut = Some(clock),
                Some(t) if clock >= t + after => {
                    part.last_cut = Some(clock);
                    out.extend(part.cut(*p));
                }
                Some(_) => {}
            }
        }
        out
    }

    /// Checkpoints of calls that closed since the last call: (partition, cdr_id).
    pub fn take_tombstones(&mut self) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        for (p, part) in self.parts.iter_mut() {
            out.extend(part.tombstones.drain(..).map(|id| (*p, id)));
        }
        out
    }

    /// Puts a checkpointed call back (a new owner, before reading the
    /// partition). Its events re-read after the commit point are duplicates.
    /// A checkpoint that cannot be a call (open or provisional without a
    /// single event) is refused (`false`): a damaged state record must not
    /// stop the partition.
    pub fn restore(&mut self, oc: OpenCall) -> bool {
        let cfg = &self.cfg;
        if oc.events.is_empty() && (oc.closed_at.is_none() || oc.provisional) {
            return false;
        }
        let part = self.parts.entry(oc.partition).or_default();
        if part.calls.contains_key(&oc.cdr_id) {
            return true;
        }
        let seq = part.next_seq;
        part.next_seq += 1;
        let id = oc.cdr_id;
        // Emitted already: as a complete call (its re-read events are
        // duplicates until its retention is over, as if it had never left
        // memory) or provisionally (reopenable until its retention).
        let emitted = if oc.provisional {
            Some((
                oc.first_log_ms + cfg.max_call_ms,
                cfg.provisional_retention_ms,
            ))
        } else {
            oc.closed_at.map(|t| (t, cfg.closed_retention_ms))
        };
        match emitted {
            Some((closed, retention)) => {
                part.retained.insert((closed + retention, seq, id.clone()));
            }
            None => {
                part.open.insert((seq, id.clone()));
                part.due
                    .insert((oc.first_log_ms + cfg.max_call_ms, seq, id.clone()));
                if let Some(c) = oc.closing_since {
                    let cdr = oc.events.iter().any(|e| e.kind == EventKind::Cdr);
                    let grace = if cdr { 0 } else { cfg.reorder_grace_ms };
                    part.due.insert((c + grace, seq, id.clone()));
                }
            }
        }
        let mut ids: HashSet<String> = oc.event_ids.into_iter().collect();
        ids.extend(oc.events.iter().map(|e| e.event_id.clone()));
        part.calls.insert(
            id,
            CallState {
                seq,
                ids,
                events: oc.events,
                first_log_ms: oc.first_log_ms,
                closing_since: oc.closing_since,
                closed_at: emitted.map(|(closed, _)| closed),
                last_offset: -1,
                checkpointed: true,
                dirty: false,
                reopenable: oc.provisional,
            },
        );
        true
    }

    /// Drops every call of a revoked partition: its new owner replays from
    /// the last commit, which never splits a call.
    pub fn revoke(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    /// Tells the core which offsets were committed, so closed calls wholly
    /// before them may be forgotten once their retention is over.
    pub fn committed(&mut self, partition: i32, offset: i64) {
        if let Some(part) = self.parts.get_mut(&partition) {
            part.tracker.mark_committed(offset);
            part.forget_committed();
        }
    }

    /// Offsets safe to commit, per partition.
    pub fn committable(&self) -> BTreeMap<i32, i64> {
        self.parts
            .iter()
            .filter_map(|(p, part)| part.tracker.committable().map(|c| (*p, c)))
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
/// `stale`: the call was closed without a hangup, with the maximum call
/// length; an answered one is billed provisionally, answer to its last
/// evidence (latest event), capped at that length.
pub fn build_call(
    id: &str,
    events: &[SwitchEvent],
    stale: Option<i64>,
    wall_ms: i64,
) -> AssembledCall {
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
    let (disposition, answer_ts, end_ts) = if let Some(cap_ms) = stale {
        flags.push("stale".to_string());
        match answer_ts {
            Some(a) => {
                flags.push("provisional".to_string());
                let last = evs.iter().map(|e| e.ts_ms).max().unwrap_or(a).max(a);
                (Disposition::Answered, Some(a), Some(last.min(a + cap_ms)))
            }
            None => (Disposition::Stale, None, None),
        }
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
