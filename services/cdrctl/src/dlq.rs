//! `cdrctl dlq list|replay`: the dead letters ClickHouse holds
//! (`dead_letters_final`), by reason, source topic and time, and sending
//! their original bytes (with their original key) back to the topic they
//! came from once the cause is fixed.
//!
//! A replayed record is the same record: the assembler folds it by its
//! `event_id`, the call keeps its `cdr_id`, so replaying twice bills once.
//! Each replay is recorded in `dead_letter_replays` (who, when, where the
//! bytes went); a replayed dead letter is skipped unless `--again`. A dead
//! letter that kept only a prefix of an oversized record cannot be replayed:
//! it is reported and the command exits non-zero.
//!
//! A [`FixMapping`] (`--fix FILE`) sends a corrected form instead: for
//! JSON-object payloads (switch events), top-level fields renamed, values
//! mapped, fields set and removed, in that order. The correction must keep
//! the record's identity (its `event_id`, call id and key are whatever the
//! fix leaves them; the key and partition are the dead letter's own), so a
//! corrected event replayed twice still folds into one call. A payload the
//! fix cannot apply to (not a JSON object) is reported and not sent. The
//! fix is recorded with each replay.

use anyhow::Context as _;
use base64::Engine as _;
use clickhouse::Row;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which dead letters a command acts on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact reason (e.g. `oversized`, `bad_json`).
    pub reason: Option<String>,
    /// Exact source topic, as the cluster names it (with any prefix).
    pub topic: Option<String>,
    /// Dead-lettered at or after, `YYYY-MM-DD[ hh:mm:ss]` UTC.
    pub from: Option<String>,
    /// Dead-lettered before.
    pub to: Option<String>,
    /// Include dead letters already replayed.
    pub again: bool,
}

const WHERE: &str = "({reason:String} = '' OR d.reason = {reason:String}) \
     AND ({topic:String} = '' OR d.topic = {topic:String}) \
     AND d.at >= parseDateTime64BestEffort({from:String}, 3, 'UTC') \
     AND d.at < parseDateTime64BestEffort({to:String}, 3, 'UTC')";

/// `YYYY-MM-DD` or `YYYY-MM-DD hh:mm:ss` (UTC), checked here so a typo is an
/// error rather than no bound.
pub(crate) fn bound(name: &str, v: &Option<String>, default: &str) -> anyhow::Result<String> {
    let Some(v) = v else {
        return Ok(default.to_string());
    };
    let t = v.trim();
    let shape = |s: &str, p: &str| {
        s.len() == p.len()
            && s.bytes().zip(p.bytes()).all(|(c, q)| {
                if q == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == q
                }
            })
    };
    anyhow::ensure!(
        shape(t, "9999-99-99") || shape(t, "9999-99-99 99:99:99"),
        "--{name} {v:?}: expected YYYY-MM-DD or \"YYYY-MM-DD hh:mm:ss\" (UTC)"
    );
    Ok(t.to_string())
}

fn query(
    client: &clickhouse::Client,
    sql: &str,
    f: &Filter,
) -> anyhow::Result<clickhouse::query::Query> {
    Ok(client
        .query(sql)
        .param("reason", f.reason.clone().unwrap_or_default())
        .param("topic", f.topic.clone().unwrap_or_default())
        .param("from", bound("from", &f.from, "1970-01-01")?)
        .param("to", bound("to", &f.to, "2299-12-31")?))
}

/// One group of [`list`].
#[derive(Debug, Clone, Row, Deserialize, PartialEq)]
pub struct Group {
    pub reason: String,
    pub topic: String,
    pub dead_letters: u64,
    /// Only a prefix of the record kept: cannot be replayed.
    pub truncated: u64,
    pub replayed: u64,
    pub first_at: String,
    pub last_at: String,
}

