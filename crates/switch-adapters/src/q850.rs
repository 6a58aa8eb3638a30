//! The one table of hangup causes: every cause FreeSWITCH documents (its
//! `switch_call_cause_t`, a superset of the ITU-T Q.850 causes Asterisk and
//! the SIP proxies report), its Q.850 number as FreeSWITCH reports it in
//! `hangup_cause_q850`, and the SIP final response it stands for
//! (FreeSWITCH's mod_sofia `hangup_cause_to_sip`, which follows RFC 3398
//! §8.2.6.1; causes it does not list map to its default, 480).
//!
//! Adapters use it only for calls that were not answered and carry no SIP
//! status of their own: the SIP code then decides the disposition in the
//! assembler (486/600 busy, 408/480 no answer, 487 cancelled, else failed).

/// One hangup cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    /// FreeSWITCH's name (`hangup_cause`).
    pub name: &'static str,
    /// FreeSWITCH's numeric cause; equal to the Q.850 cause up to 127.
    pub code: u16,
    /// What FreeSWITCH reports as `hangup_cause_q850`: the cause up to 127
    /// (INTERWORKING), NORMAL_CLEARING (16) for its own causes above.
    pub q850: u16,
    /// The SIP final response for an unanswered call with this cause.
    pub sip: u16,
}

const fn c(name: &'static str, code: u16, sip: u16) -> Cause {
    Cause {
        name,
        code,
        q850: if code <= 127 { code } else { 16 },
        sip,
    }
}

/// Every cause, in FreeSWITCH's order.
pub const CAUSES: &[Cause] = &[
    c("NONE", 0, 480),
    c("UNALLOCATED_NUMBER", 1, 404),
    c("NO_ROUTE_TRANSIT_NET", 2, 404),
    c("NO_ROUTE_DESTINATION", 3, 404),
    c("CHANNEL_UNACCEPTABLE", 6, 480),
    c("CALL_AWARDED_DELIVERED", 7, 480),
    // An unanswered leg cleared normally (caller gave up before any
    // response): FreeSWITCH answers the INVITE with its default, 480.
    c("NORMAL_CLEARING", 16, 480),
    c("USER_BUSY", 17, 486),
    c("NO_USER_RESPONSE", 18, 408),
    c("NO_ANSWER", 19, 480),
    c("SUBSCRIBER_ABSENT", 20, 480),
    c("CALL_REJECTED", 21, 603),
    c("NUMBER_CHANGED", 22, 410),
    c("REDIRECTION_TO_NEW_DESTINATION", 23, 410),
    c("EXCHANGE_ROUTING_ERROR", 25, 483),
    c("DESTINATION_OUT_OF_ORDER", 27, 502),
    c("INVALID_NUMBER_FORMAT", 28, 484),
    c("FACILITY_REJECTED", 29, 501),
    c("RESPONSE_TO_STATUS_ENQUIRY", 30, 480),
    c("NORMAL_UNSPECIFIED", 31, 480),
    c("NORMAL_CIRCUIT_CONGESTION", 34, 503),
    c("NETWORK_OUT_OF_ORDER", 38, 503),
    c("NORMAL_TEMPORARY_FAILURE", 41, 503),
    c("SWITCH_CONGESTION", 42, 503),
    c("ACCESS_INFO_DISCARDED", 43, 480),
    c("REQUESTED_CHAN_UNAVAIL", 44, 503),
    c("PRE_EMPTED", 45, 480),
    c("FACILITY_NOT_SUBSCRIBED", 50, 480),
    c("OUTGOING_CALL_BARRED", 52, 403),
    c("INCOMING_CALL_BARRED", 54, 403),
    c("BEARERCAPABILITY_NOTAUTH", 57, 403),
    c("BEARERCAPABILITY_NOTAVAIL", 58, 503),
    c("SERVICE_UNAVAILABLE", 63, 480),
    c("BEARERCAPABILITY_NOTIMPL", 65, 488),
    c("CHAN_NOT_IMPLEMENTED", 66, 480),
    c("FACILITY_NOT_IMPLEMENTED", 69, 501),
    c("SERVICE_NOT_IMPLEMENTED", 79, 501),
    c("INVALID_CALL_REFERENCE", 81, 480),
    c("INCOMPATIBLE_DESTINATION", 88, 488),
    c("INVALID_MSG_UNSPECIFIED", 95, 480),
    c("MANDATORY_IE_MISSING", 96, 480),
    c("MESSAGE_TYPE_NONEXIST", 97, 480),
    c("WRONG_MESSAGE", 98, 480),
    c("IE_NONEXIST", 99, 480),
    c("INVALID_IE_CONTENTS", 100, 480),
    c("WRONG_CALL_STATE", 101, 480),
    c("RECOVERY_ON_TIMER_EXPIRE", 102, 504),
    c("MANDATORY_IE_LENGTH_ERROR", 103, 480),
    c("PROTOCOL_ERROR", 111, 480),
    c("INTERWORKING", 127, 480),
    c("SUCCESS", 142, 480),
    // The caller cancelled (SIP CANCEL) before answer. FreeSWITCH reports
    // hangup_cause_q850 = 16 for it: the Q.850 number alone would read as a
    // normal clearing, which is why the name wins over the number.
    c("ORIGINATOR_CANCEL", 487, 487),
    c("CRASH", 700, 480),
    c("SYSTEM_SHUTDOWN", 701, 480),
    c("LOSE_RACE", 702, 480),
    c("MANAGER_REQUEST", 703, 480),
    c("BLIND_TRANSFER", 800, 480),
    c("ATTENDED_TRANSFER", 801, 480),
    c("ALLOTTED_TIMEOUT", 802, 480),
    c("USER_CHALLENGE", 803, 480),
    c("MEDIA_TIMEOUT", 804, 480),
    c("PICKED_OFF", 805, 480),
    c("USER_NOT_REGISTERED", 806, 480),
    c("PROGRESS_TIMEOUT", 807, 480),
    c("INVALID_GATEWAY", 808, 484),
    c("GATEWAY_DOWN", 809, 503),
    c("INVALID_URL", 810, 484),
    c("INVALID_PROFILE", 811, 502),
    c("NO_PICKUP", 812, 480),
    c("SRTP_READ_ERROR", 813, 480),
    c("BOWOUT", 814, 480),
    // STIR/SHAKEN and RFC 8688 causes (FreeSWITCH 1.10.6+), mapped to the
    // SIP responses they were introduced for.
    c("BUSY_EVERYWHERE", 815, 600),
    c("DECLINE", 816, 603),
    c("DOES_NOT_EXIST_ANYWHERE", 817, 604),
    c("NOT_ACCEPTABLE", 818, 606),
    c("UNWANTED", 819, 607),
    c("NO_IDENTITY", 820, 428),
    c("BAD_IDENTITY_INFO", 821, 429),
    c("UNSUPPORTED_CERTIFICATE", 822, 437),
    c("INVALID_IDENTITY", 823, 438),
    c("STALE_DATE", 824, 403),
    c("REJECT_ALL", 825, 603),
];

