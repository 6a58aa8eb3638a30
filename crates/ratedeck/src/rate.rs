//! Pure per-call rating and invoice rounding.
//!
//! Owns the rating input/output types ([`RatingInput`], [`RatingContext`],
//! [`Account`], [`RatedCall`]), the billing-increment arithmetic
//! ([`billed_seconds`]), the rating rules ([`rate`]) and the invoice rounding
//! rule ([`invoice_total`]).
//!
//! `rate` is a pure function of its inputs: no clock, no I/O, no global
//! state, so re-rating a CDR always reproduces the same result. Amounts are
//! kept unrounded (full `Decimal` precision); rounding happens once per
//! invoice, because rounding each call up to a cent would overbill short
//! calls massively (100,000 × 28 s at $0.01/min is $466.67, not $470).

use crate::deck::{DeckRow, Increment, ObrTier, Plan};
use crate::prefix::{normalize_digits, Prefix};
use crate::store::{DeckMatch, DeckSet, Scope};
use crate::tables::{EeaCountries, UkNumberType, UkSurcharges};
pub use cdr_model::kinds::{Jurisdiction, NumberType, RatingStatus};
use chrono::{DateTime, Utc};
use numbering::{DialError, Dialed, PlanSelector};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One call to rate (owned, plain data; built by the rater service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingInput {
    pub call_id: String,
    pub account_id: String,
    /// The dialed string as the switch sent it, possibly with a plan prefix
    /// `*30`/`*31`/`*32`/`*4TTT`, in any written form `numbering` reads.
    pub dialed: String,
    /// The dialed string already read through the dial plan by enrichment
    /// (selector + normalised E.164 number). `None`: `rate` reads `dialed`
    /// itself with the same function, [`numbering::parse_dialed`].
    pub dial: Option<Dialed>,
    /// LRN (E.164 digits) when enrichment found one; rated instead of the
    /// dialed number for NANP calls.
    pub rated_number: Option<String>,
    /// The caller id as recorded (not read by the rules: validity and
    /// country come from enrichment).
    pub cli: Option<String>,
    /// Enrichment's verdict (`numbering::check_cli`): only a valid caller
    /// id has an origin anyone may price on.
    pub cli_valid: bool,
    /// ISO alpha-2 of the caller id (ignored unless `cli_valid`).
    pub cli_country: Option<String>,
    /// US jurisdiction decided by enrichment with the one NPA-NXX table
    /// (`numbering::call_jurisdiction`); a US48 match without one is
    /// `Indeterminate`.
    pub jurisdiction: Option<Jurisdiction>,
    /// `direction = inbound`: not a termination, left for DID rating.
    pub inbound: bool,
    pub answer_ts: Option<DateTime<Utc>>,
    /// Setup time: picks the deck version for unanswered attempts, so they
    /// still carry their breakout (per-breakout ASR needs the failures).
    pub setup_ts: Option<DateTime<Utc>>,
    /// 0 when unanswered.
    pub billable_seconds: u32,
    /// Answer to hangup in milliseconds when the switch reported it (the
    /// short-duration threshold is judged on it); `None`: billable seconds.
    pub duration_ms: Option<u64>,
    pub answered: bool,
    pub behind_nat: bool,
    /// From the `X-CWU-maxrate` header.
    pub max_rate: Option<Decimal>,
    /// From the `X-CWU-maxroute` header.
    pub max_route: Option<u32>,
    pub lrn_fee: Decimal,
    pub callee_number_type: Option<NumberType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountKind {
    Wholesale,
    Retail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    pub default_plan: Plan,
    /// Customer-portal "Allow UK Surcharge" (default no).
    pub allow_uk_surcharge: bool,
    pub default_max_rate: Option<Decimal>,
    /// `Some(Plan::Retail)` for a wholesale account downgraded to retail.
    pub plan_override: Option<Plan>,
}

/// Accounts by id. A plain `HashMap` with a fast non-cryptographic hasher:
/// ids come from our own account store (no untrusted keys, so no HashDoS
/// concern), and SipHash was a measurable share of per-call rating time.
/// Build with `AccountMap::default()` and `insert`, or `collect()`.
pub type AccountMap = HashMap<String, Account, FastHash>;

/// `BuildHasher` for [`AccountMap`] (FxHash-style multiply-rotate).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Everything `rate` reads besides the call itself.
#[derive(Debug, Clone, Copy)]
pub struct RatingContext<'a> {
    pub decks: &'a DeckSet,
    pub accounts: &'a AccountMap,
    pub uk_surcharges: &'a UkSurcharges,
    pub eea: &'a EeaCountries,
    /// Rating-category changes (automatic downgrades, operator changes)
    /// with their effective instants; they override the accounts file for
    /// calls answered at or after them.
    pub plans: &'a crate::conformance::PlanHistory,
}

/// Conditions worth surfacing on the CDR. Kept in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Flag {
    /// Applied rate per minute above the header/account max rate.
    MaxRateExceeded,
    /// UK origin surcharge applies but the account does not allow it.
    UkSurchargeBlocked,
    /// US48 call with indeterminate jurisdiction (higher rate applied).
    JurisdictionIndeterminate,
    /// NANP call rated on the LRN instead of the dialed number.
    LrnRated,
    /// Rated from the Retail deck because the call came from behind NAT.
    BehindNatRetail,
    /// Rated from the Retail deck because the wholesale account was downgraded.
    DowngradedToRetail,
    /// Short-duration surcharge added.
    ShortDurationSurcharge,
    /// Caller id missing/invalid (rest-of-world / unknown-origin treatment).
    InvalidCli,
    /// Not answered (or zero duration): billed 0.
    NotBilled,
}

