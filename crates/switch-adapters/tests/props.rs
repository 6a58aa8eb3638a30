//! Properties: no input makes an adapter panic (arbitrary bytes, mutated
//! fixtures), and the order and duplication of legs and records never change
//! the resulting call.

use std::collections::BTreeMap;

use cdr_model::event::{EventKind, SwitchEvent};
use proptest::prelude::*;
use switch_adapters::{adapt, adapt_file, AdapterConfig, Format, LegRule};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const FIXTURES: &[(Format, &str)] = &[
    (Format::FreeswitchJson, "freeswitch_aleg_answered.json"),
    (
        Format::FreeswitchJson,
        "freeswitch_bleg_answered_encoded.json",
    ),
    (Format::FreeswitchJson, "freeswitch_aleg_cancelled.json"),
    (Format::FreeswitchEsl, "freeswitch_esl_create.txt"),
    (Format::FreeswitchEsl, "freeswitch_esl_answer.json"),
    (Format::FreeswitchEsl, "freeswitch_esl_hangup_complete.txt"),
    (Format::Opensips, "opensips_acc_cdr.json"),
    (Format::Opensips, "opensips_acc_cdr.datagram"),
    (Format::AsteriskCsv, "asterisk_master.csv"),
    (Format::AsteriskCustom, "asterisk_custom.csv"),
    (Format::AsteriskAmi, "asterisk_ami.txt"),
    (Format::AsteriskJson, "asterisk_cdr.json"),
    (Format::Kamailio, "kamailio_answered.json"),
    (Format::Kamailio, "kamailio_failed.json"),
];

fn cfg() -> AdapterConfig {
    let mut c = AdapterConfig::new("sw-prop");
    c.accounts.default_account = Some("acc".into());
    c
}

/// Whatever an adapter returns must be a valid contract event.
fn check_output(r: Result<Vec<SwitchEvent>, switch_adapters::AdaptError>) {
    match r {
        Ok(evs) => {
            for e in evs {
                let json = serde_json::to_vec(&e).unwrap();
                let back: SwitchEvent = serde_json::from_slice(&json).unwrap();
                assert_eq!(back.event_id, e.event_id);
                assert!(!e.call_id.is_empty() && !e.event_id.is_empty());
            }
        }
        Err(e) => {
            // Every rejection names its format and a stable reason.
            assert!(!e.reason().is_empty());
            assert!(e.to_string().starts_with(e.format().as_str()));
        }
    }
}

