//! Shared fixture: the sample decks and tables from `testdata/` loaded into
//! one context, plus a call builder.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use ratedeck::*;
use rust_decimal::Decimal;

pub fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

pub struct Fixture {
    pub decks: DeckSet,
    pub accounts: AccountMap,
    /// The one NPA-NXX table type (the `numbering` crate's), for tests that
    /// decide a jurisdiction the way enrichment does.
    pub npanxx: ratedeck::numbering::NpaNxxTable,
    pub uk: UkSurcharges,
    pub eea: EeaCountries,
    pub plans: ratedeck::conformance::PlanHistory,
}

impl Fixture {
    pub fn ctx(&self) -> RatingContext<'_> {
        RatingContext {
            decks: &self.decks,
            accounts: &self.accounts,
            uk_surcharges: &self.uk,
            eea: &self.eea,
            plans: &self.plans,
        }
    }
}

pub fn account(id: &str, kind: AccountKind, plan: Plan) -> Account {
    Account {
        id: id.into(),
        kind,
        default_plan: plan,
        allow_uk_surcharge: false,
        default_max_rate: None,
        plan_override: None,
    }
}

pub fn fixture() -> Fixture {
    let mut decks = DeckSet::new();
    let from = t(2021, 9, 21);
    let load = |d: &mut DeckSet, id: &str, text: &str, kind: DeckKind, plan: Plan| {
        let r = d
            .load(id, text, kind, plan, ImportMode::Strict, from, None)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(r.rejected.is_empty());
        assert!(r.rows_loaded > 0);
    };
    load(
        &mut decks,
        "standard_az.txt",
        include_str!("../../testdata/standard_az.txt"),
        DeckKind::AZ(Plan::Standard),
        Plan::Standard,
    );
    load(
        &mut decks,
        "premium_az.txt",
        include_str!("../../testdata/premium_az.txt"),
        DeckKind::AZ(Plan::Premium),
        Plan::Premium,
    );
    load(
        &mut decks,
        "pstn_az.txt",
        include_str!("../../testdata/pstn_az.txt"),
        DeckKind::AZ(Plan::Pstn),
        Plan::Pstn,
    );
    load(
        &mut decks,
        "retail_az.txt",
        include_str!("../../testdata/retail_az.txt"),
        DeckKind::AZ(Plan::Retail),
        Plan::Retail,
    );
    load(
        &mut decks,
        "us48_premium.txt",
        include_str!("../../testdata/us48_premium.txt"),
        DeckKind::Us48,
        Plan::Premium,
    );
    load(
        &mut decks,
        "us48_pstn.txt",
        include_str!("../../testdata/us48_pstn.txt"),
        DeckKind::Us48,
        Plan::Pstn,
    );
    load(
        &mut decks,
        "per_trunk.txt",
        include_str!("../../testdata/per_trunk.txt"),
        DeckKind::PerTrunk,
        Plan::Standard,
    );

    let mut accounts = AccountMap::default();
    for a in [
        account("w-std", AccountKind::Wholesale, Plan::Standard),
        account("w-prem", AccountKind::Wholesale, Plan::Premium),
        account("w-pstn", AccountKind::Wholesale, Plan::Pstn),
        account("retail", AccountKind::Retail, Plan::Standard),
        Account {
            plan_override: Some(Plan::Retail),
            ..account("w-downgraded", AccountKind::Wholesale, Plan::Premium)
        },
        Account {
            allow_uk_surcharge: true,
            ..account("w-uk-ok", AccountKind::Wholesale, Plan::Standard)
        },
        Account {
            default_max_rate: Some(Decimal::new(10, 3)),
            ..account("w-max", AccountKind::Wholesale, Plan::Standard)
        },
    ] {
        accounts.insert(a.id.clone(), a);
    }
    Fixture {
        decks,
        accounts,
        npanxx: ratedeck::numbering::NpaNxxTable::parse_strict(include_str!(
            "../../testdata/npanxx_states.txt"
        ))
        .unwrap(),
        uk: UkSurcharges::parse(include_str!("../../testdata/uk_surcharges.txt")).unwrap(),
        eea: EeaCountries::parse(include_str!("../../testdata/eea_countries.txt")).unwrap(),
        plans: Default::default(),
    }
}

/// An answered 60 s call from a valid German CLI at 2021-10-01.
pub fn call(account: &str, dialed: &str) -> RatingInput {
    RatingInput {
        call_id: format!("c-{dialed}"),
        account_id: account.into(),
        dialed: dialed.into(),
        dial: None,
        rated_number: None,
        cli: Some("+4930123456".into()),
        cli_valid: true,
        cli_country: Some("DE".into()),
        jurisdiction: None,
        inbound: false,
        answer_ts: Some(t(2021, 10, 1)),
        setup_ts: Some(t(2021, 10, 1)),
        billable_seconds: 60,
        duration_ms: None,
        answered: true,
        behind_nat: false,
        max_rate: None,
        max_route: None,
        lrn_fee: Decimal::ZERO,
        callee_number_type: None,
    }
}

pub fn with_cli(mut c: RatingInput, cli: &str, country: &str) -> RatingInput {
    c.cli = Some(cli.into());
    c.cli_country = Some(country.into());
    c.cli_valid = true;
    c
}

/// The jurisdiction enrichment would record for `c`: the one rule
/// (`numbering::call_jurisdiction`) on the valid caller id against the LRN
/// or the dialed number.
pub fn with_jurisdiction(mut c: RatingInput, f: &Fixture) -> RatingInput {
    use ratedeck::numbering as nb;
    let dialed = nb::parse_dialed(&c.dialed).unwrap().number;
    let callee = nb::classify(&dialed);
    let caller = c
        .cli
        .as_deref()
        .filter(|_| c.cli_valid)
        .and_then(|s| nb::normalize(s).ok())
        .map(|n| nb::classify(&n));
    let rated = c
        .rated_number
        .clone()
        .unwrap_or(dialed.digits().to_string());
    c.jurisdiction = nb::call_jurisdiction(&f.npanxx, caller.as_ref(), &callee, &rated);
    c
}

/// One fixture per test binary, for property tests that run hundreds of cases.
pub fn shared() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(fixture)
}