/// Deck currency. Every deck in this product is priced in US dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Currency {
    #[default]
    #[serde(rename = "USD")]
    Usd,
}

impl Currency {
    pub fn as_str(self) -> &'static str {
        "USD"
    }
}

/// A set of [`Flag`]s: a bitset (no allocation per rated call) that
/// serialises as the list of flag names, in the fixed `Flag` order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// Every flag, in declaration (and iteration) order.
    pub const ALL: [Flag; 9] = [
        Flag::MaxRateExceeded,
        Flag::UkSurchargeBlocked,
        Flag::JurisdictionIndeterminate,
        Flag::LrnRated,
        Flag::BehindNatRetail,
        Flag::DowngradedToRetail,
        Flag::ShortDurationSurcharge,
        Flag::InvalidCli,
        Flag::NotBilled,
    ];

    pub fn insert(&mut self, f: Flag) {
        self.0 |= 1 << (f as u16);
    }

    pub fn contains(&self, f: Flag) -> bool {
        self.0 & (1 << (f as u16)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        Flags::ALL.into_iter().filter(|f| self.contains(*f))
    }

    pub fn to_vec(&self) -> Vec<Flag> {
        self.iter().collect()
    }
}

impl FromIterator<Flag> for Flags {
    fn from_iter<I: IntoIterator<Item = Flag>>(it: I) -> Self {
        let mut f = Flags::default();
        for x in it {
            f.insert(x);
        }
        f
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Flags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Flag>::deserialize(d)?.into_iter().collect())
    }
}

/// Shared empty deck id, so an unmatched call does not allocate one.
fn empty_id() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

/// Why a call got no price (`Unrated`) or was refused (`Blocked`): a
/// stable code for the `unrated_reason` column and the details for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unpriced {
    UnknownAccount,
    UnknownDialPrefix,
    BadDialedNumber,
    MissingAnswerTime,
    NoMatchingPrefix,
    /// A NANP number outside the contiguous US that only a catch-all `1`
    /// row would price (revenue-share fraud exposure).
    NanpCatchAll,
    /// A UK number whose origin surcharge the account has not allowed
    /// (seed 000: such calls are not allowed; `Blocked`, never billed).
    UkSurchargeNotAllowed,
}

impl Unpriced {
    /// The stable code written to `rating.unrated_reason`.
    pub fn code(self) -> &'static str {
        match self {
            Unpriced::UnknownAccount => "unknown_account",
            Unpriced::UnknownDialPrefix => "unknown_dial_prefix",
            Unpriced::BadDialedNumber => "bad_dialed_number",
            Unpriced::MissingAnswerTime => "missing_answer_time",
            Unpriced::NoMatchingPrefix => "no_matching_prefix",
            Unpriced::NanpCatchAll => "nanp_catch_all",
            Unpriced::UkSurchargeNotAllowed => "uk_surcharge_not_allowed",
        }
    }
}

