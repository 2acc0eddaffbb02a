"""Dependencies point down the pipeline: ranking and rendering are pure layers, and compose workers load neither
the database nor scikit-learn. Checked in fresh interpreters (what a module drags in is only visible there)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "sqlite3",
    "psycopg",
    "apscheduler",
    "pydantic",
    "sklearn",
    "digest.store",
    "digest.subscribers",
    "digest.plan",
)


def loaded_by(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    ran = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(ran.stdout))


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        (
            "digest.rank",
            {"sqlite3", "psycopg", "apscheduler", "pydantic", "digest.store", "digest.subscribers", "digest.plan"},
        ),
        ("digest.render", set(HEAVY)),
        ("digest.mail.composer", set(HEAVY)),  # what every compose worker process imports
        ("digest.picks", set(HEAVY)),
    ],
)
def test_pure_layers_import_no_io_and_no_heavy_libraries(module: str, forbidden: set[str]) -> None:
    assert loaded_by(module) & forbidden == set()
