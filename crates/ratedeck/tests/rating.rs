//! End-to-end rating rules against the sample decks in `testdata/`.

mod common;

use common::*;
use ratedeck::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// Rates `c` with the jurisdiction enrichment would have recorded.
fn rj(f: &Fixture, c: RatingInput) -> RatedCall {
    let c = with_jurisdiction(c, f);
    r(f, &c)
}

fn r(f: &Fixture, c: &RatingInput) -> RatedCall {
    rate(c, &f.ctx())
}

#[test]
fn seed_001_increment_table() {
    // 7 s and 61 s calls on 1/1, 6/6, 30/6, 60/60 (seed 001 table).
    let incs = [(1, 1), (6, 6), (30, 6), (60, 60)];
    let want7 = [7, 12, 30, 60];
    let want61 = [61, 66, 66, 120];
    for (i, (x, y)) in incs.into_iter().enumerate() {
        let inc = Increment::new(x, y);
        assert_eq!(billed_seconds(7, inc, 0), want7[i], "7 s on {inc}");
        assert_eq!(billed_seconds(61, inc, 0), want61[i], "61 s on {inc}");
    }
    assert_eq!(billed_seconds(0, Increment::new(60, 60), 0), 0);
    assert_eq!(
        billed_seconds(10, Increment::new(60, 60), 90),
        120,
        "floor then grid"
    );
}

/// Seed 001 worked example through the real `rate` path: 100,000 answered
/// 28 s calls at $0.01/min.
#[test]
fn invoice_100k_calls_28s_rounds_once() {
    let mut f = fixture();
    let rows = parse_deck(
        "campaign.txt",
        "800;Campaign 1/1;0.01;1;1\n801;Campaign 60/60;0.01;60;60\n",
        DeckKind::AZ(Plan::Standard),
        ImportMode::Strict,
    )
    .unwrap()
    .rows;
    f.decks.insert(
        "campaign.txt",
        DeckTarget::Az(Plan::Standard),
        rows,
        t(2021, 9, 30),
        None,
    );
    let ctx = f.ctx();
    for (prefix, want) in [("800", dec!(466.67)), ("801", dec!(1000.00))] {
        // `+800` is E.164-shaped (the UIFN code), so the test deck's
        // 800/801 rows match it as written.
        let mut c = call("w-std", &format!("+{prefix}5551234"));
        c.billable_seconds = 28;
        let one = rate(&c, &ctx);
        assert!(one.is_rated(), "{one:?}");
        let total = invoice_total((0..100_000).map(|_| rate(&c, &ctx).amount));
        assert_eq!(total, want, "prefix {prefix}");
        assert_ne!(total, dec!(470.00));
    }
    // The per-call amount is unrounded (28 × 0.01 / 60 = 0.00466…).
    let mut c = call("w-std", "+8005551234");
    c.billable_seconds = 28;
    let a = rate(&c, &ctx).amount;
    assert!(a.scale() >= 6, "kept {a} at scale {}", a.scale());
    assert!(a > dec!(0.004666) && a < dec!(0.004667));
}

#[test]
fn invoice_rounding_half_up() {
    assert_eq!(invoice_total([dec!(0.005)]), dec!(0.01));
    assert_eq!(invoice_total([dec!(0.0049999)]), dec!(0.00));
    assert_eq!(invoice_total([dec!(0.0025), dec!(0.0025)]), dec!(0.01));
    assert_eq!(invoice_total([dec!(-0.005)]), dec!(-0.01));
    assert_eq!(invoice_total(Vec::<Decimal>::new()), dec!(0));
}

#[test]
fn seed_default_increments_in_sample_deck() {
    let f = fixture();
    let cases = [
        ("12025550100", (6, 6)),    // USA
        ("12045550100", (6, 6)),    // Canada
        ("525512345678", (60, 60)), // Mexico
        ("5971234567", (60, 60)),   // Suriname
        ("50912345678", (60, 60)),  // Haiti
        ("22812345678", (60, 60)),  // Togo
        ("6791234567", (60, 60)),   // Fiji
        ("6761234567", (60, 60)),   // Tonga (Pacific Islands)
        ("882161234567", (60, 60)), // Thuraya
        ("9601234567", (60, 60)),   // Maldives
        ("4420712345678", (1, 1)),  // UK
        ("8613812345678", (1, 1)),  // China
    ];
    for (n, (x, y)) in cases {
        let out = r(&f, &call("w-std", n));
        assert!(out.is_rated(), "{n}: {:?}", out.status);
        assert_eq!(out.increment, Some(Increment::new(x, y)), "{n}");
    }
}