/// An [`Unpriced`] reason with the details of this call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpricedReason {
    pub kind: Unpriced,
    pub detail: String,
}

impl std::fmt::Display for UnpricedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The rated CDR. `amount` is unrounded; see [`invoice_total`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatedCall {
    pub call_id: String,
    pub account_id: String,
    pub status: RatingStatus,
    /// Why an `Unrated` call found no price (kept, not dropped, so it can
    /// be fixed and re-rated), or why a `Blocked` one was refused.
    pub unrated_reason: Option<UnpricedReason>,
    pub plan: Option<Plan>,
    /// Trunk selected with `*4TTT`.
    pub trunk: Option<u32>,
    /// Number actually matched (prefix stripped, LRN applied).
    pub rated_number: String,
    /// Deck file/id of the matched version (empty and version 0 when no
    /// deck matched). `Arc<str>`: shared with the deck, serialised as a string.
    pub deck_id: Arc<str>,
    pub deck_version: u64,
    /// Serialised as its digit string.
    pub matched_prefix: Option<Prefix>,
    /// When the matched row took effect (its own date, else its version's
    /// start): with deck id, version and prefix it names the exact row.
    pub row_effective_from: Option<DateTime<Utc>>,
    /// Shared with the deck row (destination names are interned).
    pub destination: Option<Arc<str>>,
    pub jurisdiction: Option<Jurisdiction>,
    pub obr_tier: Option<ObrTier>,
    pub rate_per_min: Decimal,
    pub increment: Option<Increment>,
    pub billed_seconds: u32,
    pub connection_fee: Decimal,
    /// UK origin surcharge amount (OBR is priced through tiered breakout
    /// rows, so it shows in `rate_per_min`, not here).
    pub surcharge: Decimal,
    pub uk_surcharge_per_min: Decimal,
    pub short_duration_surcharge: Decimal,
    pub lrn_fee: Decimal,
    pub amount: Decimal,
    pub currency: Currency,
    pub flags: Flags,
    /// Effective max rate (header, else account default).
    pub max_rate: Option<Decimal>,
    pub max_route: Option<u32>,
}

impl RatedCall {
    pub fn has_flag(&self, f: Flag) -> bool {
        self.flags.contains(f)
    }

    pub fn is_rated(&self) -> bool {
        self.status == RatingStatus::Rated
    }
}

/// Billed seconds for an answered duration under increment `X/Y`.
///
/// 0 s bills 0. Otherwise the duration is first raised to the row's
/// `min_billed_s` floor (before rounding so the result stays on the
/// increment grid), then to `X`, then rounded up to `X + k·Y`. This is the
/// smallest value that is ≥ duration, ≥ X and on the grid.
pub fn billed_seconds(duration_s: u32, inc: Increment, min_billed_s: u32) -> u32 {
    if duration_s == 0 {
        return 0;
    }
    let x = u64::from(inc.initial);
    let y = u64::from(inc.step.max(1));
    let d = u64::from(duration_s.max(min_billed_s)).max(x);
    let billed = if d > x {
        x + (d - x).div_ceil(y) * y
    } else {
        x
    };
    u32::try_from(billed).unwrap_or(u32::MAX)
}

/// Sum unrounded call amounts and round the total once, half away from
/// zero, to cents.
pub fn invoice_total(amounts: impl IntoIterator<Item = Decimal>) -> Decimal {
    let sum: Decimal = amounts.into_iter().sum();
    sum.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

const SIXTY: Decimal = Decimal::from_parts(60, 0, 0, false, 0);

/// Plan / trunk selected by a dial prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialSelect {
    Default,
    Plan(Plan),
    Trunk(u32),
}

impl From<Option<PlanSelector>> for DialSelect {
    fn from(p: Option<PlanSelector>) -> Self {
        match p {
            None => DialSelect::Default,
            Some(PlanSelector::Pstn) => DialSelect::Plan(Plan::Pstn),
            Some(PlanSelector::Standard) => DialSelect::Plan(Plan::Standard),
            Some(PlanSelector::Premium) => DialSelect::Plan(Plan::Premium),
            Some(PlanSelector::Trunk(t)) => DialSelect::Trunk(u32::from(t)),
        }
    }
}

/// The selector and the E.164 digits to rate: enrichment's reading when it
/// supplied one, else `dialed` read by the same dial-plan function.
fn dialed_number(
    input: &RatingInput,
) -> Result<(DialSelect, std::borrow::Cow<'_, str>), UnpricedReason> {
    if let Some(d) = &input.dial {
        return Ok((d.plan.into(), std::borrow::Cow::Borrowed(d.number.digits())));
    }
    match numbering::parse_dialed(&input.dialed) {
        Ok(d) => Ok((
            d.plan.into(),
            std::borrow::Cow::Owned(d.number.into_digits()),
        )),
        Err(DialError::UnknownPlanPrefix(_)) => Err(UnpricedReason {
            kind: Unpriced::UnknownDialPrefix,
            detail: format!("unknown dial prefix in `{}`", input.dialed),
        }),
        Err(DialError::Number(e)) => Err(UnpricedReason {
            kind: Unpriced::BadDialedNumber,
            detail: format!("dialed number `{}` is not usable: {e}", input.dialed),
        }),
    }
}

/// Reason text of a NANP call outside the contiguous US that only the
/// catch-all `1` row would price (see [`crate::store::DeckSet::nanp_catch_all`]).
pub const NANP_CATCH_ALL_REASON: &str = "nanp catch-all";

/// Rate one call. See the crate README for the full rule set.
///
/// Reads as its steps: leave inbound calls for DID rating, find the
/// account, read the dialed number, choose the plan, classify the caller's
/// origin, pick the instant that chooses the deck version, look up the row,
/// apply jurisdiction, the UK origin surcharge and the max rate, then price
/// the billed seconds. A step that ends rating (unrated, blocked, not
/// billed) leaves the final status in the record.
pub fn rate(input: &RatingInput, ctx: &RatingContext<'_>) -> RatedCall {
    let mut out = RatedCall::unpriced(input);
    let _ = rate_steps(input, ctx, &mut out);
    out
}

/// Rating ended early; the record already holds its final status.
struct Done;

fn rate_steps(
    input: &RatingInput,
    ctx: &RatingContext<'_>,
    out: &mut RatedCall,
) -> Result<(), Done> {
    if input.inbound {
        return leave_for_did_rating(out);
    }
    let acct = find_account(input, ctx, out)?;
    let (select, dialed) = dialed_number(input).map_err(|r| end_unrated(out, r))?;
    let number = number_to_rate(input, &dialed, out);
    let (plan, retail) = choose_plan(input, acct, select, ctx, out);
    let (cli_country, tier) = caller_origin(input, ctx, out);
    let at = pricing_instant(input, out)?;
    let (m, us48) = look_up_row(ctx, (select, retail, plan), number, at, tier, out)?;
    record_row(&m, number, out)?;
    let rate = apply_jurisdiction(input, m.row, us48, out);
    uk_origin_surcharge(input, ctx, number, cli_country, out);
    check_max_rate(rate, out);
    if !out.uk_surcharge_per_min.is_zero() && !acct.allow_uk_surcharge {
        return block_uk_call(input, cli_country, out);
    }
    if !is_billable(input) {
        return Err(not_billed(out));
    }
    price_call(input, m.row, rate, out);
    Ok(())
}

impl RatedCall {
    /// The record before any rule ran: no price, the LRN fee as given.
    fn unpriced(input: &RatingInput) -> RatedCall {
        RatedCall {
            call_id: input.call_id.clone(),
            account_id: input.account_id.clone(),
            status: RatingStatus::Rated,
            unrated_reason: None,
            plan: None,
            trunk: None,
            rated_number: String::new(),
            deck_id: empty_id(),
            deck_version: 0,
            matched_prefix: None,
            row_effective_from: None,
            destination: None,
            jurisdiction: None,
            obr_tier: None,
            rate_per_min: Decimal::ZERO,
            increment: None,
            billed_seconds: 0,
            connection_fee: Decimal::ZERO,
            surcharge: Decimal::ZERO,
            uk_surcharge_per_min: Decimal::ZERO,
            short_duration_surcharge: Decimal::ZERO,
            lrn_fee: input.lrn_fee,
            amount: Decimal::ZERO,
            currency: Currency::Usd,
            flags: Flags::default(),
            max_rate: input.max_rate,
            max_route: input.max_route,
        }
    }
}

fn end_unrated(out: &mut RatedCall, reason: UnpricedReason) -> Done {
    out.status = RatingStatus::Unrated;
    out.unrated_reason = Some(reason);
    Done
}

fn unrated(out: &mut RatedCall, kind: Unpriced, detail: String) -> Done {
    end_unrated(out, UnpricedReason { kind, detail })
}

/// No talk time billed; a dip made for the attempt is still owed (seed
/// 000: charged when the number was not in the cache).
fn not_billed(out: &mut RatedCall) -> Done {
    out.flags.insert(Flag::NotBilled);
    out.amount = out.lrn_fee;
    Done
}

/// An inbound call is no termination: it is left for DID rating, carries
/// no amount and owes no dip (enrichment does not dip it).
fn leave_for_did_rating(out: &mut RatedCall) -> Result<(), Done> {
    out.status = RatingStatus::Inbound;
    out.lrn_fee = Decimal::ZERO;
    out.flags.insert(Flag::NotBilled);
    Err(Done)
}

fn find_account<'c>(
    input: &RatingInput,
    ctx: &RatingContext<'c>,
    out: &mut RatedCall,
) -> Result<&'c Account, Done> {
    let Some(acct) = ctx.accounts.get(&input.account_id) else {
        let r = format!("unknown account {}", input.account_id);
        return Err(unrated(out, Unpriced::UnknownAccount, r));
    };
    out.max_rate = input.max_rate.or(acct.default_max_rate);
    Ok(acct)
}

