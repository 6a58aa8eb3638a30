//! Property tests for numbering: normalisation idempotence, prefix round-trips, no panics.
use lrn::{normalize, strip_plan_prefix, PlanSelector};
use proptest::prelude::*;

fn selector() -> impl Strategy<Value = PlanSelector> {
    prop_oneof![
        Just(PlanSelector::Pstn),
        Just(PlanSelector::Standard),
        Just(PlanSelector::Premium),
        (0u16..1000).prop_map(PlanSelector::Trunk),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever normalises, normalises to itself again from its canonical `+digits` form.
    #[test]
    fn normalisation_is_idempotent(raw in "(sip:|tel:)?(\\+|00|011)?[0-9 ().-]{0,20}(@host)?") {
        if let Ok(n) = normalize(&raw) {
            prop_assert_eq!(normalize(&n.to_string()), Ok(n.clone()));
            prop_assert!((8..=15).contains(&n.digits().len()));
            prop_assert!(!n.digits().starts_with('0'));
        }
    }

    #[test]
    fn normalisation_never_panics(raw in any::<String>()) {
        let _ = normalize(&raw);
        let _ = strip_plan_prefix(&raw);
        let _ = lrn::check_cli(Some(&raw));
    }

    /// Every E.164-shaped digit string is accepted as-is with '+' and with '00'.
    #[test]
    fn e164_forms_agree(d in "[1-9][0-9]{7,14}") {
        let plus = normalize(&format!("+{d}")).unwrap();
        let intl = normalize(&format!("00{d}")).unwrap();
        prop_assert_eq!(plus.digits(), d.as_str());
        prop_assert_eq!(intl.digits(), d.as_str());
    }

    /// NANP-shaped 10-digit numbers normalise like their +1 form, except
    /// the ones the numbering data knows as a valid international number
    /// that is not a valid NANP one (Suriname `5978123456`).
    #[test]
    fn nanp_national_equals_international(d in "[2-9][0-9]{2}[2-9][0-9]{6}") {
        let n = normalize(&d).unwrap();
        let valid = |s: String| phonenumber::parse(None, s).map(|p| phonenumber::is_valid(&p)).unwrap_or(false);
        if valid(format!("+{d}")) && !valid(format!("+1{d}")) {
            prop_assert_eq!(n.digits(), d.as_str());
        } else {
            prop_assert_eq!(&n, &normalize(&format!("+1{d}")).unwrap());
            prop_assert_eq!(n.nanp_tn10(), Some(d.as_str()));
        }
    }

    /// Adding a plan prefix and stripping it gives back the selector and the exact rest.
    #[test]
    fn prefix_stripping_round_trips(sel in selector(), rest in "[0-9+]{0,16}") {
        let dialed = format!("{}{}", sel.prefix(), rest);
        prop_assert_eq!(strip_plan_prefix(&dialed), (Some(sel), rest.as_str()));
        // Stripping then normalising equals normalising the bare number.
        prop_assert_eq!(normalize(strip_plan_prefix(&dialed).1), normalize(&rest));
    }

    /// Strings without a leading '*' carry no selector and are returned unchanged.
    #[test]
    fn no_prefix_no_selector(s in "[0-9+][0-9+*#]{0,16}") {
        prop_assert_eq!(strip_plan_prefix(&s), (None, s.as_str()));
    }
}
