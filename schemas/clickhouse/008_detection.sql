-- FAS and traffic-profile detection outputs (detector service, via topics
-- routes.alerts, routes.status, billing.adjustments, accounts.alerts).

-- One row per route alert (deterministic alert_id).
CREATE TABLE IF NOT EXISTS cdr.route_alerts
(
    alert_id     String,
    trunk_id     LowCardinality(String),
    breakout     LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end   DateTime64(3, 'UTC'),
    patterns     Array(String),
    evidence     Map(String, Float64),
    action       LowCardinality(String),
    credited_calls UInt64,
    credited_amount Decimal(38, 18),
    raised_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (trunk_id, breakout, alert_id);

-- Route status history: every pull and every restore is a row (the audit
-- trail); the current status is the latest row per route.
CREATE TABLE IF NOT EXISTS cdr.route_status
(
    event_id   String,
    trunk_id   LowCardinality(String),
    breakout   LowCardinality(String),
    status     LowCardinality(String),
    reason     String,
    alert_id   Nullable(String),
    actor      String,
    changed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (trunk_id, breakout, changed_at, event_id);

CREATE OR REPLACE VIEW cdr.route_status_current AS
SELECT
    trunk_id, breakout,
    argMax(status, (changed_at, event_id)) AS status,
    argMax(reason, (changed_at, event_id)) AS reason,
    argMax(actor, (changed_at, event_id)) AS actor,
    max(changed_at) AS since
FROM cdr.route_status
GROUP BY trunk_id, breakout;

-- Credits and other adjustments: negative amounts referencing the CDR; the
-- rated CDR itself is never rewritten. Invoices net these in.
CREATE TABLE IF NOT EXISTS cdr.adjustments
(
    adjustment_id String,
    cdr_id        String,
    account_id    LowCardinality(String),
    amount        Decimal(38, 18),
    currency      LowCardinality(String),
    reason        LowCardinality(String),
    alert_id      Nullable(String),
    call_setup_ts DateTime64(3, 'UTC'),
    created_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(call_setup_ts)
ORDER BY (account_id, adjustment_id);

CREATE OR REPLACE VIEW cdr.adjustments_final AS
SELECT * FROM cdr.adjustments
ORDER BY adjustment_id, created_at DESC
LIMIT 1 BY adjustment_id;

-- Account traffic-profile alerts (undeclared dialer traffic).
CREATE TABLE IF NOT EXISTS cdr.account_alerts
(
    alert_id     String,
    account_id   LowCardinality(String),
    kind         LowCardinality(String),
    declared     LowCardinality(String),
    observed     LowCardinality(String),
    evidence     Map(String, Float64),
    window_start DateTime64(3, 'UTC'),
    window_end   DateTime64(3, 'UTC'),
    raised_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (account_id, alert_id);