#[test]
fn plan_selection_by_dial_prefix() {
    let f = fixture();
    let uk = "4420712345678";
    let rate_of = |acct: &str, dialed: &str| {
        let o = r(&f, &call(acct, dialed));
        assert!(o.is_rated(), "{dialed}: {:?}", o.status);
        (o.plan.unwrap(), o.rate_per_min, o.deck_id, o.rated_number)
    };
    assert_eq!(rate_of("w-std", uk).0, Plan::Standard);
    assert_eq!(rate_of("w-std", uk).1, dec!(0.0050));
    assert_eq!(rate_of("w-prem", uk).1, dec!(0.0070));
    assert_eq!(rate_of("w-std", &format!("*30{uk}")).1, dec!(0.0100));
    assert_eq!(rate_of("w-std", &format!("*30{uk}")).0, Plan::Pstn);
    assert_eq!(rate_of("w-prem", &format!("*31{uk}")).1, dec!(0.0050));
    assert_eq!(rate_of("w-std", &format!("*32{uk}")).1, dec!(0.0070));
    assert_eq!(
        rate_of("w-std", &format!("*32{uk}")).3,
        uk,
        "prefix stripped"
    );
    // *4TTT: trunk deck, plan from the trunk rating column.
    let (p, rt, deck, _) = rate_of("w-std", &format!("*4101{uk}"));
    assert_eq!(
        (p, rt, &*deck),
        (Plan::Standard, dec!(0.0040), "per_trunk.txt")
    );
    let o = r(&f, &call("w-std", &format!("*4205{uk}")));
    assert_eq!(
        (o.plan, o.trunk, o.rate_per_min),
        (Some(Plan::Pstn), Some(205), dec!(0.0090))
    );
    // Unknown trunk or a destination the trunk doesn't carry: unrated, not dropped.
    let o = r(&f, &call("w-std", "*4999441234"));
    assert_eq!(o.status, RatingStatus::Unrated);
    let o = r(&f, &call("w-std", "*4101521234567890"));
    assert!(
        o.status == RatingStatus::Unrated
            && o.unrated_reason
                .as_ref()
                .map(|u| u.detail.as_str())
                .is_some_and(|r| r.contains("trunk 101"))
    );
    let o = r(&f, &call("w-std", "*9441234"));
    assert!(
        o.status == RatingStatus::Unrated
            && o.unrated_reason
                .as_ref()
                .map(|u| u.detail.as_str())
                .is_some_and(|r| r.contains("dial prefix"))
    );
}

#[test]
fn retail_accounts_nat_and_downgrade_use_retail_deck() {
    let f = fixture();
    let uk = "4420712345678";
    let o = r(&f, &call("retail", &format!("*32{uk}")));
    assert_eq!((o.plan, o.rate_per_min), (Some(Plan::Retail), dec!(0.0300)));
    let o = r(&f, &call("w-downgraded", uk));
    assert_eq!((o.plan, o.rate_per_min), (Some(Plan::Retail), dec!(0.0300)));
    assert!(o.has_flag(Flag::DowngradedToRetail));
    let mut c = call("w-prem", uk);
    c.behind_nat = true;
    let o = r(&f, &c);
    assert_eq!((o.plan, o.rate_per_min), (Some(Plan::Retail), dec!(0.0300)));
    assert!(o.has_flag(Flag::BehindNatRetail));
    assert_eq!(o.increment, Some(Increment::new(60, 60)));
}