/// Ported NANP numbers are rated on their LRN (the carrier that now
/// terminates the call), not the dialed number.
fn number_to_rate<'a>(input: &'a RatingInput, dialed: &'a str, out: &mut RatedCall) -> &'a str {
    let mut number = dialed;
    if number.starts_with('1') {
        if let Some(lrn) = input.rated_number.as_deref().and_then(normalize_digits) {
            if lrn != number {
                out.flags.insert(Flag::LrnRated);
            }
            number = lrn;
        }
    }
    out.rated_number = number.to_string();
    number
}

/// The plan, and whether the call is rated retail. Retail wins over any
/// dial prefix: NAT and downgrade are commercial decisions the caller
/// cannot dial around.
fn choose_plan(
    input: &RatingInput,
    acct: &Account,
    select: DialSelect,
    ctx: &RatingContext<'_>,
    out: &mut RatedCall,
) -> (Plan, bool) {
    let from_history = input
        .answer_ts
        .and_then(|at| ctx.plans.category_at(&input.account_id, at));
    let kind = match from_history {
        Some(k) => k,
        None if acct.kind == AccountKind::Wholesale && acct.plan_override == Some(Plan::Retail) => {
            AccountKind::Retail
        }
        None => acct.kind,
    };
    let downgraded = acct.kind == AccountKind::Wholesale && kind == AccountKind::Retail;
    let retail = kind == AccountKind::Retail || input.behind_nat;
    if downgraded {
        out.flags.insert(Flag::DowngradedToRetail);
    } else if input.behind_nat && kind == AccountKind::Wholesale {
        out.flags.insert(Flag::BehindNatRetail);
    }
    let plan = if retail {
        Plan::Retail
    } else {
        match select {
            DialSelect::Plan(p) => p,
            _ => acct
                .plan_override
                .filter(|p| *p != Plan::Retail)
                .unwrap_or(acct.default_plan),
        }
    };
    out.plan = Some(plan);
    (plan, retail)
}

