"""The ``smapds`` command line: the service's operations by hand.

Exit codes: 0 success, 1 an operation failed (the message says what), 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.archive import Archive
from etl.errors import ConfigError, SmapdsError
from etl.grid import get_domain
from service import __version__, ingest, ledger
from service.db import Database, check_schema, default_sql_dir
from service.fetch import fetch_day
from service.logs import configure_logging
from service.operator_tools import convert_granule, inspect_granule
from service.settings import Settings, load_settings
from service.sources import build_sources

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smapds",
        description="Operational 1 km soil-moisture downscaling of SMAP over China. Settings come "
        "from SMAPDS_* environment variables and an optional TOML file (see `smapds config show`).",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file (environment variables override it)",
    )
    p.add_argument("--version", action="version", version=f"smapds {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cfg = sub.add_parser("config", help="inspect the effective settings")
    cfg_sub = cfg.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = cfg_sub.add_parser("show", help="print the effective settings, secrets redacted")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=cmd_config_show)

    db = sub.add_parser(
        "db",
        help="the database: the embedded PostGIS cluster or SMAPDS_DATABASE_URL",
        description="Without SMAPDS_DATABASE_URL these manage a private PostgreSQL + PostGIS "
        "cluster under SMAPDS_DATA_DIR/pg; with it they act on that server.",
    )
    db_sub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_sub.add_parser(
        "up",
        help="initialise (first time) and start the embedded cluster, create "
        "the database, apply missing migrations; safe to repeat",
    ).set_defaults(handler=cmd_db_up)
    db_sub.add_parser("down", help="stop the embedded cluster").set_defaults(handler=cmd_db_down)
    db_sub.add_parser("status", help="server and PostGIS versions, schema version").set_defaults(
        handler=cmd_db_status
    )
    db_sub.add_parser("migrate", help="apply missing schema migrations").set_defaults(
        handler=cmd_db_migrate
    )
    for name, helptext, handler in (
        ("url", "print the connection URL (password hidden)", cmd_db_url),
        ("psql", "open psql on the database (default role: reader)", cmd_db_psql),
    ):
        sp = db_sub.add_parser(name, help=helptext)
        sp.add_argument(
            "--role",
            choices=("reader", "writer", "admin"),
            default="reader" if name == "psql" else "writer",
            help="which database role to connect as (embedded cluster)",
        )
        if name == "psql":
            sp.add_argument(
                "psql_args",
                nargs="*",
                metavar="-- PSQL_ARG",
                help="arguments passed on to psql after --, e.g. -- -c 'SELECT 1'",
            )
        sp.set_defaults(handler=handler)

    sy = sub.add_parser(
        "synth", help="the synthetic world: inputs in real provider formats with a known truth"
    )
    sy_sub = sy.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = sy_sub.add_parser(
        "generate",
        help="write a synthetic world (SMAP L3, MCCA, MODIS, IMERG, SoilGrids, DEM, "
        "ISMN stations, 1 km truth) and its manifest.json; same seed, same bytes",
        description="Deterministic: the same arguments give byte-identical files. The default "
        "output is SMAPDS_SYNTHETIC_DIR (data_dir/synthetic), where the default sources read it.",
    )
    gen.add_argument("--out", type=Path, help="output directory (default: SMAPDS_SYNTHETIC_DIR)")
    gen.add_argument("--domain", help="domain (default: SMAPDS_DOMAIN)")
    gen.add_argument(
        "--start",
        type=_day,
        default=date(2024, 4, 1),
        metavar="YYYY-MM-DD",
        help="first day (default 2024-04-01)",
    )
    gen.add_argument("--days", type=int, default=120, help="number of days (default 120)")
    gen.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    gen.add_argument(
        "--retrieval-noise",
        type=float,
        metavar="M3M3",
        help="random error of the 36 km SMAP retrieval in m3/m3 (default 0.035, see "
        "etl/synthetic/config.py): how predictable the retrieval is for the models",
    )
    gen.add_argument(
        "--replace", action="store_true", help="delete what is in the output directory first"
    )
    gen.set_defaults(handler=cmd_synth_generate)

    fe = sub.add_parser(
        "fetch",
        help="bring a day's input granules into the raw archive (inventoried)",
        description="For each configured input: discover the day's granules, download and verify "
        "the missing ones (quarantining bad files), record pending/gap days. Safe to repeat: "
        "archived files are not downloaded again.",
    )
    fe.add_argument("--date", type=_day, required=True, metavar="YYYY-MM-DD", help="first day")
    fe.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="last day (default: --date)")
    fe.add_argument(
        "--source",
        action="append",
        metavar="NAME",
        help="only this input (repeatable); default: all configured",
    )
    fe.set_defaults(handler=cmd_fetch)

    tr = sub.add_parser(
        "train",
        help="compare the four downscalers at coarse scale; optionally freeze one",
        description="Assembles coarse samples (36 km cells x days with a valid retrieval) from the "
        "fetched inputs, scores random forest, XGBoost, MLP and histogram gradient boosting with "
        "spatially blocked cross-validation and a temporal hold-out, writes the table (CSV + PNG) "
        "to data_dir/models, and with --freeze writes and registers an artifact.",
    )
    tr.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD")
    tr.add_argument("--end", type=_day, required=True, metavar="YYYY-MM-DD")
    tr.add_argument("--models", default="rf,xgb,mlp,hgb", help="comma-separated (default all)")
    tr.add_argument(
        "--freeze",
        choices=("rf", "xgb", "mlp", "hgb"),
        help="fit this model on all samples and freeze it",
    )
    tr.add_argument(
        "--activate", action="store_true", help="make the frozen model the domain's active one"
    )
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument(
        "--no-truth",
        action="store_true",
        help="on the synthetic world, skip scoring each model's 1 km maps of the hold-out days "
        "against the truth",
    )
    tr.set_defaults(handler=cmd_train)

    pr = sub.add_parser(
        "produce",
        help="make the daily 1 km product (COG + STAC + quicklook) for a day or range",
        description="Downscales each day with the domain's active model: residual correction to "
        "the valid 36 km retrievals, gap filling elsewhere, QA bits; writes the files atomically "
        "and registers them. Running a day again gives the same file and row.",
    )
    pr.add_argument("--date", type=_day, required=True, metavar="YYYY-MM-DD", help="first day")
    pr.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="last day (default: --date)")
    pr.set_defaults(handler=cmd_produce)

    bf = sub.add_parser(
        "backfill",
        help="produce a range of days in order, skipping days already produced",
        description="The same as produce for each day from --start to --end, oldest first; days "
        "that already have a registered product are skipped unless --force.",
    )
    bf.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD")
    bf.add_argument("--end", type=_day, required=True, metavar="YYYY-MM-DD")
    bf.add_argument("--force", action="store_true", help="produce already produced days again")
    bf.set_defaults(handler=cmd_backfill)

    co = sub.add_parser(
        "collocate",
        help="pair stations with the products of a range of days (in situ vs 1 km vs coarse)",
        description="For each produced day in the range, one row per station of the domain in "
        "smapds.collocations: the in situ value around the overpass (G observations only), the "
        "product at the station's pixel and the coarse retrievals at its cells. Idempotent; "
        "produce and ingest run it for the days they touch.",
    )
    co.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD")
    co.add_argument("--end", type=_day, metavar="YYYY-MM-DD", help="last day (default: --start)")
    co.set_defaults(handler=cmd_collocate)

    va = sub.add_parser(
        "validate",
        help="refresh the validation statistics from the collocations (incremental)",
        description="Brings smapds.validation_stats, validation_tc and validation_history up to "
        "date: only what changed since the last refresh is recomputed. --full recomputes "
        "everything from the collocations.",
    )
    va.add_argument("--full", action="store_true", help="recompute from all collocations")
    va.set_defaults(handler=cmd_validate)

    rp = sub.add_parser(
        "report",
        help="write an HTML validation report (statistics tables and plots) for a period",
        description="Writes DIR/index.html with PNGs beside it: the stored domain-wide "
        "statistics, the period's statistics recomputed from the collocations, scatter plots, "
        "station time series with precipitation, a map of per-station R, triple collocation, "
        "the uncertainty calibration and the newest model comparison. A previous report in DIR "
        "is replaced; any other non-empty DIR is refused.",
    )
    rp.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD")
    rp.add_argument("--end", type=_day, required=True, metavar="YYYY-MM-DD")
    rp.add_argument("--out", type=Path, required=True, metavar="DIR")
    rp.add_argument(
        "--stations",
        metavar="ID,ID...",
        help="station ids for the time series (default: the 3 with most pairs in the period)",
    )
    rp.set_defaults(handler=cmd_report)

    mo = sub.add_parser("model", help="registered frozen models")
    mo_sub = mo.add_subparsers(dest="action", required=True, metavar="ACTION")
    mo_sub.add_parser("list", help="registered models, the active one marked").set_defaults(
        handler=cmd_model_list
    )
    act = mo_sub.add_parser("activate", help="make a registered model the active one")
    act.add_argument("name")
    act.set_defaults(handler=cmd_model_activate)

    ing = sub.add_parser("ingest", help="load in situ observations into PostGIS (ISMN or CSV)")
    ing_sub = ing.add_subparsers(dest="action", required=True, metavar="FORMAT")
    ism = ing_sub.add_parser(
        "ismn",
        help="ISMN downloads: zip archives, Network/Station folders, flat folders or files",
        description="Header+values and CEOP formats, static-variables CSVs. Loading the same files "
        "again changes nothing. Exit 0 when nothing was rejected, 1 when rows or files were "
        "rejected/quarantined, 2 when a file failed.",
    )
    ism.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    ism.add_argument("--workers", type=int, default=2, help="files loaded in parallel (default 2)")
    ism.set_defaults(handler=cmd_ingest_ismn)
    icsv = ing_sub.add_parser(
        "csv",
        help="the generic CSV format (a stations table and an observations table, UTC)",
        description="Format: etl/insitu/CSV_FORMAT.md. Exit codes as for `ingest ismn`.",
    )
    icsv.add_argument("--stations", type=Path, metavar="FILE")
    icsv.add_argument("--observations", type=Path, metavar="FILE")
    icsv.set_defaults(handler=cmd_ingest_csv)

    ins = sub.add_parser(
        "inspect",
        help="what a granule is: product, version, date, passes, valid cells, value range, flags",
    )
    ins.add_argument("file", type=Path)
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.set_defaults(handler=cmd_inspect)

    cv = sub.add_parser(
        "convert",
        help="a SMAP L3 granule as a GeoTIFF on its EASE-Grid 2.0 grid, for a GIS",
        description="By default applies the pipeline's validity rule (not fill, 0.02-0.5 m3/m3, "
        "retrieval recommended); --raw keeps everything but fill. NaN is nodata.",
    )
    cv.add_argument("file", type=Path)
    cv.add_argument("out", type=Path, metavar="OUT.tif")
    cv.add_argument("--pass", dest="pass_", choices=("AM", "PM"), default="AM")
    cv.add_argument("--variable", default="soil_moisture")
    cv.add_argument("--raw", action="store_true", help="mask fill only")
    cv.set_defaults(handler=cmd_convert)

    sub.add_parser(
        "serve",
        help="run the service: scheduled product and ingest jobs, /metrics and /healthz",
        description="Runs until SIGTERM/SIGINT (then finishes the current stage and exits 0). "
        "Catches up every day that lacks a product from the run ledger, oldest first; see the "
        "README section 'The service' and the SMAPDS_* service settings.",
    ).set_defaults(handler=cmd_serve)

    st = sub.add_parser("status", help="database, schema, run ledger and inventory at a glance")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(handler=cmd_status)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as err:
        print(f"smapds: {err}", file=sys.stderr)
        return 2
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ConfigError as err:
        print(f"smapds: {err}", file=sys.stderr)
        return 2
    except SmapdsError as err:
        print(f"smapds: error: {err}", file=sys.stderr)
        return 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


@contextlib.contextmanager
def _writer(settings: Settings) -> Iterator[Engine]:
    """The service's engine on a database whose schema this software knows; disposed after."""
    db = _database(settings)
    engine = db.engine("writer")
    try:
        try:
            with engine.connect() as conn:
                check_schema(conn, db.sql_dir)
        except sa.exc.OperationalError as err:
            raise db.unreachable(err) from err
        yield engine
    finally:
        engine.dispose()


