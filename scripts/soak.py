"""Soak (issue 10, part 6): ``smapds serve`` on an accelerated clock over many simulated days of the
synthetic world, with seeded random faults, on a private PostGIS cluster.

Faults, drawn with ``--seed`` at random simulated days: the service's worker SIGKILLed at a random
moment (the service retries the day later), the whole service SIGKILLed (process group) and
started again (crash recovery from the run ledger), PostgreSQL stopped for a few seconds and
started again. The production model is used (a small random forest: each new worker process pays
the forest kernel's compilation, as in production).

Prints: days produced exactly once (a trigger counts the committed writes of each
``smapds.products`` row), the checks of the kill tests (rows point at files with their sha256,
nothing left ``RUNNING``, hooks done, collocations current, statistics equal a full recompute),
and over time the service's resident memory (flat within 10 %?), open file descriptors and
database connections. Exit code 0 when every check holds.

    .venv/bin/python scripts/soak.py              # 365 simulated days (make soak)
    .venv/bin/python scripts/soak.py --days 20    # a short one
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests" / "reliability"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import kill_helpers as kh  # noqa: E402
from kill_helpers import Command, Site  # noqa: E402

from service.clock import SimulatedClock  # noqa: E402
from service.db import Database  # noqa: E402

WORLD_START = date(2024, 4, 1)
TRAIN_DAYS = 5
LAG_DAYS = 2  # SMAPDS_PRODUCT_LAG_DAYS (default)
FAULTS = ("worker_kill", "service_crash", "db_restart")


@dataclass
class Sample:
    t: float  # seconds since the soak began
    sim_day: str
    service_pid: int
    service_rss_kb: int | None
    service_fds: int | None
    worker_pid: int | None
    worker_rss_kb: int | None
    worker_fds: int | None
    db_connections: int | None
    products: int | None


@dataclass
class Figures:
    days: int
    produced: int = 0
    made_once: int = 0
    made_twice_or_more: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss: dict[str, Any] = field(default_factory=dict)
    fds: dict[str, Any] = field(default_factory=dict)
    connections: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and not self.missing
            and not self.made_twice_or_more
            and bool(self.rss.get("flat_within_10pct", False))
        )


def _proc_kb(pid: int, key: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _fds(pid: int) -> int | None:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return None


class Soak:
    def __init__(self, site: Site, db: Database, args: argparse.Namespace, work: Path) -> None:
        self.site, self.db, self.args, self.work = site, db, args, work
        self.rng = random.Random(args.seed)
        self.first = WORLD_START + timedelta(days=TRAIN_DAYS)
        self.days = kh.days(self.first, self.first + timedelta(days=args.days - 1))
        epoch_today = self.first + timedelta(days=LAG_DAYS)
        self.epoch_utc = datetime.now(UTC)
        self.clock = SimulatedClock(epoch_today, self.epoch_utc, args.day_seconds)
        self.env = site.env(
            SMAPDS_SERVICE_FIRST_DATE=str(self.first),
            SMAPDS_SIM_EPOCH_DATE=str(epoch_today),
            SMAPDS_SIM_EPOCH_UTC=self.epoch_utc.isoformat(),
            SMAPDS_SIM_DAY_SECONDS=str(args.day_seconds),
            SMAPDS_STALE_RUNNING_SECONDS="5",
            SMAPDS_LATENCY_WINDOW_DAYS="30",
            SMAPDS_LOG_LEVEL="WARNING",  # the soak reads the database, not the log
        )
        self.samples: list[Sample] = []
        self.faults: list[tuple[str, str, float]] = []  # (kind, simulated day, wall seconds)
        self.started = time.monotonic()
        self.served: Command | None = None
        self.incarnation = 0
        self.admin = db.engine("admin")
        self.writer = db.engine("writer")

    # -- the service ---------------------------------------------------------------------------

    def start_service(self) -> Command:
        self.incarnation += 1
        self.served = Command(["serve"], self.env, self.work / f"serve-{self.incarnation}.log")
        return self.served

    def plan(self) -> list[tuple[date, str]]:
        """Fault days (simulated today) and kinds: one every ``fault_every`` days on average,
        every kind at least once when there is room."""
        n = max(len(FAULTS), round(self.args.days / self.args.fault_every))
        n = min(n, max(1, self.args.days - 2))
        offsets = sorted(self.rng.sample(range(1, max(2, self.args.days - 1)), k=n))
        kinds = [FAULTS[k % len(FAULTS)] for k in range(n)]
        self.rng.shuffle(kinds)
        today0 = self.first + timedelta(days=LAG_DAYS)
        return [(today0 + timedelta(days=o), kind) for o, kind in zip(offsets, kinds, strict=True)]

    def inject(self, kind: str) -> None:
        assert self.served is not None
        cluster = self.db.cluster
        assert cluster is not None
        time.sleep(self.rng.uniform(0, self.args.day_seconds))  # a random moment of that day
        if kind == "worker_kill":
            pid = kh.worker_pid(self.served.pid)
            if pid is None:
                return self.inject("service_crash")  # no worker (between jobs): crash instead
            os.kill(pid, signal.SIGKILL)
        elif kind == "service_crash":
            self.served.kill()
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.start_service()
        else:
            cluster.down()
            time.sleep(self.rng.uniform(2.0, 8.0))
            cluster.up()
        self.faults.append((kind, str(self.clock.today()), round(time.monotonic() - self.started)))
        print(
            f"  fault {len(self.faults):>3}: {kind:<14} simulated {self.clock.today()}", flush=True
        )
        return None

    # -- sampling ------------------------------------------------------------------------------

    def sample(self) -> None:
        assert self.served is not None
        pid = self.served.pid
        worker = kh.worker_pid(pid)
        conns = products = None
        try:
            with self.admin.connect() as conn:
                conns = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    )
                ).scalar_one()
                products = conn.execute(
                    sa.text("SELECT count(*) FROM smapds.products")
                ).scalar_one()
        except sa.exc.SQLAlchemyError:
            pass  # the database is being restarted
        self.samples.append(
            Sample(
                t=round(time.monotonic() - self.started, 1),
                sim_day=str(self.clock.today()),
                service_pid=pid,
                service_rss_kb=_proc_kb(pid),
                service_fds=_fds(pid),
                worker_pid=worker,
                worker_rss_kb=_proc_kb(worker) if worker else None,
                worker_fds=_fds(worker) if worker else None,
                db_connections=conns,
                products=products,
            )
        )

    def done(self) -> bool:
        try:
            return kh.service_done(self.writer, self.days)
        except sa.exc.SQLAlchemyError:
            return False  # the database is being restarted

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Figures:
        plan = self.plan()
        print(
            f"soak: {len(self.days)} simulated days {self.days[0]}..{self.days[-1]}, "
            f"{self.args.day_seconds:g} s each, {len(plan)} faults (seed {self.args.seed})",
            flush=True,
        )
        deadline = time.monotonic() + self.args.days * self.args.day_seconds * 3 + 600
        served = self.start_service()
        next_sample = 0.0
        next_report = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_sample:
                    self.sample()
                    next_sample = now + self.args.sample_seconds
                if plan and self.clock.today() >= plan[0][0]:
                    self.inject(plan.pop(0)[1])
                if now >= next_report:
                    s = self.samples[-1]
                    print(
                        f"  {s.t:>6.0f} s  simulated {s.sim_day}  products {s.products}  "
                        f"service RSS {s.service_rss_kb} kB fds {s.service_fds}  "
                        f"worker RSS {s.worker_rss_kb} kB  connections {s.db_connections}",
                        flush=True,
                    )
                    next_report = now + 60
                if not plan and self.done():
                    break
                if self.served is not None and self.served.popen.poll() is not None:
                    raise RuntimeError(f"the service died:\n{self.served.tail()}")
                time.sleep(0.5)
            self.sample()
        finally:
            served = self.served or served
            if served.popen.poll() is None:
                code = served.stop(timeout=180)
                if code != 0:
                    print(f"the service stopped with exit code {code}", flush=True)
        return self.figures()

    def figures(self) -> Figures:
        f = Figures(days=len(self.days), seconds=round(time.monotonic() - self.started, 1))
        f.faults = dict(Counter(k for k, _, _ in self.faults))
        writes = kh.product_writes(self.admin)
        f.produced = sum(1 for d in self.days if d in writes)
        f.made_once = sum(1 for d in self.days if writes.get(d) == 1)
        f.made_twice_or_more = [str(d) for d in self.days if writes.get(d, 0) > 1]
        f.missing = [str(d) for d in self.days if d not in writes]
        f.problems += kh.product_problems(self.writer, self.site, orphans_allowed=False)
        f.problems += kh.ledger_problems(self.writer, self.site, self.days)
        f.problems += kh.hook_problems(self.writer, self.site, self.days)
        again = kh.collocate_again(self.writer, self.site, self.days)
        f.problems += [f"{d}: collocating again changed {n} rows" for d, n in again.items() if n]
        f.problems += kh.validation_problems(self.writer, self.site)
        f.rss = self._rss()
        f.fds = {
            "service_min": _min(s.service_fds for s in self.samples),
            "service_max": _max(s.service_fds for s in self.samples),
            "worker_min": _min(s.worker_fds for s in self.samples),
            "worker_max": _max(s.worker_fds for s in self.samples),
        }
        conns = [s.db_connections for s in self.samples]
        f.connections = {"min": _min(conns), "max": _max(conns)}
        return f

    def _rss(self) -> dict[str, Any]:
        """RSS of the longest-lived service process: the median of its first and last tenth of
        samples after a warm-up (the first tenth, when the jobs' modules get imported)."""
        by_pid: dict[int, list[int]] = {}
        for s in self.samples:
            if s.service_rss_kb:
                by_pid.setdefault(s.service_pid, []).append(s.service_rss_kb)
        series = max(by_pid.values(), key=len)
        tenth = max(1, len(series) // 10)
        steady = series[tenth:] or series
        start = statistics.median(steady[:tenth])
        end = statistics.median(steady[-tenth:])
        workers: dict[int, list[int]] = {}
        for s in self.samples:
            if s.worker_pid and s.worker_rss_kb:
                workers.setdefault(s.worker_pid, []).append(s.worker_rss_kb)
        wseries = max(workers.values(), key=len) if workers else [0]
        wtenth = max(1, len(wseries) // 10)
        wsteady = wseries[wtenth:] or wseries
        return {
            "service_processes": len(by_pid),
            "samples": len(series),
            "service_start_kb": int(start),
            "service_end_kb": int(end),
            "service_max_kb": max(series),
            "drift_pct": round(100 * (end - start) / start, 1),
            "flat_within_10pct": abs(end - start) <= 0.10 * start,
            "worker_processes": len(workers),
            "worker_start_kb": int(statistics.median(wsteady[:wtenth])),
            "worker_end_kb": int(statistics.median(wsteady[-wtenth:])),
            "worker_max_kb": max(wseries),
        }


def _min(values: Any) -> int | None:
    vals = [v for v in values if v is not None]
    return min(vals) if vals else None


def _max(values: Any) -> int | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def print_figures(f: Figures) -> None:
    rss, fds, conns = f.rss, f.fds, f.connections
    rows = [
        ("simulated days", f"{f.days}"),
        ("produced", f"{f.produced} ({f.made_once} exactly once)"),
        ("made more than once", ", ".join(f.made_twice_or_more) or "none"),
        ("missing", ", ".join(f.missing[:10]) or "none"),
        ("faults", ", ".join(f"{k} {v}" for k, v in sorted(f.faults.items())) or "none"),
        (
            "service RSS (kB)",
            f"start {rss['service_start_kb']}, end {rss['service_end_kb']}, "
            f"max {rss['service_max_kb']}, drift {rss['drift_pct']:+.1f} % "
            f"({'flat within 10 %' if rss['flat_within_10pct'] else 'NOT flat'}; "
            f"{rss['samples']} samples of the longest-lived of {rss['service_processes']} "
            "service processes)",
        ),
        (
            "worker RSS (kB)",
            f"start {rss['worker_start_kb']}, end {rss['worker_end_kb']}, "
            f"max {rss['worker_max_kb']} ({rss['worker_processes']} worker processes)",
        ),
        (
            "open file descriptors",
            f"service {fds['service_min']}..{fds['service_max']}, "
            f"worker {fds['worker_min']}..{fds['worker_max']}",
        ),
        ("database connections", f"{conns['min']}..{conns['max']}"),
        ("checks", "all hold" if not f.problems else f"{len(f.problems)} problems"),
        ("wall time", f"{f.seconds:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for p in f.problems[:20]:
        print(f"  problem: {p}")
    print(f"\nsoak {'PASSED' if f.ok else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=365, help="simulated service days (default 365)")
    p.add_argument("--day-seconds", type=float, default=6.0, help="wall seconds per simulated day")
    p.add_argument("--fault-every", type=float, default=8.0, help="a fault every N days on average")
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--sample-seconds", type=float, default=2.0)
    p.add_argument("--port", type=int, default=5441, help="names the private cluster's socket")
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary dir)")
    p.add_argument("--json", type=Path, help="also write the figures and samples as JSON")
    args = p.parse_args(argv)
    if args.days < 3:
        p.error("--days must be at least 3")

    from etl.grid import get_domain
    from etl.synthetic import generate

    work = args.workdir or Path(tempfile.mkdtemp(prefix="smapds-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.monotonic()
        world = work / "world"
        n_world = TRAIN_DAYS + args.days
        if not (world / "manifest.json").is_file():
            generate(world, domain=get_domain("demo"), start=WORLD_START, days=n_world, seed=7)
        print(f"synthetic world: {n_world} days ({time.monotonic() - t:.0f} s)", flush=True)
        with kh.private_cluster(port=args.port) as db:
            t = time.monotonic()
            train = kh.days(WORLD_START, WORLD_START + timedelta(days=TRAIN_DAYS - 1))
            site = kh.make_site(db, world, work / "data", train_days=train, learner="rf")
            print(f"site: inputs fetched, forest trained ({time.monotonic() - t:.0f} s)")
            soak = Soak(site, db, args, work)
            try:
                figures = soak.run()
            finally:
                soak.admin.dispose()
                soak.writer.dispose()
        print_figures(figures)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"figures": asdict(figures), "samples": [asdict(s) for s in soak.samples]},
                    indent=1,
                    default=str,
                )
            )
        return 0 if figures.ok else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
