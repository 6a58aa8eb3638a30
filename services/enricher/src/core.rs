//! The pure part of enrichment: everything decided from the digits and the
//! NPA-NXX table, given an LRN decision ([`EnrichmentRecord`]) taken elsewhere.
//! No I/O, no clock, no cache: unit-testable and deterministic, and the same
//! functions `cdrctl rate` runs offline ([`enrich_with`]), so an event gives
//! the same enriched call in both places.
//!
//! Every number is read through the `numbering` crate (`lrn::numbering`),
//! the pipeline's one dial-plan module; every text written on the wire comes
//! from the `cdr_model::kinds` enums.

use cdr_model::call::{AssembledCall, EnrichedCall, Enrichment};
use cdr_model::event::Direction;
use lrn::{should_dip, CallNumbers, CliStatus, EnrichmentRecord, Jurisdiction, NpaNxxTable};

/// Flag set when the dialed number cannot be normalised to E.164.
pub const FLAG_DIALED_NOT_E164: &str = "dialed_not_e164";
/// Flag set when the LRN source failed until the deadline (rated on the dialed number).
pub const FLAG_LRN_UNAVAILABLE: &str = "lrn_unavailable";
/// Flag set when the caller id is E.164-shaped but not a valid number (fake CLI).
pub const FLAG_CLI_INVALID: &str = "cli_invalid";

/// Strip the plan prefix, normalise and classify `cli` and `dialed`.
pub fn analyze(call: &AssembledCall) -> CallNumbers {
    lrn::analyze_call(call.cli.as_deref(), &call.dialed)
}

/// The normalised dialed number (E.164 digits, no `+`) when usable.
pub fn dialed_e164(n: &CallNumbers) -> Option<&str> {
    n.callee.as_ref().ok().map(|c| c.e164.digits())
}

/// `true` for an inbound call (`direction = inbound`): not a termination,
/// so never dipped nor charged an LRN fee.
pub fn is_inbound(call: &AssembledCall) -> bool {
    Direction::is_inbound_text(&call.direction)
}

/// `true` when the call's dialed number is dipped: an outbound call to a
/// NANP geographic number (not toll-free).
pub fn needs_dip(call: &AssembledCall, n: &CallNumbers) -> bool {
    !is_inbound(call) && dialed_e164(n).and_then(should_dip).is_some()
}

/// Jurisdiction of a call to a US number: the one rule of
/// [`lrn::call_jurisdiction`], caller NPA-NXX against the LRN's NPA-NXX when
/// known, else the dialed number's. `None` when the callee is not a US number.
pub fn jurisdiction(
    n: &CallNumbers,
    rec: &EnrichmentRecord,
    table: &NpaNxxTable,
) -> Option<Jurisdiction> {
    let callee = n.callee.as_ref().ok()?;
    let dialed = callee.e164.nanp_tn10()?;
    lrn::call_jurisdiction(table, n.caller.as_ref(), callee, rec.rated_number(dialed))
}

/// Build the enriched call and its Kafka key (the normalised dialed number,
/// so the same number always lands on the same partition — and the same
/// enricher instance's cache; the `cdr_id` when the dialed number is unusable).
pub fn build(
    call: AssembledCall,
    n: &CallNumbers,
    rec: &EnrichmentRecord,
    table: &NpaNxxTable,
) -> (String, EnrichedCall) {
    let mut flags = Vec::new();
    let dialed = dialed_e164(n).map(str::to_string);
    if dialed.is_none() {
        flags.push(FLAG_DIALED_NOT_E164.to_string());
    }
    if n.cli_status == CliStatus::Invalid {
        flags.push(FLAG_CLI_INVALID.to_string());
    }
    if rec.lrn_unavailable() {
        flags.push(FLAG_LRN_UNAVAILABLE.to_string());
    }
    let callee = n.callee.as_ref().ok();
    let enrichment = Enrichment {
        cli_e164: n.cli_e164.as_ref().map(|c| c.digits().to_string()),
        cli_valid: n.cli_status == CliStatus::Valid,
        dialed_e164: dialed.clone().unwrap_or_default(),
        plan_selector: n.plan.map(|p| p.name().to_string()),
        trunk_selector: n.plan.and_then(|p| p.trunk_text()),
        lrn: rec.lrn.clone(),
        ported: rec.ported,
        lrn_source: rec.lrn_source().as_str().to_string(),
        lrn_fee: rec.fee.normalize().to_string(),
        caller_country: n.caller.as_ref().and_then(|c| c.country.clone()),
        callee_country: callee.and_then(|c| c.country.clone()),
        callee_number_type: callee.map(|c| c.number_type.as_str().to_string()),
        jurisdiction: jurisdiction(n, rec, table).map(|j| j.as_str().to_string()),
        flags,
    };
    let key = dialed.unwrap_or_else(|| call.cdr_id.clone());
    (key, EnrichedCall { call, enrichment })
}

