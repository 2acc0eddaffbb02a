"""The wheel carries what `pip install .` users need: the default templates and the demo's sample data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_every_template_and_the_demo_data(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    # As in a clone: digest/templates is a link to the top-level templates/, which the wheel must hold as files.
    shutil.copytree(REPO / "digest", source / "digest", ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    shutil.copytree(REPO / "templates", source / "templates")
    assert (source / "digest" / "templates").is_symlink()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("paper_digest-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = {
            path.relative_to(REPO).as_posix(): path.read_bytes()
            for folder in ("digest/templates", "digest/demo_data", "digest/web/templates", "digest/rank/data")
            for path in (REPO / folder).rglob("*")
            if path.is_file()
        }
        assert len([n for n in packaged if n.endswith(".j2")]) == 5
        missing = sorted(set(packaged) - names)
        assert not missing, f"not in the wheel: {missing}"
        changed = [name for name, data in packaged.items() if archive.read(name) != data]
        assert not changed, changed
        assert any(n.endswith("entry_points.txt") and b"digest = digest.cli:main" in archive.read(n) for n in names)
