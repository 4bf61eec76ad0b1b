"""Micro-benchmark of the journal store alone (no HTTP): commit latency, start-up, compaction.

    .venv/bin/python -m bench.store_micro [--sizes 1000,10000,50000] [--groups 2000]

For each size it fills a fresh data directory with Entra-shaped users, then measures on the
repository directly: a durable create, a replace, adding one member to a 10,000-member
group (p50/p99/max over a few thousand commits each), the worst commit latency while a
compaction runs, and - in a fresh subprocess - the start-up time and peak RSS of reopening
the directory after a close (data file only) and after a crash (data file + journal).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from storage.journal import JournalRepository
from storage.journal.format import list_segments
from storage.repository import Index

INDEXES = [
    Index("User", "userName", unique=True, fold=str.casefold),
    Index("User", "externalId"),
    Index("Group", "displayName", unique=True, fold=str.casefold),
    Index("Group", "externalId"),
]
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def entra_user(number: int) -> dict:
    """A user shaped like the ones Entra provisions (about 700 bytes of JSON)."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": f"user{number}@contoso.example.com",
        "externalId": f"{number:08d}-7c2e-4d0b-9a4c-5f1e3b2a9d8c",
        "active": True,
        "displayName": f"User Number {number}",
        "name": {"givenName": "User", "familyName": f"Number {number}", "formatted": "x"},
        "emails": [{"value": f"user{number}@contoso.example.com", "type": "work", "primary": True}],
        "title": "Engineer",
        "addresses": [{"type": "work", "locality": "Oslo", "country": "NO", "primary": True}],
        ENTERPRISE: {"department": "Research", "employeeNumber": str(number)},
    }


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):6.3f}  p99 {p99:6.3f}  max {ordered[-1]:7.3f} ms"


def timed(action, count: int) -> list[float]:
    samples = []
    for number in range(count):
        started = time.perf_counter()
        action(number)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def fill(store: JournalRepository, users: int, groups: int) -> tuple[list[str], list[str]]:
    user_ids, group_ids = [], []
    for start in range(0, users, 1000):
        with store.transaction() as tx:
            for number in range(start, min(start + 1000, users)):
                user_ids.append(tx.insert("User", entra_user(number))["id"])
    with store.transaction() as tx:
        for number in range(groups):
            group_ids.append(tx.insert("Group", {"displayName": f"Group {number}"})["id"])
    return user_ids, group_ids


def measure_size(users: int, groups: int, directory: Path) -> None:
    data_dir = directory / f"n{users}"
    store = JournalRepository(data_dir, INDEXES)
    user_ids, group_ids = fill(store, users, groups)
    big = group_ids[0]
    members = user_ids[: min(10_000, users - 1)]
    for start in range(0, len(members), 1000):
        with store.transaction() as tx:
            tx.add_members(big, members[start : start + 1000])
    store.compact()
    print(f"\n== {users} users, {groups} groups ({len(members)} members in one group)")

    created: list[str] = []

    def create(number: int) -> None:
        with store.transaction() as tx:
            created.append(tx.insert("User", entra_user(users + number))["id"])

    def replace(number: int) -> None:
        id = user_ids[number % len(user_ids)]
        with store.transaction() as tx:
            document = tx.get("User", id)
            document["title"] = f"Title {number}"
            tx.replace("User", id, document)

    def add_member(number: int) -> None:
        with store.transaction() as tx:
            tx.add_members(big, [created[number]])

    def remove_member(number: int) -> None:
        with store.transaction() as tx:
            tx.remove_members(big, [created[number]])

    print(f"create (durable)          {percentiles(timed(create, 2000))}")
    print(f"replace (durable)         {percentiles(timed(replace, 2000))}")
    print(f"add 1 member to big group {percentiles(timed(add_member, 2000))}")
    print(f"remove 1 member from it   {percentiles(timed(remove_member, 2000))}")

    # Compaction pause: a writer commits continuously while a full compaction runs.
    stop, during = threading.Event(), []

    def writer() -> None:
        number = 100_000
        while not stop.is_set():
            started = time.perf_counter()
            create(number)
            during.append((time.perf_counter() - started) * 1000)
            number += 1

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    store.compact()
    took = (time.perf_counter() - started) * 1000
    stop.set()
    thread.join()
    print(f"compaction {took:7.1f} ms; commits meanwhile: {percentiles(during)}")
    size = (data_dir / "proware.json").stat().st_size
    crashed = directory / f"n{users}-crashed"
    shutil.copytree(data_dir, crashed)  # files as kill -9 would leave them, journal included
    store.close()
    print(f"data file {size / 1e6:.1f} MB")
    for label, path in (("after close", data_dir), ("after crash", crashed)):
        report = json.loads(
            subprocess.run(
                [sys.executable, "-m", "bench.store_micro", "--open", str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        print(
            f"start-up {label:11}  {report['seconds']:.2f} s, RSS {report['rss_mb']:.0f} MB "
            f"(peak {report['peak_mb']:.0f} MB)"
            f" ({report['users']} users, {report['groups']} groups, journal "
            f"{report['journal_kb']:.0f} KB)"
        )


def open_once(data_dir: Path) -> None:
    """Child process: open the store, print the time it took and the peak RSS as JSON."""
    started = time.perf_counter()
    store = JournalRepository(data_dir, INDEXES)
    seconds = time.perf_counter() - started
    journal = sum(p.stat().st_size for p in list_segments(data_dir).values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = Path("/proc/self/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    report = {
        "seconds": seconds,
        "peak_mb": peak_mb,
        "rss_mb": rss_kb / 1024,
        "users": store.count("User"),
        "groups": store.count("Group"),
        "journal_kb": journal / 1024,
    }
    print(json.dumps(report))
    os._exit(0)  # like kill -9: no closing compaction, so the next open sees the same files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--open", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open:
        open_once(args.open)
        return
    with tempfile.TemporaryDirectory(prefix="proware-store-") as directory:
        for users in (int(size) for size in args.sizes.split(",")):
            measure_size(users, args.groups, Path(directory))


if __name__ == "__main__":
    main()
