//! Generate (if missing) a 10 M-row `tn;lrn` file in /tmp, load it into a
//! PortedDb, print load seconds and peak RSS (VmHWM). Run in release:
//! `cargo run --release --example load_10m [path] [rows]`.
use std::io::{BufWriter, Write};
use std::time::Instant;

use lrn::PortedDb;

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| "n/a".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/lrn-ported-10m.txt".into());
    let rows: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    if !std::path::Path::new(&path).exists() {
        let t = Instant::now();
        let tmp = format!("{path}.tmp");
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        // Deterministic pseudo-random 10-digit NANP numbers (xorshift), unsorted, like a real export.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..rows {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let tn = 2_000_000_000 + x % 8_000_000_000;
            let lrn = 2_000_000_000 + (x >> 20) % 8_000_000_000;
            writeln!(w, "{tn};{lrn}")?;
        }
        w.flush()?;
        drop(w);
        std::fs::rename(&tmp, &path)?;
        println!(
            "generated {rows} rows in {path} in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    let rss_before = vm_hwm();
    let t = Instant::now();
    let (db, rep) = PortedDb::open(&path)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "loaded {} rows ({} bad, {} duplicate) in {secs:.2}s; VmHWM before load {rss_before}, after {}",
        rep.rows,
        rep.bad_rows,
        rep.duplicates,
        vm_hwm()
    );
    // Lookup latency over the loaded table.
    let t = Instant::now();
    let mut x: u64 = 42;
    let mut found = 0usize;
    const N: u64 = 1_000_000;
    for _ in 0..N {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if db.ported_lrn(2_000_000_000 + x % 8_000_000_000).is_some() {
            found += 1;
        }
    }
    println!(
        "{N} random lookups: {:.0} ns/lookup ({found} ported)",
        t.elapsed().as_nanos() as f64 / N as f64
    );
    Ok(())
}