#[test]
fn us48_jurisdiction() {
    let f = fixture();
    let ny = "12125551234";
    // Same state → intrastate.
    let o = rj(&f, with_cli(call("w-std", ny), "+12125550000", "US"));
    assert_eq!(
        (o.jurisdiction, o.rate_per_min),
        (Some(Jurisdiction::Intrastate), dec!(0.0030))
    );
    assert_eq!(&*o.deck_id, "us48_premium.txt");
    assert_eq!(
        o.matched_prefix.map(|p| p.to_string()).as_deref(),
        Some("1212555")
    );
    // Different state → interstate.
    let o = rj(&f, with_cli(call("w-std", ny), "13105550000", "US"));
    assert_eq!(
        (o.jurisdiction, o.rate_per_min),
        (Some(Jurisdiction::Interstate), dec!(0.0015))
    );
    // Non-NANP caller id → indeterminate, higher rate.
    let o = rj(&f, call("w-std", ny));
    assert_eq!(
        (o.jurisdiction, o.rate_per_min),
        (Some(Jurisdiction::Indeterminate), dec!(0.0030))
    );
    assert!(o.has_flag(Flag::JurisdictionIndeterminate));
    // Indeterminate where interstate is the higher rate (LA: 0.0040 vs 0.0020).
    let o = rj(
        &f,
        with_cli(call("w-std", "13105551234"), "19995550000", "US"),
    );
    assert_eq!(
        (o.jurisdiction, o.rate_per_min),
        (Some(Jurisdiction::Indeterminate), dec!(0.0040))
    );
    // Invalid CLI flag from enrichment → indeterminate even if it looks NANP.
    let mut c = with_cli(call("w-std", ny), "12125550000", "US");
    c.cli_valid = false;
    assert_eq!(rj(&f, c).jurisdiction, Some(Jurisdiction::Indeterminate));
    // Premium shares the deck; PSTN has its own.
    let o = rj(&f, with_cli(call("w-prem", ny), "12125550000", "US"));
    assert_eq!(
        (&*o.deck_id, o.rate_per_min),
        ("us48_premium.txt", dec!(0.0030))
    );
    let o = rj(&f, with_cli(call("w-pstn", ny), "12125550000", "US"));
    assert_eq!(
        (&*o.deck_id, o.rate_per_min),
        ("us48_pstn.txt", dec!(0.0050))
    );
    // NANP number outside the US48 deck falls back to A–Z (Canada, 6/6).
    let o = rj(&f, call("w-std", "12045551234"));
    assert_eq!((&*o.deck_id, o.jurisdiction), ("standard_az.txt", None));
    assert_eq!(o.billed_seconds, 60);
}

#[test]
fn lrn_rates_ported_numbers() {
    let f = fixture();
    let mut c = with_cli(call("w-std", "12125551234"), "+13105550000", "US");
    c.rated_number = Some("13105559999".into());
    c.lrn_fee = dec!(0.0003);
    let o = rj(&f, c);
    assert!(o.has_flag(Flag::LrnRated));
    assert_eq!(o.rated_number, "13105559999");
    // LRN is in CA like the caller → intrastate LA rate.
    assert_eq!(
        (o.jurisdiction, o.rate_per_min),
        (Some(Jurisdiction::Intrastate), dec!(0.0020))
    );
    assert_eq!(o.lrn_fee, dec!(0.0003));
    // 60 s × 0.0020 / 60 + 0.0003
    assert_eq!(o.amount, dec!(0.0023));
    // LRN ignored for non-NANP numbers.
    let mut c = call("w-std", "4420712345678");
    c.rated_number = Some("13105559999".into());
    assert_eq!(r(&f, &c).rated_number, "4420712345678");
}

#[test]
fn uk_origin_surcharge() {
    let f = fixture();
    let mob = "447911123456";
    // US caller → mobile 0.12/min, not allowed on a default account (seed
    // 000): a blocked attempt, recorded with its reason, never billed.
    let o = r(&f, &with_cli(call("w-std", mob), "+12125550000", "US"));
    assert_eq!(o.uk_surcharge_per_min, dec!(0.1200));
    assert_eq!(o.status, RatingStatus::Blocked);
    assert!(o.has_flag(Flag::UkSurchargeBlocked) && o.has_flag(Flag::NotBilled));
    let u = o.unrated_reason.clone().unwrap();
    assert_eq!(u.kind, ratedeck::Unpriced::UkSurchargeNotAllowed);
    assert!(
        u.detail.contains("US") && u.detail.contains("0.1200"),
        "{u}"
    );
    assert_eq!(
        (o.amount, o.surcharge, o.billed_seconds),
        (dec!(0), dec!(0), 0)
    );
    // Same call, account allows it.
    let o = r(&f, &with_cli(call("w-uk-ok", mob), "+12125550000", "US"));
    assert!(!o.has_flag(Flag::UkSurchargeBlocked));
    assert_eq!(o.surcharge, dec!(0.12));
    // EEA caller with 0 surcharge: allowed.
    let o = r(&f, &call("w-std", mob));
    assert_eq!(o.surcharge, dec!(0));
    assert!(!o.has_flag(Flag::UkSurchargeBlocked));
    // Fixed UK number and explicit callee type override.
    let o = r(
        &f,
        &with_cli(call("w-uk-ok", "442071234567"), "+12125550000", "US"),
    );
    assert_eq!(o.uk_surcharge_per_min, dec!(0.0500));
    let mut c = with_cli(call("w-uk-ok", mob), "+12125550000", "US");
    c.callee_number_type = Some(NumberType::Fixed);
    assert_eq!(r(&f, &c).uk_surcharge_per_min, dec!(0.0500));
    // Invalid / missing CLI → XX row.
    let mut c = call("w-uk-ok", mob);
    c.cli_valid = false;
    let o = r(&f, &c);
    assert_eq!(o.uk_surcharge_per_min, dec!(0.2500));
    assert!(o.has_flag(Flag::InvalidCli));
    let mut c = call("w-uk-ok", mob);
    c.cli = Some("0123".into());
    c.cli_valid = false; // enrichment's verdict on a malformed CLI
    assert_eq!(
        r(&f, &c).uk_surcharge_per_min,
        dec!(0.2500),
        "malformed CLI"
    );
    // Surcharge scales with billed seconds: 30 s on 1/1 → half.
    let mut c = with_cli(call("w-uk-ok", mob), "+12125550000", "US");
    c.billable_seconds = 30;
    assert_eq!(r(&f, &c).surcharge, dec!(0.06));
    // Non-UK numbers never get it.
    assert_eq!(
        r(
            &f,
            &with_cli(call("w-std", "4930123456"), "+12125550000", "US")
        )
        .surcharge,
        dec!(0)
    );
}

