//! Real switch payloads, checked when `../shared/switch-samples/` (beside the
//! workspace) exists: every file goes through its adapter and the facts are
//! compared with values read off the files by hand (call id, CLI, dialed
//! number, UTC times, billable milliseconds, SIP code, codec, MOS). The
//! payloads are not copied into the project; without the directory the test
//! says so and passes.

use std::path::PathBuf;

use cdr_model::event::{format_ts, SwitchEvent};
use switch_adapters::{adapt, adapt_file, AdapterConfig, Format, LegRule};

fn samples_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/switch-samples");
    d.is_dir().then_some(d)
}

fn cfg(tz: &str) -> AdapterConfig {
    let mut c = AdapterConfig::new("sw-sample");
    c.time_zone = tz.parse().unwrap();
    // Some samples carry no account code at all.
    c.accounts.default_account = Some("sample".into());
    c
}

/// The facts of one call as a tuple that reads like the file.
#[derive(Debug, PartialEq)]
struct Facts {
    call_id: String,
    cli: Option<String>,
    dialed: Option<String>,
    setup: String,
    answer: Option<String>,
    end: String,
    billed_ms: i64,
    sip: Option<i32>,
    codec: Option<String>,
    mos: Option<f64>,
}

fn facts(e: &SwitchEvent) -> Facts {
    Facts {
        call_id: e.call_id.clone(),
        cli: e.cli.clone(),
        dialed: e.dialed.clone(),
        setup: format_ts(e.setup_ts_ms.unwrap()),
        answer: e.answer_ts_ms.map(format_ts),
        end: format_ts(e.end_ts_ms.unwrap()),
        billed_ms: match (e.answer_ts_ms, e.end_ts_ms) {
            (Some(a), Some(z)) => z - a,
            _ => 0,
        },
        sip: e.sip_code,
        codec: e.codec.clone(),
        mos: e.media.as_ref().and_then(|m| m.mos),
    }
}

#[allow(clippy::too_many_arguments)]
fn f(
    call_id: &str,
    cli: Option<&str>,
    dialed: &str,
    setup: &str,
    answer: Option<&str>,
    end: &str,
    billed_ms: i64,
    sip: i32,
    codec: Option<&str>,
    mos: Option<f64>,
) -> Facts {
    Facts {
        call_id: call_id.into(),
        cli: cli.map(String::from),
        dialed: Some(dialed.into()),
        setup: setup.into(),
        answer: answer.map(String::from),
        end: end.into(),
        billed_ms,
        sip: Some(sip),
        codec: codec.map(String::from),
        mos,
    }
}

fn run(dir: &std::path::Path, format: Format, name: &str, c: &AdapterConfig) -> Vec<SwitchEvent> {
    let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let out = adapt_file(format, &bytes, c);
    assert_eq!(out.rejected, vec![], "{name}");
    out.events
}