/// Dead letters matching `f` (replayed ones included), by reason and topic.
pub async fn list(client: &clickhouse::Client, f: &Filter) -> anyhow::Result<Vec<Group>> {
    let sql = format!(
        "SELECT d.reason AS reason, toString(d.topic) AS topic, count() AS dead_letters, \
         countIf(d.payload_truncated) AS truncated, countIf(d.id IN (SELECT id FROM cdr.dead_letter_replays)) AS replayed, \
         toString(min(d.at)) AS first_at, toString(max(d.at)) AS last_at \
         FROM cdr.dead_letters_final AS d WHERE {WHERE} GROUP BY reason, topic ORDER BY reason, topic"
    );
    Ok(query(client, &sql, f)?.fetch_all().await?)
}

#[derive(Debug, Row, Deserialize)]
struct Letter {
    id: String,
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload_b64: String,
    payload_truncated: bool,
    source_ts: Option<i64>,
}

/// A correction applied to each replayed payload (a JSON object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixMapping {
    /// Field renames, old name -> new name (skipped when the old name is
    /// absent; a present new name is overwritten).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Per field, value replacements (old JSON value as text -> new value),
    /// e.g. `{"type": {"HANGUP": "hangup"}}`.
    #[serde(default)]
    pub map_values: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Fields set to a value (added or overwritten).
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Fields removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Why a fix could not be applied to a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixError {
    #[error("payload is not a JSON object")]
    NotAnObject,
}

impl FixMapping {
    /// Reads a fix file (JSON).
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let f: FixMapping = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a fix mapping", path.display()))?;
        anyhow::ensure!(
            f != FixMapping::default(),
            "{}: the fix changes nothing",
            path.display()
        );
        Ok(f)
    }

    /// The corrected payload.
    pub fn apply(&self, payload: &[u8]) -> Result<Vec<u8>, FixError> {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload).map_err(|_| FixError::NotAnObject)?;
        for (from, to) in &self.rename {
            if let Some(x) = v.remove(from) {
                v.insert(to.clone(), x);
            }
        }
        for (field, map) in &self.map_values {
            if let Some(x) = v.get_mut(field) {
                let key = match &*x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Some(new) = map.get(&key) {
                    *x = new.clone();
                }
            }
        }
        for (field, value) in &self.set {
            v.insert(field.clone(), value.clone());
        }
        for field in &self.remove {
            v.remove(field);
        }
        Ok(serde_json::to_vec(&v).expect("a JSON map serialises"))
    }
}

#[derive(Debug, Row, Serialize)]
struct Replay {
    id: String,
    /// Epoch ms (`DateTime64(3)`).
    replayed_at: i64,
    topic: String,
    partition: i32,
    offset: i64,
    actor: String,
    /// The fix mapping applied (JSON), empty for the original bytes.
    fix: String,
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records sent back (and acknowledged).
    pub sent: usize,
    /// Dead letters that kept only a prefix (ids), not sent.
    pub truncated: Vec<String>,
    /// Dead letters whose payload did not decode (ids), not sent.
    pub undecodable: Vec<String>,
    /// Dead letters the fix could not apply to (id, why), not sent.
    pub unfixable: Vec<(String, FixError)>,
}