#[test]
fn obr_tiers_by_caller_origin() {
    let f = fixture();
    let fr_mob = "33612345678";
    let o = r(&f, &with_cli(call("w-std", fr_mob), "+4930123456", "DE"));
    assert_eq!(
        (o.obr_tier, o.rate_per_min),
        (Some(ObrTier::Eea), dec!(0.0120))
    );
    let o = r(&f, &with_cli(call("w-std", fr_mob), "+12125550000", "US"));
    assert_eq!(
        (o.obr_tier, o.rate_per_min),
        (Some(ObrTier::RestOfWorld), dec!(0.3500))
    );
    let mut c = call("w-std", fr_mob);
    c.cli = None;
    c.cli_valid = false; // enrichment's verdict on a missing CLI
    let o = r(&f, &c);
    assert_eq!(o.obr_tier, Some(ObrTier::RestOfWorld), "missing CLI → ROW");
    // Untiered rows apply to everyone.
    let o = r(
        &f,
        &with_cli(call("w-std", "33123456789"), "+12125550000", "US"),
    );
    assert_eq!((o.obr_tier, o.rate_per_min), (None, dec!(0.0090)));
}

#[test]
fn max_rate_and_route() {
    let f = fixture();
    let mob = "447911123456"; // 0.0150 on Standard
    let mut c = call("w-std", mob);
    c.max_rate = Some(dec!(0.01));
    c.max_route = Some(2);
    let o = r(&f, &c);
    assert!(o.has_flag(Flag::MaxRateExceeded));
    assert_eq!((o.max_rate, o.max_route), (Some(dec!(0.01)), Some(2)));
    c.max_rate = Some(dec!(0.028));
    assert!(!r(&f, &c).has_flag(Flag::MaxRateExceeded));
    // Account default (0.010) applies without the header; header overrides it.
    let o = r(&f, &call("w-max", mob));
    assert!(o.has_flag(Flag::MaxRateExceeded));
    assert_eq!(o.max_rate, Some(dec!(0.010)));
    let mut c = call("w-max", mob);
    c.max_rate = Some(dec!(0.02));
    assert!(!r(&f, &c).has_flag(Flag::MaxRateExceeded));
    assert!(!r(&f, &call("w-max", "4420712345678")).has_flag(Flag::MaxRateExceeded));
    // The full per-minute price counts: 0.0150 + 0.12 UK surcharge > 0.10,
    // although the rate alone is under it.
    let mut c = with_cli(call("w-uk-ok", mob), "+12125550000", "US");
    c.max_rate = Some(dec!(0.10));
    let o = r(&f, &c);
    assert!(o.rate_per_min < dec!(0.10));
    assert!(o.has_flag(Flag::MaxRateExceeded));
    c.max_rate = Some(dec!(0.135));
    assert!(
        !r(&f, &c).has_flag(Flag::MaxRateExceeded),
        "0.135 = 0.015 + 0.12"
    );
}

