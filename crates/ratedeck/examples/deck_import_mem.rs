//! Load a generated 1,000,000-row A–Z deck and print the wall time and peak
//! resident memory (VmHWM from /proc/self/status, Linux only), two ways:
//! * from a file, streamed, as the rater loads decks (line count first,
//!   then one pass with the rows allocated once; the text is never held);
//! * from text already in memory (`DeckSet::load`), the peak including it.
//!
//! The peak is reset before each import (`/proc/self/clear_refs`), so each
//! figure is that import's own.
//!
//! `cargo run --release --example deck_import_mem [rows]`

#[path = "../benches/support/mod.rs"]
mod support;

use ratedeck::{DeckKind, DeckSet, DeckTarget, ImportMode, Plan};
use std::time::Instant;

fn vm(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); false where refused.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn report(what: &str, rows: usize, secs: f64) {
    let rss = vm("VmRSS:").unwrap_or(0.0);
    let peak = vm("VmHWM:").unwrap_or(0.0);
    println!("{what}: {rows} rows in {secs:.3} s; RSS after {rss:.1} MB, peak RSS {peak:.1} MB");
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let text = support::az_deck(rows, 42);
    let path = std::env::temp_dir().join(format!("deck-import-{}.txt", std::process::id()));
    std::fs::write(&path, &text).expect("write the deck file");
    let text_mb = text.len() as f64 / 1e6;
    println!("deck text: {text_mb:.1} MB ({rows} rows)");
    let kind = DeckKind::AZ(Plan::Standard);

    // 1. Streamed from the file, as the rater does.
    drop(text);
    let reset = reset_peak();
    println!(
        "baseline RSS {:.1} MB (peak reset: {reset})",
        vm("VmRSS:").unwrap_or(0.0)
    );
    let t = Instant::now();
    let mut f = std::fs::File::open(&path).unwrap();
    let lines = ratedeck::count_lines(&mut f).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let parsed = ratedeck::parse_deck_reader_sized(
        "big.txt",
        std::io::BufReader::with_capacity(256 * 1024, f),
        kind,
        ImportMode::Strict,
        lines,
    )
    .expect("generated deck is valid");
    let mut set = DeckSet::new();
    set.insert(
        "big.txt",
        DeckTarget::for_kind(kind, Plan::Standard),
        parsed.rows,
        support::t0(),
        None,
    );
    report(
        "streamed from the file (the rater's path)",
        set.total_rows(),
        t.elapsed().as_secs_f64(),
    );
    assert_eq!(set.total_rows(), rows);
    drop(set);

    // 2. From text in memory.
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    reset_peak();
    let t = Instant::now();
    let mut set = DeckSet::new();
    let r = set
        .load(
            "big.txt",
            &text,
            kind,
            Plan::Standard,
            ImportMode::Strict,
            support::t0(),
            None,
        )
        .expect("generated deck is valid");
    report(
        &format!("from text in memory (peak includes the {text_mb:.1} MB text)"),
        r.rows_loaded,
        t.elapsed().as_secs_f64(),
    );
    assert_eq!(set.total_rows(), rows);
}
