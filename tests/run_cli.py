"""Run the ``smapds`` command line in a subprocess, as an operator would, without SMAPDS_* leaking in."""

from __future__ import annotations

import os
import subprocess
import sys


def smapds(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPDS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