#[test]
fn unmatched_calls_are_kept_unrated() {
    let f = fixture();
    let mut c = call("w-std", "99912345");
    c.lrn_fee = dec!(0.0003);
    let o = r(&f, &c);
    assert_eq!(o.status, RatingStatus::Unrated);
    let reason = o
        .unrated_reason
        .as_ref()
        .map(|u| u.detail.as_str())
        .unwrap();
    assert!(reason.contains("no matching prefix"), "{reason}");
    assert_eq!((o.amount, o.lrn_fee), (dec!(0), dec!(0.0003)));
    assert_eq!(o.call_id, "c-99912345");
    let o = r(&f, &call("nobody", "4420712345678"));
    assert!(
        o.status == RatingStatus::Unrated
            && o.unrated_reason
                .as_ref()
                .map(|u| u.detail.as_str())
                .is_some_and(|r| r.contains("unknown account"))
    );
    let o = r(&f, &call("w-std", "44-207"));
    assert!(!o.is_rated());
}

#[test]
fn unanswered_and_zero_duration_bill_zero() {
    let f = fixture();
    let mut c = call("w-std", "525512345678");
    c.answered = false;
    c.billable_seconds = 0;
    c.answer_ts = None;
    let o = r(&f, &c);
    assert!(o.is_rated() && o.has_flag(Flag::NotBilled));
    assert_eq!((o.billed_seconds, o.amount), (0, dec!(0)));
    let mut c = call("w-std", "525512345678");
    c.billable_seconds = 0;
    let o = r(&f, &c);
    assert_eq!((o.billed_seconds, o.amount), (0, dec!(0)));
    assert_eq!(o.destination.as_deref(), Some("Mexico"));
    // Answered flag false wins even if a duration leaked through.
    let mut c = call("w-std", "525512345678");
    c.answered = false;
    assert_eq!(r(&f, &c).amount, dec!(0));
    // Answered with a duration but no answer time cannot pick a version.
    let mut c = call("w-std", "525512345678");
    c.answer_ts = None;
    assert!(!r(&f, &c).is_rated());
}

#[test]
fn connection_fee_min_seconds_and_short_surcharge() {
    let f = fixture();
    // Somalia: 0.90/min 1/1, fee 0.05, min 30 s, 0.01 surcharge under 6 s.
    let mut c = call("w-std", "252612345678");
    c.billable_seconds = 5;
    let o = r(&f, &c);
    assert_eq!(o.billed_seconds, 30);
    assert_eq!(o.connection_fee, dec!(0.05));
    assert_eq!(o.short_duration_surcharge, dec!(0.01));
    assert!(o.has_flag(Flag::ShortDurationSurcharge));
    assert_eq!(o.amount, dec!(0.45) + dec!(0.05) + dec!(0.01));
    c.billable_seconds = 6;
    let o = r(&f, &c);
    assert_eq!(o.short_duration_surcharge, dec!(0));
    assert_eq!(o.amount, dec!(0.50));
    c.billable_seconds = 45;
    assert_eq!(r(&f, &c).billed_seconds, 45);
}

/// Issue 12: the short-duration threshold is judged on the real answered
/// duration. A 5.4 s call is 6 billable seconds (rounded up) yet shorter
/// than a 6 s threshold.
#[test]
fn short_duration_threshold_is_judged_on_milliseconds() {
    let f = fixture();
    let mut c = call("w-std", "252612345678");
    c.billable_seconds = 6;
    for (ms, surcharge) in [
        (Some(5_400), dec!(0.01)),
        (Some(5_999), dec!(0.01)),
        (Some(6_000), dec!(0)),
        (None, dec!(0)),
    ] {
        c.duration_ms = ms;
        let o = r(&f, &c);
        assert_eq!(o.short_duration_surcharge, surcharge, "{ms:?}");
        assert_eq!(o.billed_seconds, 30, "the minimum still applies");
    }
}

#[test]
fn mexico_60_60_amount() {
    let f = fixture();
    let mut c = call("w-std", "525512345678");
    c.billable_seconds = 61;
    let o = r(&f, &c);
    assert_eq!(o.billed_seconds, 120);
    assert_eq!(o.amount, dec!(0.05));
    assert_eq!(o.currency.as_str(), "USD");
}

#[test]
fn deterministic() {
    let f = fixture();
    let c = with_cli(call("w-std", "447911123456"), "+12125550000", "US");
    let a = r(&f, &c);
    let b = r(&f, &c.clone());
    assert_eq!(a, b);
    assert_eq!(
        a.flags.to_vec(),
        vec![Flag::UkSurchargeBlocked, Flag::NotBilled]
    );
}

