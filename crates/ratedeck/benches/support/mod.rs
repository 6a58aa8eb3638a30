//! Deterministic generators for realistic decks and calls, shared by the
//! benches and `examples/deck_import_mem.rs` (no `rand` dependency: a tiny
//! xorshift keeps runs reproducible).
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use ratedeck::*;
use rust_decimal::Decimal;
use std::collections::HashSet;
use std::fmt::Write;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A spread of real country codes (1–3 digits) with seed-style increments.
pub const COUNTRIES: &[(&str, &str, u32, u32)] = &[
    ("7", "Russia", 1, 1),
    ("20", "Egypt", 1, 1),
    ("27", "South Africa", 1, 1),
    ("30", "Greece", 1, 1),
    ("31", "Netherlands", 1, 1),
    ("32", "Belgium", 1, 1),
    ("33", "France", 1, 1),
    ("34", "Spain", 1, 1),
    ("36", "Hungary", 1, 1),
    ("39", "Italy", 1, 1),
    ("40", "Romania", 1, 1),
    ("41", "Switzerland", 1, 1),
    ("43", "Austria", 1, 1),
    ("44", "United Kingdom", 1, 1),
    ("45", "Denmark", 1, 1),
    ("46", "Sweden", 1, 1),
    ("47", "Norway", 1, 1),
    ("48", "Poland", 1, 1),
    ("49", "Germany", 1, 1),
    ("51", "Peru", 1, 1),
    ("52", "Mexico", 60, 60),
    ("53", "Cuba", 1, 1),
    ("54", "Argentina", 1, 1),
    ("55", "Brazil", 1, 1),
    ("56", "Chile", 1, 1),
    ("57", "Colombia", 1, 1),
    ("58", "Venezuela", 1, 1),
    ("60", "Malaysia", 1, 1),
    ("61", "Australia", 1, 1),
    ("62", "Indonesia", 1, 1),
    ("63", "Philippines", 1, 1),
    ("64", "New Zealand", 1, 1),
    ("65", "Singapore", 1, 1),
    ("66", "Thailand", 1, 1),
    ("81", "Japan", 1, 1),
    ("82", "Korea South", 1, 1),
    ("84", "Vietnam", 1, 1),
    ("86", "China", 1, 1),
    ("90", "Turkey", 1, 1),
    ("91", "India", 1, 1),
    ("92", "Pakistan", 1, 1),
    ("93", "Afghanistan", 1, 1),
    ("94", "Sri Lanka", 1, 1),
    ("95", "Myanmar", 1, 1),
    ("98", "Iran", 1, 1),
    ("212", "Morocco", 1, 1),
    ("213", "Algeria", 1, 1),
    ("216", "Tunisia", 1, 1),
    ("220", "Gambia", 1, 1),
    ("221", "Senegal", 1, 1),
    ("228", "Togo", 60, 60),
    ("233", "Ghana", 1, 1),
    ("234", "Nigeria", 1, 1),
    ("254", "Kenya", 1, 1),
    ("255", "Tanzania", 1, 1),
    ("256", "Uganda", 1, 1),
    ("351", "Portugal", 1, 1),
    ("353", "Ireland", 1, 1),
    ("358", "Finland", 1, 1),
    ("380", "Ukraine", 1, 1),
    ("420", "Czech Republic", 1, 1),
    ("509", "Haiti", 60, 60),
    ("597", "Suriname", 60, 60),
    ("679", "Fiji", 60, 60),
    ("676", "Tonga", 60, 60),
    ("880", "Bangladesh", 1, 1),
    ("88216", "Thuraya", 60, 60),
    ("960", "Maldives", 60, 60),
    ("966", "Saudi Arabia", 1, 1),
    ("971", "UAE", 1, 1),
    ("972", "Israel", 1, 1),
    ("977", "Nepal", 1, 1),
];

/// A–Z deck text with `n` distinct prefixes: each country code extended by
/// 1–6 random digits, destination names grouped per country/breakout.
pub fn az_deck(n: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    // u64 keys, not Strings: one big allocation that is returned to the OS
    // when dropped, so it does not inflate the import's measured peak.
    let mut seen: HashSet<u64> = HashSet::with_capacity(n * 2);
    let key = |p: &str| {
        ratedeck::Prefix::parse(p)
            .map(|p| p.len() as u64 * 1_000_000_000_000_000_000 / 10 + p.value())
            .unwrap()
    };
    let mut out = String::with_capacity(n * 48);
    out.push_str("dialprefix;destination name;rate;initial billing time;billing increment\n");
    for (cc, name, x, y) in COUNTRIES {
        seen.insert(key(cc));
        let _ = writeln!(out, "{cc};{name};0.{:04};{x};{y}", 10 + rng.below(3000));
    }
    let mut made = COUNTRIES.len();
    while made < n {
        let (cc, name, x, y) = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        let ext_len = 1 + rng.below(6) as usize;
        let mut p = cc.to_string();
        for _ in 0..ext_len {
            p.push(char::from(b'0' + rng.below(10) as u8));
        }
        if !seen.insert(key(&p)) {
            continue;
        }
        let kind =
            ["Fixed", "Mobile", "Mobile Operator", "Special Services"][rng.below(4) as usize];
        let _ = writeln!(
            out,
            "{p};{name} {kind} {};0.{:04};{x};{y}",
            ext_len,
            10 + rng.below(9000)
        );
        made += 1;
    }
    out
}

