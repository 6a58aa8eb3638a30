//! Deck versions with row-level effect (issue 12): a row stays in force
//! until a later version's row for its key starts or the key is removed;
//! replace vs overlay; the notice rule at load time; what a diff reports.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ratedeck::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, d, 0, 0, 0).unwrap()
}

fn az(text: &str) -> Vec<DeckRow> {
    parse_deck("t", text, DeckKind::AZ(Plan::Standard), ImportMode::Strict)
        .unwrap_or_else(|e| panic!("{e}"))
        .rows
}

fn spec(id: &str, rows: Vec<DeckRow>, from: DateTime<Utc>, mode: DeckMode) -> VersionSpec {
    VersionSpec {
        deck_id: id.into(),
        target: DeckTarget::Az(Plan::Standard),
        rows,
        effective_from: from,
        effective_to: None,
        mode,
        // Announced well ahead: only the tests about notice care.
        notified_at: Some(from - Duration::days(30)),
    }
}

/// (rate, deck id, version) pricing `number` at `at`.
fn price(set: &DeckSet, number: &str, at: DateTime<Utc>) -> Option<(Decimal, String, u64)> {
    set.lookup(Scope::Az(Plan::Standard), number, at, ObrTier::RestOfWorld)
        .map(|m| (m.row.rate, m.deck_id.to_string(), m.version))
}

#[test]
fn a_dated_increase_keeps_the_previous_row_until_it_starts() {
    let mut set = DeckSet::new();
    let v1 = set.insert_version(spec(
        "de-2026-05",
        az("49;Germany;0.0500;1;1\n4930;Germany Berlin;0.0400;1;1\n49151;Germany Mobile;0.1000;1;1\n"),
        day(1),
        DeckMode::Replace,
    ));
    // One file: decrease 4930 now, increase 49151 on the 15th (start_date
    // is the sixth optional field).
    let v2 = set.insert_version(spec(
        "de-2026-06",
        az("49;Germany;0.0500;1;1\n\
            4930;Germany Berlin;0.0300;1;1\n\
            49151;Germany Mobile;0.2000;1;1;;;;;;2026-06-15\n"),
        day(8),
        DeckMode::Replace,
    ));
    assert_eq!(
        price(&set, "4930123", day(9)),
        Some((dec!(0.0300), "de-2026-06".into(), v2)),
        "the decrease applies at once"
    );
    assert_eq!(
        price(&set, "4915112345", day(9)),
        Some((dec!(0.1000), "de-2026-05".into(), v1)),
        "before its start the increase leaves the old 49151 row in force, not the shorter 49"
    );
    assert_eq!(
        price(&set, "4915112345", day(15)),
        Some((dec!(0.2000), "de-2026-06".into(), v2))
    );
    assert_eq!(
        price(&set, "4915112345", day(7)),
        Some((dec!(0.1000), "de-2026-05".into(), v1)),
        "before version 2 nothing changes"
    );
    let m = set
        .lookup(
            Scope::Az(Plan::Standard),
            "4915112345",
            day(16),
            ObrTier::Eea,
        )
        .unwrap();
    assert_eq!(m.row_effective_from, day(15), "the row's own start");
    let m = set
        .lookup(Scope::Az(Plan::Standard), "4930123", day(16), ObrTier::Eea)
        .unwrap();
    assert_eq!(
        m.row_effective_from,
        day(8),
        "undated row: its version's start"
    );
}

#[test]
fn replace_removes_what_it_does_not_list_and_overlay_keeps_it() {
    for (mode, berlin) in [
        (DeckMode::Replace, dec!(0.0500)),
        (DeckMode::Overlay, dec!(0.0400)),
    ] {
        let mut set = DeckSet::new();
        set.insert_version(spec(
            "full",
            az("49;Germany;0.0500;1;1\n4930;Germany Berlin;0.0400;1;1\n33;France;0.0200;1;1\n"),
            day(1),
            DeckMode::Replace,
        ));
        set.insert_version(spec(
            "fr-only",
            az("33;France;0.0100;1;1\n49;Germany;0.0500;1;1\n"),
            day(8),
            mode,
        ));
        assert_eq!(price(&set, "3312", day(9)).unwrap().0, dec!(0.0100));
        assert_eq!(
            price(&set, "493012", day(9)).unwrap().0,
            berlin,
            "{mode:?}: 4930 after a version that does not list it"
        );
        assert_eq!(price(&set, "493012", day(2)).unwrap().0, dec!(0.0400));
    }
    // An overlay that lists only France leaves Germany entirely in force.
    let mut set = DeckSet::new();
    set.insert_version(spec(
        "full",
        az("49;Germany;0.0500;1;1\n33;France;0.0200;1;1\n"),
        day(1),
        DeckMode::Replace,
    ));
    set.insert_version(spec(
        "fr",
        az("33;France;0.0100;1;1\n"),
        day(8),
        DeckMode::Overlay,
    ));
    assert_eq!(
        price(&set, "4912", day(9)),
        Some((dec!(0.0500), "full".into(), 1))
    );
}

#[test]
fn a_version_loaded_out_of_order_re_derives_the_later_ones() {
    let mut set = DeckSet::new();
    set.insert_version(spec(
        "june",
        az("33;France;0.0100;1;1\n"),
        day(10),
        DeckMode::Overlay,
    ));
    // Loaded second but in force first: the June overlay must now keep
    // its Germany row.
    set.insert_version(spec(
        "may",
        az("49;Germany;0.0500;1;1\n33;France;0.0200;1;1\n"),
        day(1),
        DeckMode::Replace,
    ));
    assert_eq!(price(&set, "4912", day(11)).unwrap().0, dec!(0.0500));
    assert_eq!(price(&set, "3312", day(11)).unwrap().0, dec!(0.0100));
    assert_eq!(price(&set, "3312", day(5)).unwrap().0, dec!(0.0200));
}

