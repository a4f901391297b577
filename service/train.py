"""Training: assemble coarse samples for a period, compare the four models, freeze and register one.

Samples of each day are cached under ``data_dir/cache/samples/<domain>/<stack version>/`` so a
second comparison over the same period does not rebuild a single stack. The comparison table is
written as CSV and a PNG next to the artifacts (``data_dir/models/``).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import ArtifactError, InputError
from etl.stack import FEATURES, STACK_VERSION
from models import artifact
from models.evaluate import ModelScore, best, compare
from models.learners import DEFAULT_PARAMS, make_model
from models.samples import CoarseSamples, coarse_samples, concat
from service.stacks import StackFactory

log = logging.getLogger(__name__)

MIN_LAND_FRACTION = 0.5


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
) -> TrainReport:
    samples, skipped = assemble(factory, start, end, cache_dir=data_dir / "cache" / "samples")
    if len(samples) < 100:
        raise InputError(
            f"only {len(samples)} training samples in {start}..{end}; fetch more days first"
        )
    scores = compare(
        samples,
        models=models,
        params=params,
        block=3,
        n_splits=5,
        holdout_fraction=0.2,
        seed=seed,
        n_jobs=n_jobs,
    )
    winner = best(scores)
    out = data_dir / "models"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"comparison-{factory.domain.name}-{start}-{end}"
    table = _write_table(out / f"{stem}.csv", scores)
    plot = _plot(out / f"{stem}.png", scores, title=f"{factory.domain.name} {start}..{end}")
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
        len(samples), len({d for d in samples.day}), skipped, scores, winner, table, plot, frozen
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


def _write_table(path: Path, scores: Sequence[ModelScore]) -> Path:
    rows = [s.row() for s in scores]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _plot(path: Path, scores: Sequence[ModelScore], *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.model for s in scores]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
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
    fig.suptitle(f"Downscaler comparison at 36 km against the retrieval ({title})")
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
