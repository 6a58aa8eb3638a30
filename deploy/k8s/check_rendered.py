"""Assertions on one `helm template` output of the cdr-pipeline chart.

    python3 check_rendered.py RENDERED.yaml OUT.yaml [--monitoring] [--hpa] [--sasl]

Writes every document that has a Kubernetes schema (everything but the
prometheus-operator kinds) to OUT.yaml for kubernetes-validate, prints one
line per failed assertion and "documents=N validate=M crd=K" on success,
and exits 1 on any failure. Needs PyYAML (kubernetes-validate's venv has it).
"""

import argparse
import base64
import sys

import yaml

SERVICES = {"assembler", "enricher", "rater", "detector", "kpi", "sink", "ingest"}
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}
KAFKA_PASSWORD_FILE = "/var/run/secrets/cdr/kafka-password"
METRICS_PORT = 9100
INGEST_HTTP_PORT = 9180
GRACE_SECONDS = 60
# Secret values shorter than this are not searched for (an empty or
# one-character value would match everywhere).
MIN_SECRET_LEN = 6

errors = []


def fail(msg):
    errors.append(msg)


def name_of(doc):
    return "%s/%s" % (doc.get("kind"), (doc.get("metadata") or {}).get("name"))


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc["spec"]
    return None


def containers(spec):
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def component(doc):
    return ((doc.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")


def secret_refs(spec):
    """(Secret, key) pairs of the credentials a pod gets: secretKeyRef env
    and the password volumes (CA bundles are public and may be shared). A
    volume without items exposes every key: key "*"."""
    refs = set()
    for c in containers(spec):
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
    for v in spec.get("volumes") or []:
        sec = v.get("secret")
        if sec and "password" in v["name"]:
            items = sec.get("items")
            keys = [i["key"] for i in items] if items else ["*"]
            refs |= {(sec["secretName"], k) for k in keys}
    return refs


def secret_values(docs):
    """(secret name, key, value) of every value a rendered Secret carries."""
    out = []
    for d in docs:
        if d.get("kind") != "Secret":
            continue
        for key, v in (d.get("data") or {}).items():
            try:
                value = base64.b64decode(v).decode("utf-8", "replace")
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                fail("%s: key %s is not base64: %s" % (name_of(d), key, e))
                continue
            out.append((d["metadata"]["name"], key, value))
        for key, value in (d.get("stringData") or {}).items():
            out.append((d["metadata"]["name"], key, str(value)))
    return out


def check_deployment(d, args):
    comp = component(d)
    spec = pod_spec(d)
    n = name_of(d)
    if comp not in SERVICES:
        fail("%s: unknown component label %r" % (n, comp))
    if spec.get("terminationGracePeriodSeconds") != GRACE_SECONDS:
        fail("%s: terminationGracePeriodSeconds is not %d" % (n, GRACE_SECONDS))
    if spec.get("automountServiceAccountToken") is not False:
        fail("%s: the service account token is mounted" % n)
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        fail("%s: pod securityContext.runAsNonRoot is not true" % n)
    aff = (spec.get("affinity") or {}).get("podAntiAffinity")
    if not aff:
        fail("%s: no pod anti-affinity" % n)
    if args.hpa:
        if "replicas" in d["spec"]:
            fail("%s: sets replicas although an HPA owns them" % n)
    elif not isinstance(d["spec"].get("replicas"), int):
        fail("%s: no replicas" % n)
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    tmp = vols.get("tmp", {})
    if "emptyDir" not in tmp:
        fail("%s: no emptyDir volume named tmp" % n)
    main = [c for c in spec.get("containers") or [] if c.get("name") == comp]
    if len(main) != 1:
        fail("%s: no container named %s" % (n, comp))
    for c in containers(spec):
        cn = "%s container %s" % (n, c.get("name"))
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"),
                            ("startupProbe", "/livez")):
            p = c.get(probe)
            if not p:
                fail("%s: no %s" % (cn, probe))
            elif (p.get("httpGet") or {}).get("path") != path:
                fail("%s: %s does not GET %s" % (cn, probe, path))
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            fail("%s: root filesystem is writable" % cn)
        if sc.get("allowPrivilegeEscalation") is not False:
            fail("%s: allowPrivilegeEscalation is not false" % cn)
        if sc.get("runAsNonRoot") is not True:
            fail("%s: runAsNonRoot is not true" % cn)
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            fail("%s: capabilities are not all dropped" % cn)
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            fail("%s: seccompProfile is not RuntimeDefault" % cn)
        if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts") or []):
            fail("%s: /tmp is not mounted" % cn)
        res = c.get("resources") or {}
        if not res.get("requests") or not (res.get("limits") or {}).get("memory"):
            fail("%s: resources lack requests or a memory limit" % cn)
        env = {e["name"]: e for e in c.get("env") or []}
        if (env.get("CDR__STAGE__KAFKA__JOIN_DELAY_MS") or {}).get("value") != "0":
            fail("%s: CDR__STAGE__KAFKA__JOIN_DELAY_MS is not 0" % cn)
        if (env.get("CDR__STAGE__METRICS_LISTEN") or {}).get("value") != "0.0.0.0:%d" % METRICS_PORT:
            fail("%s: CDR__STAGE__METRICS_LISTEN is not 0.0.0.0:%d" % (cn, METRICS_PORT))
        if "CDR__STAGE__KAFKA__BROKERS" not in env:
            fail("%s: no CDR__STAGE__KAFKA__BROKERS" % cn)
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        if ports.get("metrics") != METRICS_PORT:
            fail("%s: no metrics port %d" % (cn, METRICS_PORT))
        if comp == "ingest" and ports.get("http") != INGEST_HTTP_PORT:
            fail("%s: no http port %d" % (cn, INGEST_HTTP_PORT))
        # The config file, when there is one, is the first argument.
        args_ = c.get("args") or []
        if args_ and args_ != ["/etc/cdr/%s.toml" % comp]:
            fail("%s: args %r are not the service's config path" % (cn, args_))
        if (c.get("command") or [None])[0] != "/usr/local/bin/%s" % comp:
            fail("%s: command is not /usr/local/bin/%s" % (cn, comp))
        # ClickHouse settings: the sink only.
        ch = sorted(k for k in env if k.upper().startswith("CDR__CLICKHOUSE__"))
        if comp != "sink" and ch:
            fail("%s: ClickHouse settings outside the sink: %s" % (cn, ", ".join(ch)))
        if comp == "sink" and "CDR__CLICKHOUSE__URL" not in env:
            fail("%s: the sink has no CDR__CLICKHOUSE__URL" % cn)
        if c.get("envFrom"):
            fail("%s: envFrom could carry anything (ClickHouse credentials included)" % cn)
        # Kafka SASL: own user, password as a file, own key only.
        if args.sasl:
            user = (env.get("CDR__STAGE__KAFKA__SECURITY__SASL__USERNAME") or {}).get("value")
            if user != "cdr-%s" % comp:
                fail("%s: Kafka SASL user is %r, not cdr-%s" % (cn, user, comp))
            pf = (env.get("CDR__STAGE__KAFKA__SECURITY__SASL__PASSWORD_FILE") or {}).get("value")
            if pf != KAFKA_PASSWORD_FILE:
                fail("%s: Kafka password file is %r" % (cn, pf))
            kv = vols.get("kafka-password", {}).get("secret") or {}
            items = kv.get("items") or []
            if [(i.get("key"), i.get("path")) for i in items] != [(comp, "kafka-password")]:
                fail("%s: the Kafka password volume does not hold exactly the key %s" % (cn, comp))
    return comp


def check_hook(d):
    n = name_of(d)
    hooks = ((d.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    if set(hooks.split(",")) != {"pre-install", "pre-upgrade"}:
        fail("%s: not a pre-install,pre-upgrade hook (%r)" % (n, hooks))
    spec = pod_spec(d)
    cmds = [(c.get("command") or []) + (c.get("args") or []) for c in containers(spec)]
    for want in ("migrate", "topics"):
        if ["/usr/local/bin/cdrctl", want] not in cmds:
            fail("%s: does not run `cdrctl %s`" % (n, want))
    for c in containers(spec):
        for e in c.get("env") or []:
            if e["name"].startswith("CDR__STAGE__"):
                fail("%s: cdrctl reads CDR__KAFKA__/CDR__CLICKHOUSE__, not %s" % (n, e["name"]))
    return spec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rendered")
    ap.add_argument("out")
    ap.add_argument("--monitoring", action="store_true", help="ServiceMonitor and PrometheusRule expected")
    ap.add_argument("--hpa", action="store_true", help="an HPA per service expected")
    ap.add_argument("--sasl", action="store_true", help="Kafka SASL expected")
    args = ap.parse_args()

    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    seen = set()
    for d in docs:
        if not all(k in d for k in ("apiVersion", "kind", "metadata")):
            fail("a document lacks apiVersion/kind/metadata: %r" % str(d)[:120])
            continue
        key = (d["kind"], d["metadata"].get("name"))
        if key in seen:
            fail("%s rendered twice" % name_of(d))
        seen.add(key)

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)

    # Deployments: one per service, each checked.
    deps = {}
    for d in by_kind.get("Deployment", []):
        deps[check_deployment(d, args)] = d
    if set(deps) != SERVICES:
        fail("Deployments for %s, expected %s" % (sorted(deps), sorted(SERVICES)))

    # Services, PDBs, HPAs match the Deployments' pods.
    def selects(sel, d):
        labels = d["spec"]["template"]["metadata"]["labels"]
        return sel and all(labels.get(k) == v for k, v in sel.items())

    for comp, d in deps.items():
        svcs = [s for s in by_kind.get("Service", []) if selects(s["spec"].get("selector"), d)]
        ports = {p["name"]: p["port"] for s in svcs for p in s["spec"]["ports"]}
        if ports.get("metrics") != METRICS_PORT:
            fail("%s: no Service port metrics %d" % (name_of(d), METRICS_PORT))
        if comp == "ingest" and ports.get("http") != INGEST_HTTP_PORT:
            fail("%s: no Service port http %d" % (name_of(d), INGEST_HTTP_PORT))
        pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
                if selects(p["spec"]["selector"].get("matchLabels"), d)]
        if len(pdbs) != 1 or pdbs[0]["spec"].get("maxUnavailable") != 1:
            fail("%s: not exactly one PodDisruptionBudget with maxUnavailable 1" % name_of(d))
        hpas = [h for h in by_kind.get("HorizontalPodAutoscaler", [])
                if h["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"]]
        if len(hpas) != (1 if args.hpa else 0):
            fail("%s: %d HPAs (expected %d)" % (name_of(d), len(hpas), 1 if args.hpa else 0))
        for h in hpas:
            metrics = [m["external"]["metric"]["name"] for m in h["spec"]["metrics"] if m["type"] == "External"]
            if metrics != ["cdr_%s_consumer_lag" % comp]:
                fail("%s: scales on %r, not cdr_%s_consumer_lag" % (name_of(h), metrics, comp))

    # The migration hook.
    jobs = by_kind.get("Job", [])
    if len(jobs) != 1:
        fail("%d Jobs rendered (expected the migration hook)" % len(jobs))
    dep_refs = set()
    for d in deps.values():
        dep_refs |= secret_refs(pod_spec(d))
    for j in jobs:
        hook_refs = secret_refs(check_hook(j))
        shared = hook_refs & dep_refs
        if shared:
            fail("%s: shares Secret keys with the services: %s" % (name_of(j), sorted(shared)))

    # prometheus-operator objects: present exactly when enabled.
    for api, kind in sorted(CRD_KINDS):
        n = len([d for d in by_kind.get(kind, []) if d["apiVersion"] == api])
        want = 1 if args.monitoring else 0
        if n != want:
            fail("%d %s (%s) rendered, expected %d" % (n, kind, api, want))
    for sm in by_kind.get("ServiceMonitor", []):
        if [e.get("port") for e in sm["spec"]["endpoints"]] != ["metrics"]:
            fail("%s: does not scrape the metrics port" % name_of(sm))

    # No Secret value outside Secrets: not in env values, args, commands,
    # ConfigMaps or annotations; and nothing secret-looking as a literal.
    values = [(s, k, v) for s, k, v in secret_values(docs) if len(v) >= MIN_SECRET_LEN]
    for d in docs:
        if d.get("kind") == "Secret":
            continue
        spec = pod_spec(d)
        if spec is not None:
            for c in containers(spec):
                cn = "%s container %s" % (name_of(d), c.get("name"))
                literal = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
                literal += [str(e.get("value", "")) for e in c.get("env") or []]
                for s, k, v in values:
                    if any(v in x for x in literal):
                        fail("%s: the value of Secret %s key %s is in its args/command/env" % (cn, s, k))
                for e in c.get("env") or []:
                    upper = e["name"].upper()
                    if ("PASSWORD" in upper or "TOKEN" in upper or "SECRET" in upper) \
                            and not upper.endswith("_FILE") and "value" in e:
                        fail("%s: %s is a literal value (use a Secret)" % (cn, e["name"]))
        text = yaml.safe_dump(d)
        for s, k, v in values:
            if v in text:
                fail("%s: contains the value of Secret %s key %s" % (name_of(d), s, k))

    crd = [d for d in docs if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS]
    rest = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in CRD_KINDS]
    with open(args.out, "w") as f:
        yaml.safe_dump_all(rest, f, sort_keys=False)

    for e in errors:
        print("FAIL %s" % e)
    if errors:
        return 1
    print("documents=%d validate=%d crd=%d secrets_checked=%d" % (len(docs), len(rest), len(crd), len(values)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
