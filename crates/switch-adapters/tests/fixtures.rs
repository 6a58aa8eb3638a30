//! Unit tests per format from the crate's own fixtures (written from the
//! vendors' documented field lists), with hand-computed expectations.

use cdr_model::event::{format_ts, EventKind, SwitchEvent};
use switch_adapters::{adapt, adapt_file, adapt_records, AdapterConfig, Format, LegRule};

fn fixture(name: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn cfg() -> AdapterConfig {
    AdapterConfig::new("sw-test")
}

fn one(format: Format, name: &str, cfg: &AdapterConfig) -> SwitchEvent {
    let mut v = adapt(format, &fixture(name), cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(v.len(), 1, "{name}: {v:?}");
    v.remove(0)
}

fn ts(ms: Option<i64>) -> String {
    ms.map(format_ts).unwrap_or_default()
}

fn billed_ms(e: &SwitchEvent) -> i64 {
    match (e.answer_ts_ms, e.end_ts_ms) {
        (Some(a), Some(z)) => z - a,
        _ => 0,
    }
}

const A_LEG: &str = "6f1c2a4e-1b7d-4c55-9a0e-2d3f4b5c6d7e";

#[test]
fn freeswitch_aleg_answered() {
    let e = one(
        Format::FreeswitchJson,
        "freeswitch_aleg_answered.json",
        &cfg(),
    );
    assert_eq!(e.kind, EventKind::Cdr);
    assert_eq!(e.call_id, A_LEG);
    assert_eq!(e.switch_id, "sw-test");
    assert_eq!(e.account_id, "acc-100");
    assert_eq!(e.cli.as_deref(), Some("12125550100"));
    assert_eq!(e.dialed.as_deref(), Some("442079460123"));
    assert_eq!(e.trunk_id.as_deref(), Some("carrier-a"));
    assert_eq!(e.source_ip.as_deref(), Some("203.0.113.10"));
    assert_eq!(ts(e.setup_ts_ms), "2025-11-18T10:00:00.123Z");
    // progress = earliest of progress and progress_media
    assert_eq!(ts(e.progress_ts_ms), "2025-11-18T10:00:01.000Z");
    assert_eq!(ts(e.answer_ts_ms), "2025-11-18T10:00:04.500Z");
    // billusec 61250001 µs → 61251 ms (rounded up), end = answer + that.
    assert_eq!(billed_ms(&e), 61_251);
    assert_eq!(ts(e.end_ts_ms), "2025-11-18T10:01:05.751Z");
    assert_eq!(e.ts_ms, e.end_ts_ms.unwrap());
    assert_eq!(e.sip_code, Some(200));
    assert_eq!(e.codec.as_deref(), Some("PCMA"));
    let m = e.media.unwrap();
    assert_eq!(
        (m.mos, m.loss_pct, m.rtp_rx_packets),
        (Some(4.32), Some(0.5), Some(3060))
    );
}

#[test]
fn freeswitch_bleg_follows_the_leg_rule() {
    let b = fixture("freeswitch_bleg_answered_encoded.json");
    // A-leg rule (default): the B-leg reports nothing.
    assert_eq!(adapt(Format::FreeswitchJson, &b, &cfg()).unwrap(), vec![]);
    // B-leg rule: the B-leg reports under the A-leg's uuid; its URL-encoded
    // values are decoded; the A-leg (which originated it) is skipped.
    let mut c = cfg();
    c.freeswitch.leg = LegRule::BLeg;
    // The B-leg carries no accountcode: the default account applies.
    c.accounts.default_account = Some("acc-b".into());
    let e = one(
        Format::FreeswitchJson,
        "freeswitch_bleg_answered_encoded.json",
        &c,
    );
    assert_eq!(e.call_id, A_LEG);
    assert_eq!(e.trunk_id.as_deref(), Some("carrier-a"));
    assert_eq!(e.dialed.as_deref(), Some("442079460123"));
    assert_eq!(billed_ms(&e), 61_251);
    assert_eq!(e.account_id, "acc-b");
    assert_eq!(
        adapt(
            Format::FreeswitchJson,
            &fixture("freeswitch_aleg_answered.json"),
            &c
        )
        .unwrap(),
        vec![]
    );
}

#[test]
fn freeswitch_originator_cancel_is_cancelled_not_answered() {
    let e = one(
        Format::FreeswitchJson,
        "freeswitch_aleg_cancelled.json",
        &cfg(),
    );
    assert_eq!(e.answer_ts_ms, None);
    assert_eq!(e.sip_code, Some(487));
    assert_eq!(ts(e.end_ts_ms), "2025-11-18T10:01:49.999Z");
    // No packets received: FreeSWITCH's 4.5 is not a MOS.
    assert_eq!(e.media.unwrap().mos, None);
}

#[test]
fn freeswitch_esl_events_and_hangup_complete_match_the_json_cdr() {
    let c = cfg();
    let create = one(Format::FreeswitchEsl, "freeswitch_esl_create.txt", &c);
    assert_eq!(create.kind, EventKind::Setup);
    assert_eq!(create.call_id, A_LEG);
    assert_eq!(ts(Some(create.ts_ms)), "2025-11-18T10:00:00.123Z");
    assert_eq!(create.dialed.as_deref(), Some("442079460123"));
    let answer = one(Format::FreeswitchEsl, "freeswitch_esl_answer.json", &c);
    assert_eq!(answer.kind, EventKind::Answer);
    assert_eq!(ts(Some(answer.ts_ms)), "2025-11-18T10:00:04.500Z");
    assert_eq!(answer.trunk_id.as_deref(), Some("carrier-a"));
    // The hangup-complete event is the JSON CDR's twin: same id, same content.
    let hc = one(
        Format::FreeswitchEsl,
        "freeswitch_esl_hangup_complete.txt",
        &c,
    );
    let json = one(Format::FreeswitchJson, "freeswitch_aleg_answered.json", &c);
    assert_eq!(hc, json);
    assert_ne!(create.event_id, answer.event_id);
    // The B-leg's events are skipped under the A-leg rule.
    assert_eq!(
        adapt(
            Format::FreeswitchEsl,
            &fixture("freeswitch_esl_bleg_answer.txt"),
            &c
        )
        .unwrap(),
        vec![]
    );
}

#[test]
fn opensips_cdr_jsonrpc_and_datagram_agree() {
    let j = one(Format::Opensips, "opensips_acc_cdr.json", &cfg());
    let d = one(Format::Opensips, "opensips_acc_cdr.datagram", &cfg());
    assert_eq!(j, d);
    assert_eq!(j.call_id, "8f3b2c1a-0d4e-4f5a-9b6c-7d8e9f0a1b2c@192.0.2.44");
    assert_eq!(j.account_id, "acc-200");
    assert_eq!(j.cli.as_deref(), Some("12125550100"));
    assert_eq!(j.dialed.as_deref(), Some("33142685300"));
    assert_eq!(j.trunk_id.as_deref(), Some("carrier-b"));
    assert_eq!(j.source_ip.as_deref(), Some("192.0.2.44"));
    assert_eq!(ts(j.setup_ts_ms), "2025-11-18T10:00:05.000Z");
    assert_eq!(ts(j.answer_ts_ms), "2025-11-18T10:00:12.000Z");
    assert_eq!(billed_ms(&j), 94_321);
    assert_eq!(j.sip_code, Some(200));
    let mc = one(Format::Opensips, "opensips_acc_mc.json", &cfg());
    assert_eq!((mc.answer_ts_ms, mc.sip_code), (None, Some(486)));
    assert_eq!(ts(mc.end_ts_ms), "2025-11-18T10:03:30.000Z");
}

#[test]
fn asterisk_csv_rows_and_billed_record() {
    let bytes = fixture("asterisk_master.csv");
    let rows: Vec<_> = adapt_records(Format::AsteriskCsv, &bytes, &cfg()).collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows.iter().map(|r| r.record).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(rows.iter().all(|r| r.result.is_ok()));
    // The dialplan-only row: ANSWERED with billsec 0 is answered (disposition
    // decides), but it is not the record that bills the call.
    let hangup_row = &rows[2].result.as_ref().unwrap()[0];
    assert_eq!(hangup_row.sip_code, Some(200));
    let out = adapt_file(Format::AsteriskCsv, &bytes, &cfg());
    assert_eq!(out.rejected, vec![]);
    assert_eq!(out.superseded, 2);
    assert_eq!(out.events.len(), 3);
    let call = &out.events[0];
    assert_eq!(call.call_id, "1763460300.10");
    assert_eq!(call.trunk_id.as_deref(), Some("carrier-c"));
    assert_eq!(call.cli.as_deref(), Some("12125550100"));
    assert_eq!(call.dialed.as_deref(), Some("4930123456"));
    assert_eq!(call.account_id, "acc-300");
    assert_eq!(ts(call.setup_ts_ms), "2025-11-18T10:05:00.000Z");
    // billsec 115 anchored at the end: answer 10:05:06.
    assert_eq!(ts(call.answer_ts_ms), "2025-11-18T10:05:06.000Z");
    assert_eq!(billed_ms(call), 115_000);
    assert_eq!(out.events[1].sip_code, Some(486));
    assert_eq!(out.events[2].sip_code, Some(503));
    assert_eq!(out.events[2].answer_ts_ms, None);
    // `adapt` applies the same selection.
    assert_eq!(
        adapt(Format::AsteriskCsv, &bytes, &cfg()).unwrap(),
        out.events
    );
}

#[test]
fn asterisk_custom_mapping_zone_and_subsecond_times() {
    let mut c = cfg();
    c.time_zone = "Europe/Berlin".parse().unwrap();
    c.asterisk.custom_columns = "clid,src,dst,dstchannel,start,answer,end,billsec,disposition,accountcode,uniqueid,linkedid,sequence,hangupcause"
        .split(',')
        .map(String::from)
        .collect();
    let out = adapt_file(Format::AsteriskCustom, &fixture("asterisk_custom.csv"), &c);
    assert_eq!(out.rejected, vec![]);
    assert_eq!(out.events.len(), 3);
    let [a, b, f] = &out.events[..] else {
        unreachable!()
    };
    // 11:10 in Berlin (UTC+1 in November) is 10:10Z.
    assert_eq!(ts(a.setup_ts_ms), "2025-11-18T10:10:00.000Z");
    assert_eq!(billed_ms(a), 60_000);
    assert_eq!(a.trunk_id.as_deref(), Some("carrier-e"));
    // Epochs with fractions: exact, billsec (29) not used.
    assert_eq!(ts(b.answer_ts_ms), "2025-11-18T10:11:43.750Z");
    assert_eq!(billed_ms(b), 29_250);
    // CONGESTION with hangupcause 34 → 503.
    assert_eq!((f.sip_code, f.answer_ts_ms), (Some(503), None));
    // Read as UTC the same rows land one hour later.
    let utc = adapt_file(Format::AsteriskCustom, &fixture("asterisk_custom.csv"), &{
        let mut u = c.clone();
        u.time_zone = Default::default();
        u
    });
    assert_eq!(
        utc.events[0].setup_ts_ms.unwrap() - a.setup_ts_ms.unwrap(),
        3_600_000
    );
}

#[test]
fn asterisk_ami_and_json() {
    let evs = adapt(Format::AsteriskAmi, &fixture("asterisk_ami.txt"), &cfg()).unwrap();
    assert_eq!(evs.len(), 2, "the PeerStatus event is ignored");
    assert_eq!(evs[0].call_id, "1763461200.30");
    assert_eq!(billed_ms(&evs[0]), 91_000);
    assert_eq!(evs[0].trunk_id.as_deref(), Some("carrier-f"));
    assert_eq!((evs[1].sip_code, evs[1].answer_ts_ms), (Some(480), None));
    let j = one(Format::AsteriskJson, "asterisk_cdr.json", &cfg());
    assert_eq!(j.dialed.as_deref(), Some("61290001234"));
    assert_eq!(billed_ms(&j), 6_000);
    assert_eq!(ts(j.answer_ts_ms), "2025-11-18T10:30:04.000Z");
}

#[test]
fn kamailio_template() {
    let a = one(Format::Kamailio, "kamailio_answered.json", &cfg());
    assert_eq!(a.call_id, "kx-5b1f2e3d@198.51.100.30");
    assert_eq!(ts(a.setup_ts_ms), "2025-11-18T10:33:20.100Z");
    assert_eq!(ts(a.progress_ts_ms), "2025-11-18T10:33:21.500Z");
    assert_eq!(billed_ms(&a), 124_999);
    assert_eq!(
        (a.trunk_id.as_deref(), a.account_id.as_str()),
        (Some("carrier-h"), "acc-400")
    );
    let f = one(Format::Kamailio, "kamailio_failed.json", &cfg());
    assert_eq!(
        (f.sip_code, f.answer_ts_ms, f.progress_ts_ms),
        (Some(487), None, None)
    );
}

#[test]
fn same_payload_same_event_id_and_different_records_differ() {
    let c = cfg();
    for (f, name) in [
        (Format::FreeswitchJson, "freeswitch_aleg_answered.json"),
        (Format::Opensips, "opensips_acc_cdr.json"),
        (Format::AsteriskJson, "asterisk_cdr.json"),
        (Format::Kamailio, "kamailio_answered.json"),
    ] {
        let b = fixture(name);
        assert_eq!(adapt(f, &b, &c).unwrap(), adapt(f, &b, &c).unwrap());
    }
    let rows: Vec<_> = adapt_records(Format::AsteriskCsv, &fixture("asterisk_master.csv"), &c)
        .flat_map(|r| r.result.unwrap())
        .collect();
    let mut ids: Vec<_> = rows.iter().map(|e| e.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rows.len());
}

#[test]
fn rejections_name_format_reason_and_field() {
    let c = cfg();
    let r = |f: Format, b: &[u8]| adapt(f, b, &c).unwrap_err();
    let full = fixture("freeswitch_aleg_answered.json");
    let e = r(Format::FreeswitchJson, &full[..full.len() / 2]);
    assert_eq!(
        (e.format(), e.reason()),
        (Format::FreeswitchJson, "malformed")
    );
    let e = r(Format::FreeswitchJson, &fixture("opensips_acc_cdr.json"));
    assert_eq!(e.reason(), "wrong_format");
    let e = r(Format::Opensips, &fixture("kamailio_answered.json"));
    assert_eq!(e.reason(), "wrong_format");
    let e = r(Format::Kamailio, &fixture("asterisk_cdr.json"));
    assert_eq!(e.reason(), "wrong_format");
    // Missing call id.
    let no_callid = String::from_utf8(fixture("opensips_acc_cdr.json"))
        .unwrap()
        .replace("\"callid\"", "\"call\"");
    let e = r(Format::Opensips, no_callid.as_bytes());
    assert_eq!((e.reason(), e.field()), ("missing_field", Some("callid")));
    // End before start.
    let backwards = String::from_utf8(fixture("kamailio_failed.json"))
        .unwrap()
        .replace("1763462212.000000", "1763462100.000000");
    let e = r(Format::Kamailio, backwards.as_bytes());
    assert_eq!(
        (e.reason(), e.field()),
        ("impossible_times", Some("end_ts"))
    );
    let e = r(
        Format::AsteriskJson,
        br#"{"uniqueid":"1.2","start":"2025-11-18 10:00:00","end":"2025-11-18 10:00:10","dst":"1","disposition":"MAYBE"}"#,
    );
    assert_eq!((e.reason(), e.field()), ("bad_value", Some("disposition")));
    let e = r(
        Format::AsteriskJson,
        br#"{"uniqueid":"1.2","start":"yesterday","end":"2025-11-18 10:00:10","dst":"1","disposition":"BUSY"}"#,
    );
    assert_eq!((e.reason(), e.field()), ("bad_value", Some("start")));
    // A FreeSWITCH leg whose billusec contradicts its own timetable.
    let corrupt = String::from_utf8(full.clone())
        .unwrap()
        .replace("\"61250001\"", "\"99250001\"");
    let e = r(Format::FreeswitchJson, corrupt.as_bytes());
    assert_eq!((e.reason(), e.field()), ("bad_value", Some("billusec")));
    // No account and pass-through off.
    let mut strict = cfg();
    strict.accounts.pass_through = false;
    let e = adapt(
        Format::Kamailio,
        &fixture("kamailio_answered.json"),
        &strict,
    )
    .unwrap_err();
    assert_eq!((e.reason(), e.field()), ("missing_field", Some("account")));
    assert!(e.to_string().starts_with("kamailio: "));
}

#[test]
fn bad_csv_rows_do_not_hide_good_ones() {
    let mut csv = String::from_utf8(fixture("asterisk_master.csv")).unwrap();
    csv.push_str("\"acc\",\"1\",\"2\",\"x\",\"y\",\"SIP/a-1\",\"\",\"Dial\",\"\",\"not a time\",,\"2025-11-18 10:00:00\",1,0,\"BUSY\",\"DOCUMENTATION\",\"9.9\",\"\",\"\",\"9.9\",99\n");
    csv.push_str("\"too\",\"few\"\n");
    let out = adapt_file(Format::AsteriskCsv, csv.as_bytes(), &cfg());
    assert_eq!(out.events.len(), 3);
    let bad: Vec<_> = out
        .rejected
        .iter()
        .map(|(n, e)| (*n, e.reason(), e.field().map(String::from)))
        .collect();
    assert_eq!(
        bad,
        vec![
            (6, "bad_value", Some("start".to_string())),
            (7, "wrong_format", None)
        ]
    );
    assert!(adapt(Format::AsteriskCsv, csv.as_bytes(), &cfg()).is_err());
}