def _database(settings: Settings) -> Database:
    return Database.from_settings(settings, sql_dir=default_sql_dir())


def _print_table(rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    values = settings.redacted()
    if args.json:
        print(json.dumps(values, indent=2, default=str))
    else:
        _print_table([(f"SMAPDS_{k.upper()}", "" if v is None else v) for k, v in values.items()])
    return 0


def cmd_db_up(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    applied = db.up()
    for mig in applied:
        print(f"applied migration {mig.version:03d}_{mig.name}")
    print(f"database up: {db.where}")
    return 0


def cmd_db_down(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    if db.cluster is None:
        print("external database (SMAPDS_DATABASE_URL): nothing to stop")
    elif db.down():
        print("embedded cluster stopped")
    else:
        print("embedded cluster was not running")
    return 0


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    if db.cluster is not None and not db.cluster.is_running():
        print(
            "smapds: error: the embedded cluster is not running; run `smapds db up`",
            file=sys.stderr,
        )
        return 1
    applied = db.up()
    print(f"applied {len(applied)} migration(s)")
    return 0


def cmd_db_status(args: argparse.Namespace, settings: Settings) -> int:
    st = _database(settings).status()
    rows: list[tuple[str, Any]] = [
        ("database", st.where),
        ("running", "yes" if st.running else "no"),
    ]
    if st.running:
        rows += [
            ("PostgreSQL", st.server_version),
            ("PostGIS", st.postgis_version or "missing"),
            (
                "schema version",
                f"{st.schema_version:03d} (software expects {st.schema_expected:03d})",
            ),
        ]
        if st.schema_problem:
            rows.append(("schema problem", st.schema_problem))
    _print_table(rows)
    return 0 if st.running and not st.schema_problem else 1


def cmd_db_url(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    url = db.url(args.role)
    print(url if db.cluster is not None else settings.redacted()["database_url"])
    return 0


def cmd_db_psql(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    psql = (db.cluster.bindir / "psql") if db.cluster is not None else None
    exe = str(psql) if psql is not None and psql.is_file() else shutil.which("psql")
    if exe is None:
        print("smapds: error: psql not found (install postgresql-client-15)", file=sys.stderr)
        return 1
    sys.stdout.flush()
    os.execv(exe, [exe, db.url(args.role), *args.psql_args])


def cmd_synth_generate(args: argparse.Namespace, settings: Settings) -> int:
    from etl.synthetic import GENERATOR_VERSION, generate
    from etl.synthetic.config import SyntheticConfig

    if args.days < 1:
        raise ConfigError(f"--days must be at least 1, got {args.days}")
    out: Path = args.out or settings.synthetic_dir or settings.data_dir / "synthetic"
    domain = get_domain(args.domain or settings.domain)
    config = (
        SyntheticConfig()
        if args.retrieval_noise is None
        else SyntheticConfig(noise_sd_36km=args.retrieval_noise)
    )
    wanted = {
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "days": args.days,
        "start": args.start.isoformat(),
        "domain": domain.name,
        "noise_sd_36km": config.noise_sd_36km,
    }
    manifest = out / "manifest.json"
    if manifest.is_file():
        doc = json.loads(manifest.read_text())
        have = {
            **{k: doc.get(k) for k in wanted},
            "domain": doc.get("domain", {}).get("name"),
            "noise_sd_36km": doc.get("config", {}).get("noise_sd_36km"),
        }
        if have == wanted:
            print(f"synthetic world already in {out} (same generator, seed, days, domain, noise)")
            return 0
        if not args.replace:
            raise ConfigError(
                f"{out} holds another synthetic world ({have}); use --replace to "
                "delete it and generate anew"
            )
    if out.exists() and any(out.iterdir()):
        if not args.replace:
            raise ConfigError(f"{out} is not empty; use --replace to delete it first")
        shutil.rmtree(out)
    manifest = generate(
        out, domain=domain, start=args.start, days=args.days, seed=args.seed, config=config
    )
    files = json.loads(manifest.read_text()).get("files", [])
    total = sum(int(f.get("bytes", 0)) for f in files)
    print(f"synthetic world: {len(files)} files, {total / 1e6:.1f} MB in {out}")
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from etl.grid import get_domain
    from service.stacks import stack_factory
    from service.train import train, world_truth

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.end < args.start:
        raise ConfigError(f"--end {args.end} is before --start {args.start}")
    truth = None if args.no_truth else world_truth(settings, get_domain(settings.domain))
    with _writer(settings) as engine:
        report = train(
            engine,
            stack_factory(settings, engine),
            data_dir=settings.data_dir,
            start=args.start,
            end=args.end,
            models=models,
            params=settings.model_params,
            freeze=args.freeze,
            activate=args.activate,
            seed=args.seed,
            n_jobs=os.cpu_count() or 1,
            truth=truth,
        )
    print(
        f"{report.samples} samples from {report.days_used} days "
        f"({len(report.days_skipped)} days skipped)"
    )
    header = ["model", "CV R", "CV RMSE", "CV bias", "CV ubRMSE", "hold-out R", "hold-out RMSE"]
    if report.truth is not None:
        header += ["1 km R", "1 km RMSE", "1 km ubRMSE", "filled R", "filled RMSE"]
    rows: list[tuple[Any, ...]] = [(*header, "fit s")]
    for s in report.scores:
        row = [
            s.model,
            f"{s.cv.r:.3f}",
            f"{s.cv.rmse:.4f}",
            f"{s.cv.bias:+.4f}",
            f"{s.cv.ubrmse:.4f}",
            f"{s.holdout.r:.3f}",
            f"{s.holdout.rmse:.4f}",
        ]
        if s.truth_1km is not None and s.truth_filled is not None:
            t, gaps = s.truth_1km, s.truth_filled
            row += [f"{t.r:.3f}", f"{t.rmse:.4f}", f"{t.ubrmse:.4f}", f"{gaps.r:.3f}"]
            row += [f"{gaps.rmse:.4f}"]
        rows.append((*row, f"{s.fit_seconds:.0f}"))
    if report.truth is not None:
        b = report.truth.bilinear
        rows.append(
            ("bilinear", *[""] * 6, f"{b.r:.3f}", f"{b.rmse:.4f}", f"{b.ubrmse:.4f}", "", "", "")
        )
    _print_table(rows)
    if report.truth is not None:
        print(
            f"1 km: each model's maps of the {report.truth.days} hold-out days against the "
            "synthetic truth, on the pixels bilinear interpolation of the retrieval covers too; "
            "filled: the gap-filled pixels (no retrieval that day)"
        )
    print(f"best (lowest blocked-CV RMSE): {report.best}")
    print(f"table: {report.table_csv}\nplot:  {report.plot_png}")
    if report.frozen is not None:
        print(
            f"frozen: {report.frozen.name} sha256 {report.frozen.sha256} "
            f"{'(active)' if args.activate else ''}"
        )
    return 0


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    return _produce(settings, args.date, args.until or args.date, skip_produced=False)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    return _produce(settings, args.start, args.end, skip_produced=not args.force)


def _produce(settings: Settings, first: date, last: date, *, skip_produced: bool) -> int:
    from service.collocate import collocate
    from service.pipeline import run_hook, run_hook_once, settings_digest, unfinished_hooks
    from service.product import produce_day
    from service.stacks import stack_factory
    from service.tiles import runner
    from service.train import active_model
    from service.validate import validate

    if last < first:
        raise ConfigError(f"the last day {last} is before the first {first}")
    settings_hash = settings_digest(settings)
    rows: list[tuple[Any, ...]] = [
        (
            "day",
            "status",
            "valid",
            "gap-filled",
            "mean",
            "R 36 km (model)",
            "RMSE 36 km (model)",
            "file / error",
        )
    ]
    bad = 0
    with _writer(settings) as engine:
        produced: set[date] = set()
        hooks_only: list[date] = []
        if skip_produced:
            with engine.connect() as conn:
                produced = set(
                    conn.execute(
                        sa.text(
                            "SELECT product_date FROM smapds.products WHERE domain = :d "
                            "AND product_date BETWEEN :a AND :b"
                        ),
                        {"d": settings.domain, "a": first, "b": last},
                    ).scalars()
                )
            # a produced day whose collocation or validation was cut short runs them again
            hooks_only = unfinished_hooks(
                engine, settings, first, last, ("collocate", "validate"), any_not_ok=True
            )
        days = [first + timedelta(days=k) for k in range((last - first).days + 1)]
        todo = [d for d in days if d not in produced]
        model = active_model(engine, domain=settings.domain, data_dir=settings.data_dir)
        factory = stack_factory(settings, engine)
        made: list[date] = []
        failed_hooks: list[str] = []
        for k, day in enumerate(todo, start=1):
            with runner(settings.dask_scheduler) as run:
                r = produce_day(
                    engine,
                    factory,
                    model,
                    data_dir=settings.data_dir,
                    day=day,
                    settings_hash=settings_hash,
                    tile_cells=settings.tile_cells,
                    run=run,
                )
            if r.path is not None:
                made.append(day)
                if not run_hook(engine, settings, collocate, day):
                    failed_hooks.append(f"{day} collocate")
            print(f"[{k}/{len(todo)}] {day} {r.status}", file=sys.stderr, flush=True)
            bad += r.path is None
            st = r.stats
            rows.append(
                (
                    day,
                    r.status,
                    _pct(st.get("valid_fraction")),
                    _pct(st.get("gap_filled_fraction")),
                    _num(st.get("mean")),
                    _num(st.get("model_r"), 3),
                    _num(st.get("model_rmse")),
                    r.path or (r.error or "")[:90],
                )
            )
        for day in hooks_only:
            if not run_hook(engine, settings, collocate, day):
                failed_hooks.append(f"{day} collocate")
        if not run_hook_once(engine, settings, validate, sorted(made + hooks_only)):
            failed_hooks.append("validate")
    skipped = len(produced) - len(hooks_only)
    if skipped:
        print(f"{skipped} day(s) already produced, skipped (--force to redo)")
    if hooks_only:
        print(f"{len(hooks_only)} day(s) produced earlier collocated and validated again")
    _print_table(rows)
    if failed_hooks:
        print(f"failed after the product (see the run ledger): {', '.join(failed_hooks)}")
    return 1 if bad or failed_hooks else 0


def cmd_collocate(args: argparse.Namespace, settings: Settings) -> int:
    from service.collocate import collocate_day, overpass_window, product_days
    from service.stacks import stack_factory

    last = args.end or args.start
    if last < args.start:
        raise ConfigError(f"--end {last} is before --start {args.start}")
    rows: list[tuple[Any, ...]] = [("day", "stations", "with in situ", "rows changed")]
    with _writer(settings) as engine:
        factory = stack_factory(settings, engine)
        days = product_days(engine, domain=settings.domain, first=args.start, last=last)
        for day in days:
            c = collocate_day(
                engine,
                factory,
                data_dir=settings.data_dir,
                day=day,
                window=overpass_window(settings),
            )
            rows.append((day, c.stations, c.with_insitu, c.changed))
        if days:
            _refresh_validation(engine, settings)
    if not days:
        print(f"no product between {args.start} and {last}: nothing to collocate")
        return 0
    _print_table(rows)
    return 0


def _refresh_validation(engine: Engine, settings: Settings) -> None:
    from service.validate import refresh, validation_config

    r = refresh(engine, domain=settings.domain, config=validation_config(settings))
    if r.mode != "empty":
        print(
            f"validation: {r.mode} refresh to {r.anchor} ({r.changes} changes, {r.seconds:.1f} s)",
            file=sys.stderr,
        )


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from service.validate import refresh, validation_config

    with _writer(settings) as engine:
        r = refresh(
            engine, domain=settings.domain, config=validation_config(settings), full=args.full
        )
        if r.mode == "empty":
            print("no collocations yet: nothing to validate")
            return 0
        with engine.connect() as conn:
            stats = conn.execute(
                sa.text("""
                SELECT estimate, window_days, n, r, rmse, bias, ubrmse, coverage_90, status
                  FROM smapds.validation_stats WHERE domain = :d AND scope = 'domain'
                 ORDER BY window_days = 0, window_days, estimate
            """),
                {"d": settings.domain},
            ).all()
    print(
        f"{r.mode} refresh to {r.anchor}: {r.changes} changes, {r.rows_read} rows read, "
        f"{r.stations} stations, {r.seconds:.2f} s"
    )
    rows: list[tuple[Any, ...]] = [
        ("estimate", "window", "n", "R", "RMSE", "bias", "ubRMSE", "in 90%", "status")
    ]
    rows += [
        (
            s.estimate,
            f"{s.window_days} d" if s.window_days else "all",
            s.n,
            _num(s.r, 3),
            _num(s.rmse),
            _num(s.bias),
            _num(s.ubrmse),
            _pct(s.coverage_90),
            s.status,
        )
        for s in stats
    ]
    _print_table(rows)
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from service.report import parse_station_ids, write_report

    stations = parse_station_ids(args.stations) if args.stations else None
    with _writer(settings) as engine:
        r = write_report(
            engine,
            domain=settings.domain,
            start=args.start,
            end=args.end,
            out=args.out,
            data_dir=settings.data_dir,
            min_pairs=settings.validation_min_pairs,
            stations=stations,
        )
    if not r.pairs:
        print(f"no collocated in situ and product values between {args.start} and {args.end}")
    for note in r.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report: {r.index} ({len(r.figures)} figures, {r.pairs} pairs, {r.stations} stations)")
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def cmd_model_list(args: argparse.Namespace, settings: Settings) -> int:
    with _writer(settings) as engine, engine.connect() as conn:
        result = conn.execute(
            sa.text(
                "SELECT name, kind, domain, train_start, train_end, active, left(sha256, 12) AS sha "
                "FROM smapds.models ORDER BY created_at"
            )
        )
        rows: list[tuple[Any, ...]] = [("name", "kind", "domain", "trained on", "active", "sha256")]
        rows += [
            (
                r.name,
                r.kind,
                r.domain,
                f"{r.train_start}..{r.train_end}",
                "*" if r.active else "",
                r.sha,
            )
            for r in result
        ]
    _print_table(rows)
    return 0


def cmd_model_activate(args: argparse.Namespace, settings: Settings) -> int:
    from service.train import activate_model

    with _writer(settings) as engine, engine.begin() as conn:
        activate_model(conn, name=args.name)
    print(f"active model: {args.name}")
    return 0


def cmd_ingest_ismn(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    return _ingest(
        settings,
        lambda engine: ingest.ingest_ismn(
            engine, args.paths, domain=settings.domain, workers=args.workers
        ),
    )


def cmd_ingest_csv(args: argparse.Namespace, settings: Settings) -> int:
    return _ingest(
        settings,
        lambda engine: ingest.ingest_csv(
            engine, stations=args.stations, observations=args.observations, domain=settings.domain
        ),
    )


def _ingest(settings: Settings, run: Callable[[Any], list[ingest.FileSummary]]) -> int:
    with _writer(settings) as engine:
        summaries = run(engine)
    rows: list[tuple[Any, ...]] = [
        ("file", "format", "read", "loaded", "rejected", "status", "error")
    ]
    rows += [
        (
            s.path,
            s.format,
            s.rows_read,
            s.rows_loaded,
            s.rows_rejected,
            s.status,
            (s.error or "")[:100],
        )
        for s in summaries
    ]
    _print_table(rows)
    return ingest.exit_code(summaries)


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    report = inspect_granule(args.file)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    passes = report.pop("passes", None)
    _print_table([(k, v) for k, v in report.items()])
    for name, summary in (passes or {}).items():
        print(f"\n{name} pass")
        _print_table([(f"  {k}", v) for k, v in summary.items()])
    return 0


def cmd_convert(args: argparse.Namespace, settings: Settings) -> int:
    n = convert_granule(args.file, args.out, pass_=args.pass_, variable=args.variable, raw=args.raw)
    print(f"wrote {args.out}: {n} valid cells")
    return 0


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    sources = build_sources(settings, only=args.source)
    archive = Archive(
        root=settings.data_dir / "archive", quarantine=settings.data_dir / "quarantine"
    )
    last = args.until or args.date
    if last < args.date:
        raise ConfigError(f"--until {last} is before --date {args.date}")
    today = datetime.now(UTC).date()
    outcomes = []
    with _writer(settings) as engine:
        day = args.date
        while day <= last:
            outcomes += fetch_day(
                engine, sources, archive, day, today=today, window_days=settings.latency_window_days
            )
            day += timedelta(days=1)
    if args.date == last:
        rows: list[tuple[Any, ...]] = [
            ("source", "status", "new", "archived", "quarantined", "failed", "detail")
        ]
        rows += [
            (
                o.source,
                o.status,
                o.downloaded,
                o.already,
                o.quarantined,
                o.failed,
                (o.detail or "")[:80],
            )
            for o in outcomes
        ]
    else:  # one line per source for a range: days by status, files new / already archived
        rows = [("source", "days by status", "new files", "archived", "quarantined")]
        for name in sorted({o.source for o in outcomes}):
            mine = [o for o in outcomes if o.source == name]
            counts: dict[str, int] = {}
            for o in mine:
                counts[o.status] = counts.get(o.status, 0) + 1
            rows.append(
                (
                    name,
                    ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                    sum(o.downloaded for o in mine),
                    sum(o.already for o in mine),
                    sum(o.quarantined for o in mine),
                )
            )
    _print_table(rows)
    bad = [o for o in outcomes if o.status in ("auth_failed", "quarantined", "partial")]
    for o in bad:
        print(f"{o.day} {o.source}: {o.status}: {o.detail}", file=sys.stderr)
    return 1 if bad else 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    db = _database(settings)
    st = db.status()
    report: dict[str, Any] = {
        "domain": settings.domain,
        "data_dir": str(settings.data_dir.resolve()),
        "database": st.where,
        "running": st.running,
        "postgresql": st.server_version,
        "postgis": st.postgis_version,
        "schema_version": st.schema_version,
        "schema_problem": st.schema_problem,
        "stages": {},
        "granules": {},
    }
    if st.running and not st.schema_problem:
        engine = db.engine("writer")
        try:
            with engine.connect() as conn:
                report["stages"] = ledger.summary(conn, domain=settings.domain)
                counts = conn.execute(
                    sa.text(
                        "SELECT source, status, count(*) AS n FROM smapds.granules "
                        "GROUP BY source, status ORDER BY source, status"
                    )
                )
                for r in counts:
                    report["granules"].setdefault(r.source, {})[r.status] = r.n
        finally:
            engine.dispose()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_status(report)
    return 0 if st.running and not st.schema_problem else 1


def _print_status(report: dict[str, Any]) -> None:
    _print_table(
        [
            ("domain", report["domain"]),
            ("data directory", report["data_dir"]),
            ("database", report["database"]),
            ("running", "yes" if report["running"] else "no (run `smapds db up`)"),
            ("PostgreSQL / PostGIS", f"{report['postgresql'] or '-'} / {report['postgis'] or '-'}"),
            ("schema version", report["schema_version"] if report["running"] else "-"),
        ]
    )
    if report["schema_problem"]:
        print(f"schema problem: {report['schema_problem']}")
    print()
    if report["stages"]:
        rows: list[tuple[Any, ...]] = [("stage", "latest OK day", "days by status")]
        for stage, s in report["stages"].items():
            counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
            rows.append((stage, s["latest_ok"] or "-", counts))
        _print_table(rows)
    else:
        print("run ledger: no days processed yet")
    if report["granules"]:
        print()
        rows = [("source", "granules by status")]
        rows += [
            (src, ", ".join(f"{k} {v}" for k, v in c.items()))
            for src, c in report["granules"].items()
        ]
        _print_table(rows)
    else:
        print("granule inventory: empty")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.scheduler import serve

    return serve(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