/// The call the assembler would hold: distinct events by event id.
fn call_set(events: &[SwitchEvent]) -> BTreeMap<String, String> {
    events
        .iter()
        .map(|e| (e.event_id.clone(), serde_json::to_string(e).unwrap()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let c = cfg();
        for f in Format::ALL {
            check_output(adapt(f, &bytes, &c));
            let _ = adapt_file(f, &bytes, &c);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "[ -~\n:{}\\[\\],\"%]{0,400}") {
        let c = cfg();
        for f in Format::ALL {
            check_output(adapt(f, s.as_bytes(), &c));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (f, name) = FIXTURES[which];
        let mut b = fixture(name);
        for (at, byte, op) in edits {
            if b.is_empty() { break; }
            let i = at.index(b.len());
            match op {
                0 => b[i] = byte,
                1 => { b.remove(i); }
                _ => b.insert(i, byte),
            }
        }
        let c = cfg();
        check_output(adapt(f, &b, &c));
        let n = cut.index(b.len() + 1);
        check_output(adapt(f, &b[..n], &c));
        // Every adapter also gets the others' payloads.
        for g in Format::ALL {
            check_output(adapt(g, &b, &c));
        }
    }

    /// FreeSWITCH: the two leg documents, the leg's event-socket events and
    /// the JSON CDR's CHANNEL_HANGUP_COMPLETE twin, in any order, any number
    /// of times, through either transport, give the same call: the same set
    /// of distinct events, all under one call id, with exactly one `cdr`.
    #[test]
    fn freeswitch_leg_and_record_order_never_change_the_call(
        picks in proptest::collection::vec(0usize..6, 1..20),
        b_rule in any::<bool>(),
    ) {
        let mut c = cfg();
        if b_rule { c.freeswitch.leg = LegRule::BLeg; }
        let inputs = [
            (Format::FreeswitchJson, "freeswitch_aleg_answered.json"),
            (Format::FreeswitchJson, "freeswitch_bleg_answered_encoded.json"),
            (Format::FreeswitchEsl, "freeswitch_esl_create.txt"),
            (Format::FreeswitchEsl, "freeswitch_esl_answer.json"),
            (Format::FreeswitchEsl, "freeswitch_esl_hangup_complete.txt"),
            (Format::FreeswitchEsl, "freeswitch_esl_bleg_answer.txt"),
        ];
        let all: Vec<SwitchEvent> = inputs
            .iter()
            .flat_map(|(f, n)| adapt(*f, &fixture(n), &c).unwrap())
            .collect();
        let mut got = Vec::new();
        for p in &picks {
            let (f, n) = inputs[*p];
            got.extend(adapt(f, &fixture(n), &c).unwrap());
        }
        let want = call_set(&all);
        let have = call_set(&got);
        // Whatever arrived is a subset of the call, never a contradiction.
        for (id, ev) in &have {
            prop_assert_eq!(want.get(id), Some(ev));
        }
        let ids: std::collections::BTreeSet<_> = got.iter().map(|e| e.call_id.clone()).collect();
        prop_assert!(ids.len() <= 1, "one call id for every leg: {:?}", ids);
        let cdrs: std::collections::BTreeSet<_> = got
            .iter()
            .filter(|e| e.kind == EventKind::Cdr)
            .map(|e| e.event_id.clone())
            .collect();
        prop_assert!(cdrs.len() <= 1, "at most one distinct cdr per call");
        // And with every input present at least once, the whole call.
        let mut every = picks.clone();
        every.extend(0..inputs.len());
        let mut full = Vec::new();
        for p in every.iter().rev() {
            let (f, n) = inputs[*p];
            full.extend(adapt(f, &fixture(n), &c).unwrap());
        }
        prop_assert_eq!(call_set(&full), want);
    }

    /// Asterisk: the rows of a file in any order, duplicated, give the same
    /// billed record per call.
    #[test]
    fn asterisk_row_order_and_duplication_never_change_the_calls(
        order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0usize..5, 0..6),
    ) {
        let text = String::from_utf8(fixture("asterisk_master.csv")).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        let mut shuffled: Vec<&str> = order.iter().map(|i| rows[*i]).collect();
        shuffled.extend(dups.iter().map(|i| rows[*i]));
        let body = shuffled.join("\n");
        let c = cfg();
        let base = adapt_file(Format::AsteriskCsv, text.as_bytes(), &c);
        let got = adapt_file(Format::AsteriskCsv, body.as_bytes(), &c);
        prop_assert_eq!(call_set(&got.events), call_set(&base.events));
    }

    /// OpenSIPS and Kamailio: the same record re-sent (or through the other
    /// OpenSIPS transport) is the same event.
    #[test]
    fn resent_records_are_the_same_event(picks in proptest::collection::vec(0usize..4, 1..12)) {
        let inputs = [
            (Format::Opensips, "opensips_acc_cdr.json"),
            (Format::Opensips, "opensips_acc_cdr.datagram"),
            (Format::Kamailio, "kamailio_answered.json"),
            (Format::Kamailio, "kamailio_failed.json"),
        ];
        let c = cfg();
        let mut got = Vec::new();
        for p in &picks {
            let (f, n) = inputs[*p];
            got.extend(adapt(f, &fixture(n), &c).unwrap());
        }
        let distinct = call_set(&got);
        let wanted: std::collections::BTreeSet<usize> =
            picks.iter().map(|p| if *p < 2 { 0 } else { *p }).collect();
        prop_assert_eq!(distinct.len(), wanted.len());
    }
}
