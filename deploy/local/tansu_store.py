#!/usr/bin/env python3
"""Adds two indexes to the local tansu broker's sqlite store.

tansu 0.6 keeps every record as a row of one sqlite table behind a single
connection, and two of its own queries have no index to use:

- Compaction (`policy_compact.sql`, every 10 minutes from the broker's start)
  joins each duplicated key of a compacted topic to the records of its
  partition on (topition, k). sqlite walks the whole partition per key, so
  the pass is quadratic: with 4,000 re-written keys in
  `assembler.open-calls` it held the store for 16 s, 10,000 keys for 40 s.
  Meanwhile no heartbeat, commit, produce or fetch is answered, every
  consumer's 6 s session expires, and tansu then leaves the groups owning
  half or none of their partitions (README, "a broker stall"). With the
  index (topition, k, offset_id) the same pass takes 0.04-0.12 s.
- `header_fetch.sql` runs once per fetched record and finds its headers by
  (topition, offset_id); without an index every fetch scans all headers ever
  written (records posted over HTTP carry two each).

Indexes do not change what a query returns, only how sqlite finds it; the
store stays tansu's own. Run before tansu starts on an existing store, or
right after it created a fresh one (nothing writes yet): building the index
takes the write lock (2 s on a 1 GB store).

usage: tansu_store.py [--check] PATH/TO/tansu.db  (--check: exit 1 if any is missing)
"""

import sqlite3
import sys

INDEXES = [
    ("cdr_record_topition_k", "record (topition, k, offset_id)"),
    ("cdr_header_record", "header (topition, offset_id)"),
]


def main(path: str, check: bool) -> int:
    con = sqlite3.connect(path, timeout=30)
    try:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
        missing = [t for t in ("record", "header") if t not in tables]
        if missing:
            print(f"tansu_store: {path}: no table {', '.join(missing)} (not a tansu store yet?)",
                  file=sys.stderr)
            return 1
        have = {r[0] for r in con.execute("select name from sqlite_master where type = 'index'")}
        for name, on in INDEXES:
            if name in have:
                continue
            if check:
                print(f"tansu_store: {path}: index {name} missing", file=sys.stderr)
                return 1
            con.execute(f"create index if not exists {name} on {on}")
            print(f"tansu_store: created index {name} on {on}", file=sys.stderr)
        con.commit()
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    check = args[:1] == ["--check"]
    if check:
        args = args[1:]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(args[0], check))
