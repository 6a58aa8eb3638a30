//! The pure core of the rater: an enriched call in, a rated CDR out, through
//! [`ratedeck::rate`]. No clock, no I/O: re-rating a CDR with the same decks
//! always gives the same result.
//!
//! The rater prices what enrichment decided: the normalised dialed number
//! (`dialed_e164`, with the plan selector enrichment read), the LRN when
//! ported, the caller id's validity and country and the US jurisdiction. It
//! reads numbers through the same `numbering` crate when enrichment is
//! absent, so there is one dial plan and one jurisdiction rule.

use std::str::FromStr;

use cdr_model::call::{EnrichedCall, RatedCdr, Rating};
use cdr_model::event::Direction;
use cdr_model::kinds::{Jurisdiction, NumberType, RatingStatus};
use cdr_model::Disposition;
use chrono::{DateTime, TimeZone, Utc};
use ratedeck::numbering::{self, Dialed, PlanSelector, E164};
use ratedeck::{Flag, RatingContext, RatingInput};
use rust_decimal::Decimal;

/// Header carrying the caller's maximum rate per minute (USD).
pub const MAX_RATE_HEADER: &str = "X-CWU-maxrate";
/// Header carrying the maximum number of routes to try.
pub const MAX_ROUTE_HEADER: &str = "X-CWU-maxroute";

/// Rating flags the rater adds on top of ratedeck's.
pub const FLAG_BAD_MAX_RATE: &str = "bad_max_rate_header";
pub const FLAG_BAD_MAX_ROUTE: &str = "bad_max_route_header";
pub const FLAG_BAD_LRN_FEE: &str = "bad_lrn_fee";

/// Stable codes in `rating.unrated_reason`.
pub mod reason {
    pub const UNKNOWN_ACCOUNT: &str = "unknown_account";
    pub const UNKNOWN_DIAL_PREFIX: &str = "unknown_dial_prefix";
    pub const BAD_DIALED_NUMBER: &str = "bad_dialed_number";
    pub const MISSING_ANSWER_TIME: &str = "missing_answer_time";
    pub const NO_MATCHING_PREFIX: &str = "no_matching_prefix";
    /// A NANP number outside the contiguous US that only a catch-all `1`
    /// row would price (revenue-share fraud exposure).
    pub const NANP_CATCH_ALL: &str = "nanp_catch_all";
    /// `blocked`: a UK number whose origin surcharge the account has not
    /// allowed (seed 000).
    pub const UK_SURCHARGE_NOT_ALLOWED: &str = "uk_surcharge_not_allowed";
    pub const BAD_LRN_FEE: &str = "bad_lrn_fee";
    pub const NO_RATE_DECK_LOADED: &str = "no_rate_deck_loaded";
}

/// Snake-case name of a ratedeck flag, as stored in `rating.flags`.
pub fn flag_name(f: Flag) -> &'static str {
    match f {
        Flag::MaxRateExceeded => "max_rate_exceeded",
        Flag::UkSurchargeBlocked => "uk_surcharge_blocked",
        Flag::JurisdictionIndeterminate => "jurisdiction_indeterminate",
        Flag::LrnRated => "lrn_rated",
        Flag::BehindNatRetail => "behind_nat_retail",
        Flag::DowngradedToRetail => "downgraded_to_retail",
        Flag::ShortDurationSurcharge => "short_duration_surcharge",
        Flag::InvalidCli => "invalid_cli",
        Flag::NotBilled => "not_billed",
    }
}

/// LRNs are NANP routing numbers, conventionally written as 10 digits
/// (NPA-NXX-XXXX). The decks and the NPA-NXX table key on E.164 (`1` + 10
/// digits), so a 10-digit LRN gets its country code; anything already in
/// E.164 passes through. Empty means no LRN.
pub fn lrn_e164(lrn: &str) -> Option<String> {
    let l = lrn.trim();
    let l = l.strip_prefix('+').unwrap_or(l);
    if l.is_empty() {
        return None;
    }
    let b = l.as_bytes();
    if b.len() == 10 && b.iter().all(u8::is_ascii_digit) && (b'2'..=b'9').contains(&b[0]) {
        Some(format!("1{l}"))
    } else {
        Some(l.to_string())
    }
}

/// The dialed number as enrichment read it: its plan selector and its
/// normalised E.164 digits. `None` when enrichment has no usable number
/// (then ratedeck reads the raw string with the same `numbering` function
/// and reports why it is unusable).
fn enriched_dial(call: &EnrichedCall) -> Option<Dialed> {
    let e = &call.enrichment;
    let number = E164::from_digits(&e.dialed_e164).ok()?;
    let plan = PlanSelector::from_record(e.plan_selector.as_deref(), e.trunk_selector.as_deref());
    if e.plan_selector.is_some() && plan.is_none() {
        return None;
    }
    Some(Dialed { plan, number })
}