/// Enrichment of one call given a way to take its LRN decision: the pure
/// path shared by the enricher service and `cdrctl rate`. `decide` is called
/// with the dialed E.164 digits only for calls that are dipped
/// ([`needs_dip`]); every other call gets [`EnrichmentRecord::not_eligible`].
pub fn enrich_with(
    call: AssembledCall,
    table: &NpaNxxTable,
    decide: impl FnOnce(&str) -> EnrichmentRecord,
) -> (EnrichedCall, EnrichmentRecord) {
    let n = analyze(&call);
    let rec = match dialed_e164(&n).filter(|_| needs_dip(&call, &n)) {
        Some(d) => decide(d),
        None => EnrichmentRecord::not_eligible(),
    };
    let (_, enriched) = build(call, &n, &rec, table);
    (enriched, rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrn::LrnSourceKind;
    use rust_decimal::Decimal;
    use std::collections::HashMap;

    pub(crate) fn call(cli: Option<&str>, dialed: &str) -> AssembledCall {
        AssembledCall {
            cdr_id: "cdr-1".into(),
            call_id: "c1".into(),
            switch_id: "sw1".into(),
            account_id: "acct".into(),
            direction: "outbound".into(),
            cli: cli.map(str::to_string),
            dialed: dialed.into(),
            trunk_id: None,
            setup_ts_ms: 0,
            progress_ts_ms: None,
            progress_code: None,
            answer_ts_ms: None,
            end_ts_ms: None,
            final_sip_code: None,
            disposition: "answered".into(),
            duration_ms: 0,
            billable_seconds: 0,
            pdd_ms: None,
            headers: HashMap::new(),
            source_ip: None,
            behind_nat: false,
            codec: None,
            media: None,
            flags: vec![],
            event_count: 1,
            assembled_at_ms: 0,
        }
    }

    fn table() -> NpaNxxTable {
        NpaNxxTable::parse_strict(
            "212555;NY;9104\n310555;CA;9740\n718555;NY;9999\n416555;ON;1111\n",
        )
        .unwrap()
    }

    fn rec(lrn: Option<&str>, source: Option<LrnSourceKind>) -> EnrichmentRecord {
        EnrichmentRecord {
            tn10: None,
            lrn: lrn.map(str::to_string),
            ported: false,
            source,
            fee: Decimal::ZERO,
        }
    }

    fn run(cli: Option<&str>, dialed: &str, r: &EnrichmentRecord) -> (String, Enrichment) {
        let c = call(cli, dialed);
        let n = analyze(&c);
        let (k, e) = build(c, &n, r, &table());
        (k, e.enrichment)
    }

    #[test]
    fn plan_prefixes_are_stripped_and_kept() {
        let na = EnrichmentRecord::not_eligible();
        let (k, e) = run(Some("+442079460000"), "*30442079460123", &na);
        assert_eq!(k, "442079460123");
        assert_eq!(e.dialed_e164, "442079460123");
        assert_eq!(e.plan_selector.as_deref(), Some("pstn"));
        let (_, e) = run(None, "*4007+4915112345678", &na);
        assert_eq!(
            (e.plan_selector.as_deref(), e.trunk_selector.as_deref()),
            (Some("trunk"), Some("007"))
        );
        assert_eq!(e.dialed_e164, "4915112345678");
        assert_eq!(e.callee_number_type.as_deref(), Some("mobile"));
        assert_eq!(e.callee_country.as_deref(), Some("DE"));
        let (_, e) = run(None, "*31442079460123", &na);
        assert_eq!(e.plan_selector.as_deref(), Some("standard"));
        let (_, e) = run(None, "*32442079460123", &na);
        assert_eq!(e.plan_selector.as_deref(), Some("premium"));
        let (_, e) = run(None, "442079460123", &na);
        assert_eq!((e.plan_selector, e.trunk_selector), (None, None));
    }

    #[test]
    fn cli_validity_and_countries() {
        let na = EnrichmentRecord::not_eligible();
        let (_, e) = run(Some("2125550111"), "442079460123", &na);
        assert!(e.cli_valid);
        assert_eq!(e.cli_e164.as_deref(), Some("12125550111"));
        assert_eq!(e.caller_country.as_deref(), Some("US"));
        assert_eq!(e.callee_country.as_deref(), Some("GB"));
        assert_eq!(e.callee_number_type.as_deref(), Some("fixed"));
        assert_eq!(e.jurisdiction, None, "non-US callee has no jurisdiction");
        for bad in [Some("anonymous"), None, Some("abc"), Some("+0123")] {
            let (_, e) = run(bad, "442079460123", &na);
            assert!(!e.cli_valid, "{bad:?}");
            assert_eq!(e.cli_e164, None);
            assert_eq!(e.caller_country, None);
        }
    }

    #[test]
    fn unusable_dialed_is_keyed_by_cdr_id_and_flagged() {
        let (k, e) = run(None, "*99abc", &EnrichmentRecord::not_eligible());
        assert_eq!(k, "cdr-1");
        assert_eq!(e.dialed_e164, "");
        assert_eq!(e.flags, vec![FLAG_DIALED_NOT_E164.to_string()]);
        assert_eq!(e.lrn_source, "not_applicable");
        assert_eq!(e.lrn_fee, "0");
        assert_eq!(e.callee_number_type, None);
    }

    #[test]
    fn dip_eligibility() {
        for (d, want) in [
            ("12125550199", true),
            ("*302125550199", true),
            ("18005550100", false),
            ("442079460123", false),
            ("8821612345678", false),
        ] {
            let c = call(None, d);
            assert_eq!(needs_dip(&c, &analyze(&c)), want, "{d}");
        }
        let (_, e) = run(None, "18005550100", &EnrichmentRecord::not_eligible());
        assert_eq!(e.callee_number_type.as_deref(), Some("toll_free"));
        let (_, e) = run(None, "8821612345678", &EnrichmentRecord::not_eligible());
        assert_eq!(e.callee_number_type.as_deref(), Some("satellite"));
    }

    #[test]
    fn jurisdiction_uses_lrn_when_known_else_dialed() {
        let cli = Some("+12125550100");
        // Not ported, dialed in NY from NY → intrastate.
        let r = rec(Some("2125550199"), Some(LrnSourceKind::Dip));
        assert_eq!(
            run(cli, "12125550199", &r).1.jurisdiction.as_deref(),
            Some("intrastate")
        );
        // Dialed NY but ported to a CA LRN → interstate (rated on the LRN).
        let r = rec(Some("3105550000"), Some(LrnSourceKind::Cache));
        let (_, e) = run(cli, "12125550199", &r);
        assert_eq!(e.jurisdiction.as_deref(), Some("interstate"));
        assert_eq!(e.lrn.as_deref(), Some("3105550000"));
        // Unavailable: falls back to the dialed number, flagged.
        let r = rec(None, Some(LrnSourceKind::Unavailable));
        let (_, e) = run(cli, "13105550123", &r);
        assert_eq!(e.jurisdiction.as_deref(), Some("interstate"));
        assert_eq!(e.flags, vec![FLAG_LRN_UNAVAILABLE.to_string()]);
        assert_eq!(e.lrn_source, "unavailable");
        // Foreign or missing caller, unknown NPA-NXX, Canadian side → indeterminate.
        let r = rec(Some("2125550199"), Some(LrnSourceKind::Cache));
        for c in [
            Some("+442079460000"),
            None,
            Some("+12025550100"),
            Some("+14165550100"),
        ] {
            assert_eq!(
                run(c, "12125550199", &r).1.jurisdiction.as_deref(),
                Some("indeterminate"),
                "{c:?}"
            );
        }
        // Canadian callee is not a US48 call: no jurisdiction.
        let r = rec(Some("4165550100"), Some(LrnSourceKind::Dip));
        assert_eq!(run(cli, "14165550100", &r).1.jurisdiction, None);
    }

    #[test]
    fn fee_is_a_normalised_decimal_string() {
        let mut r = rec(Some("2125550199"), Some(LrnSourceKind::Dip));
        r.fee = "0.00030".parse().unwrap();
        assert_eq!(run(None, "12125550199", &r).1.lrn_fee, "0.0003");
    }

    /// Issue 12: inbound calls are not terminations: never dipped.
    #[test]
    fn inbound_calls_are_never_dipped() {
        let mut c = call(Some("+12125550100"), "12125550199");
        assert!(needs_dip(&c, &analyze(&c)));
        c.direction = cdr_model::event::Direction::Inbound.as_str().into();
        assert!(!needs_dip(&c, &analyze(&c)));
        let (e, rec) = enrich_with(c, &table(), |_| {
            panic!("an inbound call must not be dipped")
        });
        assert_eq!(rec.fee, Decimal::ZERO);
        assert_eq!(e.enrichment.lrn_source, "not_applicable");
        assert_eq!(e.enrichment.lrn_fee, "0");
    }

    /// Issue 12: a fake CLI whose country code exists is not valid and has
    /// no origin (no caller country), but its digits are recorded.
    #[test]
    fn fake_cli_is_invalid_and_flagged() {
        let na = EnrichmentRecord::not_eligible();
        let (_, e) = run(Some("+4470000000"), "447400123456", &na);
        assert!(!e.cli_valid);
        assert_eq!(e.caller_country, None);
        assert_eq!(e.cli_e164.as_deref(), Some("4470000000"));
        assert_eq!(e.flags, vec![FLAG_CLI_INVALID.to_string()]);
        let (_, e) = run(Some("+262 262 12 34 56"), "33612345678", &na);
        assert!(e.cli_valid);
        assert_eq!(e.caller_country.as_deref(), Some("RE"));
    }

    /// Issue 12: every written form of a dialed number is enriched to the
    /// same E.164 number and plan (the rater prices `dialed_e164`).
    #[test]
    fn dialed_forms_normalise_alike() {
        let na = EnrichmentRecord::not_eligible();
        for (d, want) in [
            ("7135550100", "17135550100"),
            ("+1 713 555 0100", "17135550100"),
            ("011442079460123", "442079460123"),
            ("sip:+442079460123@gw;user=phone", "442079460123"),
            ("+44 (0)20 7946 0123", "442079460123"),
            ("0033 1 23 45 67 89", "33123456789"),
        ] {
            assert_eq!(run(None, d, &na).1.dialed_e164, want, "{d}");
        }
    }
}
