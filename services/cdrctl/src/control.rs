//! Operator control commands: `account set-plan` and `route restore`. Both
//! emit the same records the services emit (on `accounts.plan-changes` and
//! `routes.status`), so the rater, the detector and ClickHouse see operator
//! actions and automatic ones the same way, with an audit row each.

use cdr_kafka::KafkaConfig;
use cdr_model::avro::Codec;
use cdr_model::control::{plan_change_id, PlanChange, RouteStatusEvent};
use cdr_model::ids::stable_id;
use cdr_model::topics;

/// Why an operator action was refused before anything was sent.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ActorError {
    #[error(
        "--actor `{asked}` is not the authenticated Kafka principal `{principal}`: \
         operator actions are recorded under the SASL user that sends them"
    )]
    NotThePrincipal { asked: String, principal: String },
}

/// Marks an actor name nobody vouched for (no SASL login to the brokers).
pub const UNAUTHENTICATED: &str = " (unauthenticated)";

/// Who an operator action is recorded under. With SASL configured, the
/// authenticated principal: the brokers checked its password, and the ACLs
/// (deploy/kafka/acls.tsv) let only it and the owning service write the
/// control topics, so the audit row names who really acted; `--actor` may
/// only repeat it. Without SASL nobody vouches for the name: it is
/// recorded with an "(unauthenticated)" mark.
pub fn actor(kafka: &KafkaConfig, asked: Option<&str>) -> Result<String, ActorError> {
    let principal = kafka
        .security
        .sasl
        .as_ref()
        .and_then(|s| s.username.as_deref())
        .filter(|u| !u.is_empty());
    match (principal, asked) {
        (Some(p), Some(a)) if a != p => Err(ActorError::NotThePrincipal {
            asked: a.to_string(),
            principal: p.to_string(),
        }),
        (Some(p), _) => Ok(p.to_string()),
        (None, a) => {
            let name = a
                .map(str::to_string)
                .or_else(|| std::env::var("USER").ok())
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "operator".to_string());
            Ok(format!("{name}{UNAUTHENTICATED}"))
        }
    }
}

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
    fn the_actor_is_the_sasl_principal_or_marked_unauthenticated() {
        let mut k = KafkaConfig::default();
        assert_eq!(actor(&k, Some("ann")).unwrap(), "ann (unauthenticated)");
        k.security.sasl = Some(cdr_kafka::config::SaslConfig {
            mechanism: cdr_kafka::config::SaslMechanism::ScramSha512,
            username: Some("cdr-operator-ann".into()),
            password: Some("x".into()),
            password_file: None,
            oauthbearer_config: None,
        });
        assert_eq!(actor(&k, None).unwrap(), "cdr-operator-ann");
        assert_eq!(
            actor(&k, Some("cdr-operator-ann")).unwrap(),
            "cdr-operator-ann"
        );
        assert_eq!(
            actor(&k, Some("bob")),
            Err(ActorError::NotThePrincipal {
                asked: "bob".into(),
                principal: "cdr-operator-ann".into()
            })
        );
    }

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
