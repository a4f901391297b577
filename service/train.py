"""Training: assemble coarse samples for a period, compare the four models, freeze and register one.

Samples of each day are cached under ``data_dir/cache/samples/<domain>/<stack version>/`` so a
second comparison over the same period does not rebuild a single stack. The comparison table is
written as CSV and a PNG next to the artifacts (``data_dir/models/``).

With a truth (the synthetic world's, found by :func:`world_truth` when the inputs are that world's)
each model, fitted on the training days, also downscales the hold-out days as the product would,
and its maps are scored against the 1 km truth: on the pixels where bilinear interpolation of the
retrieval has a value too (the baseline, scored on the same pixels), and on the gap-filled pixels
(no retrieval that day) apart.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import ArtifactError, InputError
from etl.grid import Domain
from etl.stack import FEATURES, STACK_VERSION
from models import artifact
from models.evaluate import ModelScore, best, compare, temporal_split
from models.learners import DEFAULT_PARAMS, make_model
from models.metrics import PairStats
from models.samples import CoarseSamples, coarse_samples, concat, days_of
from models.truth_skill import Skill, Truth, bilinear_map, downscaled_map, learner_predictor
from service.settings import Settings
from service.sources import source_configs
from service.stacks import StackFactory

log = logging.getLogger(__name__)

MIN_LAND_FRACTION = 0.5
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class TruthScores:
    """Skill at 1 km of the hold-out days (``days`` of them had a truth and a stack)."""

    days: int
    bilinear: PairStats
    """Bilinear interpolation of the retrieval, on the pixels where it has a value."""


@dataclass(frozen=True)
class TrainReport:
    samples: int
    days_used: int
    days_skipped: dict[str, str]
    scores: list[ModelScore]
    best: str
    table_csv: Path
    plot_png: Path
    frozen: artifact.FrozenModel | None
    truth: TruthScores | None = None


def world_truth(settings: Settings, domain: Domain) -> Truth | None:
    """The synthetic world's 1 km truth, when every input is read from that world (the embedded
    defaults) and it has a truth for the domain; otherwise None (real data has no truth)."""
    world = settings.synthetic_dir or settings.data_dir / "synthetic"
    for cfg in source_configs(settings).values():
        if cfg.transport != "local" or (cfg.root is not None and cfg.root != world):
            return None
    return Truth.of_world(world, domain=domain)


def assemble(
    factory: StackFactory, start: date, end: date, *, cache_dir: Path
) -> tuple[CoarseSamples, dict[str, str]]:
    """Samples of every day in [start, end]; days that cannot be built are skipped and reported."""
    folder = cache_dir / factory.domain.name / f"stack-v{STACK_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    parts, skipped = [], {}
    day = start
    while day <= end:
        cached = folder / f"{day.isoformat()}.npz"
        if cached.is_file():
            parts.append(CoarseSamples.load(cached))
        else:
            try:
                stack = factory.build(day)
            except InputError as err:
                skipped[day.isoformat()] = str(err)
                day += timedelta(days=1)
                continue
            part = coarse_samples(stack, min_land_fraction=MIN_LAND_FRACTION)
            part.save(cached)
            parts.append(part)
        day += timedelta(days=1)
    return concat(parts), skipped


def train(
    engine: Engine,
    factory: StackFactory,
    *,
    data_dir: Path,
    start: date,
    end: date,
    models: Sequence[str],
    params: Mapping[str, Mapping[str, Any]],
    freeze: str | None,
    activate: bool,
    seed: int,
    n_jobs: int,
    truth: Truth | None = None,
) -> TrainReport:
    samples, skipped = assemble(factory, start, end, cache_dir=data_dir / "cache" / "samples")
    if len(samples) < 100:
        raise InputError(
            f"only {len(samples)} training samples in {start}..{end}; fetch more days first"
        )
    fitted: dict[str, Any] = {}
    scores = compare(
        samples,
        models=models,
        params=params,
        block=3,
        n_splits=5,
        holdout_fraction=HOLDOUT_FRACTION,
        seed=seed,
        n_jobs=n_jobs,
        on_fit=fitted.__setitem__ if truth is not None else None,
    )
    truth_scores = None
    if truth is not None:
        _, hold = temporal_split(samples, holdout_fraction=HOLDOUT_FRACTION)
        days = [date.fromisoformat(str(d)) for d in days_of(hold)]
        by_model, truth_scores = score_against_truth(factory, truth, fitted, days)
        scores = [
            dataclasses.replace(
                s, truth_1km=by_model[s.model][0], truth_filled=by_model[s.model][1]
            )
            for s in scores
        ]
    winner = best(scores)
    out = data_dir / "models"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"comparison-{factory.domain.name}-{start}-{end}"
    table = _write_table(out / f"{stem}.csv", scores, truth_scores)
    plot = _plot(
        out / f"{stem}.png", scores, truth_scores, title=f"{factory.domain.name} {start}..{end}"
    )
    frozen = None
    if freeze is not None:
        name = f"{freeze}-{factory.domain.name}-{start:%Y%m%d}-{end:%Y%m%d}"
        hyper = {**DEFAULT_PARAMS[freeze], **(params.get(freeze) or {})}
        training = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "domain": factory.domain.name,
            "samples": len(samples),
        }
        frozen = _existing(out / name, training=training, hyperparameters=hyper)
        if frozen is None:
            model = make_model(freeze, params.get(freeze), seed=seed, n_jobs=n_jobs)
            model.fit(samples.X, samples.y)
            frozen = artifact.freeze(
                model,
                out_dir=out,
                name=name,
                model=freeze,
                features=[(n, u) for n, u, _ in FEATURES],
                training=training,
                hyperparameters=hyper,
                scores=next((s.row() for s in scores if s.model == freeze), {}),
            )
        register(engine, frozen, data_dir=data_dir, activate=activate)
    return TrainReport(
        len(samples),
        len({d for d in samples.day}),
        skipped,
        scores,
        winner,
        table,
        plot,
        frozen,
        truth_scores,
    )


def score_against_truth(
    factory: StackFactory, truth: Truth, fitted: Mapping[str, Any], days: Sequence[date]
) -> tuple[dict[str, tuple[PairStats, PairStats]], TruthScores]:
    """Each fitted model's maps of ``days`` against the 1 km truth, on the pixels where every map
    and bilinear interpolation have a value, and apart on the gap-filled pixels (by model: both);
    one day's stack and maps in memory at a time."""
    from service.product import BOUNDS

    predictors = {name: learner_predictor(model) for name, model in fitted.items()}
    common = {name: Skill() for name in fitted}
    filled = {name: Skill() for name in fitted}
    bilinear = Skill()
    used = 0
    for day in days:
        if not truth.covers(day):
            continue
        try:
            stack = factory.build(day)
        except InputError:  # assemble() has reported the day already
            continue
        reference = truth.day(day)
        baseline = bilinear_map(stack)
        maps = {n: downscaled_map(stack, p, bounds=BOUNDS) for n, p in predictors.items()}
        shared = np.isfinite(baseline) & np.all([np.isfinite(m) for m in maps.values()], axis=0)
        gaps = ~np.isfinite(baseline)
        bilinear.add(np.where(shared, reference, np.nan), baseline)
        for name, estimate in maps.items():
            common[name].add(np.where(shared, reference, np.nan), estimate)
            filled[name].add(np.where(gaps, reference, np.nan), estimate)
        used += 1
    log.info("scored against the 1 km truth", extra={"days": used, "truth": str(truth.path)})
    return (
        {n: (common[n].stats(), filled[n].stats()) for n in fitted},
        TruthScores(used, bilinear.stats()),
    )