/// Caller-id validity and country: enrichment's verdict when it looked at
/// the caller id, else the same `numbering::check_cli` on the raw one
/// (a record enriched by nothing).
fn caller(call: &EnrichedCall) -> (bool, Option<String>) {
    let e = &call.enrichment;
    if e.cli_e164.is_some() || e.cli_valid || e.caller_country.is_some() {
        return (e.cli_valid, e.caller_country.clone());
    }
    let (status, n) = numbering::check_cli(call.call.cli.as_deref());
    match (status, n) {
        (numbering::CliStatus::Valid, Some(n)) => (true, numbering::classify(&n).country),
        _ => (false, None),
    }
}

/// Header value by exact name, else by case-insensitive name (smallest
/// matching key, so the choice never depends on hash order).
fn header<'a>(h: &'a std::collections::HashMap<String, String>, name: &str) -> Option<&'a str> {
    if let Some(v) = h.get(name) {
        return Some(v);
    }
    h.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .min_by(|a, b| a.0.cmp(b.0))
        .map(|(_, v)| v.as_str())
}

/// What building the rating input noticed besides the input itself.
#[derive(Debug, Default)]
struct InputNotes {
    flags: Vec<&'static str>,
    bad_lrn_fee: bool,
}

fn rating_input(call: &EnrichedCall) -> (RatingInput, InputNotes) {
    let c = &call.call;
    let e = &call.enrichment;
    let mut notes = InputNotes::default();
    let (cli_valid, cli_country) = caller(call);
    let max_rate = match header(&c.headers, MAX_RATE_HEADER).map(str::trim) {
        None | Some("") => None,
        Some(v) => match Decimal::from_str(v) {
            Ok(d) if !d.is_sign_negative() || d.is_zero() => Some(d),
            _ => {
                notes.flags.push(FLAG_BAD_MAX_RATE);
                None
            }
        },
    };
    let max_route = match header(&c.headers, MAX_ROUTE_HEADER).map(str::trim) {
        None | Some("") => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if i32::try_from(n).is_ok() => Some(n),
            _ => {
                notes.flags.push(FLAG_BAD_MAX_ROUTE);
                None
            }
        },
    };
    let lrn_fee = match e.lrn_fee.trim() {
        "" => Decimal::ZERO,
        s => match Decimal::from_str(s) {
            Ok(d) if !d.is_sign_negative() || d.is_zero() => d,
            _ => {
                notes.flags.push(FLAG_BAD_LRN_FEE);
                notes.bad_lrn_fee = true;
                Decimal::ZERO
            }
        },
    };
    let answer_ts: Option<DateTime<Utc>> = c
        .answer_ts_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    let input = RatingInput {
        call_id: c.call_id.clone(),
        account_id: c.account_id.clone(),
        dialed: c.dialed.clone(),
        dial: enriched_dial(call),
        rated_number: e.lrn.as_deref().and_then(lrn_e164),
        cli: e.cli_e164.clone().or_else(|| c.cli.clone()),
        cli_valid,
        cli_country,
        jurisdiction: e.jurisdiction.as_deref().and_then(Jurisdiction::parse),
        inbound: Direction::is_inbound_text(&c.direction),
        answer_ts,
        setup_ts: Utc.timestamp_millis_opt(c.setup_ts_ms).single(),
        billable_seconds: u32::try_from(c.billable_seconds.max(0)).unwrap_or(u32::MAX),
        // 0 means the switch gave no sub-second duration: judge on seconds.
        duration_ms: u64::try_from(c.duration_ms).ok().filter(|ms| *ms > 0),
        answered: Disposition::parse(&c.disposition) == Some(Disposition::Answered),
        behind_nat: c.behind_nat,
        max_rate,
        max_route,
        lrn_fee,
        callee_number_type: e.callee_number_type.as_deref().and_then(NumberType::parse),
    };
    (input, notes)
}

