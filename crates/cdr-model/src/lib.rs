//! Wire contracts shared by every service: the switch-facing JSON event
//! (`call-events`), the Avro records on internal topics, deterministic ids,
//! topic names and the dead-letter envelope. No I/O lives here.

pub mod avro;
pub mod call;
pub mod control;
pub mod dlq;
pub mod event;
pub mod ids;
pub mod kinds;
pub mod offsets;
pub mod topics;

pub use call::{
    AssembledCall, Detection, Disposition, EnrichedCall, Enrichment, KpiCall, Media, RatedCdr,
    Rating,
};
pub use event::{Direction, EventError, EventKind, RawEvent, SwitchEvent};
