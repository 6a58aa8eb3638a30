//! The local broker's store, as `deploy/local/start.sh` prepares it, keeps
//! answering while tansu compacts.
//!
//! tansu 0.6 compacts every compacted topic at start and every 10 minutes,
//! in one sqlite statement that holds its only connection. Without the
//! indexes `deploy/local/tansu_store.py` adds, that statement walks a whole
//! partition per re-written key: 4,000 re-written keys held the broker for
//! 16 s, every consumer's 6 s session expired and the groups wedged. The
//! test runs a private tansu (own store, own port), prepares the store the
//! way start.sh does, re-writes 4,000 keys of a compacted topic, restarts
//! the broker (which compacts at once) and requires that the broker answers
//! a produce within a few seconds and that compaction still did its job:
//! the newest record of every key, and nothing else, is left.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, TopicPartitionList};

/// Keys written twice: compaction must drop the first record of each.
const KEYS: usize = 4_000;
/// Keys written once before them, as a long-lived state topic holds
/// (tansu keeps a compacted topic's tombstones for ever): without the index
/// compaction walks them once per re-written key.
const HISTORY: usize = 20_000;
const TOPIC: &str = "state.compacted";

fn tansu_bin() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}/deploy/local/env.sh >/dev/null && {}/deploy/local/install.sh >/dev/null \
             && printf %s \"$TANSU_BIN\"",
            cdr_e2e::repo().display(),
            cdr_e2e::repo().display()
        ))
        .output()
        .expect("run env.sh");
    assert!(out.status.success(), "env.sh/install.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A tansu broker on its own store and port; killed when dropped.
struct Broker {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a new empty store under the temp dir, started, its store
    /// prepared as start.sh does when `indexed`.
    fn fresh(bin: PathBuf, name: &str, indexed: bool) -> Broker {
        let dir = std::env::temp_dir().join(format!("cdr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut broker = Broker {
            bin,
            dir,
            port: free_port(),
            child: None,
        };
        broker.start();
        if indexed {
            prepare_store(&broker.dir);
        }
        broker
    }

    fn start(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("log file");
        let child = Command::new(&self.bin)
            .current_dir(&self.dir)
            .args(["broker", "--storage-engine", "sqlite://tansu.db"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "tansu did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What start.sh runs once the broker listens.
fn prepare_store(dir: &Path) {
    let st = Command::new("python3")
        .arg(cdr_e2e::repo().join("deploy/local/tansu_store.py"))
        .arg(dir.join("tansu.db"))
        .status()
        .expect("run tansu_store.py");
    assert!(st.success(), "tansu_store.py failed");
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer")
}

async fn create_topic(brokers: &str, topic: NewTopic<'_>) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    for r in admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("create topic")
    {
        r.expect("topic created");
    }
}

/// Produces every (key, value) to `topic` (partition `partition`, else by
/// key), waiting while the local queue is full, then for every ack.
async fn produce_all(
    p: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    records: impl Iterator<Item = (String, String)>,
) {
    let mut acks = Vec::new();
    for (key, value) in records {
        loop {
            let mut rec = FutureRecord::to(topic).key(&key).payload(&value);
            if let Some(n) = partition {
                rec = rec.partition(n);
            }
            match p.send_result(rec) {
                Ok(f) => {
                    acks.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("queueing a record to {topic}: {e}"),
            }
        }
    }
    for a in acks {
        let delivered = a.await.expect("delivery reported");
        delivered.map_err(|(e, _)| e).expect("record acknowledged");
    }
}

async fn write_round(p: &FutureProducer, round: usize, keys: std::ops::Range<usize>) {
    let records = keys.map(|k| {
        let key = format!("call-{k:05}");
        let value = format!("round {round} of {key}");
        (key, value)
    });
    produce_all(p, TOPIC, Some(0), records).await;
}

/// Every record of the topic, oldest first (key, value).
fn read_all(brokers: &str) -> Vec<(String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "broker-store-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = c
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(30))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                out.push((text(m.key()), text(m.payload())));
                if m.offset() + 1 >= high {
                    return out;
                }
            }
            Some(Err(e)) => panic!("reading {TOPIC}: {e}"),
            None => {}
        }
    }
    panic!(
        "read {} records of {TOPIC} before the timeout (high watermark {high})",
        out.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_of_thousands_of_rewritten_keys_does_not_stall_the_local_broker() {
    let mut broker = Broker::fresh(tansu_bin(), "broker-store", true);
    let brokers = broker.brokers();
    create_topic(
        &brokers,
        NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    )
    .await;

    let p = producer(&brokers);
    write_round(&p, 0, KEYS..KEYS + HISTORY).await;
    write_round(&p, 1, 0..KEYS).await;
    write_round(&p, 2, 0..KEYS).await;
    drop(p);
    assert_eq!(
        read_all(&brokers).len(),
        HISTORY + 2 * KEYS,
        "every record stored before compaction"
    );

    // tansu compacts as soon as it starts.
    broker.stop();
    let restarted = Instant::now();
    broker.start();
    let p = producer(&brokers);
    p.send(
        FutureRecord::to(TOPIC)
            .key("probe")
            .payload("after restart")
            .partition(0),
        Duration::from_secs(60),
    )
    .await
    .expect("probe acknowledged");
    let answered = restarted.elapsed();

    // Compaction done once the first round's records are gone.
    let mut left = read_all(&brokers);
    while left.len() > HISTORY + KEYS + 1 && restarted.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = read_all(&brokers);
    }
    let compacted = restarted.elapsed();
    println!(
        "{KEYS} re-written keys: broker answered a produce {:.2} s after its restart; \
         compaction finished within {:.2} s",
        answered.as_secs_f64(),
        compacted.as_secs_f64()
    );
    left.retain(|(k, _)| k != "probe");
    assert_eq!(
        left.len(),
        HISTORY + KEYS,
        "compaction keeps one record per key"
    );
    let newest = |k: &str| {
        let n: usize = k["call-".len()..].parse().expect("numbered key");
        format!("round {} of {k}", if n < KEYS { 2 } else { 0 })
    };
    assert!(
        left.iter().all(|(k, v)| *v == newest(k)),
        "compaction kept an older record: {:?}",
        left.iter().find(|(k, v)| *v != newest(k))
    );
    assert!(
        answered < Duration::from_secs(4),
        "the broker answered a produce only {answered:?} after its restart: its compaction \
         held the store (a consumer's 6 s session would have expired)"
    );
}

/// What the indexes cost the broker: 100,000 keyed 300 B records produced
/// to a fresh private tansu with and without them, alternately, three
/// times each. `cargo test --release -p cdr-e2e --test broker_store --
/// --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints the produce rate with and without the store indexes"]
async fn produce_rate_with_and_without_the_store_indexes() {
    const N: usize = 100_000;
    let bin = tansu_bin();
    let payload = "x".repeat(300);
    for round in 0..6 {
        let indexed = round % 2 == 1;
        let broker = Broker::fresh(bin.clone(), &format!("broker-rate-{round}"), indexed);
        let brokers = broker.brokers();
        create_topic(
            &brokers,
            NewTopic::new("rate", 4, TopicReplication::Fixed(1)),
        )
        .await;
        let p = producer(&brokers);
        // Call-id-like keys: random order in a (topition, k) index.
        let records = (0..N).map(|i| {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (format!("{h:016x}-{i}"), payload.clone())
        });
        let t = Instant::now();
        produce_all(&p, "rate", None, records).await;
        let secs = t.elapsed().as_secs_f64();
        let rate = N as f64 / secs;
        println!(
            "{}: {N} records in {secs:.2} s = {rate:.0} msg/s",
            if indexed {
                "with indexes   "
            } else {
                "without indexes"
            }
        );
        assert_eq!(stored(&brokers, "rate", 4), N as i64, "every record stored");
    }
}

/// Records in `topic` (sum of its partitions' high watermarks).
fn stored(brokers: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|n| {
            c.fetch_watermarks(topic, n, Duration::from_secs(30))
                .expect("watermarks")
                .1
        })
        .sum()
}