#[test]
fn every_real_sample_becomes_the_right_call() {
    let Some(dir) = samples_dir() else {
        eprintln!(
            "SKIPPED: no ../shared/switch-samples/ beside the workspace; the real-payload checks did not run"
        );
        return;
    };
    let mut seen = 0;
    let utc = cfg("UTC");

    // mod_json_cdr, answered, with callStats (A-leg, 2018): billmsec 67540.
    let e = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_answered.json",
        &utc,
    );
    assert_eq!(
        e.iter().map(facts).collect::<Vec<_>>(),
        vec![f(
            "3da8bf84-c133-4959-9e24-e72875cb33a1",
            Some("1001"),
            "1002",
            "2018-01-11T10:25:44.534Z",
            Some("2018-01-11T10:25:47.954Z"),
            "2018-01-11T10:26:55.494Z",
            67_540,
            200,
            Some("PCMU"),
            Some(4.5),
        )]
    );
    assert_eq!(e[0].media.as_ref().unwrap().rtp_rx_packets, Some(3329));
    seen += 1;

    // The 2015 layout (two `callflow` keys): billusec 65039704 → 65040 ms.
    let json2015 = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_answered_2015.json",
        &utc,
    );
    let expected_2015 = f(
        "e3133bf7-dcde-4daf-9663-9a79ffcef5ad",
        Some("1001"),
        "1003",
        "2015-07-07T14:52:08.471Z",
        Some("2015-07-07T14:52:08.971Z"),
        "2015-07-07T14:53:14.011Z",
        65_040,
        200,
        Some("SPEEX"),
        Some(4.5),
    );
    assert_eq!(
        json2015.iter().map(facts).collect::<Vec<_>>(),
        vec![expected_2015]
    );
    assert_eq!(json2015[0].account_id, "1001");
    seen += 1;

    // Its CHANNEL_HANGUP_COMPLETE (event-plain, URL-encoded) is the same
    // event: same id, same content, so the pair bills once.
    let esl = run(
        &dir,
        Format::FreeswitchEsl,
        "freeswitch_esl_plain_channel_hangup_complete_2015.txt",
        &utc,
    );
    assert_eq!(esl, json2015);
    seen += 1;

    // Cancelled call: A-leg (ORIGINATOR_CANCEL, hangup_cause_q850 16, never
    // answered) reports a cancelled call (487); its B-leg reports nothing
    // under the default A-leg rule.
    let a = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_cancelled_aleg.json",
        &utc,
    );
    assert_eq!(
        a.iter().map(facts).collect::<Vec<_>>(),
        vec![f(
            "51156b0b-f91b-4fd3-9c8f-15226f6098be",
            Some("1001"),
            "1003",
            "2025-11-12T04:51:42.707Z",
            None,
            "2025-11-12T04:51:56.247Z",
            0,
            487,
            Some("PCMA"),
            None,
        )]
    );
    assert_eq!(
        a[0].progress_ts_ms.map(format_ts).as_deref(),
        Some("2025-11-12T04:51:52.727Z")
    );
    seen += 1;
    let b = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_cancelled_bleg.json",
        &utc,
    );
    assert_eq!(b, vec![]);
    // Under the B-leg rule the B-leg reports the same call (the A-leg's uuid,
    // from `originator`), cancelled, and the A-leg (which originated it) is
    // skipped: still one CDR for the call.
    let mut brule = utc.clone();
    brule.freeswitch.leg = LegRule::BLeg;
    let bb = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_cancelled_bleg.json",
        &brule,
    );
    assert_eq!(bb.len(), 1);
    assert_eq!(bb[0].call_id, a[0].call_id);
    assert_eq!((bb[0].sip_code, bb[0].answer_ts_ms), (Some(487), None));
    let ab = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_cancelled_aleg.json",
        &brule,
    );
    assert_eq!(ab, vec![]);
    seen += 1;

    // An `originate`d leg through gateway `sipptester`: the CLI is the
    // origination caller id; billusec 6740023 → 6741 ms; no RTP received, so
    // FreeSWITCH's MOS 4.5 is not reported.
    let o = run(
        &dir,
        Format::FreeswitchJson,
        "freeswitch_json_cdr_originate_answered.json",
        &utc,
    );
    assert_eq!(
        o.iter().map(facts).collect::<Vec<_>>(),
        vec![f(
            "16c22a18-eccc-4974-adf9-44d2b6152838",
            Some("9111110001"),
            "3868158407",
            "2025-11-12T07:33:58.915Z",
            Some("2025-11-12T07:33:58.915Z"),
            "2025-11-12T07:34:05.656Z",
            6_741,
            200,
            Some("PCMU"),
            None,
        )]
    );
    assert_eq!(o[0].trunk_id.as_deref(), Some("sipptester"));
    seen += 1;

    // OpenSIPS E_ACC_CDR over event_datagram: created 1405347928, setuptime
    // 2, duration 6 (no ms_duration) → 6000 ms; dialed/account from the
    // script's cgr_* extras.
    let os = run(
        &dir,
        Format::Opensips,
        "opensips_e_acc_cdr_event_datagram.txt",
        &utc,
    );
    assert_eq!(
        os.iter().map(facts).collect::<Vec<_>>(),
        vec![f(
            "MTlhYmU5MTVkM2FlY2NmOTRjZWIwNzg0ZjNjM2UwYzc.",
            None,
            "dan",
            "2014-07-14T14:25:28.000Z",
            Some("2014-07-14T14:25:30.000Z"),
            "2014-07-14T14:25:36.000Z",
            6_000,
            200,
            None,
            None,
        )]
    );
    assert_eq!(os[0].account_id, "dan");
    seen += 1;

    // Asterisk cdr_csv (UTC): 8 rows, 5 calls. Call 1706369600.6 has two
    // forked NO ANSWER Dial rows and a dialplan-only "ANSWERED" Hangup row
    // with billsec 0: the call is no-answer (480), not answered. Call
    // 1706413165.93: SIP/301 answered (billsec 43) while the parallel
    // stadionpbx leg did not.
    let bytes = std::fs::read(dir.join("asterisk_cdr_csv_master_utc.csv")).unwrap();
    let out = adapt_file(Format::AsteriskCsv, &bytes, &utc);
    assert_eq!((out.rejected.len(), out.superseded), (0, 3));
    let ast = |id: &str,
               dialed: &str,
               s: &str,
               a: Option<&str>,
               e: &str,
               ms: i64,
               sip: i32,
               cli: &str| { f(id, Some(cli), dialed, s, a, e, ms, sip, None, None) };
    let n = "89245555937";
    assert_eq!(
        out.events.iter().map(facts).collect::<Vec<_>>(),
        vec![
            ast(
                "1706368044.0",
                "211474",
                "2024-01-27T15:07:24.000Z",
                Some("2024-01-27T15:07:24.000Z"),
                "2024-01-27T15:07:51.000Z",
                27_000,
                200,
                n
            ),
            ast(
                "1706369278.2",
                "211474",
                "2024-01-27T15:27:58.000Z",
                Some("2024-01-27T15:27:58.000Z"),
                "2024-01-27T15:28:25.000Z",
                27_000,
                200,
                n
            ),
            // billsec 10 while the whole-second strings differ by 11: billsec
            // wins, anchored at the end.
            ast(
                "1706369476.4",
                "211474",
                "2024-01-27T15:31:16.000Z",
                Some("2024-01-27T15:31:17.000Z"),
                "2024-01-27T15:31:27.000Z",
                10_000,
                200,
                n
            ),
            ast(
                "1706369600.6",
                "211553",
                "2024-01-27T15:33:20.000Z",
                None,
                "2024-01-27T15:34:20.000Z",
                0,
                480,
                n
            ),
            ast(
                "1706413165.93",
                "211474",
                "2024-01-28T03:39:25.000Z",
                Some("2024-01-28T03:39:30.000Z"),
                "2024-01-28T03:40:13.000Z",
                43_000,
                200,
                "89085951008"
            ),
        ]
    );
    assert_eq!(out.events[4].trunk_id.as_deref(), Some("301"));
    // The uniqueid is the epoch of the call's start: a cross-check of the zone.
    for e in &out.events {
        let secs: i64 = e.call_id.split('.').next().unwrap().parse().unwrap();
        assert_eq!(e.setup_ts_ms.unwrap() / 1000, secs, "{}", e.call_id);
    }
    seen += 1;

    // Asterisk cdr_custom, stock mapping, server clock UTC+3: 01:51:32 local
    // is 22:51:32Z the day before (uniqueid 1690325492 agrees).
    let plus3 = cfg("+03:00");
    let cu = run(
        &dir,
        Format::AsteriskCustom,
        "asterisk_cdr_custom_master_utc+3.csv",
        &plus3,
    );
    assert_eq!(
        cu.iter().map(facts).collect::<Vec<_>>(),
        vec![
            f(
                "1690325492.2",
                Some("client1"),
                "6789",
                "2023-07-25T22:51:32.000Z",
                Some("2023-07-25T22:51:51.000Z"),
                "2023-07-25T22:52:04.000Z",
                13_000,
                200,
                None,
                None
            ),
            f(
                "1690325531.5",
                Some("client2"),
                "1234",
                "2023-07-25T22:52:11.000Z",
                None,
                "2023-07-25T22:52:42.000Z",
                0,
                480,
                None,
                None
            ),
        ]
    );
    for e in &cu {
        let secs: i64 = e.call_id.split('.').next().unwrap().parse().unwrap();
        assert_eq!(e.setup_ts_ms.unwrap() / 1000, secs);
    }
    seen += 1;

    // Every file in the directory was checked above.
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "README.md")
        .count();
    assert_eq!(files, seen, "a sample file has no check");
    eprintln!("checked {seen} real switch samples in {}", dir.display());
}

#[test]
fn samples_survive_truncation_without_panicking() {
    let Some(dir) = samples_dir() else {
        eprintln!("SKIPPED: no ../shared/switch-samples/");
        return;
    };
    let c = cfg("UTC");
    for entry in std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()) {
        let bytes = std::fs::read(entry.path()).unwrap();
        for cut in (0..bytes.len()).step_by(97) {
            for f in Format::ALL {
                let _ = adapt(f, &bytes[..cut], &c);
            }
        }
    }
}
