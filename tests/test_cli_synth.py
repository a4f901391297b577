"""`smapds synth generate`: writes a world once, recognises it again, refuses to overwrite silently."""

from __future__ import annotations

import json
from pathlib import Path

from run_cli import smapds


def test_generate_then_again_is_a_no_op_and_another_world_needs_replace(tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ("synth", "generate", "--out", str(out), "--domain", "demo", "--days", "2")
    first = smapds(*args)
    assert first.returncode == 0, first.stderr
    assert "synthetic world:" in first.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["days"] == 2
    assert all((out / f["path"]).is_file() for f in manifest["files"])
    stamp = (out / "manifest.json").stat().st_mtime_ns

    again = smapds(*args)
    assert again.returncode == 0 and "already in" in again.stdout
    assert (out / "manifest.json").stat().st_mtime_ns == stamp

    other = smapds(*args, "--seed", "8")
    assert other.returncode == 2 and "--replace" in other.stderr
    replaced = smapds(*args, "--seed", "8", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "manifest.json").read_text())["seed"] == 8


def test_bad_arguments_are_named() -> None:
    result = smapds("synth", "generate", "--days", "0")
    assert result.returncode == 2 and "--days must be at least 1" in result.stderr
    result = smapds("synth", "generate", "--domain", "atlantis")
    assert result.returncode == 1 and "unknown domain 'atlantis'" in result.stderr


def test_a_world_with_another_retrieval_noise_is_another_world(tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ("synth", "generate", "--out", str(out), "--domain", "demo", "--days", "1")
    quiet = smapds(*args, "--retrieval-noise", "0.01")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads((out / "manifest.json").read_text())["config"]["noise_sd_36km"] == 0.01
    assert "already in" in smapds(*args, "--retrieval-noise", "0.01").stdout
    default = smapds(*args)  # the default noise is not the world that is there
    assert default.returncode == 2 and "--replace" in default.stderr
    negative = smapds(*args, "--retrieval-noise", "-0.1", "--replace")
    assert negative.returncode == 2 and "noise" in negative.stderr
