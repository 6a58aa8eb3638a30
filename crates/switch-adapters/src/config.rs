//! The small typed configuration an adapter needs about the switch that sent
//! a payload: its id, how vendor account codes map to the pipeline's
//! accounts, the time zone of local-time strings, and the leg/record rules
//! that make one call produce one CDR.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use serde::Deserialize;

use cdr_model::event::Direction;

/// Per-switch adapter configuration. Deserialisable (TOML/JSON) so an ingest
/// service can hold one per switch; unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// The pipeline's `switch_id` (part of `cdr_id`): one per switch, so two
    /// proxies reporting the same SIP Call-ID never collide.
    pub switch_id: String,
    #[serde(default)]
    pub accounts: AccountMap,
    /// Direction stamped on every event (the payloads describe legs, not the
    /// wholesale direction of the traffic).
    #[serde(default)]
    pub direction: Direction,
    /// Zone of local-time strings (Asterisk `start`/`answer`/`end`, FreeSWITCH
    /// `*_stamp` are never used: FreeSWITCH gives epochs).
    #[serde(default)]
    pub time_zone: SwitchTz,
    /// Clock-skew tolerance between one record's milestones, as in the
    /// assembler (answer may precede setup by at most this much).
    #[serde(default = "default_skew")]
    pub skew_ms: i64,
    #[serde(default)]
    pub freeswitch: FreeswitchRules,
    #[serde(default)]
    pub asterisk: AsteriskRules,
    #[serde(default)]
    pub opensips: KeyValueFields,
}

fn default_skew() -> i64 {
    2000
}

impl AdapterConfig {
    /// Defaults for everything but the switch id: accounts pass through the
    /// vendor's account code, UTC, A-leg billing, stock Asterisk columns.
    pub fn new(switch_id: impl Into<String>) -> Self {
        AdapterConfig {
            switch_id: switch_id.into(),
            accounts: AccountMap::default(),
            direction: Direction::Outbound,
            time_zone: SwitchTz::Utc,
            skew_ms: default_skew(),
            freeswitch: FreeswitchRules::default(),
            asterisk: AsteriskRules::default(),
            opensips: KeyValueFields::default(),
        }
    }
}

/// How a vendor account code (FreeSWITCH `accountcode`, Asterisk
/// `accountcode`, OpenSIPS/Kamailio extra field) or the source IP becomes the
/// pipeline's `account_id`. First match wins: `by_key[code]`,
/// `by_source_ip[ip]`, the code itself when `pass_through`, `default_account`;
/// otherwise the payload is refused (`missing_field` / `account`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountMap {
    #[serde(default)]
    pub by_key: BTreeMap<String, String>,
    #[serde(default)]
    pub by_source_ip: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub pass_through: bool,
    #[serde(default)]
    pub default_account: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for AccountMap {
    fn default() -> Self {
        AccountMap {
            by_key: BTreeMap::new(),
            by_source_ip: BTreeMap::new(),
            pass_through: true,
            default_account: None,
        }
    }
}

impl AccountMap {
    pub fn resolve(&self, key: Option<&str>, source_ip: Option<&str>) -> Option<String> {
        let key = key.map(str::trim).filter(|k| !k.is_empty());
        if let Some(a) = key.and_then(|k| self.by_key.get(k)) {
            return Some(a.clone());
        }
        if let Some(a) = source_ip.and_then(|ip| self.by_source_ip.get(ip.trim())) {
            return Some(a.clone());
        }
        if self.pass_through {
            if let Some(k) = key {
                return Some(k.to_string());
            }
        }
        self.default_account.clone()
    }
}

/// The switch's zone for local-time strings: `UTC`, a fixed offset such as
/// `+03:00`, or an IANA name such as `Europe/Moscow` (DST-aware; a local time
/// that occurs twice takes the earlier instant, one that never occurs is
/// refused as `bad_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum SwitchTz {
    #[default]
    Utc,
    Fixed(FixedOffset),
    Iana(chrono_tz::Tz),
}

impl FromStr for SwitchTz {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t == "+00:00" {
            return Ok(SwitchTz::Utc);
        }
        if let Some(sign) = t.chars().next().filter(|c| *c == '+' || *c == '-') {
            let rest = &t[1..];
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
                (Ok(h), Ok(m)) if (0..=18).contains(&h) && (0..60).contains(&m) => (h, m),
                _ => return Err(format!("`{t}` is not an offset like +03:00")),
            };
            let secs = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
            return FixedOffset::east_opt(secs)
                .map(SwitchTz::Fixed)
                .ok_or_else(|| format!("`{t}` is out of range"));
        }
        t.parse::<chrono_tz::Tz>()
            .map(SwitchTz::Iana)
            .map_err(|_| format!("`{t}` is neither UTC, an offset nor an IANA zone"))
    }
}

