//! TLS and SASL to Kafka (issue 15), as far as this machine can exercise
//! them: the local broker (tansu) has no TLS or SASL listener, so no
//! handshake with a broker is made here. What is exercised: every example
//! in `deploy/kafka/` loads through the typed configuration with its secret
//! from the environment or a file, and librdkafka accepts the resulting
//! settings when creating a producer and a consumer (it refuses
//! `security.protocol=SASL_SSL` and SCRAM at creation unless built with
//! OpenSSL and SASL support); bad combinations are refused with the
//! setting named; secrets never reach `Debug`.

use std::path::{Path, PathBuf};

use cdr_kafka::config::{load_config_from, KafkaConfig, SaslMechanism, SecurityProtocol};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Ctl {
    kafka: KafkaConfig,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("kafka-sec-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A CA bundle librdkafka can load.
fn ca_pem(dir: &Path) -> PathBuf {
    let ck = rcgen::generate_simple_self_signed(vec!["kafka-1.internal".to_string()]).unwrap();
    let p = dir.join("ca.pem");
    std::fs::write(&p, ck.cert.pem()).unwrap();
    p
}

fn create(k: &KafkaConfig) {
    let mut c = k.client_config("security-test").expect("client config");
    c.set("group.id", "security-test");
    let _p: BaseProducer = c
        .create()
        .expect("librdkafka accepts the producer settings");
    let _c: BaseConsumer = c
        .create()
        .expect("librdkafka accepts the consumer settings");
}

#[test]
fn every_deploy_example_loads_and_builds_clients() {
    let dir = scratch();
    let ca = ca_pem(&dir);
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, "s3cret-from-file\n").unwrap();
    let examples = repo().join("deploy/kafka");
    let mut seen = 0;
    for e in std::fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        let mut env = vec![];
        if text.contains("password_file") {
            env.push((
                "CDR__KAFKA__SECURITY__SASL__PASSWORD_FILE".to_string(),
                pw_file.display().to_string(),
            ));
        } else {
            env.push((
                "CDR__KAFKA__SECURITY__SASL__PASSWORD".to_string(),
                "9876543210".to_string(),
            ));
        }
        if text.contains("ca_location") {
            env.push((
                "CDR__KAFKA__SECURITY__CA_LOCATION".to_string(),
                ca.display().to_string(),
            ));
        }
        let c: Ctl =
            load_config_from(Some(&p), &env).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        c.kafka
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            c.kafka.security.protocol,
            SecurityProtocol::SaslSsl,
            "{}",
            p.display()
        );
        let props = c.kafka.security.properties().unwrap();
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let pw = get("sasl.password").unwrap();
        assert!(
            pw == "9876543210" || pw == "s3cret-from-file",
            "{}",
            p.display()
        );
        assert!(get("ssl.ca.location").is_some());
        let shown = format!("{:?}", c.kafka);
        assert!(
            !shown.contains(&pw),
            "{}: secret in Debug: {shown}",
            p.display()
        );
        create(&c.kafka);
    }
    assert_eq!(seen, 4, "one example per cluster kind");
}

#[test]
fn every_mechanism_and_mutual_tls_are_compiled_in() {
    let dir = scratch();
    let ca = ca_pem(&dir);
    let client = rcgen::generate_simple_self_signed(vec!["cdr-rater".to_string()]).unwrap();
    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&cert, client.cert.pem()).unwrap();
    std::fs::write(&key, client.key_pair.serialize_pem()).unwrap();
    for (protocol, mechanism) in [
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ("SASL_SSL", "OAUTHBEARER"),
    ] {
        let toml =
            format!(
            "[kafka]\nbrokers = \"127.0.0.1:1\"\n[kafka.security]\nprotocol = \"{protocol}\"\n{}\
             [kafka.security.sasl]\nmechanism = \"{mechanism}\"\nusername = \"u\"\n\
             oauthbearer_config = \"principal=cdr-rater\"\n",
            if protocol == "SASL_SSL" { format!("ca_location = {:?}\n", ca) } else { String::new() }
        );
        let f = dir.join("c.toml");
        std::fs::write(&f, toml).unwrap();
        let env = [(
            "CDR__KAFKA__SECURITY__SASL__PASSWORD".to_string(),
            "pw".to_string(),
        )];
        let mut c: Ctl = load_config_from(Some(&f), &env).unwrap();
        if mechanism == "OAUTHBEARER" {
            // No OIDC token endpoint in this build: a static principal.
            c.kafka
                .properties
                .insert("enable.sasl.oauthbearer.unsecure.jwt".into(), "true".into());
            assert_eq!(
                c.kafka.security.sasl.as_ref().unwrap().mechanism,
                SaslMechanism::OauthBearer
            );
        }
        c.kafka.validate().unwrap();
        create(&c.kafka);
    }
    // Mutual TLS with the system store (no CA file) and a client certificate.
    let toml = format!(
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n[kafka.security]\nprotocol = \"SSL\"\n\
         certificate_location = {:?}\nkey_location = {:?}\n",
        cert, key
    );
    let f = dir.join("mtls.toml");
    std::fs::write(&f, toml).unwrap();
    let c: Ctl = load_config_from(Some(&f), &[]).unwrap();
    c.kafka.validate().unwrap();
    let props = c.kafka.security.properties().unwrap();
    assert!(props.contains(&("ssl.ca.location", "probe".to_string())));
    create(&c.kafka);
}

#[test]
fn bad_security_settings_are_refused_naming_the_setting() {
    let cases = [
        ("[kafka.security]\nprotocol = \"SASL_SSL\"\n", "needs [kafka.security.sasl]"),
        (
            "[kafka.security]\nprotocol = \"PLAINTEXT\"\n[kafka.security.sasl]\nmechanism = \"PLAIN\"\n",
            "has no SASL",
        ),
        (
            "[kafka.security]\nprotocol = \"SASL_SSL\"\n[kafka.security.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\n",
            "password",
        ),
        (
            "[kafka.security]\nprotocol = \"SASL_SSL\"\n[kafka.security.sasl]\nmechanism = \"SCRAM-SHA-512\"\npassword = \"p\"\n",
            "username",
        ),
        (
            "[kafka.security]\nprotocol = \"SSL\"\ncertificate_location = \"/etc/hosts\"\n",
            "go together",
        ),
        (
            "[kafka.security]\nprotocol = \"SSL\"\nca_location = \"/nonexistent/ca.pem\"\n",
            "ca_location",
        ),
        ("[kafka.security]\nprotocol = \"PLAINTEXT\"\nca_location = \"/etc/hosts\"\n", "no TLS"),
        ("[kafka.security]\nprotocol = \"TLS\"\n", "unknown variant"),
        ("[kafka.security.sasl]\nmechanism = \"GSSAPI\"\n", "unknown variant"),
        ("[kafka]\nreplication_factor = 0\n", "replication_factor"),
    ];
    let dir = scratch();
    for (body, want) in cases {
        let body = if body.starts_with("[kafka]") {
            body.to_string()
        } else {
            format!("[kafka]\nbrokers = \"k:1\"\n{body}")
        };
        let f = dir.join("bad.toml");
        std::fs::write(&f, &body).unwrap();
        let e = match load_config_from::<Ctl>(Some(&f), &[]) {
            Err(e) => e.to_string(),
            Ok(c) => c.kafka.validate().unwrap_err().to_string(),
        };
        assert!(e.contains(want), "{body}\n=> {e}");
    }
}
