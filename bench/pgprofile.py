#!/usr/bin/env python
"""Where PostgreSQL's time goes during a bench run, without pg_stat_statements (which needs a
restart to load): samples pg_stat_activity of one database every few milliseconds and counts, per
statement, how often a backend was seen running it (and on what it waited). A statement's share of
the samples is its share of backend time. Needs a role that may read other roles' queries
(pg_read_all_stats, or the local superuser).

    python bench/pgprofile.py --db sentinai_bench --seconds 60 [--interval 0.005] [--top 25]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter

import psycopg

LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+\b")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dsn", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", help="write the counts here")
    args = parser.parse_args()
    statements: Counter[str] = Counter()
    waits: Counter[str] = Counter()
    samples = 0
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            rows = conn.execute(
                "SELECT query, coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
                "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                [args.db],
            ).fetchall()
            samples += 1
            for query, wait in rows:
                key = LITERALS.sub("?", " ".join(query.split()))[:160]
                statements[key] += 1
                waits[wait] += 1
            time.sleep(args.interval)
    total = sum(statements.values()) or 1
    print(f"{samples} samples, {total} active backend observations ({total / samples:.2f} busy backends on average)")
    for key, n in statements.most_common(args.top):
        print(f"{n / total:6.1%}  {key}")
    print("waits:", ", ".join(f"{k} {n / total:.1%}" for k, n in waits.most_common(8)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"samples": samples, "statements": statements.most_common(), "waits": waits.most_common()}, out)


if __name__ == "__main__":
    main()
