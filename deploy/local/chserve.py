"""Serves ClickHouse (chdb's embedded clickhouse-local, 26.9) over the standard
HTTP interface. Run from a directory holding config.xml (http_port,
listen_host 127.0.0.1, users). The blocking query sleeps row by row, so the
process stays idle (~0% CPU) while the HTTP listener serves other clients.
Data persists in the data directory across restarts."""
import sys

import chdb._chdb as chdb

data_dir = sys.argv[1]
chdb.query(
    "SYSTEM START LISTEN HTTP; "
    "SELECT sleepEachRow(1) FROM numbers(9000000000000) "
    "SETTINGS function_sleep_max_microseconds_per_block = 0, max_block_size = 1",
    "CSV",
    path=data_dir,
)
