"""The wheel carries what `pip install .` users need: the default templates, the demo's sample data and the starter
config; and a user who installed it starts their own digest from an empty folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sample_digest import sample_paper

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel built from a copy of the sources (building writes build/ and *.egg-info next to them)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "config.toml"):
        shutil.copy2(REPO / name, source / name)
    # As in a clone: digest/templates links to the top-level templates/ and digest/config.toml to config.toml;
    # the wheel must hold them as files.
    shutil.copytree(REPO / "digest", source / "digest", ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    shutil.copytree(REPO / "templates", source / "templates")
    assert (source / "digest" / "templates").is_symlink() and (source / "digest" / "config.toml").is_symlink()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (found,) = tmp_path.glob("paper_digest-*.whl")
    yield found


def test_the_wheel_holds_every_template_the_demo_data_and_the_starter_config(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = {
            path.relative_to(REPO).as_posix(): path.read_bytes()
            for folder in ("digest/templates", "digest/demo_data", "digest/web/templates", "digest/rank/data")
            for path in (REPO / folder).rglob("*")
            if path.is_file()
        }
        packaged["digest/config.toml"] = (REPO / "config.toml").read_bytes()
        assert len([n for n in packaged if n.endswith(".j2")]) == 5
        missing = sorted(set(packaged) - names)
        assert not missing, f"not in the wheel: {missing}"
        changed = [name for name, data in packaged.items() if archive.read(name) != data]
        assert not changed, changed
        assert any(n.endswith("entry_points.txt") and b"digest = digest.cli:main" in archive.read(n) for n in names)


def test_a_pip_installed_user_starts_their_own_digest_from_an_empty_folder(wheel: Path, tmp_path: Path) -> None:
    """The wheel in a fresh venv (its dependencies lent by this environment, offline), then what a newcomer does:
    `digest init DIR` with flags, a digest file into DIR/inbox, and the printed next steps pasted as they are
    (digest is not on PATH) from another folder: ingest, then preview shows the sample paper."""
    started = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    lent = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in lent), encoding="utf-8")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (site / "digest" / "config.toml").read_bytes() == (REPO / "config.toml").read_bytes()

    empty = tmp_path / "somewhere"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DIGEST_CONFIG", "PYTHON"))}
    # No network (DIGEST_ENRICH: no arXiv lookups), no model download; DIGEST_NOW comes from conftest.
    env |= {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIGEST_EMBEDDINGS": "off", "DIGEST_ENRICH": "off"}

    def run(*args: str | Path, cwd: Path = empty) -> subprocess.CompletedProcess[str]:
        ran = subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert ran.returncode == 0, ran.stderr[-2000:]
        return ran

    keywords = "graph neural networks, message passing"
    init = run(
        venv / "bin" / "digest", "init", "mine", "--name", "Ada", "--email", "ada@example.org", "--keywords", keywords
    )
    workspace = empty / "mine"
    papers = [sample_paper(i).paper for i in range(10)]
    digest_file = [
        {"id": p.arxiv_id, "title": p.title, "abstract": p.abstract, "url": p.url, "authors": list(p.authors)}
        for p in papers
    ]
    (workspace / "inbox" / "papers.json").write_text(json.dumps(digest_file), encoding="utf-8")

    steps = dict(re.findall(r"^ +(\d)\. (.+)$", init.stdout, flags=re.M))
    ingest, preview = shlex.split(steps["2"]), shlex.split(steps["3"])
    assert ingest[0] == str(venv / "bin" / "digest") and ingest[-1] == "ingest"
    assert preview[-2:] == ["ada", "--open"]
    assert "10 new" in run(*ingest, cwd=tmp_path).stdout
    shown = json.loads(run(*preview[:-1], "--format", "json", cwd=tmp_path).stdout)
    assert shown["subscriber"] == "ada"
    assert papers[0].title in [paper["title"] for paper in shown["papers"]]
    print(f"wheel install, init, ingest and preview: {time.monotonic() - started:.1f} s")
