//! Operator control commands: `account set-plan` and `route restore`. Both
//! emit the same records the services emit (on `accounts.plan-changes` and
//! `routes.status`), so the rater, the detector and ClickHouse see operator
//! actions and automatic ones the same way, with an audit row each.

use cdr_kafka::KafkaConfig;
use cdr_model::avro::Codec;
use cdr_model::control::{plan_change_id, PlanChange, RouteStatusEvent};
use cdr_model::ids::stable_id;
use cdr_model::topics;

/// The plan-change record of an operator decision (`plan` is `wholesale`
/// or `retail`), effective at `at_ms`.
pub fn plan_change(
    account: &str,
    plan: &str,
    reason: &str,
    actor: &str,
    at_ms: i64,
) -> anyhow::Result<PlanChange> {
    anyhow::ensure!(
        plan == "wholesale" || plan == "retail",
        "--plan must be `wholesale` or `retail`, not `{plan}`"
    );
    anyhow::ensure!(!account.trim().is_empty(), "account must not be empty");
    Ok(PlanChange {
        change_id: plan_change_id(account, plan, at_ms),
        account_id: account.to_string(),
        old_plan: if plan == "retail" {
            "wholesale"
        } else {
            "retail"
        }
        .into(),
        new_plan: plan.to_string(),
        reason: reason.to_string(),
        asr: None,
        acd_s: None,
        sample_seizures: 0,
        window_secs: 0,
        decided_at_ms: at_ms,
        source: "operator".into(),
        actor: actor.to_string(),
    })
}

/// The status record of an operator restore.
pub fn route_restore(
    trunk: &str,
    breakout: &str,
    reason: &str,
    actor: &str,
    at_ms: i64,
) -> RouteStatusEvent {
    RouteStatusEvent {
        event_id: stable_id(&[
            "route_status",
            trunk,
            breakout,
            "active",
            &at_ms.to_string(),
        ]),
        trunk_id: trunk.to_string(),
        breakout: breakout.to_string(),
        status: "active".into(),
        reason: reason.to_string(),
        alert_id: None,
        actor: actor.to_string(),
        changed_at_ms: at_ms,
    }
}

async fn send<T>(kafka: &KafkaConfig, topic: &str, key: &str, rec: &T) -> anyhow::Result<()>
where
    T: apache_avro::AvroSchema + serde::Serialize + serde::de::DeserializeOwned,
{
    let producer = cdr_kafka::runtime::producer(kafka, "cdrctl")?;
    let payload = Codec::<T>::new().encode(rec)?;
    let ack = cdr_kafka::runtime::send(&producer, topic, key.as_bytes(), &payload).await?;
    cdr_kafka::runtime::await_acks(vec![ack]).await?;
    Ok(())
}

pub async fn publish_plan_change(kafka: &KafkaConfig, c: &PlanChange) -> anyhow::Result<()> {
    // Keyed by change id: compaction must keep every change (a replayed
    // call is rated by the category in force at its answer time).
    send(kafka, topics::ACCOUNTS_PLAN_CHANGES, &c.change_id, c).await
}

pub async fn publish_route_status(kafka: &KafkaConfig, e: &RouteStatusEvent) -> anyhow::Result<()> {
    let key = format!("{}|{}", e.trunk_id, e.breakout);
    send(kafka, topics::ROUTES_STATUS, &key, e).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_records_are_deterministic_and_validated() {
        let a = plan_change("acc-1", "wholesale", "reviewed", "noc:alice", 5).unwrap();
        let b = plan_change("acc-1", "wholesale", "reviewed", "noc:alice", 5).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.old_plan, "retail");
        assert_eq!(a.source, "operator");
        assert!(plan_change("acc-1", "gold", "", "x", 5).is_err());
        let r = route_restore("trk-9", "UK Mobile", "vendor fixed", "noc:bob", 7);
        assert_eq!(r.status, "active");
        assert_eq!(
            r.event_id,
            route_restore("trk-9", "UK Mobile", "x", "y", 7).event_id
        );
        assert_ne!(
            r.event_id,
            route_restore("trk-9", "UK Mobile", "x", "y", 8).event_id
        );
    }
}
