//! Property tests: each rule against a brute-force oracle.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use proptest::prelude::*;
use ratedeck::*;
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;

fn ts(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(day)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// billed ≥ duration, ≥ X, on the X + kY grid, and minimal.
    #[test]
    fn increment_arithmetic(x in 1u32..=600, y in 1u32..=600, d in 1u32..=200_000, floor in 0u32..=300) {
        let inc = Increment::new(x, y);
        let b = billed_seconds(d, inc, 0);
        prop_assert!(b >= d);
        prop_assert!(b >= x);
        if b > x {
            prop_assert_eq!((b - x) % y, 0);
            // Minimal: one step less would be below the duration (or X).
            prop_assert!(b - y < d.max(x));
        } else {
            prop_assert_eq!(b, x);
        }
        // The min-billed floor only ever raises the bill and keeps the grid.
        let bf = billed_seconds(d, inc, floor);
        prop_assert!(bf >= b && bf >= floor);
        prop_assert!(bf == x || (bf - x).is_multiple_of(y));
        prop_assert_eq!(billed_seconds(0, inc, floor), 0);
    }

    /// Longest-prefix match equals a brute-force scan over the rows.
    #[test]
    fn longest_prefix_matches_oracle(
        prefixes in prop::collection::btree_set("[0-3]{1,7}", 1..300),
        numbers in prop::collection::vec("[0-3]{0,12}", 1..60),
    ) {
        let rows: Vec<DeckRow> = prefixes
            .iter()
            .map(|p| DeckRow::simple(p, &format!("d{p}"), dec!(0.01), Increment::new(1, 1)))
            .collect();
        let mut set = DeckSet::new();
        set.insert("p", DeckTarget::Az(Plan::Standard), rows, ts(0), None);
        for n in &numbers {
            let got = set
                .lookup(Scope::Az(Plan::Standard), n, ts(1), ObrTier::RestOfWorld)
                .map(|m| m.row.prefix.to_string());
            let want = prefixes.iter().filter(|p| n.starts_with(p.as_str())).max_by_key(|p| p.len()).cloned();
            prop_assert_eq!(got, want, "number {}", n);
        }
    }

    /// The version in force is the latest (by start, then import order)
    /// whose window covers the answer time.
    #[test]
    fn effective_date_selection(
        versions in prop::collection::vec((0i64..100, prop::option::of(1i64..60)), 1..8),
        at in -5i64..200,
    ) {
        let mut set = DeckSet::new();
        let mut made = Vec::new();
        for (i, (from, len)) in versions.iter().enumerate() {
            let id = format!("v{i}");
            let to = len.map(|l| ts(from + l));
            let v = set.insert(&id, DeckTarget::Az(Plan::Premium), vec![DeckRow::simple("44", "UK", Decimal::from(i as u32), Increment::new(1, 1))], ts(*from), to);
            made.push((ts(*from), to, v, id));
        }
        let t = ts(at);
        let want = made
            .iter()
            .filter(|(f, to, _, _)| *f <= t && to.is_none_or(|to| t < to))
            .max_by_key(|(f, _, v, _)| (*f, *v))
            .map(|x| x.3.clone());
        let got = set.lookup(Scope::Az(Plan::Premium), "4420", t, ObrTier::Eea).map(|m| m.deck_id.to_string());
        prop_assert_eq!(got, want);
    }

    /// Invoice total = exact sum rounded once, half away from zero.
    #[test]
    fn invoice_rounds_once(cents in prop::collection::vec(0i64..10_000_000, 0..200)) {
        let amounts: Vec<Decimal> = cents.iter().map(|c| Decimal::new(*c, 6)).collect();
        let exact: Decimal = amounts.iter().sum();
        let total = invoice_total(amounts.iter().copied());
        prop_assert_eq!(total, exact.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero));
        prop_assert!((total - exact).abs() <= dec!(0.005));
        prop_assert!(total.scale() <= 2);
    }

    /// Rated amount = billed × rate / 60 + fees, for any duration and plan
    /// prefix; a call with no talk time still owes its LRN dip.
    #[test]
    fn amount_formula(secs in 0u32..4000, plan in 0usize..4, lrn in 0i64..10) {
        let f = shared();
        let prefix = ["", "*30", "*31", "*32"][plan];
        let mut c = call("w-std", &format!("{prefix}4930123456"));
        c.billable_seconds = secs;
        c.lrn_fee = Decimal::new(lrn, 4);
        let o = rate(&c, &f.ctx());
        prop_assert!(o.is_rated());
        let want_plan = [Plan::Standard, Plan::Pstn, Plan::Standard, Plan::Premium][plan];
        prop_assert_eq!(o.plan, Some(want_plan));
        let b = o.increment.unwrap();
        prop_assert_eq!(o.billed_seconds, billed_seconds(secs, b, 0));
        let want = if secs == 0 { c.lrn_fee } else {
            Decimal::from(o.billed_seconds) * o.rate_per_min / Decimal::from(60) + c.lrn_fee
        };
        prop_assert_eq!(o.amount, want);
    }

    /// A US48 call is priced by the jurisdiction enrichment decided;
    /// none known is indeterminate, and indeterminate never undercuts
    /// either rate.
    #[test]
    fn jurisdiction_rule(j in 0usize..4, callee in 0usize..3) {
        let f = shared();
        let callees = ["12125551234", "13105551234", "14155551234"];
        let given = [None, Some(Jurisdiction::Intrastate), Some(Jurisdiction::Interstate), Some(Jurisdiction::Indeterminate)][j];
        let mut c = call("w-std", callees[callee]);
        c.jurisdiction = given;
        let o = rate(&c, &f.ctx());
        let want = given.unwrap_or(Jurisdiction::Indeterminate);
        prop_assert_eq!(o.jurisdiction, Some(want));
        let row = f.decks.lookup(Scope::Us48(Plan::Standard), callees[callee], c.answer_ts.unwrap(), ObrTier::RestOfWorld).unwrap().row;
        let want_rate = match want {
            Jurisdiction::Intrastate => row.rate_intrastate.unwrap(),
            Jurisdiction::Interstate => row.rate,
            Jurisdiction::Indeterminate => row.rate.max(row.rate_intrastate.unwrap()),
        };
        prop_assert_eq!(o.rate_per_min, want_rate);
    }

    /// UK surcharge = table(country or XX, type) × billed / 60; blocked iff
    /// non-zero and the account does not allow it.
    #[test]
    fn uk_surcharge_rule(country in 0usize..4, mobile: bool, valid: bool, allow: bool, secs in 1u32..600) {
        let f = shared();
        let countries = ["US", "DE", "IN", "BR"];
        let n = if mobile { "447911123456" } else { "442071234567" };
        let acct = if allow { "w-uk-ok" } else { "w-std" };
        let mut c = with_cli(call(acct, n), "+15551234567", countries[country]);
        c.cli_valid = valid;
        c.billable_seconds = secs;
        let o = rate(&c, &f.ctx());
        let t = if mobile { UkNumberType::Mobile } else { UkNumberType::Fixed };
        let per_min = f.uk.per_min(valid.then_some(countries[country]), t);
        prop_assert_eq!(o.uk_surcharge_per_min, per_min);
        let blocked = !per_min.is_zero() && !allow;
        prop_assert_eq!(o.has_flag(Flag::UkSurchargeBlocked), blocked);
        prop_assert_eq!(o.status == RatingStatus::Blocked, blocked);
        if blocked {
            prop_assert_eq!((o.amount, o.surcharge, o.billed_seconds), (Decimal::ZERO, Decimal::ZERO, 0));
        } else {
            prop_assert_eq!(o.surcharge, per_min * Decimal::from(o.billed_seconds) / Decimal::from(60));
        }
    }

    /// Deck text → rows round-trips every generated valid row, and every
    /// corrupted row is reported on its own line.
    #[test]
    fn import_reports_each_bad_line(good in prop::collection::btree_set("[1-9][0-9]{0,6}", 1..40), bad_at in prop::collection::btree_set(0usize..40, 0..5)) {
        let mut text = String::new();
        let mut want_bad = Vec::new();
        let mut want_good = 0;
        for (i, p) in good.iter().enumerate() {
            if bad_at.contains(&i) {
                text.push_str(&format!("{p};Dest;oops;1;1\n"));
                want_bad.push(i + 1);
            } else {
                text.push_str(&format!("{p};Dest;0.01;1;1\n"));
                want_good += 1;
            }
        }
        let d = parse_deck("gen.txt", &text, DeckKind::AZ(Plan::Standard), ImportMode::Lenient).unwrap();
        prop_assert_eq!(d.rows.len(), want_good);
        prop_assert_eq!(d.rejected.iter().map(|e| e.line).collect::<Vec<_>>(), want_bad);
        prop_assert!(d.rejected.iter().all(|e| e.field == "rate" && e.file == "gen.txt"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// LPM with OBR tiers and row-level dates against a brute-force oracle:
    /// the longest prefix having an applicable in-force row wins; within it
    /// the caller's tier beats untiered, then the latest start date.
    #[test]
    fn tiered_dated_lookup_matches_oracle(
        rows in prop::collection::vec(("[0-2]{1,5}", 0u8..3, prop::option::of(0i64..20), prop::option::of(1i64..20)), 1..80),
        numbers in prop::collection::vec("[0-2]{1,8}", 1..30),
        day in 0i64..30,
        eea: bool,
    ) {
        let mut deck = Vec::new();
        for (i, (p, tier, from, len)) in rows.iter().enumerate() {
            let mut r = DeckRow::simple(p, "x", Decimal::from(i as u32), Increment::new(1, 1));
            r.obr_tier = [None, Some(ObrTier::Eea), Some(ObrTier::RestOfWorld)][*tier as usize];
            r.effective_from = from.map(ts);
            r.effective_to = match (from, len) { (Some(f), Some(l)) => Some(ts(f + l)), _ => None };
            // Keep (prefix, tier, start) unique like the parser does.
            if deck.iter().any(|d: &DeckRow| d.prefix == r.prefix && d.obr_tier == r.obr_tier && d.effective_from == r.effective_from) {
                continue;
            }
            deck.push(r);
        }
        let mut set = DeckSet::new();
        set.insert("p", DeckTarget::Az(Plan::Retail), deck.clone(), ts(-100), None);
        let tier = if eea { ObrTier::Eea } else { ObrTier::RestOfWorld };
        let at = ts(day);
        for n in &numbers {
            let got = set.lookup(Scope::Az(Plan::Retail), n, at, tier).map(|m| m.row.rate);
            let want = deck
                .iter()
                .filter(|r| n.starts_with(&r.prefix.to_string()) && r.in_force(at) && r.obr_tier.is_none_or(|t| t == tier))
                .max_by_key(|r| (r.prefix.len(), r.obr_tier.is_some(), r.effective_from))
                .map(|r| r.rate);
            prop_assert_eq!(got, want, "number {}", n);
        }
    }
}
