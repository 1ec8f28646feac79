"""Queue scale: latency of one SMS claim (`claim_due_sends` in
service/sql/sms_messages.sql, called through service.store.queries as the
dispatcher calls it) with 10 thousand and with 1 million future sends pending.

    .venv/bin/python bench/queue_scale.py [--claims 300] [--due 10] [--large 1000000]

For each size: the future sends are inserted with generate_series (due in a
day or more, so no claim may take them), the table is vacuumed and analysed
and a checkpoint taken; then each round inserts --due due rows (not timed)
and times one claim with the
dispatcher's limit (AMIVONO_SMS_CONCURRENCY, 32). The claim must stay flat:
it reads the partial index on due_at from its start up to now() only. A third
measurement adds a history of finished attempts (sms_attempts), which the
claim's `abandoned` step also reads. The database (amivono_bench_queue) is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from debian import ensure_debian_packages
from report import percentile, print_block, ratio
from stack import (
    LOG_DIR,
    SetupError,
    amivono,
    cleanup_on_exit,
    drop_database,
    fresh_database,
    psql,
    say,
)

DB = "amivono_bench_queue"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
SMALL = 10_000
LIMIT = 32


def insert_future(account_id: int, first: int, last: int) -> float:
    started = time.monotonic()
    psql(f"""
        INSERT INTO sms_messages (account_id, from_number, to_number, text, body, encoding,
                                  segments, repeat_total, due_at)
        SELECT {account_id}, '+46736265400', '+46736265449', 'future ' || g, 'future ' || g,
               'GSM-7', 1, 1, now() + interval '1 day' + g * interval '1 second'
        FROM generate_series({first}, {last}) g;""", DSN)
    took = time.monotonic() - started
    # Settle what the insert left behind (autovacuum's and the checkpoint's
    # work) before timing, for both sizes alike.
    psql("VACUUM (ANALYZE) sms_messages;\nCHECKPOINT;", DSN)
    return took


def set_history(count: int) -> None:
    """sms_attempts with exactly `count` finished attempts (of the future sends):
    each measurement starts from the same history. TRUNCATE, since the table's
    trigger refuses deletes (this is the bench's own database)."""
    psql("TRUNCATE sms_attempts, sms_delivery_reports;", DSN)
    if count:
        say(f"inserting {count:,} finished attempts")
        psql(f"""
            INSERT INTO sms_attempts (message_id, send_number, dispatcher, transport,
                                      started_at, finished_at, outcome, detail)
            SELECT id, 1, 'history', 'ari-pjsip', now() - interval '1 day',
                   now() - interval '1 day', 'sent', 'history'
            FROM sms_messages WHERE due_at > now() + interval '1 hour' LIMIT {count};""", DSN)
    psql("VACUUM (ANALYZE) sms_attempts;\nCHECKPOINT;", DSN)


def plan_of_claim(account_id: int, due: int, name: str) -> tuple[str, str]:
    """EXPLAIN ANALYZE of one claim of `due` due rows (rolled back): the scan on
    sms_messages and the server's execution time. The full plan goes to the logs."""
    import aiosql

    from service.store.queries import SQL_DIR

    # The statement as aiosql hands it to asyncpg (service.store.queries loads it
    # the same way), and the parameters in the order its $1, $2, ... number them.
    loaded = aiosql.from_path(SQL_DIR / "sms_messages.sql", "asyncpg", mandatory_parameters=False)
    sql = loaded.claim_due_sends.sql.strip().rstrip(";")
    order = loaded.driver_adapter.var_sorted["claim_due_sends"]
    values = {"limit": str(LIMIT), "dispatcher": "'bench'", "transport": "'ari-pjsip'",
              "ready": "ARRAY['ari-pjsip']", "lease_seconds": "60.0"}
    if sorted(order) != sorted(values):
        raise SetupError(f"claim_due_sends takes {order}, the bench knows {sorted(values)}")
    args = ", ".join(values[name] for name in order)
    out = psql(f"""BEGIN;
        INSERT INTO sms_messages (account_id, from_number, to_number, text, body, encoding,
                                  segments, repeat_total, due_at)
        SELECT {account_id}, '+46736265400', '+46736265449', 'due', 'due', 'GSM-7', 1, 1,
               now() - interval '1 second' FROM generate_series(1, {due});
        PREPARE claim AS {sql};
        EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE claim({args});
        ROLLBACK;""", DSN)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"queue-plan-{name}.txt").write_text(out)
    lines = [ln.strip() for ln in out.splitlines()]
    at = next((i for i, ln in enumerate(lines) if "sms_messages" in ln and "Scan" in ln), None)
    execution = next((ln for ln in lines if ln.startswith("Execution Time")), "?")
    if at is None:
        return "?", execution
    buffers = next((ln for ln in lines[at + 1:] if ln.startswith("Buffers")), "")
    return f"{lines[at].removeprefix('->').strip()}; {buffers}".strip("; "), execution