#[test]
fn effective_dates_pick_the_version_in_force() {
    let mut f = fixture();
    let v2 = parse_deck(
        "std_v2.txt",
        "44;United Kingdom Fixed;0.0060;1;1\n",
        DeckKind::AZ(Plan::Standard),
        ImportMode::Strict,
    )
    .unwrap()
    .rows;
    let ver = f.decks.insert(
        "std_v2.txt",
        DeckTarget::Az(Plan::Standard),
        v2,
        t(2021, 11, 1),
        Some(t(2021, 12, 1)),
    );
    let at = |f: &Fixture, ts| {
        let mut c = call("w-std", "4420712345678");
        c.answer_ts = Some(ts);
        r(f, &c)
    };
    let o = at(&f, t(2021, 10, 31));
    assert_eq!(
        (&*o.deck_id, o.rate_per_min),
        ("standard_az.txt", dec!(0.0050))
    );
    let o = at(&f, t(2021, 11, 15));
    assert_eq!(
        (&*o.deck_id, o.deck_version, o.rate_per_min),
        ("std_v2.txt", ver, dec!(0.0060))
    );
    // v2 ended → back to the original version.
    assert_eq!(&*at(&f, t(2021, 12, 2)).deck_id, "standard_az.txt");
    // Before any version: unrated.
    assert!(!at(&f, t(2020, 1, 1)).is_rated());
    // v2 is a full replacement: Germany is not in it.
    let mut c = call("w-std", "4930123456");
    c.answer_ts = Some(t(2021, 11, 15));
    assert!(!r(&f, &c).is_rated());
}

#[test]
fn breakout_rows_dated_per_row() {
    let mut f = fixture();
    let rep = f
        .decks
        .load(
            "breakout_extras.csv",
            include_str!("../testdata/breakout_extras.csv"),
            DeckKind::Breakout,
            Plan::Premium,
            ImportMode::Strict,
            t(2026, 5, 1),
            None,
        )
        .unwrap();
    assert_eq!(rep.rows_loaded, 6);
    let at = |f: &Fixture, n: &str, ts| {
        let mut c = call("w-prem", n);
        c.answer_ts = Some(ts);
        r(f, &c)
    };
    assert!(
        !at(&f, "4930123456", t(2026, 5, 15)).is_rated(),
        "row not yet in force"
    );
    assert_eq!(
        at(&f, "4930123456", t(2026, 6, 15)).rate_per_min,
        dec!(0.0095)
    );
    assert_eq!(
        at(&f, "4930123456", t(2026, 7, 15)).rate_per_min,
        dec!(0.0110)
    );
    assert_eq!(
        at(&f, "33612345678", t(2026, 6, 15)).rate_per_min,
        dec!(0.0120)
    );
    let o = at(&f, "82101234567", t(2026, 6, 15));
    assert_eq!(
        (o.increment, o.connection_fee),
        (Some(Increment::new(30, 6)), dec!(0.0100))
    );
    assert!(
        !at(&f, "82101234567", t(2027, 1, 15)).is_rated(),
        "row ended"
    );
    let mut c = call("w-prem", "525512345678");
    c.answer_ts = Some(t(2026, 6, 15));
    c.billable_seconds = 10;
    assert_eq!(r(&f, &c).billed_seconds, 120, "min_seconds 120 on 60/60");
}

#[test]
fn bad_rows_sample_file() {
    let d = parse_deck(
        "bad_rows.txt",
        include_str!("../testdata/bad_rows.txt"),
        DeckKind::AZ(Plan::Standard),
        ImportMode::Lenient,
    )
    .unwrap();
    assert_eq!(d.rows.len(), 1);
    let got: Vec<_> = d
        .rejected
        .iter()
        .map(|e| (e.file.as_str(), e.line, e.field))
        .collect();
    assert_eq!(
        got,
        vec![
            ("bad_rows.txt", 3, "dialprefix"),
            ("bad_rows.txt", 4, "rate"),
            ("bad_rows.txt", 5, "billing increment"),
        ]
    );
    let e = parse_deck(
        "bad_rows.txt",
        include_str!("../testdata/bad_rows.txt"),
        DeckKind::AZ(Plan::Standard),
        ImportMode::Strict,
    )
    .unwrap_err();
    assert!(matches!(e, DeckError::Rejected { ref errors, .. } if errors.len() == 3));
}

#[test]
fn seed_breakout_sample_loads() {
    let d = parse_deck(
        "breakout_seed.csv",
        include_str!("../testdata/breakout_seed.csv"),
        DeckKind::Breakout,
        ImportMode::Strict,
    )
    .unwrap();
    assert_eq!(d.rows.len(), 3);
    assert!(d.rows.iter().all(|r| r.increment == Increment::new(1, 1)));
}

