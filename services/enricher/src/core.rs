//! The pure part of enrichment: everything decided from the digits and the
//! NPA-NXX table, given an LRN decision ([`EnrichmentRecord`]) taken elsewhere.
//! No I/O, no clock, no cache: unit-testable and deterministic.

use cdr_model::call::{AssembledCall, EnrichedCall, Enrichment};
use lrn::{
    should_dip, CallNumbers, CliStatus, EnrichmentRecord, Jurisdiction, LrnSourceKind, NpaNxxTable,
    NumberType, PlanSelector,
};

/// Flag set when the dialed number cannot be normalised to E.164.
pub const FLAG_DIALED_NOT_E164: &str = "dialed_not_e164";
/// Flag set when the LRN source failed until the deadline (rated on the dialed number).
pub const FLAG_LRN_UNAVAILABLE: &str = "lrn_unavailable";

/// Strip the plan prefix, normalise and classify `cli` and `dialed`.
pub fn analyze(call: &AssembledCall) -> CallNumbers {
    lrn::analyze_call(call.cli.as_deref(), &call.dialed)
}

/// The normalised dialed number (E.164 digits, no `+`) when usable.
pub fn dialed_e164(n: &CallNumbers) -> Option<&str> {
    n.callee.as_ref().ok().map(|c| c.e164.digits())
}

/// `true` when the call's dialed number is dipped (NANP geographic, not toll-free).
pub fn needs_dip(n: &CallNumbers) -> bool {
    dialed_e164(n).and_then(should_dip).is_some()
}

pub fn plan_name(p: &PlanSelector) -> (&'static str, Option<String>) {
    match p {
        PlanSelector::Pstn => ("pstn", None),
        PlanSelector::Standard => ("standard", None),
        PlanSelector::Premium => ("premium", None),
        PlanSelector::Trunk(t) => ("trunk", Some(format!("{t:03}"))),
    }
}

pub fn number_type_name(t: NumberType) -> &'static str {
    match t {
        NumberType::Fixed => "fixed",
        NumberType::Mobile => "mobile",
        NumberType::TollFree => "toll_free",
        NumberType::Premium => "premium",
        NumberType::Satellite => "satellite",
        NumberType::Unknown => "unknown",
    }
}

pub fn lrn_source_name(rec: &EnrichmentRecord) -> &'static str {
    match rec.source {
        None => "not_applicable",
        Some(LrnSourceKind::Cache) => "cache",
        Some(LrnSourceKind::Dip) => "dip",
        Some(LrnSourceKind::Unavailable) => "unavailable",
    }
}

pub fn jurisdiction_name(j: Jurisdiction) -> &'static str {
    match j {
        Jurisdiction::Intrastate => "intrastate",
        Jurisdiction::Interstate => "interstate",
        Jurisdiction::Indeterminate => "indeterminate",
    }
}

/// Jurisdiction of a call to a US number: caller NPA-NXX against the LRN's
/// NPA-NXX when known, else the dialed number's. `None` when the callee is not
/// a US number (jurisdiction only selects US48 interstate/intrastate rates).
pub fn jurisdiction(
    n: &CallNumbers,
    rec: &EnrichmentRecord,
    table: &NpaNxxTable,
) -> Option<Jurisdiction> {
    let callee = n.callee.as_ref().ok()?;
    if callee.country.as_deref() != Some("US") {
        return None;
    }
    let dialed = callee.e164.nanp_tn10()?;
    let rated = rec.rated_number(dialed);
    Some(table.jurisdiction(n.caller.as_ref().map(|c| &c.e164), rated))
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
    if rec.lrn_unavailable() {
        flags.push(FLAG_LRN_UNAVAILABLE.to_string());
    }
    let (plan_selector, trunk_selector) = match &n.plan {
        Some(p) => {
            let (name, trunk) = plan_name(p);
            (Some(name.to_string()), trunk)
        }
        None => (None, None),
    };
    let callee = n.callee.as_ref().ok();
    let enrichment = Enrichment {
        cli_e164: n.caller.as_ref().map(|c| c.e164.digits().to_string()),
        cli_valid: n.cli_status == CliStatus::Valid,
        dialed_e164: dialed.clone().unwrap_or_default(),
        plan_selector,
        trunk_selector,
        lrn: rec.lrn.clone(),
        ported: rec.ported,
        lrn_source: lrn_source_name(rec).to_string(),
        lrn_fee: rec.fee.normalize().to_string(),
        caller_country: n.caller.as_ref().and_then(|c| c.country.clone()),
        callee_country: callee.and_then(|c| c.country.clone()),
        callee_number_type: callee.map(|c| number_type_name(c.number_type).to_string()),
        jurisdiction: jurisdiction(n, rec, table).map(|j| jurisdiction_name(j).to_string()),
        flags,
    };
    let key = dialed.unwrap_or_else(|| call.cdr_id.clone());
    (key, EnrichedCall { call, enrichment })
}

#[cfg(test)]
mod tests {
    use super::*;
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
            assert_eq!(needs_dip(&analyze(&call(None, d))), want, "{d}");
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
}
