//! Number normalisation: dial-plan prefix stripping and E.164 form.
//!
//! Accepted input: `+CC...`, `00CC...` (international prefix), 10-digit NANP
//! national numbers (prefixed with `1`), and bare international digits of
//! 8..=15 digits not starting with 0. Output is digits only, without `+`.

/// The dial-plan selector parsed off the front of the dialed digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPrefix<'a> {
    /// `pstn` (`*30`), `standard` (`*31`), `premium` (`*32`), `trunk` (`*4TTT`).
    pub plan: Option<&'static str>,
    pub trunk: Option<&'a str>,
    pub number: &'a str,
}

pub fn strip_plan_prefix(dialed: &str) -> PlanPrefix<'_> {
    let d = dialed.trim();
    let plain = PlanPrefix {
        plan: None,
        trunk: None,
        number: d,
    };
    if let Some(rest) = d.strip_prefix("*30") {
        return PlanPrefix {
            plan: Some("pstn"),
            trunk: None,
            number: rest,
        };
    }
    if let Some(rest) = d.strip_prefix("*31") {
        return PlanPrefix {
            plan: Some("standard"),
            trunk: None,
            number: rest,
        };
    }
    if let Some(rest) = d.strip_prefix("*32") {
        return PlanPrefix {
            plan: Some("premium"),
            trunk: None,
            number: rest,
        };
    }
    if let Some(rest) = d.strip_prefix("*4") {
        if rest.len() > 3 && rest.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            return PlanPrefix {
                plan: Some("trunk"),
                trunk: Some(&rest[..3]),
                number: &rest[3..],
            };
        }
    }
    plain
}

/// E.164 digits (no `+`), or None when the input cannot be one.
pub fn to_e164(raw: &str) -> Option<String> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    let (intl, body) = if let Some(b) = s.strip_prefix('+') {
        (true, b)
    } else if let Some(b) = s.strip_prefix("00") {
        (true, b)
    } else {
        (false, s)
    };
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-' || c == '(' || c == ')' || c == '.')
    {
        return None;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    let digits =
        if !intl && digits.len() == 10 && !digits.starts_with('0') && !digits.starts_with('1') {
            format!("1{digits}")
        } else {
            digits
        };
    if digits.starts_with('0') || !(8..=15).contains(&digits.len()) {
        return None;
    }
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plan_prefixes() {
        assert_eq!(strip_plan_prefix("*30442079460000").plan, Some("pstn"));
        assert_eq!(strip_plan_prefix("*31442079460000").number, "442079460000");
        assert_eq!(strip_plan_prefix("*32123").plan, Some("premium"));
        let t = strip_plan_prefix("*4007442079460000");
        assert_eq!(
            (t.plan, t.trunk, t.number),
            (Some("trunk"), Some("007"), "442079460000")
        );
        assert_eq!(strip_plan_prefix("442079460000").plan, None);
    }

    #[test]
    fn e164_forms() {
        assert_eq!(to_e164("+44 20 7946 0000").as_deref(), Some("442079460000"));
        assert_eq!(to_e164("0044207946 0000").as_deref(), Some("442079460000"));
        assert_eq!(to_e164("2125550100").as_deref(), Some("12125550100"));
        assert_eq!(to_e164("anonymous"), None);
        assert_eq!(to_e164("+0123456789"), None);
        assert_eq!(to_e164("12345"), None);
        assert_eq!(to_e164(""), None);
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(s in "[+0-9 ]{0,20}") {
            if let Some(e) = to_e164(&s) {
                prop_assert_eq!(to_e164(&format!("+{e}")), Some(e.clone()));
                prop_assert!(e.len() >= 8 && e.len() <= 15);
            }
        }
    }
}