/// Rates one enriched call with the given decks and tables.
///
/// Never drops a call: an unknown account, a bad dialed number, an answered
/// call without an answer time or a number no deck matches comes out with
/// `status = "unrated"` and a stable reason code (see [`reason`]), amount 0
/// and the LRN fee still carried. Amounts are unrounded decimal strings.
/// Bad `X-CWU-maxrate` / `X-CWU-maxroute` headers are flagged and ignored;
/// an unparseable LRN fee makes the call unrated (`bad_lrn_fee`).
///
/// An inbound call (`direction = inbound`) is no termination: status
/// `inbound`, amount 0, no dip fee; it is left for DID rating.
///
/// The jurisdiction on the CDR is the one enrichment decided, and the one
/// the call is priced by (a US48 call without one is priced indeterminate).
pub fn rate_call(call: EnrichedCall, ctx: &RatingContext<'_>) -> RatedCdr {
    let (input, notes) = rating_input(&call);
    let r = ratedeck::rate(&input, ctx);
    let mut status = r.status;
    // The typed reason's stable code; an unknown account wins over what
    // else is wrong with the call.
    let mut unrated_reason = r.unrated_reason.as_ref().map(|u| {
        if ctx.accounts.contains_key(&input.account_id) {
            u.kind.code()
        } else {
            reason::UNKNOWN_ACCOUNT
        }
    });
    let mut amount = r.amount;
    if notes.bad_lrn_fee && status == RatingStatus::Rated {
        status = RatingStatus::Unrated;
        unrated_reason = Some(reason::BAD_LRN_FEE);
        amount = Decimal::ZERO;
    }
    let mut flags: Vec<String> = r.flags.iter().map(|f| flag_name(f).to_string()).collect();
    flags.extend(notes.flags.iter().map(|f| f.to_string()));
    let rating = Rating {
        status: status.as_str().to_string(),
        unrated_reason: unrated_reason.map(str::to_string),
        plan: r.plan.map(|p| p.as_str().to_string()),
        deck_id: (!r.deck_id.is_empty()).then(|| r.deck_id.to_string()),
        deck_version: i64::try_from(r.deck_version).unwrap_or(i64::MAX),
        matched_prefix: r.matched_prefix.map(|p| p.to_string()),
        rated_number: (!r.rated_number.is_empty()).then(|| r.rated_number.clone()),
        row_effective_from_ms: r.row_effective_from.map(|t| t.timestamp_millis()),
        obr_tier: r.obr_tier.map(|t| t.as_str().to_string()),
        jurisdiction_applied: r.jurisdiction.map(|j| j.as_str().to_string()),
        rated_trunk: r.trunk.and_then(|t| i32::try_from(t).ok()),
        destination: r.destination.as_deref().map(str::to_string),
        rate_per_min: r.rate_per_min.to_string(),
        billed_seconds: i64::from(r.billed_seconds),
        increment: r.increment.map(|i| i.to_string()),
        connection_fee: r.connection_fee.to_string(),
        surcharge: r.surcharge.to_string(),
        surcharge_per_min: r.uk_surcharge_per_min.to_string(),
        short_duration_surcharge: r.short_duration_surcharge.to_string(),
        lrn_fee: r.lrn_fee.to_string(),
        amount: amount.to_string(),
        currency: r.currency.as_str().to_string(),
        flags,
        max_rate: r.max_rate.map(|d| d.to_string()),
        max_route: r.max_route.and_then(|n| i32::try_from(n).ok()),
    };
    RatedCdr {
        call: call.call,
        enrichment: call.enrichment,
        rating,
        detection: None,
    }
}