/// A cause by FreeSWITCH name (case-insensitive).
pub fn by_name(name: &str) -> Option<&'static Cause> {
    let n = name.trim();
    CAUSES.iter().find(|c| c.name.eq_ignore_ascii_case(n))
}

/// A cause by its Q.850 number (1..=127; FreeSWITCH's own causes above 127
/// have no Q.850 number of their own).
pub fn by_q850(code: u16) -> Option<&'static Cause> {
    (code <= 127)
        .then(|| CAUSES.iter().find(|c| c.code == code))
        .flatten()
}

/// The assembler's disposition for an unanswered call's final SIP code,
/// restated here so tests and documentation can show what a cause becomes.
pub fn unanswered_disposition(sip: u16) -> &'static str {
    match sip {
        486 | 600 => "busy",
        408 | 480 => "no_answer",
        487 => "cancelled",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_is_consistent() {
        let mut names = HashSet::new();
        let mut codes = HashSet::new();
        for c in CAUSES {
            assert!(names.insert(c.name), "duplicate name {}", c.name);
            assert!(codes.insert(c.code), "duplicate code {}", c.code);
            assert!(
                c.sip == 200 || (300..700).contains(&c.sip),
                "{} -> {} is not a final SIP failure",
                c.name,
                c.sip
            );
            assert_eq!(by_name(c.name), Some(c));
            assert_eq!(by_name(&c.name.to_lowercase()), Some(c));
            if c.code <= 127 {
                assert_eq!(c.q850, c.code);
                assert_eq!(by_q850(c.code), Some(c));
            } else {
                // FreeSWITCH reports its own causes as Q.850 16.
                assert_eq!(c.q850, 16);
                assert_eq!(by_q850(c.code), None);
            }
        }
        assert_eq!(CAUSES.len(), 82);
    }

    #[test]
    fn documented_mappings() {
        let sip = |n: &str| by_name(n).unwrap().sip;
        let q = |n: &str| by_name(n).unwrap().q850;
        for (name, q850, code, disp) in [
            ("UNALLOCATED_NUMBER", 1, 404, "failed"),
            ("NO_ROUTE_DESTINATION", 3, 404, "failed"),
            ("NORMAL_CLEARING", 16, 480, "no_answer"),
            ("USER_BUSY", 17, 486, "busy"),
            ("NO_USER_RESPONSE", 18, 408, "no_answer"),
            ("NO_ANSWER", 19, 480, "no_answer"),
            ("CALL_REJECTED", 21, 603, "failed"),
            ("NUMBER_CHANGED", 22, 410, "failed"),
            ("DESTINATION_OUT_OF_ORDER", 27, 502, "failed"),
            ("INVALID_NUMBER_FORMAT", 28, 484, "failed"),
            ("NORMAL_CIRCUIT_CONGESTION", 34, 503, "failed"),
            ("NORMAL_TEMPORARY_FAILURE", 41, 503, "failed"),
            ("SWITCH_CONGESTION", 42, 503, "failed"),
            ("RECOVERY_ON_TIMER_EXPIRE", 102, 504, "failed"),
            ("ORIGINATOR_CANCEL", 16, 487, "cancelled"),
            ("BUSY_EVERYWHERE", 16, 600, "busy"),
        ] {
            assert_eq!(q(name), q850, "{name}");
            assert_eq!(sip(name), code, "{name}");
            assert_eq!(unanswered_disposition(sip(name)), disp, "{name}");
        }
        assert_eq!(by_q850(17).unwrap().name, "USER_BUSY");
        assert_eq!(by_q850(4), None);
        assert_eq!(by_name("NOT_A_CAUSE"), None);
    }
}