/// US48 deck text with `n` NPA-NXX rows (`1NPANXX`).
pub fn us48_deck(n: usize, seed: u64) -> (String, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut seen = HashSet::with_capacity(n * 2);
    let mut out = String::with_capacity(n * 48);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let npa = 200 + rng.below(800);
        let nxx = 200 + rng.below(800);
        let k = format!("1{npa}{nxx}");
        if !seen.insert(k.clone()) {
            continue;
        }
        let _ = writeln!(
            out,
            "{k};USA {npa};0.00{:02};0.00{:02};6;6",
            15 + rng.below(80),
            15 + rng.below(80)
        );
        keys.push(k);
    }
    (out, keys)
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

pub struct World {
    pub decks: DeckSet,
    pub accounts: AccountMap,
    pub uk: UkSurcharges,
    pub eea: EeaCountries,
    pub plans: ratedeck::conformance::PlanHistory,
    pub us_keys: Vec<String>,
}

impl World {
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

/// ≥ 200k prefixes across Standard, Premium, PSTN, Retail A–Z plus US48.
pub fn world(per_plan: usize, us48: usize) -> World {
    let mut decks = DeckSet::new();
    for (i, plan) in [Plan::Standard, Plan::Premium, Plan::Pstn, Plan::Retail]
        .into_iter()
        .enumerate()
    {
        let text = az_deck(per_plan, 11 + i as u64);
        decks
            .load(
                plan.as_str(),
                &text,
                DeckKind::AZ(plan),
                plan,
                ImportMode::Lenient,
                t0(),
                None,
            )
            .unwrap();
    }
    let (us_text, us_keys) = us48_deck(us48, 99);
    decks
        .load(
            "us48-prem",
            &us_text,
            DeckKind::Us48,
            Plan::Premium,
            ImportMode::Lenient,
            t0(),
            None,
        )
        .unwrap();
    decks
        .load(
            "us48-pstn",
            &us_text,
            DeckKind::Us48,
            Plan::Pstn,
            ImportMode::Lenient,
            t0(),
            None,
        )
        .unwrap();
    let mut accounts = AccountMap::default();
    for (id, plan, kind) in [
        ("acct-std", Plan::Standard, AccountKind::Wholesale),
        ("acct-prem", Plan::Premium, AccountKind::Wholesale),
        ("acct-pstn", Plan::Pstn, AccountKind::Wholesale),
        ("acct-retail", Plan::Standard, AccountKind::Retail),
    ] {
        accounts.insert(
            id.to_string(),
            Account {
                id: id.into(),
                kind,
                default_plan: plan,
                allow_uk_surcharge: false,
                default_max_rate: Some(Decimal::new(5, 2)),
                plan_override: None,
            },
        );
    }
    World {
        decks,
        accounts,
        uk: UkSurcharges::parse("US;fixed;0.05\nUS;mobile;0.12\nDE;fixed;0\nDE;mobile;0\nXX;fixed;0.1\nXX;mobile;0.25\n").unwrap(),
        eea: EeaCountries::default(),
        plans: Default::default(),
        us_keys,
    }
}

/// A realistic call mix: ~40% US48, 60% international; dial prefixes,
/// LRNs, invalid CLIs and unanswered calls sprinkled in.
pub fn calls(w: &World, n: usize, seed: u64) -> Vec<RatingInput> {
    let mut rng = Rng::new(seed);
    let accts = ["acct-std", "acct-prem", "acct-pstn", "acct-retail"];
    (0..n)
        .map(|i| {
            let us = rng.below(10) < 4;
            let number = if us {
                let k = &w.us_keys[rng.below(w.us_keys.len() as u64) as usize];
                format!("{k}{:04}", rng.below(10_000))
            } else {
                let (cc, ..) = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
                let mut s = cc.to_string();
                while s.len() < 12 {
                    s.push(char::from(b'0' + rng.below(10) as u8));
                }
                s
            };
            let dial = ["", "", "", "*30", "*31", "*32"][rng.below(6) as usize];
            let cli_us = &w.us_keys[rng.below(w.us_keys.len() as u64) as usize];
            let (cli, country) = match rng.below(4) {
                0 => (format!("+4930{:07}", rng.below(10_000_000)), "DE"),
                3 => ("anonymous".to_string(), "XX"),
                _ => (format!("+{cli_us}{:04}", rng.below(10_000)), "US"),
            };
            let answered = rng.below(10) < 7;
            RatingInput {
                call_id: format!("call-{i}"),
                account_id: accts[rng.below(4) as usize].to_string(),
                dialed: format!("{dial}{number}"),
                // The rater passes enrichment's reading of the number.
                dial: ratedeck::numbering::parse_dialed(&format!("{dial}{number}")).ok(),
                jurisdiction: us.then(|| {
                    [
                        Jurisdiction::Interstate,
                        Jurisdiction::Intrastate,
                        Jurisdiction::Indeterminate,
                    ][rng.below(3) as usize]
                }),
                inbound: false,
                rated_number: (us && rng.below(5) == 0).then(|| {
                    format!(
                        "{}{:04}",
                        w.us_keys[rng.below(w.us_keys.len() as u64) as usize],
                        0
                    )
                }),
                cli_valid: country != "XX",
                cli: Some(cli),
                cli_country: Some(country.to_string()),
                answer_ts: answered
                    .then(|| t0() + chrono::Duration::seconds(rng.below(86_400 * 30) as i64)),
                setup_ts: Some(t0()),
                billable_seconds: if answered { rng.below(600) as u32 } else { 0 },
                duration_ms: None,
                answered,
                behind_nat: rng.below(50) == 0,
                max_rate: (rng.below(5) == 0).then(|| Decimal::new(28, 3)),
                max_route: Some(2),
                lrn_fee: if us {
                    Decimal::new(3, 4)
                } else {
                    Decimal::ZERO
                },
                callee_number_type: None,
            }
        })
        .collect()
}