/// Sends every matching dead letter's original bytes back to its topic
/// (oldest offset first per partition), then records the replays.
pub async fn replay(
    client: &clickhouse::Client,
    kafka: &cdr_kafka::KafkaConfig,
    f: &Filter,
    actor: &str,
    fix: Option<&FixMapping>,
) -> anyhow::Result<Replayed> {
    let fix_text = match fix {
        Some(x) => serde_json::to_string(x)?,
        None => String::new(),
    };
    let skip = if f.again {
        ""
    } else {
        " AND d.id NOT IN (SELECT id FROM cdr.dead_letter_replays)"
    };
    let sql = format!(
        "SELECT d.id AS id, toString(d.topic) AS topic, d.partition AS partition, d.offset AS offset, \
         d.key AS key, d.payload_b64 AS payload_b64, d.payload_truncated AS payload_truncated, \
         toUnixTimestamp64Milli(d.source_ts) AS source_ts \
         FROM cdr.dead_letters_final AS d WHERE {WHERE}{skip} ORDER BY topic, partition, offset, id"
    );
    let letters: Vec<Letter> = query(client, &sql, f)?
        .fetch_all()
        .await
        .context("reading dead letters")?;
    // The topic a dead letter names is the cluster's own: no prefix again.
    let cluster = cdr_kafka::KafkaConfig {
        topic_prefix: String::new(),
        ..kafka.clone()
    };
    let producer = cdr_kafka::runtime::producer(&cluster, "cdrctl-dlq-replay")?;
    let mut out = Replayed::default();
    let mut acks = Vec::new();
    for l in letters {
        if l.payload_truncated {
            out.truncated.push(l.id);
            continue;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&l.payload_b64) else {
            out.undecodable.push(l.id);
            continue;
        };
        let bytes = match fix.map(|x| x.apply(&bytes)) {
            None => bytes,
            Some(Ok(fixed)) => fixed,
            Some(Err(e)) => {
                out.unfixable.push((l.id, e));
                continue;
            }
        };
        let key = l.key.clone().unwrap_or_default();
        // Its own partition again, which keeps the order within it, and its
        // own timestamp: the assembler judges an event's clock against its
        // record's, so a record replayed days later must not look late.
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&l.topic)
            .key(key.as_bytes())
            .payload(&bytes);
        if l.partition >= 0 {
            rec = rec.partition(l.partition);
        }
        if let Some(ts) = l.source_ts {
            rec = rec.timestamp(ts);
        }
        let ack = cdr_kafka::runtime::enqueue_built(&producer, rec, &l.topic, None)
            .await
            .with_context(|| format!("dead letter {} (offset {})", l.id, l.offset))?;
        acks.push((l, ack));
    }
    let mut insert = client.insert::<Replay>("dead_letter_replays").await?;
    for (l, ack) in acks {
        let d = match ack.await {
            Ok(Ok(d)) => d,
            Ok(Err((e, _))) => anyhow::bail!("dead letter {}: {} refused it: {e}", l.id, l.topic),
            Err(_) => anyhow::bail!("dead letter {}: the producer dropped its delivery", l.id),
        };
        insert
            .write(&Replay {
                id: l.id,
                replayed_at: cdr_kafka::now_ms(),
                topic: l.topic,
                partition: d.partition,
                offset: d.offset,
                actor: actor.to_string(),
                fix: fix_text.clone(),
            })
            .await?;
        out.sent += 1;
    }
    insert.end().await.context("recording the replays")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fix_renames_maps_sets_and_removes_top_level_fields() {
        let f: FixMapping = serde_json::from_str(
            r#"{"rename": {"acct": "account_id"}, "map_values": {"type": {"HANGUP": "hangup", "7": 8}},
                "set": {"switch_id": "sw-1"}, "remove": ["junk"]}"#,
        )
        .unwrap();
        let out = f
            .apply(br#"{"event_id": "e1", "acct": "a-1", "type": "HANGUP", "junk": 1, "n": 7}"#)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event_id": "e1", "account_id": "a-1", "type": "hangup", "switch_id": "sw-1", "n": 7})
        );
        // Values are matched as their text (numbers too); absent fields are left alone.
        let g: FixMapping = serde_json::from_str(r#"{"map_values": {"n": {"7": 8}}}"#).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&g.apply(br#"{"n": 7}"#).unwrap()).unwrap();
        assert_eq!(v["n"], 8);
        assert_eq!(f.apply(b"not json"), Err(FixError::NotAnObject));
        assert_eq!(f.apply(b"[1, 2]"), Err(FixError::NotAnObject));
        assert!(serde_json::from_str::<FixMapping>(r#"{"renames": {}}"#).is_err());
    }

    #[test]
    fn time_bounds_are_checked() {
        assert_eq!(bound("from", &None, "1970-01-01").unwrap(), "1970-01-01");
        assert_eq!(
            bound("from", &Some("2026-12-01".into()), "").unwrap(),
            "2026-12-01"
        );
        assert_eq!(
            bound("to", &Some(" 2026-12-01 10:00:00 ".into()), "").unwrap(),
            "2026-12-01 10:00:00"
        );
        for bad in ["yesterday", "2026-12-1", "2026-12-01T10:00:00", ""] {
            let e = bound("from", &Some(bad.into()), "")
                .unwrap_err()
                .to_string();
            assert!(e.contains("--from"), "{e}");
        }
    }
}