impl TryFrom<String> for SwitchTz {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl SwitchTz {
    /// Local wall-clock time → UTC epoch milliseconds. `None` for a local
    /// time skipped by a DST jump.
    pub fn to_utc_ms(&self, local: NaiveDateTime) -> Option<i64> {
        let pick = |r: LocalResult<i64>| match r {
            LocalResult::Single(t) => Some(t),
            // Ambiguous (clocks going back): the earlier instant.
            LocalResult::Ambiguous(a, b) => Some(a.min(b)),
            LocalResult::None => None,
        };
        match self {
            SwitchTz::Utc => Some(Utc.from_utc_datetime(&local).timestamp_millis()),
            SwitchTz::Fixed(off) => pick(
                off.from_local_datetime(&local)
                    .map(|d| d.with_timezone(&Utc).timestamp_millis()),
            ),
            SwitchTz::Iana(tz) => pick(
                tz.from_local_datetime(&local)
                    .map(|d| d.with_timezone(&Utc).timestamp_millis()),
            ),
        }
    }

    /// Offset name for documentation and error messages.
    pub fn describe(&self) -> String {
        match self {
            SwitchTz::Utc => "UTC".into(),
            SwitchTz::Fixed(o) => o.fix().to_string(),
            SwitchTz::Iana(tz) => tz.name().to_string(),
        }
    }
}

/// Which FreeSWITCH leg document reports the call (see the crate README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegRule {
    /// The A-leg (the leg without an originator: the customer's inbound leg,
    /// or an `originate`d leg) reports the call; originated B-legs are
    /// skipped. One A-leg per call, so exactly one `cdr` per call even with
    /// serial failover across gateways.
    #[default]
    ALeg,
    /// The originated (termination) leg reports the call, under the A-leg's
    /// uuid; an A-leg that originated a leg is skipped, a lone A-leg (no B-leg
    /// ever created: refused by the dialplan) still reports. Only for
    /// deployments with at most one B-leg per call: with serial failover the
    /// first B-leg to reach the assembler would win.
    BLeg,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeswitchRules {
    #[serde(default)]
    pub leg: LegRule,
    /// Channel variables holding the termination trunk, first present wins;
    /// then the gateway name in `sofia/gateway/<name>/...` of the leg's own
    /// or bridged channel name.
    #[serde(default = "default_trunk_vars")]
    pub trunk_variables: Vec<String>,
    /// Channel variable with the account code.
    #[serde(default = "default_fs_account_var")]
    pub account_variable: String,
}

fn default_trunk_vars() -> Vec<String> {
    vec!["cdr_trunk".into(), "sip_gateway_name".into()]
}

fn default_fs_account_var() -> String {
    "accountcode".into()
}

impl Default for FreeswitchRules {
    fn default() -> Self {
        FreeswitchRules {
            leg: LegRule::ALeg,
            trunk_variables: default_trunk_vars(),
            account_variable: default_fs_account_var(),
        }
    }
}

/// How Asterisk records are keyed into calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsteriskCallKey {
    /// `call_id` = `linkedid` (else `uniqueid`): all records of one call are
    /// one call. File imports keep the billed record of each call (see
    /// README); a stream of per-record events (AMI) keeps whichever record
    /// reaches the assembler first, so use it with one record per call.
    #[default]
    Linkedid,
    /// `call_id` = `uniqueid#sequence`: every record (each Dial attempt) is
    /// its own call. Safe for streams with several records per call.
    PerRecord,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsteriskRules {
    /// Column names of `cdr_custom` rows, in order (CDR variable names:
    /// `clid`, `src`, `dst`, ..., `linkedid`, `sequence`, `hangupcause`;
    /// anything else is ignored). Default: Asterisk's shipped
    /// `cdr_custom.conf.sample` mapping.
    #[serde(default = "default_custom_columns")]
    pub custom_columns: Vec<String>,
    #[serde(default)]
    pub call_key: AsteriskCallKey,
}

/// The column order of Asterisk's `cdr_custom.conf.sample` `Master.csv`
/// mapping.
pub fn default_custom_columns() -> Vec<String> {
    [
        "clid",
        "src",
        "dst",
        "dcontext",
        "channel",
        "dstchannel",
        "lastapp",
        "lastdata",
        "start",
        "answer",
        "end",
        "duration",
        "billsec",
        "disposition",
        "amaflags",
        "accountcode",
        "uniqueid",
        "userfield",
        "sequence",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

impl Default for AsteriskRules {
    fn default() -> Self {
        AsteriskRules {
            custom_columns: default_custom_columns(),
            call_key: AsteriskCallKey::Linkedid,
        }
    }
}

/// Names of the extra (`acc` `extra`/`cdr_extra`) fields an OpenSIPS event
/// carries for CLI, dialed number, account and trunk: the first present one
/// wins. The script decides these names, so they are configurable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValueFields {
    #[serde(default = "cli_fields")]
    pub cli: Vec<String>,
    #[serde(default = "dialed_fields")]
    pub dialed: Vec<String>,
    #[serde(default = "account_fields")]
    pub account: Vec<String>,
    #[serde(default = "trunk_fields")]
    pub trunk: Vec<String>,
    #[serde(default = "source_ip_fields")]
    pub source_ip: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn cli_fields() -> Vec<String> {
    strings(&["cli", "src_user", "caller", "from_user", "src"])
}
fn dialed_fields() -> Vec<String> {
    strings(&[
        "dialed",
        "dst_user",
        "callee",
        "ruri_user",
        "to_user",
        "dst",
        "cgr_destination",
    ])
}
fn account_fields() -> Vec<String> {
    strings(&["account", "accountcode", "cgr_account"])
}
fn trunk_fields() -> Vec<String> {
    strings(&["trunk", "dst_gw", "gateway"])
}
fn source_ip_fields() -> Vec<String> {
    strings(&["source_ip", "src_ip", "si"])
}

impl Default for KeyValueFields {
    fn default() -> Self {
        KeyValueFields {
            cli: cli_fields(),
            dialed: dialed_fields(),
            account: account_fields(),
            trunk: trunk_fields(),
            source_ip: source_ip_fields(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn zones_parse_and_convert() {
        let t = local("2023-07-26 01:51:32");
        let utc = SwitchTz::Utc.to_utc_ms(t).unwrap();
        let plus3: SwitchTz = "+03:00".parse().unwrap();
        assert_eq!(plus3.to_utc_ms(t).unwrap(), utc - 3 * 3600 * 1000);
        let msk: SwitchTz = "Europe/Moscow".parse().unwrap();
        assert_eq!(msk.to_utc_ms(t), plus3.to_utc_ms(t));
        assert!("Mars/Olympus".parse::<SwitchTz>().is_err());
        assert!("+25:00".parse::<SwitchTz>().is_err());
    }

    #[test]
    fn dst_gaps_and_overlaps() {
        let ny: SwitchTz = "America/New_York".parse().unwrap();
        // 2024-03-10 02:30 does not exist in New York.
        assert_eq!(ny.to_utc_ms(local("2024-03-10 02:30:00")), None);
        // 2024-11-03 01:30 happens twice: the earlier (EDT, UTC-4) instant.
        let d = NaiveDate::from_ymd_opt(2024, 11, 3)
            .unwrap()
            .and_hms_opt(5, 30, 0)
            .unwrap();
        assert_eq!(
            ny.to_utc_ms(local("2024-11-03 01:30:00")),
            Some(Utc.from_utc_datetime(&d).timestamp_millis())
        );
    }

    #[test]
    fn accounts_resolve_in_order() {
        let mut m = AccountMap::default();
        m.by_key.insert("1001".into(), "acc-1".into());
        m.by_source_ip.insert("10.0.0.1".into(), "acc-ip".into());
        assert_eq!(m.resolve(Some("1001"), Some("10.0.0.1")).unwrap(), "acc-1");
        assert_eq!(m.resolve(Some("x"), Some("10.0.0.1")).unwrap(), "acc-ip");
        assert_eq!(m.resolve(Some("x"), None).unwrap(), "x");
        m.pass_through = false;
        assert_eq!(m.resolve(Some("x"), None), None);
        m.default_account = Some("d".into());
        assert_eq!(m.resolve(None, None).unwrap(), "d");
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let c: AdapterConfig = serde_json::from_str(
            r#"{"switch_id":"fs1","time_zone":"Europe/Moscow","freeswitch":{"leg":"b_leg"}}"#,
        )
        .unwrap();
        assert_eq!(c.freeswitch.leg, LegRule::BLeg);
        assert_eq!(c.asterisk.custom_columns.len(), 19);
        assert!(serde_json::from_str::<AdapterConfig>(r#"{"switch_id":"a","nope":1}"#).is_err());
    }
}