#[test]
fn deck_diff_notice() {
    let now = t(2026, 6, 1);
    let old = parse_deck(
        "old",
        "44;UK;0.0100;1;1\n33;FR;0.0100;1;1\n34;ES;0.0100;1;1\n49;DE;0.0100;1;1\n",
        DeckKind::AZ(Plan::Standard),
        ImportMode::Strict,
    )
    .unwrap()
    .rows;
    let new = parse_deck(
        "new.csv",
        "destination,code,rate_usd,increment,effective_from\n\
         UK,44,0.0200,1/1,2026-06-03\n\
         FR,33,0.0200,1/1,2026-06-09\n\
         ES,34,0.0050,1/1,2026-06-01\n\
         DE,49,0.0100,1/1,2026-06-01\n\
         IT,39,0.0100,1/1,2026-06-01\n",
        DeckKind::Breakout,
        ImportMode::Strict,
    )
    .unwrap()
    .rows;
    let d = diff(&old, &new, default_notice(), now);
    assert_eq!(
        d.added
            .iter()
            .map(|r| r.prefix.to_string())
            .collect::<Vec<_>>(),
        vec!["39"]
    );
    assert!(d.removed.is_empty());
    assert_eq!(d.unchanged, 1);
    let inc: Vec<_> = d
        .increased
        .iter()
        .map(|c| (c.prefix.to_string(), c.short_notice))
        .collect();
    assert_eq!(
        inc,
        vec![("33".to_string(), false), ("44".to_string(), true)]
    );
    assert_eq!(d.decreased.len(), 1);
    assert!(!d.decreased[0].short_notice, "decreases apply at once");
    assert_eq!(d.short_notice().count(), 1);
    // Reverse direction: IT removed, and undated increases are immediate → flagged.
    let back = diff(&new, &old, default_notice(), now);
    assert_eq!(back.removed.len(), 1);
    assert!(back
        .increased
        .iter()
        .all(|c| c.short_notice && c.prefix.to_string() == "34"));
}

/// Issue 12: the number is read through the one dial plan (`numbering`),
/// so every written form of a number is priced like its E.164 form. Each
/// of these was unrated or priced on the wrong breakout when `rate` took
/// the raw digits (national `2125551234` looked up as `2…`, `011…` and
/// `0033…` as `0…`, URIs and separators as not digits).
#[test]
fn every_written_form_is_rated_on_the_normalised_number() {
    let f = fixture();
    for (dialed, rated, prefix) in [
        ("2125551234", "12125551234", "1212555"),
        ("+1 (212) 555-1234", "12125551234", "1212555"),
        ("+1 212 555 1234", "12125551234", "1212555"),
        ("0012125551234", "12125551234", "1212555"),
        ("212.555.1234", "12125551234", "1212555"),
        ("*31 212-555-1234", "12125551234", "1212555"),
        ("3105551234", "13105551234", "1310555"),
        ("0114420712345678", "4420712345678", "44"),
        ("00 44 20 7123 4567", "442071234567", "44"),
        ("+44 (0)20 7123 4567", "442071234567", "44"),
        (
            "sip:+447911123456@gw.example.net;user=phone",
            "447911123456",
            "447",
        ),
        ("tel:+49-30-123456", "4930123456", "4930"),
        ("0033 6 12 34 56 78", "33612345678", "336"),
        ("011 33 6 12 34 56 78", "33612345678", "336"),
    ] {
        let o = r(&f, &call("w-std", dialed));
        assert!(o.is_rated(), "{dialed}: {:?}", o.unrated_reason);
        assert_eq!(o.rated_number, rated, "{dialed}");
        assert_eq!(
            o.matched_prefix.map(|p| p.to_string()).as_deref(),
            Some(prefix),
            "{dialed}"
        );
    }
    // National 2125551234 is New York, not Russia or anything starting 2.
    let o = rj(
        &f,
        with_cli(call("w-std", "2125551234"), "+12125550000", "US"),
    );
    assert_eq!(
        (o.destination.as_deref(), o.rate_per_min),
        (Some("USA New York NY"), dec!(0.0030))
    );
}