/// The pass-through used when no decks are configured: every call is
/// `unrated` with reason `no_rate_deck_loaded` (never dropped), carrying the
/// LRN fee.
pub fn unrated_no_decks(call: EnrichedCall) -> RatedCdr {
    let rating = Rating {
        status: RatingStatus::Unrated.as_str().to_string(),
        unrated_reason: Some(reason::NO_RATE_DECK_LOADED.to_string()),
        lrn_fee: call.enrichment.lrn_fee.clone(),
        amount: call.enrichment.lrn_fee.clone(),
        rate_per_min: "0".into(),
        connection_fee: "0".into(),
        surcharge: "0".into(),
        surcharge_per_min: "0".into(),
        short_duration_surcharge: "0".into(),
        currency: "USD".into(),
        max_rate: call
            .call
            .headers
            .get(MAX_RATE_HEADER)
            .filter(|v| Decimal::from_str(v.trim()).is_ok())
            .map(|v| v.trim().to_string()),
        max_route: call
            .call
            .headers
            .get(MAX_ROUTE_HEADER)
            .and_then(|v| v.trim().parse().ok()),
        ..Default::default()
    };
    RatedCdr {
        call: call.call,
        enrichment: call.enrichment,
        rating,
        detection: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::RatingTables;
    use cdr_model::call::{AssembledCall, Enrichment};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .unwrap()
    }

    /// The shipped local-stack configuration and data.
    fn shipped() -> &'static RatingTables {
        static T: OnceLock<RatingTables> = OnceLock::new();
        T.get_or_init(|| {
            let (t, sum) = crate::load_from_config_file(
                &repo().join("deploy/local/config/rater.toml"),
                &repo(),
            )
            .expect("shipped rater.toml loads");
            assert!(sum.rejected.is_empty(), "{:?}", sum.rejected);
            assert!(sum.accounts >= 3, "{}", sum.accounts);
            t
        })
    }

    const ANSWER_MS: i64 = 1_790_000_000_000;

    /// The enricher's NPA-NXX table of the local stack (the one table).
    fn npanxx() -> &'static numbering::NpaNxxTable {
        static T: OnceLock<numbering::NpaNxxTable> = OnceLock::new();
        T.get_or_init(|| {
            let (t, bad) =
                numbering::NpaNxxTable::load(repo().join("deploy/local/data/lrn/npanxx.txt"))
                    .unwrap();
            assert!(bad.is_empty(), "{bad:?}");
            t
        })
    }

    /// What the enricher records for a call that is not dipped: the same
    /// `numbering` analysis and jurisdiction rule (the enricher's own
    /// functions are cross-checked against the rater in `cdrctl`'s tests).
    fn enrichment(cli: Option<&str>, dialed: &str) -> Enrichment {
        let n = numbering::analyze_call(cli, dialed);
        let callee = n.callee.as_ref().ok();
        Enrichment {
            cli_e164: n.cli_e164.as_ref().map(|c| c.digits().to_string()),
            cli_valid: n.cli_status == numbering::CliStatus::Valid,
            dialed_e164: callee
                .map(|c| c.e164.digits().to_string())
                .unwrap_or_default(),
            plan_selector: n.plan.map(|p| p.name().to_string()),
            trunk_selector: n.plan.and_then(|p| p.trunk_text()),
            lrn_source: cdr_model::kinds::LrnSource::NotApplicable.as_str().into(),
            lrn_fee: "0".into(),
            caller_country: n.caller.as_ref().and_then(|c| c.country.clone()),
            callee_country: callee.and_then(|c| c.country.clone()),
            callee_number_type: callee.map(|c| c.number_type.as_str().to_string()),
            jurisdiction: callee.and_then(|c| {
                let tn = c.e164.nanp_tn10()?;
                numbering::call_jurisdiction(npanxx(), n.caller.as_ref(), c, tn)
                    .map(|j| j.as_str().to_string())
            }),
            ..Default::default()
        }
    }

    fn call(account: &str, dialed: &str, cli: Option<&str>, secs: i64) -> EnrichedCall {
        let answered = secs > 0;
        let mut headers = HashMap::new();
        headers.insert(MAX_RATE_HEADER.to_string(), "0.0500".to_string());
        headers.insert(MAX_ROUTE_HEADER.to_string(), "2".to_string());
        EnrichedCall {
            call: AssembledCall {
                cdr_id: format!("id-{account}-{dialed}"),
                call_id: format!("c-{dialed}"),
                switch_id: "sw-nyc-1".into(),
                account_id: account.into(),
                direction: "outbound".into(),
                cli: cli.map(str::to_string),
                dialed: dialed.into(),
                trunk_id: Some("trk-1".into()),
                setup_ts_ms: ANSWER_MS - 5000,
                progress_ts_ms: Some(ANSWER_MS - 3000),
                progress_code: Some(180),
                answer_ts_ms: answered.then_some(ANSWER_MS),
                end_ts_ms: Some(ANSWER_MS + secs * 1000),
                final_sip_code: Some(if answered { 200 } else { 486 }),
                disposition: if answered { "answered" } else { "busy" }.into(),
                duration_ms: secs * 1000,
                billable_seconds: secs,
                pdd_ms: Some(2000),
                headers,
                source_ip: None,
                behind_nat: false,
                codec: Some("PCMU".into()),
                media: None,
                flags: vec![],
                event_count: 4,
                assembled_at_ms: ANSWER_MS + secs * 1000,
            },
            enrichment: enrichment(cli, dialed),
        }
    }

    fn rate(c: EnrichedCall) -> Rating {
        rate_call(c, &shipped().context()).rating
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn shipped_decks_rate_every_simulated_destination() {
        let dests = [
            ("442079460123", "4420", "1/1"),
            ("447700900123", "4477", "1/1"),
            ("4930123456", "4930", "1/1"),
            ("4915112345678", "49151", "1/1"),
            ("12125550199", "1212555", "6/6"),
            ("13105550123", "1310555", "6/6"),
            ("525512345678", "5255", "60/60"),
            ("33123456789", "331", "1/1"),
            ("8821612345678", "88216", "60/60"),
            ("5978123456", "5978", "60/60"),
        ];
        for (dest, prefix, inc) in dests {
            // A UK caller id to UK numbers: no origin surcharge, so allowed
            // on acc-1001 (a US one would be blocked, seed 000).
            let cli = if dest.starts_with("44") {
                "+442079460000"
            } else {
                "+12125550100"
            };
            let r = rate(call("acc-1001", dest, Some(cli), 61));
            assert_eq!(r.status, "rated", "{dest}: {r:?}");
            assert_eq!(r.matched_prefix.as_deref(), Some(prefix), "{dest}");
            assert_eq!(r.increment.as_deref(), Some(inc), "{dest}");
            assert_eq!(r.plan.as_deref(), Some("standard"));
            assert!(d(&r.amount) > Decimal::ZERO, "{dest}");
        }
    }

    #[test]
    fn standard_mexico_bills_a_whole_minute_at_the_deck_rate() {
        let r = rate(call("acc-1001", "525512345678", Some("+12125550100"), 61));
        assert_eq!(r.deck_id.as_deref(), Some("standard-az-2026-01"));
        assert_eq!(r.deck_version, 1);
        assert_eq!(r.destination.as_deref(), Some("Mexico City"));
        assert_eq!(r.billed_seconds, 120);
        assert_eq!(d(&r.rate_per_min), d("0.0180"));
        assert_eq!(d(&r.amount), d("0.036"));
        assert_eq!(r.currency, "USD");
        assert_eq!(r.max_rate.as_deref(), Some("0.0500"));
        assert_eq!(r.max_route, Some(2));
    }

    #[test]
    fn us48_intrastate_and_jurisdiction() {
        let out = rate_call(
            call("acc-1001", "12125550199", Some("+12125550100"), 7),
            &shipped().context(),
        );
        assert_eq!(out.rating.status, "rated");
        assert_eq!(out.rating.deck_id.as_deref(), Some("us48-2026-01"));
        assert_eq!(out.rating.billed_seconds, 12);
        assert_eq!(d(&out.rating.rate_per_min), d("0.0030"));
        assert_eq!(d(&out.rating.amount), d("0.0006"));
        assert_eq!(out.enrichment.jurisdiction.as_deref(), Some("intrastate"));
        // LA from NY: interstate.
        let out = rate_call(
            call("acc-1002", "13105550123", Some("+12125550100"), 7),
            &shipped().context(),
        );
        assert_eq!(out.enrichment.jurisdiction.as_deref(), Some("interstate"));
        assert_eq!(d(&out.rating.rate_per_min), d("0.0040"));
        // Anonymous caller: indeterminate, the higher rate.
        let out = rate_call(
            call("acc-1001", "13105550123", Some("anonymous"), 7),
            &shipped().context(),
        );
        assert_eq!(
            out.enrichment.jurisdiction.as_deref(),
            Some("indeterminate")
        );
        assert!(out
            .rating
            .flags
            .contains(&"jurisdiction_indeterminate".to_string()));
        assert!(out.rating.flags.contains(&"invalid_cli".to_string()));
    }

    #[test]
    fn dial_prefixes_pick_plan_and_trunk() {
        let r = rate(call("acc-1001", "*32442079460123", None, 10));
        assert_eq!(r.plan.as_deref(), Some("premium"));
        assert_eq!(r.deck_id.as_deref(), Some("premium-az-2026-01"));
        let r = rate(call("acc-1001", "*30442079460123", None, 10));
        assert_eq!(r.plan.as_deref(), Some("pstn"));
        let r = rate(call("acc-1001", "*4007442079460123", None, 10));
        assert_eq!(r.deck_id.as_deref(), Some("trunks-2026-01"));
        assert_eq!(
            r.plan.as_deref(),
            Some("premium"),
            "trunk 007 rates Premium"
        );
        assert_eq!(d(&r.rate_per_min), d("0.0060"));
        // Trunk 007 does not carry Suriname.
        let r = rate(call("acc-1001", "*40075978123456", None, 10));
        assert_eq!(r.status, "unrated");
        assert_eq!(
            r.unrated_reason.as_deref(),
            Some(reason::NO_MATCHING_PREFIX)
        );
        assert_eq!(d(&r.amount), Decimal::ZERO);
        // A retail account ignores the dial prefix.
        let r = rate(call("acc-2001", "*40075978123456", None, 10));
        assert_eq!(r.status, "rated");
        assert_eq!(r.plan.as_deref(), Some("retail"));
        assert_eq!(r.deck_id.as_deref(), Some("retail-az-2026-01"));
        // Unknown plan prefix.
        let r = rate(call("acc-1001", "*99442079460123", None, 10));
        assert_eq!(
            r.unrated_reason.as_deref(),
            Some(reason::UNKNOWN_DIAL_PREFIX)
        );
    }

    #[test]
    fn unknown_account_is_unrated_not_dropped() {
        let mut c = call("acc-9999", "442079460123", None, 30);
        c.enrichment.lrn_fee = "0.0015".into();
        let out = rate_call(c, &shipped().context());
        assert_eq!(out.rating.status, "unrated");
        assert_eq!(
            out.rating.unrated_reason.as_deref(),
            Some("unknown_account")
        );
        assert_eq!(d(&out.rating.lrn_fee), d("0.0015"));
        assert_eq!(d(&out.rating.amount), Decimal::ZERO);
        assert_eq!(out.call.account_id, "acc-9999");
    }

    #[test]
    fn bad_headers_are_flagged_not_fatal() {
        let mut c = call("acc-1002", "442079460123", Some("+442079460000"), 30);
        c.call
            .headers
            .insert(MAX_RATE_HEADER.into(), "cheap please".into());
        c.call.headers.insert(MAX_ROUTE_HEADER.into(), "-3".into());
        let r = rate(c);
        assert_eq!(r.status, "rated");
        assert!(r.flags.contains(&FLAG_BAD_MAX_RATE.to_string()), "{r:?}");
        assert!(r.flags.contains(&FLAG_BAD_MAX_ROUTE.to_string()), "{r:?}");
        assert_eq!(r.max_rate, None, "acc-1002 has no default max rate");
        assert_eq!(r.max_route, None);
        // The account default applies when the header is absent.
        let mut c = call("acc-1001", "8821612345678", None, 30);
        c.call.headers.clear();
        let r = rate(c);
        assert_eq!(r.max_rate.as_deref(), Some("0.5000"));
        assert!(r.flags.contains(&"max_rate_exceeded".to_string()));
    }

    #[test]
    fn lrn_and_lrn_fee() {
        let mut c = call("acc-1001", "12125550199", Some("+12125550100"), 6);
        c.enrichment.lrn = Some("13105550000".into());
        c.enrichment.lrn_fee = "0.0020".into();
        // What the enricher records for a NY caller and a CA LRN.
        c.enrichment.jurisdiction = Some(Jurisdiction::Interstate.as_str().into());
        let r = rate(c);
        assert_eq!(r.status, "rated");
        assert!(r.flags.contains(&"lrn_rated".to_string()));
        assert_eq!(r.matched_prefix.as_deref(), Some("1310555"));
        // 6 s interstate LA at 0.0040 + fee.
        assert_eq!(d(&r.amount), d("0.0004") + d("0.0020"));
        // LRNs in their usual 10-digit form are rated as E.164.
        let mut c = call("acc-1001", "12125550199", Some("+12125550100"), 6);
        c.enrichment.lrn = Some("3105550000".into());
        let r = rate(c);
        assert_eq!(r.matched_prefix.as_deref(), Some("1310555"));
        assert_eq!(lrn_e164("+13105550000").as_deref(), Some("13105550000"));
        assert_eq!(lrn_e164(" "), None);
        let mut c = call("acc-1001", "12125550199", Some("+12125550100"), 6);
        c.enrichment.lrn_fee = "n/a".into();
        let r = rate(c);
        assert_eq!(r.status, "unrated");
        assert_eq!(r.unrated_reason.as_deref(), Some(reason::BAD_LRN_FEE));
        assert!(r.flags.contains(&FLAG_BAD_LRN_FEE.to_string()));
    }

    #[test]
    fn uk_surcharge_blocked_or_allowed() {
        // acc-1001 does not allow it (seed 000): a blocked attempt, the
        // reason recorded, nothing billed.
        let r = rate(call("acc-1001", "447700900123", Some("+12125550100"), 60));
        assert!(
            r.flags.contains(&"uk_surcharge_blocked".to_string()),
            "{r:?}"
        );
        assert_eq!(r.status, "blocked");
        assert_eq!(
            r.unrated_reason.as_deref(),
            Some(reason::UK_SURCHARGE_NOT_ALLOWED)
        );
        assert_eq!((d(&r.amount), r.billed_seconds), (Decimal::ZERO, 0));
        // acc-1002 allows it: the US mobile row (0.12/min) is billed.
        let r = rate(call("acc-1002", "447700900123", Some("+12125550100"), 60));
        assert!(!r.flags.contains(&"uk_surcharge_blocked".to_string()));
        assert_eq!(d(&r.surcharge), d("0.12"));
        let mut c = call("acc-1002", "447700900123", Some("+442079460000"), 60);
        c.enrichment.caller_country = Some("GB".into());
        let r = rate(c);
        assert_eq!(d(&r.surcharge), Decimal::ZERO);
        assert_eq!(d(&r.amount), d("0.0200"));
    }

    #[test]
    fn an_empty_enrichment_is_read_with_the_same_numbering() {
        // No enrichment at all: the raw call is read through `numbering`
        // (dial plan, caller id); no jurisdiction was decided, so the US48
        // call is priced indeterminate (the higher rate), never guessed.
        let mut c = call("acc-1001", "212-555-0199", Some("+12125550100"), 7);
        c.enrichment = Enrichment::default();
        let out = rate_call(c, &shipped().context());
        assert_eq!(out.rating.status, "rated");
        assert_eq!(out.rating.matched_prefix.as_deref(), Some("1212555"));
        assert_eq!(d(&out.rating.rate_per_min), d("0.0030"));
        assert!(out
            .rating
            .flags
            .contains(&"jurisdiction_indeterminate".to_string()));
        assert!(!out.rating.flags.contains(&"invalid_cli".to_string()));
        assert_eq!(out.enrichment.jurisdiction, None, "the rater adds none");
    }

    /// Issue 12: the rater prices the enricher's normalised number. Each
    /// of these was verified wrong on the raw-string rater (Houston as
    /// Russia at $0.09, LA as the Netherlands, the rest unrated).
    #[test]
    fn every_dialed_form_is_rated_on_the_normalised_number() {
        for (dialed, prefix, dest) in [
            ("7135550100", "1713555", "USA Houston TX"),
            ("17135550100", "1713555", "USA Houston TX"),
            ("(713) 555-0100", "1713555", "USA Houston TX"),
            ("3105550123", "1310555", "USA Los Angeles CA"),
            ("+1 212 555 0199", "1212555", "USA New York NY"),
            ("011442079460123", "4420", "United Kingdom London"),
            ("00442079460123", "4420", "United Kingdom London"),
            ("+44 (0)20 7946 0123", "4420", "United Kingdom London"),
            (
                "sip:+442079460123@gw;user=phone",
                "4420",
                "United Kingdom London",
            ),
            ("tel:+44-20-7946-0123", "4420", "United Kingdom London"),
            ("0033 1 23 45 67 89", "331", "France Fixed Paris"),
            ("011 33 1 23 45 67 89", "331", "France Fixed Paris"),
            ("*32 0049 30 123456", "4930", "Germany Fixed Berlin"),
        ] {
            // A UK caller id: no UK origin surcharge, allowed on acc-1001.
            let out = rate_call(
                call("acc-1001", dialed, Some("+442079460000"), 60),
                &shipped().context(),
            );
            let r = &out.rating;
            assert_eq!(r.status, "rated", "{dialed}: {r:?}");
            assert_eq!(r.matched_prefix.as_deref(), Some(prefix), "{dialed}");
            assert_eq!(r.destination.as_deref(), Some(dest), "{dialed}");
        }
        // Houston from a New York caller: interstate $0.0021, 6/6.
        let out = rate_call(
            call("acc-1001", "7135550100", Some("+12125550100"), 60),
            &shipped().context(),
        );
        assert_eq!(out.enrichment.jurisdiction.as_deref(), Some("interstate"));
        assert_eq!(d(&out.rating.rate_per_min), d("0.0021"));
        assert_eq!(d(&out.rating.amount), d("0.0021"));
    }

    /// Issue 12: inbound calls are not terminations.
    #[test]
    fn inbound_calls_are_not_rated_as_terminations() {
        let mut c = call("acc-1001", "12125550199", Some("+442079460000"), 120);
        c.call.direction = Direction::Inbound.as_str().into();
        c.enrichment.lrn_fee = "0.0003".into();
        let r = rate(c);
        assert_eq!(r.status, RatingStatus::Inbound.as_str());
        assert_eq!(
            (d(&r.amount), d(&r.lrn_fee)),
            (Decimal::ZERO, Decimal::ZERO)
        );
        assert_eq!(r.billed_seconds, 0);
        assert_eq!(r.unrated_reason, None);
    }

    /// Issue 12: NANP numbers outside the contiguous US are priced by their
    /// own breakout in the shipped decks, never by the `1;USA` row.
    #[test]
    fn non_us48_nanp_numbers_rate_by_their_breakout() {
        for (dialed, dest) in [
            ("18765551234", "Jamaica"),
            ("18095551234", "Dominican Republic"),
            ("19075551234", "USA Alaska"),
            ("14035551234", "Canada"),
            ("18085551234", "USA Hawaii"),
            ("17875551234", "Puerto Rico"),
        ] {
            for acct in ["acc-1001", "acc-1002", "acc-2001"] {
                let r = rate(call(acct, dialed, Some("+12125550100"), 60));
                assert_eq!(r.status, "rated", "{acct} {dialed}: {r:?}");
                let got = r.destination.unwrap_or_default();
                assert!(got.starts_with(dest), "{acct} {dialed}: {got}");
                assert_ne!(r.matched_prefix.as_deref(), Some("1"), "{dialed}");
            }
        }
        for trunked in ["*400718765551234", "*30 1 876 555 1234"] {
            let r = rate(call("acc-1001", trunked, Some("+12125550100"), 60));
            assert_eq!(r.status, "rated", "{trunked}: {r:?}");
            assert_ne!(r.matched_prefix.as_deref(), Some("1"), "{trunked}");
        }
        // The shipped decks price every NANP area explicitly: no load warning.
        let (_, sum) =
            crate::load_from_config_file(&repo().join("deploy/local/config/rater.toml"), &repo())
                .unwrap();
        assert!(sum.warnings.is_empty(), "{:#?}", sum.warnings);
    }

    /// Issue 12: CLI validity (libphonenumber `is_valid` + region) decides
    /// the UK origin surcharge and the OBR tier.
    #[test]
    fn fake_cli_pays_unknown_origin_and_rest_of_world() {
        // A fake "GB" CLI is unknown origin: the XX mobile surcharge.
        let r = rate(call("acc-1002", "447700900123", Some("+4470000000"), 60));
        assert_eq!(d(&r.surcharge), d("0.25"), "{r:?}");
        assert!(r.flags.contains(&"invalid_cli".to_string()));
        // A real GB mobile CLI: no surcharge.
        let r = rate(call("acc-1002", "447700900123", Some("+447400123456"), 60));
        assert_eq!(d(&r.surcharge), Decimal::ZERO, "{r:?}");
        // A fake French CLI is rest of world on an OBR breakout …
        let r = rate(call("acc-1001", "33612345678", Some("+33100000000"), 60));
        assert_eq!(d(&r.rate_per_min), d("0.3500"), "{r:?}");
        // … a real one, and one from Réunion (an EU outermost region), EEA.
        for cli in ["+33123456789", "+262262123456"] {
            let r = rate(call("acc-1001", "33612345678", Some(cli), 60));
            assert_eq!(d(&r.rate_per_min), d("0.0120"), "{cli}: {r:?}");
        }
    }

    #[test]
    fn no_decks_pass_through() {
        let out = unrated_no_decks(call("acc-1001", "442079460123", None, 30));
        assert_eq!(
            out.rating.unrated_reason.as_deref(),
            Some("no_rate_deck_loaded")
        );
    }

    fn arb_call() -> impl Strategy<Value = EnrichedCall> {
        (
            prop::sample::select(vec!["acc-1001", "acc-1002", "acc-2001", "acc-x"]),
            prop::sample::select(vec!["", "", "*30", "*31", "*32", "*4007", "*4101", "*9"]),
            prop::sample::select(vec![
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
                "99912345",
                "12a",
            ]),
            prop::option::of(prop::sample::select(vec![
                "+12125550100",
                "+442079460000",
                "+4930111111",
                "2125550111",
                "anonymous",
            ])),
            prop::option::of(0i64..4000),
            "(0|0\\.00[0-9]{2}|bad|)",
            prop::option::of("(0\\.0[0-9]{3}|x|-1)"),
            prop::option::of(prop::sample::select(vec![
                "GB", "US", "DE", "FR", "IN", "JP",
            ])),
            any::<bool>(),
            prop::option::of("1[2-9][0-9]{2}555[0-9]{4}"),
        )
            .prop_map(
                |(acct, pfx, dest, cli, secs, fee, maxrate, country, nat, lrn)| {
                    let mut c = call(acct, &format!("{pfx}{dest}"), cli, secs.unwrap_or(0));
                    c.enrichment.lrn_fee = fee;
                    c.enrichment.caller_country = country.map(str::to_string);
                    c.enrichment.lrn = lrn;
                    c.call.behind_nat = nat;
                    match maxrate {
                        Some(m) => {
                            c.call.headers.insert(MAX_RATE_HEADER.into(), m);
                        }
                        None => {
                            c.call.headers.remove(MAX_RATE_HEADER);
                        }
                    }
                    c
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn rating_invariants(c in arb_call()) {
            let ctx = shipped().context();
            let a = rate_call(c.clone(), &ctx);
            let b = rate_call(c.clone(), &ctx);
            prop_assert_eq!(&a, &b, "deterministic");
            let r = &a.rating;
            prop_assert_eq!(&a.call, &c.call, "call section kept verbatim");
            prop_assert!(r.status == "rated" || r.status == "unrated" || r.status == "blocked");
            prop_assert_eq!(r.status != "rated", r.unrated_reason.is_some());
            let amount = d(&r.amount);
            let fee = d(&r.lrn_fee);
            prop_assert!(amount >= Decimal::ZERO);
            if r.status == "unrated" {
                prop_assert_eq!(amount, Decimal::ZERO);
            }
            if r.status == "blocked" {
                prop_assert_eq!(r.unrated_reason.as_deref(), Some(reason::UK_SURCHARGE_NOT_ALLOWED));
                prop_assert_eq!((amount, r.billed_seconds), (Decimal::ZERO, 0));
            }
            let answered = c.call.disposition == "answered" && c.call.billable_seconds > 0;
            if !answered {
                prop_assert_eq!(r.billed_seconds, 0);
                // No talk time; a performed dip is still owed.
                let owed = if r.status == "rated" { fee } else { Decimal::ZERO };
                prop_assert_eq!(amount, owed);
            }
            if answered && r.status == "rated" {
                prop_assert!(amount >= fee, "amount {} < lrn_fee {}", amount, fee);
                prop_assert!(r.billed_seconds >= c.call.billable_seconds);
                prop_assert!(r.deck_id.is_some() && r.matched_prefix.is_some());
                let billed = Decimal::from(r.billed_seconds);
                let base = billed * d(&r.rate_per_min) / Decimal::from(60);
                prop_assert_eq!(
                    amount,
                    base + d(&r.connection_fee) + d(&r.surcharge) + d(&r.short_duration_surcharge) + fee
                );
            }
            if c.call.account_id == "acc-x" {
                prop_assert_eq!(r.unrated_reason.as_deref(), Some("unknown_account"));
            }
        }
    }
}