def _existing(
    path: Path, *, training: Mapping[str, Any], hyperparameters: Mapping[str, Any]
) -> artifact.FrozenModel | None:
    """An artifact already frozen from the same samples and hyperparameters (a rerun), or None.

    The same name with other training data is refused rather than overwritten.
    """
    if not path.exists():
        return None
    frozen = artifact.load(path, expected_features=[n for n, _, _ in FEATURES])
    same = frozen.manifest["training"] == dict(training) and frozen.manifest[
        "hyperparameters"
    ] == artifact.plain(hyperparameters)
    if not same:
        raise ArtifactError(
            f"{path} exists but was frozen from other samples or hyperparameters; move it away "
            "or train another period"
        )
    log.info("artifact already frozen from the same samples", extra={"path": str(path)})
    return frozen


def register(
    engine: Engine, frozen: artifact.FrozenModel, *, data_dir: Path, activate: bool
) -> None:
    """Record the artifact in smapds.models (and make it the domain's active model)."""
    m = frozen.manifest
    with engine.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.models (name, kind, path, sha256, domain, train_start, train_end,
                                       features, scores)
            VALUES (:name, :kind, :path, :sha, :domain, :start, :end,
                    CAST(:features AS jsonb), CAST(:scores AS jsonb))
            ON CONFLICT (name) DO NOTHING
        """),
            {
                "name": m["name"],
                "kind": m["model"],
                "path": str(frozen.path.relative_to(data_dir)),
                "sha": frozen.sha256,
                "domain": m["training"]["domain"],
                "start": m["training"]["start"],
                "end": m["training"]["end"],
                "features": json.dumps(m["features"]),
                "scores": json.dumps(m["scores"]),
            },
        )
        if activate:
            activate_model(conn, name=m["name"])


def activate_model(conn: sa.Connection, *, name: str) -> None:
    domain = conn.execute(
        sa.text("SELECT domain FROM smapds.models WHERE name = :n"), {"n": name}
    ).scalar()
    if domain is None:
        raise InputError(f"no registered model named {name!r}")
    conn.execute(
        sa.text("UPDATE smapds.models SET active = false WHERE domain = :d AND active"),
        {"d": domain},
    )
    conn.execute(sa.text("UPDATE smapds.models SET active = true WHERE name = :n"), {"n": name})


def _write_table(path: Path, scores: Sequence[ModelScore], truth: TruthScores | None) -> Path:
    rows = [s.row() for s in scores]
    if truth is not None:  # the baseline: its 1 km scores only
        b = truth.bilinear
        baseline = {f"truth_1km_{k}": getattr(b, k) for k in ("n", "r", "rmse", "bias", "ubrmse")}
        rows.append({k: baseline.get(k, "") for k in rows[0]} | {"model": "bilinear"})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _plot(
    path: Path, scores: Sequence[ModelScore], truth: TruthScores | None, *, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.model for s in scores]
    panels = 3 if truth is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6), constrained_layout=True)
    for ax, metric, label in ((axes[0], "r", "R"), (axes[1], "rmse", "RMSE (m3/m3)")):
        cv = [getattr(s.cv, metric) for s in scores]
        ho = [getattr(s.holdout, metric) for s in scores]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], cv, width=0.4, label="blocked CV")
        ax.bar([x + 0.2 for x in xs], ho, width=0.4, label="temporal hold-out")
        ax.set_xticks(list(xs), names)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="lower right")
    if truth is not None:
        ax = axes[2]
        rmse = [s.truth_1km.rmse if s.truth_1km is not None else np.nan for s in scores]
        ax.bar(range(len(names)), rmse, width=0.6, color="tab:green", label="downscaled")
        ax.axhline(truth.bilinear.rmse, color="k", ls="--", label="bilinear")
        ax.set_xticks(list(range(len(names))), names)
        ax.set_ylabel("RMSE at 1 km vs truth (m3/m3)")
        ax.set_title(f"{truth.days} hold-out days", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="lower right")
    what = "; at 1 km against the truth" if truth is not None else ""
    fig.suptitle(f"Downscaler comparison at 36 km against the retrieval{what} ({title})")
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def active_model(engine: Engine, *, domain: str, data_dir: Path) -> artifact.FrozenModel:
    """The domain's active model, verified against its registered sha256 and the input stack."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT name, path, sha256 FROM smapds.models WHERE domain = :d AND active"),
            {"d": domain},
        ).first()
    if row is None:
        raise InputError(
            f"no active model for domain {domain!r}: train one with "
            "`smapds train --freeze rf --activate` or `smapds model activate NAME`"
        )
    return artifact.load(
        data_dir / row.path,
        expected_features=[n for n, _, _ in FEATURES],
        expected_sha256=row.sha256,
    )