async def time_claims(account_id: int, claims: int, due: int) -> list[float]:
    import asyncpg

    from service.store.queries import queries

    conn = await asyncpg.connect(DSN)
    out = []
    try:
        for i in range(claims):
            await conn.execute(f"""
                INSERT INTO sms_messages (account_id, from_number, to_number, text, body,
                                          encoding, segments, repeat_total, due_at)
                SELECT {account_id}, '+46736265400', '+46736265449', 'due', 'due', 'GSM-7',
                       1, 1, now() - interval '1 second'
                FROM generate_series(1, {due})""")
            started = time.perf_counter()
            rows = await queries.sms_messages.claim_due_sends(
                conn, limit=LIMIT, dispatcher="bench", transport="ari-pjsip", ready=["ari-pjsip"],
                lease_seconds=60.0)
            out.append(time.perf_counter() - started)
            if len(rows) != due:
                raise SetupError(f"claim {i} took {len(rows)} rows, expected {due}")
            # Finish them as a dispatcher would, so the queue does not grow.
            ids = [row["attempt_id"] for row in rows]
            async with conn.transaction():  # as the dispatcher's batched outcomes
                await queries.sms_messages.lock_for_attempts(conn, attempt_ids=ids)
                await queries.sms_messages.finish_sends(
                    conn, attempt_ids=ids, outcomes=["sent"] * len(ids),
                    details=["bench"] * len(ids), gateways=[None] * len(ids),
                    max_failures=5, minute_seconds=60.0, retry_seconds=5.0)
    finally:
        await conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--claims", type=int, default=300)
    ap.add_argument("--due", type=int, default=10)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--history", type=int, default=1_000_000,
                    help="finished attempts in sms_attempts for the third measurement")
    args = ap.parse_args()
    if not (50 <= args.claims <= 5000 and 1 <= args.due <= LIMIT
            and SMALL < args.large <= 5_000_000 and 0 < args.history <= args.large):
        ap.error("--claims 50 to 5000, --due 1 to 32, --large 10001 to 5000000, "
                 "--history 1 to --large")

    results: dict[str, tuple] = {}
    with cleanup_on_exit() as stack:
        ensure_debian_packages("queue_scale")
        env = {"AMIVONO_DATABASE_URL": DSN}
        fresh_database(DSN)
        stack.callback(drop_database, DSN)
        amivono("keys", "create", "bench-queue", env=env)
        account_id = int(psql("SELECT id FROM accounts WHERE name = 'bench-queue'", DSN))
        inserted = 0
        scenarios = [(f"{SMALL:,} future sends", SMALL, 0),
                     (f"{args.large:,} future sends", args.large, 0),
                     (f"{args.large:,} future sends + {args.history:,} finished attempts",
                      args.large, args.history)]
        for label, size, history in scenarios:
            took = 0.0
            if size > inserted:
                say(f"inserting {size - inserted:,} future sends (total {size:,})")
                took = insert_future(account_id, inserted + 1, size)
                inserted = size
            set_history(history)
            asyncio.run(time_claims(account_id, 20, args.due))  # warm-up
            say(f"timing {args.claims} claims: {label}")
            lat = asyncio.run(time_claims(account_id, args.claims, args.due))
            pending = int(psql("SELECT count(*) FROM sms_messages WHERE due_at IS NOT NULL",
                               DSN))
            plan = plan_of_claim(account_id, args.due, str(len(results)))
            results[label] = (lat, took, pending, *plan)

    rows = []
    for label, (lat, took, pending, plan, execution) in results.items():
        rows += [
            (label, f"claim p50 {percentile(lat, 50) * 1000:.2f} ms, "
             f"p99 {percentile(lat, 99) * 1000:.2f} ms, max {max(lat) * 1000:.2f} ms "
             f"({len(lat)} claims of {args.due} due rows)"),
            ("  pending at the end / insert took", f"{pending:,} / {took:.1f} s"),
            ("  plan (EXPLAIN ANALYZE)", f"{plan}; {execution}"),
        ]
    small, large, history = (results[label][0] for label, _, _ in scenarios)
    rows += [
        (f"RATIO p50 {args.large:,}/{SMALL:,} pending",
         ratio(percentile(large, 50), percentile(small, 50))),
        (f"RATIO p99 {args.large:,}/{SMALL:,} pending",
         ratio(percentile(large, 99), percentile(small, 99))),
        (f"RATIO p50 with/without {args.history:,} attempts of history",
         ratio(percentile(history, 50), percentile(large, 50))),
    ]
    notes = [
        f"claim_due_sends(limit={LIMIT}) through service.store.queries on one asyncpg connection; "
        "the claimed sends are then finished together (finish_sends), as a dispatcher does",
        "time per claim includes the client round trip (loopback)",
        "each measurement starts from the history stated (sms_attempts truncated, then "
        f"filled); its own claims add {(args.claims + 20) * args.due:,} attempts as it runs "
        "(20 warm-up claims included)",
        f"database {DB}, dropped at the end",
    ]
    print_block("Queue scale (bench/queue_scale.py)", rows, notes)


if __name__ == "__main__":
    sys.exit(main())