#[test]
fn short_notice_increases_are_flagged_or_refused_as_configured() {
    for action in [ShortNoticeAction::Flag, ShortNoticeAction::Refuse] {
        let mut set = DeckSet::new();
        set.set_notice_policy(NoticePolicy {
            period: Duration::days(7),
            action,
        });
        set.insert_version(spec(
            "v1",
            az("44;UK;0.0100;1;1\n33;France;0.0200;1;1\n49;Germany;0.0500;1;1\n"),
            day(1),
            DeckMode::Replace,
        ));
        let mut v2 = spec(
            "v2",
            // 44 up at once (3 days' notice), 33 up on the 20th (12 days),
            // 49 down at once, 4930 new and dearer than the 49 it shadows.
            az("44;UK;0.0200;1;1\n\
                33;France;0.0300;1;1;;;;;;2026-06-20\n\
                49;Germany;0.0400;1;1\n\
                4930;Germany Berlin;0.0900;1;1\n"),
            day(8),
            DeckMode::Replace,
        );
        v2.notified_at = Some(day(5));
        let v = set.insert_version(v2);
        let found: Vec<(String, bool)> = set
            .short_notice()
            .iter()
            .map(|f| (f.change.prefix.to_string(), f.refused))
            .collect();
        let refused = action == ShortNoticeAction::Refuse;
        assert_eq!(
            found,
            vec![("44".into(), refused), ("4930".into(), refused)],
            "{action:?}"
        );
        let uk = price(&set, "4420", day(9)).unwrap();
        let berlin = price(&set, "493012", day(9)).unwrap();
        if refused {
            assert_eq!(uk, (dec!(0.0100), "v1".into(), 1), "old UK rate stays");
            assert_eq!(berlin.0, dec!(0.0400), "4930 refused: the new 49 prices it");
            let kept: Vec<String> = set
                .versions(Scope::Az(Plan::Standard))
                .last()
                .unwrap()
                .refused_rows()
                .iter()
                .map(|r| r.prefix.to_string())
                .collect();
            assert_eq!(kept, vec!["44", "4930"]);
        } else {
            assert_eq!(uk, (dec!(0.0200), "v2".into(), v));
            assert_eq!(berlin.0, dec!(0.0900));
        }
        assert_eq!(price(&set, "3312", day(21)).unwrap().0, dec!(0.0300));
        assert_eq!(price(&set, "4912", day(9)).unwrap().0, dec!(0.0400));
    }
}

#[test]
fn diff_covers_every_price_term_and_prefix_shadowing() {
    let old = az("44;UK;0.0100;1;1\n\
                  33;France;0.0100;1;1\n\
                  34;Spain;0.0100;1;1\n\
                  39;Italy;0.0100;1;1\n\
                  49;Germany;0.0100;1;1\n\
                  4930;Germany Berlin;0.0050;1;1\n\
                  41;Switzerland;0.0100;60;60\n");
    let new = az("44;UK;0.0100;60;60\n\
                  33;France;0.0100;1;1;0.0100\n\
                  34;Spain;0.0100;1;1;;30\n\
                  39;Italy;0.0100;1;1;;;0.0500;6\n\
                  49;Germany;0.0100;1;1\n\
                  49151;Germany Mobile;0.0900;1;1\n\
                  41;Switzerland;0.0100;1;1\n");
    let now = day(1);
    let d = diff(&old, &new, default_notice(), now);
    let inc: Vec<(String, Vec<String>, Option<String>)> = d
        .increased
        .iter()
        .map(|c| {
            (
                c.prefix.to_string(),
                c.terms.clone(),
                c.via_prefix.map(|p| p.to_string()),
            )
        })
        .collect();
    assert_eq!(
        inc,
        vec![
            (
                "33".into(),
                vec!["connection_fee 0 -> 0.0100".to_string()],
                None
            ),
            (
                "34".into(),
                vec!["min_billed_seconds 0 -> 30".to_string()],
                None
            ),
            (
                "39".into(),
                vec!["short_surcharge 0 (<0 s) -> 0.0500 (<6 s)".to_string()],
                None
            ),
            (
                "44".into(),
                vec!["increment 1/1 -> 60/60".to_string()],
                None
            ),
            // Removed: Berlin now falls to the dearer 49 row.
            (
                "4930".into(),
                vec!["rate 0.0050 -> 0.0100".to_string()],
                Some("49".into())
            ),
            // Added and dearer than the 49 row that priced it.
            (
                "49151".into(),
                vec!["rate 0.0100 -> 0.0900".to_string()],
                Some("49".into())
            ),
        ]
    );
    assert!(d.increased.iter().all(|c| c.short_notice));
    let dec_: Vec<String> = d.decreased.iter().map(|c| c.prefix.to_string()).collect();
    assert_eq!(dec_, vec!["41"], "a shorter increment is a decrease");
    assert_eq!(d.unchanged, 1);
    assert_eq!(d.added.len(), 1);
    assert_eq!(d.removed.len(), 1);
}

#[test]
fn start_date_column_is_validated() {
    let bad = parse_deck(
        "t",
        "44;UK;0.01;1;1;;;;;2026-06-01;2026-06-05\n",
        DeckKind::AZ(Plan::Standard),
        ImportMode::Lenient,
    )
    .unwrap();
    assert!(bad.rows.is_empty());
    assert_eq!(bad.rejected[0].field, "end_date");
    let bad = parse_deck(
        "t",
        "44;UK;0.01;1;1;;;;;;June\n",
        DeckKind::AZ(Plan::Standard),
        ImportMode::Lenient,
    )
    .unwrap();
    assert_eq!(bad.rejected[0].field, "start_date");
}