/// The pipeline hands `rate` enrichment's reading of the number (`dial`):
/// that is what is priced, whatever the raw string looks like.
#[test]
fn enrichments_reading_of_the_number_is_what_is_priced() {
    let f = fixture();
    let mut c = call("w-std", "*32 sip:+44-20-7123-4567@gw");
    c.dial = Some(ratedeck::numbering::parse_dialed(&c.dialed).unwrap());
    let o = r(&f, &c);
    assert_eq!(
        (o.plan, o.rated_number.as_str()),
        (Some(Plan::Premium), "442071234567")
    );
    let mut c = call("w-std", "not a number");
    c.dial = Some(ratedeck::numbering::parse_dialed("+4930123456").unwrap());
    assert_eq!(r(&f, &c).rated_number, "4930123456");
    // Unusable strings say why.
    let o = r(&f, &call("w-std", "*9441234"));
    let u = o.unrated_reason.unwrap();
    assert_eq!(u.kind, ratedeck::Unpriced::UnknownDialPrefix);
    assert!(u.detail.contains("unknown dial prefix"));
    let o = r(&f, &call("w-std", "44-207-abc"));
    let u = o.unrated_reason.unwrap();
    assert_eq!(u.kind, ratedeck::Unpriced::BadDialedNumber);
    assert!(u.detail.contains("not usable"));
}

/// Issue 12: inbound calls are not terminations.
#[test]
fn inbound_calls_are_left_for_did_rating() {
    let f = fixture();
    let mut c = call("w-std", "4420712345678");
    c.inbound = true;
    c.lrn_fee = dec!(0.0003);
    let o = r(&f, &c);
    assert_eq!(o.status, RatingStatus::Inbound);
    assert_eq!(
        (o.amount, o.lrn_fee, o.billed_seconds),
        (dec!(0), dec!(0), 0)
    );
    assert!(o.has_flag(Flag::NotBilled));
    assert_eq!(o.deck_id.as_ref(), "");
}

/// Issue 12: a NANP number outside the contiguous US must not be billed
/// through a catch-all `1` row (revenue-share fraud to 1876, 1809, …);
/// explicit rows price it by its real breakout.
#[test]
fn nanp_outside_us48_never_falls_to_the_catch_all_row() {
    let f = fixture();
    for (dialed, dest) in [
        ("18765551234", "Jamaica"),
        ("18095551234", "Dominican Republic"),
        ("19075551234", "USA Alaska"),
        ("14035551234", "Canada Alberta"),
    ] {
        let o = r(&f, &call("w-std", dialed));
        assert!(o.is_rated(), "{dialed}: {:?}", o.unrated_reason);
        assert_eq!(o.destination.as_deref(), Some(dest), "{dialed}");
    }
    // A deck with only the catch-all for Bahamas (1242): unrated, reason
    // says why, and the load-time check lists it.
    let o = r(&f, &call("w-std", "12425551234"));
    assert_eq!(o.status, RatingStatus::Unrated);
    assert!(
        o.unrated_reason
            .as_ref()
            .map(|u| u.detail.as_str())
            .unwrap()
            .starts_with(ratedeck::NANP_CATCH_ALL_REASON),
        "{:?}",
        o.unrated_reason
    );
    let warned = f.decks.nanp_catch_all();
    let std: Vec<_> = warned
        .iter()
        .filter(|w| w.deck_id == "standard_az.txt")
        .map(|w| w.npa)
        .collect();
    assert!(std.contains(&"242") && std.contains(&"649"), "{std:?}");
    for explicit in ["876", "809", "907", "403", "204", "416", "808"] {
        assert!(!std.contains(&explicit), "{explicit} has its own row");
    }
    assert!(warned
        .iter()
        .any(|w| w.to_string().contains("1242 (Bahamas)")));
    // A US48 number on the catch-all is still the USA.
    let o = r(&f, &call("w-std", "17135550100"));
    assert_eq!(o.destination.as_deref(), Some("USA"));
}

/// Issue 12: the EU's outermost regions are in the EEA for OBR.
#[test]
fn eu_outermost_regions_get_the_eea_tier() {
    let f = fixture();
    let fr_mob = "33612345678";
    for (cli, country) in [
        ("+262262123456", "RE"),
        ("+590590123456", "GP"),
        ("+596596123456", "MQ"),
        ("+594594123456", "GF"),
        ("+358181234567", "AX"),
    ] {
        let o = r(&f, &with_cli(call("w-std", fr_mob), cli, country));
        assert_eq!(
            (o.obr_tier, o.rate_per_min),
            (Some(ObrTier::Eea), dec!(0.0120)),
            "{country}"
        );
    }
    // An invalid (fake) CLI from an EEA country is rest of world.
    let mut c = with_cli(call("w-std", fr_mob), "+33100000000", "FR");
    c.cli_valid = false;
    let o = r(&f, &c);
    assert_eq!(o.obr_tier, Some(ObrTier::RestOfWorld));
    assert!(o.has_flag(Flag::InvalidCli));
}