/// The caller's country and OBR tier. Only a caller id enrichment found
/// valid has an origin anyone may price on (seed 001: the CLI's accuracy
/// decides the tier; seed 000: fake CLIs surcharge).
fn caller_origin<'a>(
    input: &'a RatingInput,
    ctx: &RatingContext<'_>,
    out: &mut RatedCall,
) -> (Option<&'a str>, ObrTier) {
    let cli_country = input.cli_country.as_deref().filter(|_| input.cli_valid);
    if cli_country.is_none() {
        out.flags.insert(Flag::InvalidCli);
    }
    let tier = match cli_country {
        Some(c) if ctx.eea.contains(c) => ObrTier::Eea,
        _ => ObrTier::RestOfWorld,
    };
    (cli_country, tier)
}

fn is_billable(input: &RatingInput) -> bool {
    input.answered && input.billable_seconds > 0
}

/// Answered calls are priced by the deck version in force at answer; an
/// unanswered attempt is only classified (breakout, deck) by the version
/// in force at setup, and bills no talk time whatever the deck says.
fn pricing_instant(input: &RatingInput, out: &mut RatedCall) -> Result<DateTime<Utc>, Done> {
    if is_billable(input) && input.answer_ts.is_none() {
        return Err(unrated(
            out,
            Unpriced::MissingAnswerTime,
            "answered call without answer timestamp".into(),
        ));
    }
    match input.answer_ts.or(input.setup_ts) {
        Some(at) => Ok(at),
        None => Err(not_billed(out)),
    }
}

