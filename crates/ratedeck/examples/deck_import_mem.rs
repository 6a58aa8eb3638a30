//! Load a generated 1,000,000-row A–Z deck and print the wall time and peak
//! resident memory (VmHWM from /proc/self/status, Linux only).
//!
//! `cargo run --release --example deck_import_mem [rows]`

#[path = "../benches/support/mod.rs"]
mod support;

use ratedeck::{DeckKind, DeckSet, ImportMode, Plan};
use std::time::Instant;

fn vm(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let text = support::az_deck(rows, 42);
    let before = vm("VmRSS:").unwrap_or(0.0);
    println!(
        "deck text: {:.1} MB, RSS before import: {before:.1} MB",
        text.len() as f64 / 1e6
    );
    let t = Instant::now();
    let mut set = DeckSet::new();
    let r = set
        .load(
            "big.txt",
            &text,
            DeckKind::AZ(Plan::Standard),
            Plan::Standard,
            ImportMode::Strict,
            support::t0(),
            None,
        )
        .expect("generated deck is valid");
    let secs = t.elapsed().as_secs_f64();
    let after = vm("VmRSS:").unwrap_or(0.0);
    let peak = vm("VmHWM:").unwrap_or(0.0);
    println!(
        "rows loaded: {} (rejected {})",
        r.rows_loaded,
        r.rejected.len()
    );
    println!("import seconds: {secs:.3}");
    println!(
        "RSS after import: {after:.1} MB (deck store ≈ {:.1} MB)",
        after - before
    );
    println!(
        "peak RSS (VmHWM, includes the {:.1} MB input text): {peak:.1} MB",
        text.len() as f64 / 1e6
    );
    drop(text);
    assert!(set.total_rows() == rows);
}
