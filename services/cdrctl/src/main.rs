//! `cdrctl` command-line entry point.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdr_clickhouse::ClickHouseConfig;
use cdr_kafka::KafkaConfig;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cdrctl", about = "Operator commands for the CDR pipeline")]
struct Cli {
    /// Kafka and ClickHouse settings as the services take them: a TOML
    /// file with `[kafka]` (brokers, group_id, properties such as
    /// security.protocol and SASL, topic_prefix) and `[clickhouse]`
    /// sections, overlaid by `CDR__KAFKA__…` / `CDR__CLICKHOUSE__…`
    /// environment variables. The flags below override it.
    /// (`--ctl-config`: `import` has a `--config` of its own, the ingest
    /// configuration.)
    #[arg(long = "ctl-config", env = "CDRCTL_CONFIG", global = true)]
    ctl_config: Option<PathBuf>,
    /// Kafka bootstrap servers (default: the configuration's, else
    /// CDR_KAFKA_BROKERS, else 127.0.0.1:9092).
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// ClickHouse HTTP(S) URL (default: the configuration's, else
    /// CDR_CLICKHOUSE_URL, else http://127.0.0.1:8123).
    #[arg(long, global = true)]
    clickhouse: Option<String>,
    /// ClickHouse user (default: the configuration's, else
    /// CDR_CLICKHOUSE_USER, else `default`). The password is read from
    /// CDR_CLICKHOUSE_PASSWORD or the configuration, never from argv.
    #[arg(long, global = true)]
    ch_user: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Apply pending ClickHouse migrations (idempotent).
    Migrate,
    /// Create every pipeline topic with its partition count (idempotent).
    Topics,
    /// Publish simulated switch traffic to `call-events`.
    Simulate {
        #[arg(long, default_value_t = 5000)]
        calls: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Messages per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Prefix of every call id, so runs never collide.
        #[arg(long)]
        run_id: Option<String>,
        #[arg(long, default_value_t = 1.0)]
        malformed_pct: f64,
        /// Write the expected outcome as JSON here.
        #[arg(long)]
        expect_out: Option<PathBuf>,
    },
    /// Import switch CDR files (Asterisk Master.csv, FreeSWITCH JSON CDRs,
    /// AMI dumps, OpenSIPS E_ACC_CDR, Kamailio template records) through the
    /// ingest adapters onto `call-events`; bad records go to a report and
    /// never stop the others. Exit code 3 when any record was rejected.
    Import {
        /// freeswitch-json, freeswitch-esl, opensips, asterisk-csv,
        /// asterisk-custom, asterisk-ami, asterisk-json, kamailio.
        #[arg(long)]
        format: String,
        /// Ingest configuration whose [[switches]] hold the adapter settings.
        #[arg(long, default_value = "deploy/local/config/ingest.toml")]
        config: PathBuf,
        /// The switch the files come from (default: the config's default_switch).
        #[arg(long)]
        switch: Option<String>,
        /// Write every rejected record here (JSON lines: file, record,
        /// format, reason, field, message).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Adapt and report only; publish nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Wait until ClickHouse holds `calls` calls for a run (or time out).
    Wait {
        #[arg(long)]
        run_id: String,
        #[arg(long)]
        calls: u64,
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Write one account's invoice for one calendar month (UTC) from
    /// ClickHouse, with the finance queries of deploy/finance
    /// (invoice_lines.sql, invoice_total.sql): lines and total as CSV and
    /// one JSON document in --out; prints the files and the total.
    Invoice {
        #[arg(long)]
        account: String,
        /// Calendar month, YYYY-MM.
        #[arg(long)]
        period: cdrctl::invoice::Month,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print what landed in ClickHouse.
    Report {
        #[arg(long, default_value = "")]
        run_id: String,
    },
    /// Write the Avro schema of every internal topic into DIR.
    Schemas {
        #[arg(long, default_value = "schemas/avro")]
        dir: PathBuf,
    },
    /// Rate calls offline (JSON lines: switch `cdr` events, enriched or
    /// assembled calls; `-` for stdin) with the enricher's and the rater's
    /// libraries and decks, as the pipeline does; prints rated CDRs as JSON
    /// lines, progress on stderr.
    Rate {
        /// Deck directory holding `decks.toml` (e.g. deploy/local/data).
        #[arg(long, required_unless_present = "decks_config")]
        decks: Option<PathBuf>,
        /// Accounts file (required with --decks).
        #[arg(long, requires = "decks")]
        accounts: Option<PathBuf>,
        /// Enrichment: the enricher's NPA-NXX table (`npanxx;state[;ocn]`,
        /// e.g. deploy/local/data/lrn/npanxx.txt), for jurisdiction.
        #[arg(long, required_unless_present = "enricher_config")]
        numbering: Option<PathBuf>,
        /// Enrichment: ported numbers (`tn;lrn`, e.g.
        /// deploy/local/data/lrn/ported.txt): LRNs and dip fees through the
        /// enricher's cache. Without it NANP calls get no LRN (`unavailable`).
        #[arg(long, requires = "numbering")]
        lrn_file: Option<PathBuf>,
        /// Enrichment: or the enricher's configuration file (e.g.
        /// deploy/local/config/enricher.toml), its `[lrn]` section.
        #[arg(long, conflicts_with = "numbering")]
        enricher_config: Option<PathBuf>,
        /// Plan history: `accounts.plan-changes` records as JSON lines
        /// (downgrades and operator changes with their effective instants).
        #[arg(long)]
        plan_changes: Option<PathBuf>,
        /// UK origin surcharge table.
        #[arg(long, requires = "decks")]
        surcharges: Option<PathBuf>,
        /// Or: a whole rater configuration file (e.g.
        /// deploy/local/config/rater.toml), paths relative to the current
        /// directory.
        #[arg(long, conflicts_with = "decks")]
        decks_config: Option<PathBuf>,
        /// Calls, one JSON object per line.
        calls: PathBuf,
        /// Write the rated CDRs (JSON lines) to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Account operations.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Route operations.
    Route {
        #[command(subcommand)]
        cmd: RouteCmd,
    },
    /// Rate deck operations.
    Deck {
        #[command(subcommand)]
        cmd: DeckCmd,
    },
    /// Rate calls ClickHouse holds again with the current (or a named)
    /// rater configuration: changed calls get a new version of the same
    /// cdr_id (history kept in rerate_history), unchanged calls are left
    /// alone. Prints the diff per account and breakout (TSV) and exits 2
    /// when a call could not be written.
    Rerate {
        /// Rater configuration (decks, accounts, surcharges) to rate with;
        /// a named deck set is a configuration naming it.
        #[arg(long, default_value = "deploy/local/config/rater.toml")]
        rater_config: PathBuf,
        #[arg(long)]
        account: Option<String>,
        /// Calls set up at or after (UTC, YYYY-MM-DD or "YYYY-MM-DD hh:mm:ss").
        #[arg(long)]
        from: Option<String>,
        /// Calls set up before (UTC).
        #[arg(long)]
        to: Option<String>,
        /// Current destination (breakout), exact.
        #[arg(long)]
        destination: Option<String>,
        /// Current rating status (rated | unrated | inbound).
        #[arg(long)]
        status: Option<String>,
        /// Current unrated reason (e.g. unknown_account).
        #[arg(long)]
        unrated_reason: Option<String>,
        /// Current deck id.
        #[arg(long)]
        deck_id: Option<String>,
        /// Why (recorded with every re-rated call).
        #[arg(long)]
        reason: String,
        /// Recorded as who re-rated.
        #[arg(long, env = "USER", default_value = "cdrctl")]
        actor: String,
        /// Print the diff, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare a carrier's CDR file (CSV with a header) with our CDRs of
    /// that carrier's account; every result row goes to ClickHouse
    /// (`reconciliation`, `reconciliation_runs`). Exits 2 when a row of
    /// the file was rejected.
    Reconcile {
        /// The carrier: our account id for it.
        #[arg(long)]
        carrier: String,
        /// Their CDR file.
        #[arg(long)]
        file: PathBuf,
        /// Column mapping over the defaults (the field names themselves):
        /// e.g. `call_id=CallID,calling=ANI,called=DNIS,start=StartTime,duration=Secs,disposition=Status,cost=Cost`.
        /// Only called, start and duration are required.
        #[arg(long, default_value = "")]
        columns: String,
        /// Field delimiter (one character; `tab` for TSV).
        #[arg(long, default_value = ",")]
        delimiter: String,
        /// The file is in a switch adapter format instead (asterisk-csv,
        /// freeswitch-json, …, as `cdrctl import`): one row per call.
        #[arg(long, conflicts_with = "columns")]
        format: Option<String>,
        /// Starts this close (ms) to our setup or answer time may match.
        #[arg(long, default_value_t = 5_000)]
        start_tolerance_ms: i64,
        /// Durations this close (ms) agree.
        #[arg(long, default_value_t = 1_000)]
        duration_tolerance_ms: i64,
        /// Costs this close (USD) agree.
        #[arg(long, default_value = "0.0001")]
        cost_tolerance: String,
        /// Our calls set up at or after (UTC); default: the whole days
        /// their file covers.
        #[arg(long)]
        from: Option<String>,
        /// Our calls set up before (UTC).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, env = "USER", default_value = "cdrctl")]
        actor: String,
    },
    /// Dead letters: list them, send them through again once fixed.
    Dlq {
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// One HTTP GET of a service's health endpoint (container health
    /// checks: the image has no curl); exit 0 on a 2xx status.
    Probe {
        /// e.g. http://127.0.0.1:9100/livez
        url: String,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Raw broker produce/consume rate, for comparison with the pipeline.
    BenchBroker {
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        #[arg(long, default_value_t = 300)]
        size: usize,
    },
}

#[derive(clap::Args, Clone)]
struct DlqFilter {
    /// Exact reason (e.g. oversized, bad_json, clock_out_of_range).
    #[arg(long)]
    reason: Option<String>,
    /// Exact source topic as the cluster names it (e.g. call-events).
    #[arg(long)]
    topic: Option<String>,
    /// Dead-lettered at or after (UTC, e.g. 2026-12-01 or 2026-12-01 10:00:00).
    #[arg(long)]
    from: Option<String>,
    /// Dead-lettered before (UTC).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Subcommand)]
enum DlqCmd {
    /// Dead letters by reason and source topic (counts, truncated,
    /// replayed, first and last).
    List {
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// Send the matching dead letters' original bytes back to their source
    /// topic (skipping those already replayed unless --again); exits 2 when
    /// some could not be sent (only a prefix kept).
    Replay {
        #[command(flatten)]
        filter: DlqFilter,
        /// Replay dead letters that were replayed before too.
        #[arg(long)]
        again: bool,
        /// Recorded as who replayed them: with Kafka SASL, the SASL user
        /// (this may only repeat it); else this name (default $USER),
        /// marked "(unauthenticated)".
        #[arg(long)]
        actor: Option<String>,
        /// Send a corrected form: a JSON fix mapping (rename, map_values,
        /// set, remove of top-level fields of JSON payloads).
        #[arg(long)]
        fix: Option<PathBuf>,
    },
}

impl DlqFilter {
    fn into_filter(self, again: bool) -> cdrctl::dlq::Filter {
        cdrctl::dlq::Filter {
            reason: self.reason,
            topic: self.topic,
            from: self.from,
            to: self.to,
            again,
        }
    }
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Switch an account's rating category (`wholesale` | `retail`),
    /// effective now (or --at): the only way back to wholesale after an
    /// automatic downgrade. Emits to `accounts.plan-changes`.
    SetPlan {
        account: String,
        #[arg(long)]
        plan: String,
        #[arg(long, default_value = "operator decision")]
        reason: String,
        /// With Kafka SASL, the SASL user (this may only repeat it); else
        /// this name (default $USER), marked "(unauthenticated)".
        #[arg(long)]
        actor: Option<String>,
        /// Effective instant (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Lift a FAS pull of a route (trunk x breakout), with an audit row.
    Restore {
        #[arg(long)]
        trunk: String,
        #[arg(long)]
        breakout: String,
        #[arg(long, default_value = "restored by operator")]
        reason: String,
        /// With Kafka SASL, the SASL user (this may only repeat it); else
        /// this name (default $USER), marked "(unauthenticated)".
        #[arg(long)]
        actor: Option<String>,
    },
}

fn at_ms(at: Option<String>) -> anyhow::Result<i64> {
    Ok(match at {
        Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .with_context(|| format!("--at `{s}` is not RFC 3339"))?
            .timestamp_millis(),
        None => cdr_kafka::now_ms(),
    })
}

#[derive(Subcommand)]
enum DeckCmd {
    /// Rows added, removed, increased and decreased between two deck files;
    /// increases with less than the notice period are flagged. Exits 3 when
    /// any increase is short-notice.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// az | us48 | per_trunk | breakout
        #[arg(long, default_value = "az")]
        kind: String,
        /// standard | premium | pstn | retail (affects nothing in the
        /// comparison; kept for symmetry with the rater's config)
        #[arg(long)]
        plan: Option<String>,
        #[arg(long, default_value_t = 7)]
        notice_days: i64,
        /// When the new deck is announced (RFC 3339); default now.
        #[arg(long)]
        now: Option<String>,
        /// Print the diff as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write every deck version and row the rater loads into ClickHouse
    /// (`rate_decks`, `rate_deck_rows`).
    Publish {
        #[arg(long, default_value = "deploy/local/config/rater.toml")]
        rater_config: PathBuf,
    },
}

fn enum_arg<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| anyhow::anyhow!("unknown {what} `{s}`"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A health probe needs no configuration and must stay quiet.
    if let Cmd::Probe { url, timeout_ms } = &cli.cmd {
        let status = cdrctl::probe::probe(url, std::time::Duration::from_millis(*timeout_ms))?;
        println!("{status}");
        return Ok(());
    }
    // `rate` writes JSON lines to stdout, where the log lines would go.
    if !matches!(cli.cmd, Cmd::Rate { .. }) {
        tracing_subscriber_init();
    }
    let (kafka, ch) = connections(&cli)?;
    match cli.cmd {
        Cmd::Migrate => {
            let applied = cdr_clickhouse::migrate::migrate(&ch).await?;
            println!(
                "migrations applied now: {applied:?} (total known: {})",
                cdr_clickhouse::migrate::MIGRATIONS.len()
            );
        }
        Cmd::Topics => {
            let created = cdrctl::topics::create_all(&kafka).await?;
            println!("topics created: {created:?}");
        }
        Cmd::Simulate {
            calls,
            seed,
            rate,
            run_id,
            malformed_pct,
            expect_out,
        } => {
            let run_id = run_id.unwrap_or_else(|| format!("sim{}", cdr_kafka::now_ms()));
            let cfg = cdrctl::simulate::SimConfig {
                seed,
                calls,
                run_id: run_id.clone(),
                malformed_pct,
                start_ms: cdr_kafka::now_ms() - 3_600_000,
                ..Default::default()
            };
            let (msgs, expected) = cdrctl::simulate::generate(&cfg);
            if let Some(p) = expect_out {
                std::fs::write(&p, serde_json::to_vec_pretty(&expected)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            let took = cdrctl::publish(&kafka, &msgs, rate).await?;
            println!(
                "run {run_id}: published {} events for {} calls ({} malformed) in {:.2}s ({:.0} events/s)",
                msgs.len(),
                expected.calls,
                expected.dead_letters,
                took.as_secs_f64(),
                msgs.len() as f64 / took.as_secs_f64().max(1e-9)
            );
        }
        Cmd::Import {
            format,
            config,
            switch,
            rejects,
            dry_run,
            files,
        } => {
            let format: switch_adapters::Format = format.parse()?;
            let cfg = cdrctl::import::switch_config(&config, switch.as_deref())?;
            let mut report = match &rejects {
                Some(p) => Some(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => None,
            };
            let t = cdrctl::import::import(
                &kafka,
                format,
                &cfg,
                &files,
                report.as_mut().map(|w| w as &mut dyn std::io::Write),
                dry_run,
            )
            .await?;
            if let Some(mut w) = report {
                std::io::Write::flush(&mut w)?;
            }
            println!(
                "imported {} files: {} events{}, {} records rejected{}, {} superseded",
                t.files,
                t.events,
                if dry_run { " (dry run)" } else { " published" },
                t.rejected,
                rejects
                    .as_ref()
                    .map(|p| format!(" (report: {})", p.display()))
                    .unwrap_or_default(),
                t.superseded
            );
            if t.rejected > 0 {
                std::process::exit(3);
            }
        }
        Cmd::Wait {
            run_id,
            calls,
            timeout_secs,
        } => {
            let client = ch.client();
            let started = Instant::now();
            loop {
                let r = cdrctl::report::fetch(&client, &run_id).await;
                if let Ok(r) = &r {
                    if r.calls >= calls {
                        println!(
                            "{} calls landed after {:.1}s",
                            r.calls,
                            started.elapsed().as_secs_f64()
                        );
                        break;
                    }
                }
                if started.elapsed() > Duration::from_secs(timeout_secs) {
                    anyhow::bail!(
                        "timed out: {:?} of {calls} calls after {timeout_secs}s",
                        r.map(|r| r.calls).ok()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Cmd::Invoice {
            account,
            period,
            out,
        } => {
            let w = cdrctl::invoice::write(&ch.client(), &account, period, &out).await?;
            for p in [&w.lines_csv, &w.total_csv, &w.json] {
                println!("wrote {}", p.display());
            }
            println!(
                "invoice {account} {period}: {} lines, total {}",
                w.lines, w.total
            );
        }
        Cmd::Report { run_id } => {
            let r = cdrctl::report::fetch(&ch.client(), &run_id).await?;
            println!("{r}");
        }
        Cmd::Schemas { dir } => {
            for (name, json) in cdr_model::avro::all_schemas() {
                let p = dir.join(format!("{name}.avsc"));
                std::fs::write(&p, json + "\n")
                    .with_context(|| format!("writing {}", p.display()))?;
                println!("wrote {}", p.display());
            }
        }
        Cmd::Rate {
            decks,
            accounts,
            numbering,
            lrn_file,
            enricher_config,
            plan_changes,
            surcharges,
            decks_config,
            calls,
            out,
        } => {
            let base = std::env::current_dir().context("working directory")?;
            let mut enrichment = match (&enricher_config, &numbering) {
                (Some(cfg), _) => cdrctl::rate::OfflineEnrichment::from_enricher_config(cfg)?,
                (None, Some(np)) => {
                    cdrctl::rate::OfflineEnrichment::from_files(np, lrn_file.as_deref())?
                }
                (None, None) => anyhow::bail!("--numbering or --enricher-config is required"),
            };
            let (mut tables, summary) = match decks_config {
                Some(cfg) => rater::load_from_config_file(&cfg, &base)?,
                None => {
                    let cfg = rater::RatingConfig {
                        decks_dir: decks,
                        accounts: Some(accounts.context("--accounts is required with --decks")?),
                        uk_surcharges: Some(
                            surcharges.context("--surcharges is required with --decks")?,
                        ),
                        ..Default::default()
                    };
                    rater::load(&cfg, &base)?
                }
            };
            for r in &summary.rejected {
                eprintln!("row rejected: {r}");
            }
            for w in &summary.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(p) = &plan_changes {
                let f =
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                let n = cdrctl::rate::apply_plan_changes(
                    &mut tables,
                    std::io::BufReader::new(f),
                    &p.display().to_string(),
                )?;
                eprintln!("{n} plan change(s) applied");
            }
            let name = calls.display().to_string();
            let stdout: Box<dyn std::io::Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let (rated, unrated) = if name == "-" {
                cdrctl::rate::rate_lines(
                    std::io::stdin().lock(),
                    "stdin",
                    &mut enrichment,
                    &tables.context(),
                    stdout,
                )
                .await?
            } else {
                let f = std::fs::File::open(&calls).with_context(|| format!("opening {name}"))?;
                cdrctl::rate::rate_lines(
                    std::io::BufReader::new(f),
                    &name,
                    &mut enrichment,
                    &tables.context(),
                    stdout,
                )
                .await?
            };
            eprintln!("{rated} rated, {unrated} not rated (unrated or inbound)");
        }
        Cmd::Deck {
            cmd:
                DeckCmd::Diff {
                    old,
                    new,
                    kind,
                    plan,
                    notice_days,
                    now,
                    json,
                },
        } => {
            let format: rater::DeckFormat = enum_arg("deck kind", &kind)?;
            let plan: Option<rater::tables::PlanName> =
                plan.map(|p| enum_arg("plan", &p)).transpose()?;
            let now = match now {
                Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
                    .with_context(|| format!("--now `{s}` is not RFC 3339"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let (d, rejected) =
                cdrctl::deck::diff_files(&old, &new, format, plan, notice_days, now)?;
            for r in &rejected {
                eprintln!("row rejected: {r}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", cdrctl::deck::render_diff(&d, notice_days));
            }
            if d.short_notice().count() > 0 {
                std::process::exit(3);
            }
        }
        Cmd::Deck {
            cmd: DeckCmd::Publish { rater_config },
        } => {
            let base = std::env::current_dir().context("working directory")?;
            let (versions, rows) =
                cdrctl::deck::publish(&ch.client(), &rater_config, &base).await?;
            println!("published {versions} deck versions, {rows} rows to ClickHouse");
        }
        Cmd::Rerate {
            rater_config,
            account,
            from,
            to,
            destination,
            status,
            unrated_reason,
            deck_id,
            reason,
            actor,
            dry_run,
        } => {
            let base = std::env::current_dir().context("working directory")?;
            let (mut tables, summary) = rater::load_from_config_file(&rater_config, &base)?;
            for r in &summary.rejected {
                eprintln!("row rejected: {r}");
            }
            let client = ch.client();
            let plans = cdrctl::rerate::load_plan_history(&client, &mut tables).await?;
            let decks: Vec<String> = summary
                .decks
                .iter()
                .map(|d| format!("{}@{}", d.deck_id, d.version))
                .collect();
            let req = cdrctl::rerate::Request {
                selection: cdrctl::rerate::Selection {
                    account,
                    from,
                    to,
                    destination,
                    status,
                    deck_id,
                    unrated_reason,
                },
                actor,
                reason,
                dry_run,
                tables: format!(
                    "{}: decks {}; {} accounts; {plans} plan changes",
                    rater_config.display(),
                    decks.join(" "),
                    summary.accounts
                ),
            };
            let o = cdrctl::rerate::rerate(&client, &tables, &req).await?;
            print!("{}", o.diff_tsv());
            println!(
                "run {}: {} of {} selected calls re-rated{}; {} credit correction(s) totalling {}",
                o.run_id,
                o.changed,
                o.selected,
                if dry_run {
                    " (dry run: nothing written)"
                } else {
                    ""
                },
                o.credit_corrections,
                o.credit_correction_amount.normalize()
            );
            for r in &o.rejected {
                eprintln!("rejected: {r}");
            }
            if !o.rejected.is_empty() {
                std::process::exit(2);
            }
        }
        Cmd::Reconcile {
            carrier,
            file,
            columns,
            delimiter,
            format,
            start_tolerance_ms,
            duration_tolerance_ms,
            cost_tolerance,
            from,
            to,
            actor,
        } => {
            let delimiter = match delimiter.as_str() {
                "tab" | "\\t" => b'\t',
                d if d.len() == 1 => d.as_bytes()[0],
                d => anyhow::bail!("--delimiter `{d}`: one character or `tab`"),
            };
            let cost = rust_decimal::Decimal::from_str_exact(cost_tolerance.trim())
                .with_context(|| format!("--cost-tolerance `{cost_tolerance}`"))?;
            anyhow::ensure!(
                start_tolerance_ms >= 0 && duration_tolerance_ms >= 0 && !cost.is_sign_negative(),
                "tolerances must not be negative"
            );
            let req = cdrctl::reconcile::Request {
                carrier,
                file,
                mapping: columns.parse()?,
                delimiter,
                format: format
                    .as_deref()
                    .map(|f| f.parse::<switch_adapters::Format>())
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--format: {e}"))?,
                tolerances: cdrctl::reconcile::Tolerances {
                    start_ms: start_tolerance_ms,
                    duration_ms: duration_tolerance_ms,
                    cost,
                },
                from,
                to,
                actor,
            };
            let (summary, rejected) = cdrctl::reconcile::run(&ch.client(), &req).await?;
            print!("{}", cdrctl::reconcile::summary_text(&summary));
            for r in &rejected {
                eprintln!("{}: {r}", req.file.display());
            }
            if !rejected.is_empty() {
                std::process::exit(2);
            }
        }
        Cmd::Dlq {
            cmd: DlqCmd::List { filter },
        } => {
            let groups = cdrctl::dlq::list(&ch.client(), &filter.into_filter(true)).await?;
            println!("reason\ttopic\tdead_letters\ttruncated\treplayed\tfirst_at\tlast_at");
            for g in &groups {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    g.reason,
                    g.topic,
                    g.dead_letters,
                    g.truncated,
                    g.replayed,
                    g.first_at,
                    g.last_at
                );
            }
        }
        Cmd::Dlq {
            cmd:
                DlqCmd::Replay {
                    filter,
                    again,
                    actor,
                    fix,
                },
        } => {
            let actor = cdrctl::control::actor(&kafka, actor.as_deref())?;
            let fix = fix
                .as_deref()
                .map(cdrctl::dlq::FixMapping::load)
                .transpose()?;
            let r = cdrctl::dlq::replay(
                &ch.client(),
                &kafka,
                &filter.into_filter(again),
                &actor,
                fix.as_ref(),
            )
            .await?;
            println!("replayed {} dead letters", r.sent);
            for id in &r.truncated {
                eprintln!("dead letter {id}: only a prefix of the record was kept; not replayed");
            }
            for id in &r.undecodable {
                eprintln!("dead letter {id}: payload_b64 does not decode; not replayed");
            }
            for (id, e) in &r.unfixable {
                eprintln!("dead letter {id}: the fix does not apply ({e}); not replayed");
            }
            if !r.truncated.is_empty() || !r.undecodable.is_empty() || !r.unfixable.is_empty() {
                std::process::exit(2);
            }
        }
        Cmd::Account {
            cmd:
                AccountCmd::SetPlan {
                    account,
                    plan,
                    reason,
                    actor,
                    at,
                },
        } => {
            let actor = cdrctl::control::actor(&kafka, actor.as_deref())?;
            let c = cdrctl::control::plan_change(&account, &plan, &reason, &actor, at_ms(at)?)?;
            cdrctl::control::publish_plan_change(&kafka, &c).await?;
            println!(
                "account {account}: {} from {} (change {})",
                c.new_plan,
                chrono::DateTime::from_timestamp_millis(c.decided_at_ms).unwrap_or_default(),
                c.change_id
            );
        }
        Cmd::Route {
            cmd:
                RouteCmd::Restore {
                    trunk,
                    breakout,
                    reason,
                    actor,
                },
        } => {
            let actor = cdrctl::control::actor(&kafka, actor.as_deref())?;
            let e = cdrctl::control::route_restore(
                &trunk,
                &breakout,
                &reason,
                &actor,
                cdr_kafka::now_ms(),
            );
            cdrctl::control::publish_route_status(&kafka, &e).await?;
            println!(
                "route {trunk} / {breakout}: restored (event {})",
                e.event_id
            );
        }
        Cmd::Probe { .. } => unreachable!("answered before the connections are loaded"),
        Cmd::BenchBroker { messages, size } => {
            let (p, c) = cdrctl::bench_broker(&kafka, messages, size).await?;
            println!("broker raw rate: produce {p:.0} msg/s, consume {c:.0} msg/s ({messages} x {size} B)");
        }
    }
    Ok(())
}

/// cdrctl's own configuration: the services' connection sections.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CtlConfig {
    #[serde(default)]
    kafka: KafkaConfig,
    #[serde(default)]
    clickhouse: ClickHouseConfig,
}

/// The Kafka and ClickHouse settings: configuration file, then
/// `CDR__KAFKA__*` / `CDR__CLICKHOUSE__*`, then the flags; validated as
/// the services validate theirs (delivery settings cannot be overridden).
fn connections(cli: &Cli) -> anyhow::Result<(KafkaConfig, ClickHouseConfig)> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            let k = k.to_ascii_uppercase();
            k.starts_with("CDR__KAFKA__") || k.starts_with("CDR__CLICKHOUSE__")
        })
        .collect();
    let cfg: CtlConfig = cdr_kafka::config::load_config_from(cli.ctl_config.as_deref(), &env)?;
    let mut kafka = cfg.kafka;
    if let Some(b) = &cli.brokers {
        kafka.brokers = b.clone();
    }
    kafka.validate()?;
    let mut ch = cfg.clickhouse;
    if let Some(u) = &cli.clickhouse {
        ch.url = u.clone();
    }
    if let Some(u) = &cli.ch_user {
        ch.user = u.clone();
    }
    ch.validate()?;
    Ok((kafka, ch))
}

fn tracing_subscriber_init() {
    cdr_kafka::telemetry::init_tracing("cdrctl");
}