/// Trunk deck, else US48 (NANP) then A–Z of the plan. Returns the match
/// and whether it came from a US48 deck.
fn look_up_row<'d>(
    ctx: &RatingContext<'d>,
    (select, retail, plan): (DialSelect, bool, Plan),
    number: &str,
    at: DateTime<Utc>,
    tier: ObrTier,
    out: &mut RatedCall,
) -> Result<(DeckMatch<'d>, bool), Done> {
    let mut us48 = false;
    let found = match select {
        DialSelect::Trunk(t) if !retail => {
            out.trunk = Some(t);
            let m = ctx.decks.lookup(Scope::Trunk(t), number, at, tier);
            if let Some(p) = m.and_then(|m| m.row.trunk_plan) {
                out.plan = Some(p);
            }
            m
        }
        _ => {
            let m = if number.starts_with('1') {
                ctx.decks.lookup(Scope::Us48(plan), number, at, tier)
            } else {
                None
            };
            us48 = m.is_some();
            m.or_else(|| ctx.decks.lookup(Scope::Az(plan), number, at, tier))
        }
    };
    let Some(m) = found else {
        let what = match select {
            DialSelect::Trunk(t) if !retail => format!("trunk {t:03}"),
            _ => plan.as_str().to_string(),
        };
        return Err(unrated(
            out,
            Unpriced::NoMatchingPrefix,
            format!("no matching prefix for {number} in {what} deck"),
        ));
    };
    Ok((m, us48))
}

/// Records what priced the call. A NANP number outside the contiguous US
/// that only the bare `1` row matches would be billed at the catch-all
/// (US) rate: revenue-share fraud exposure, so it is left unrated (kept
/// for re-rating once the deck has a row).
fn record_row(m: &DeckMatch<'_>, number: &str, out: &mut RatedCall) -> Result<(), Done> {
    let row = m.row;
    if row.prefix.len() == 1 && number.starts_with('1') {
        if let Some(area) = numbering::nanp_non_us48_area(number) {
            return Err(unrated(
                out,
                Unpriced::NanpCatchAll,
                format!("{NANP_CATCH_ALL_REASON}: {number} ({area}) matches only the `1` row"),
            ));
        }
    }
    out.deck_id = m.deck_id.clone();
    out.deck_version = m.version;
    out.matched_prefix = Some(row.prefix);
    out.row_effective_from = Some(m.row_effective_from);
    out.destination = Some(row.destination.clone());
    out.increment = Some(row.increment);
    out.obr_tier = row.obr_tier;
    Ok(())
}

/// The per-minute rate: a US48 row's interstate or intrastate rate by the
/// jurisdiction enrichment decided (the one rule, the one NPA-NXX table);
/// none known is indeterminate and bills the higher of the two.
fn apply_jurisdiction(
    input: &RatingInput,
    row: &DeckRow,
    us48: bool,
    out: &mut RatedCall,
) -> Decimal {
    let mut rate = row.rate;
    if let (true, Some(intra)) = (us48, row.rate_intrastate) {
        let j = input.jurisdiction.unwrap_or(Jurisdiction::Indeterminate);
        rate = match j {
            Jurisdiction::Interstate => row.rate,
            Jurisdiction::Intrastate => intra,
            Jurisdiction::Indeterminate => {
                out.flags.insert(Flag::JurisdictionIndeterminate);
                row.rate.max(intra)
            }
        };
        out.jurisdiction = Some(j);
    }
    out.rate_per_min = rate;
    rate
}

/// UK origin-based charging (rated number `44…`): the per-minute surcharge
/// by caller country and UK number type.
fn uk_origin_surcharge(
    input: &RatingInput,
    ctx: &RatingContext<'_>,
    number: &str,
    cli_country: Option<&str>,
    out: &mut RatedCall,
) {
    if !number.starts_with("44") {
        return;
    }
    let t = match input.callee_number_type {
        Some(NumberType::Mobile) => UkNumberType::Mobile,
        Some(NumberType::Fixed) => UkNumberType::Fixed,
        _ if number.starts_with("447") => UkNumberType::Mobile,
        _ => UkNumberType::Fixed,
    };
    out.uk_surcharge_per_min = ctx.uk_surcharges.per_min(cli_country, t);
}

/// Max rate guards the full per-minute price: the rate plus the UK
/// surcharge per minute (per-call fees are not per-minute prices).
fn check_max_rate(rate: Decimal, out: &mut RatedCall) {
    if let Some(max) = out.max_rate {
        if rate + out.uk_surcharge_per_min > max {
            out.flags.insert(Flag::MaxRateExceeded);
        }
    }
}

/// Seed 000: a UK call whose origin surcharges is allowed only when the
/// account enabled "Allow UK Surcharge"; any other is refused, recorded as
/// a blocked attempt with amount 0 and never billed. A dip fee on the
/// record stays visible in `lrn_fee`, as for unrated calls (a dip is never
/// made for a UK number).
fn block_uk_call(
    input: &RatingInput,
    cli_country: Option<&str>,
    out: &mut RatedCall,
) -> Result<(), Done> {
    out.flags.insert(Flag::UkSurchargeBlocked);
    out.status = RatingStatus::Blocked;
    out.unrated_reason = Some(UnpricedReason {
        kind: Unpriced::UkSurchargeNotAllowed,
        detail: format!(
            "UK origin surcharge {}/min for caller country {} not allowed on account {}",
            out.uk_surcharge_per_min,
            cli_country.unwrap_or("unknown"),
            input.account_id
        ),
    });
    out.flags.insert(Flag::NotBilled);
    Err(Done)
}

/// Billed seconds on the row's increment and minimum, then the amount:
/// talk time at the rate plus connection fee, UK surcharge over the billed
/// seconds, short-duration surcharge and the dip fee. Unrounded.
fn price_call(input: &RatingInput, row: &DeckRow, rate: Decimal, out: &mut RatedCall) {
    let billed = billed_seconds(
        input.billable_seconds,
        row.increment,
        row.min_billed_seconds,
    );
    out.billed_seconds = billed;
    let secs = Decimal::from(billed);
    out.connection_fee = row.connection_fee;
    // Decimal division is the costliest step of rating; skip it when there
    // is no surcharge (the common case).
    if !out.uk_surcharge_per_min.is_zero() {
        out.surcharge = out.uk_surcharge_per_min * secs / SIXTY;
    }
    if is_short(input, row) {
        out.short_duration_surcharge = row.short_surcharge;
        if !row.short_surcharge.is_zero() {
            out.flags.insert(Flag::ShortDurationSurcharge);
        }
    }
    // Adding zero still costs a Decimal rescale; most calls have no extras.
    let mut amount = secs * rate / SIXTY;
    for extra in [
        out.connection_fee,
        out.surcharge,
        out.short_duration_surcharge,
        out.lrn_fee,
    ] {
        if !extra.is_zero() {
            amount += extra;
        }
    }
    out.amount = amount;
}

/// Whether the row's short-duration surcharge applies: the real answered
/// duration (milliseconds when the switch gave them) is under the
/// threshold. Billable seconds are rounded up, so a 5.4 s call is 6
/// billable seconds yet still shorter than a 6 s threshold.
fn is_short(input: &RatingInput, row: &DeckRow) -> bool {
    if row.short_threshold_s == 0 {
        return false;
    }
    let threshold_ms = u64::from(row.short_threshold_s) * 1000;
    let duration_ms = input
        .duration_ms
        .unwrap_or(u64::from(input.billable_seconds) * 1000);
    duration_ms < threshold_ms
}
