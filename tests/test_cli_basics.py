"""The `digest` command as a user runs it (in-process, see tests/cli.py): exit statuses, one-line errors, JSON
output, the demo; the installed console script and one demo run in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cli
import pytest
from conftest import REPO, shared_digests
from test_ingest import abstract_for, spaced_digest


def digest(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> cli.Ran:
    """`digest ARGS` in `cwd`, never reading a DIGEST_CONFIG from the environment the tests run in."""
    return cli.digest(*args, cwd=cwd, env={"DIGEST_CONFIG": None, **(env or {})})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working folder with a minimal config.toml and an inbox."""
    (tmp_path / "config.toml").write_text('[paths]\ninbox = "inbox"\ndatabase = "var/digest.db"\n', encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    return tmp_path


def test_ingest_json_then_again_is_a_no_op(home: Path) -> None:
    (home / "inbox" / "a.txt").write_text(
        spaced_digest(("Paper One", abstract_for("one")), ("Paper Two", abstract_for("two"))), encoding="utf-8"
    )
    first = digest("ingest", "--json", cwd=home)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    report = json.loads(first.stdout)
    assert {k: report[k] for k in ("files", "new", "updated", "duplicates", "rejected")} == {
        "files": 1,
        "new": 2,
        "updated": 0,
        "duplicates": 0,
        "rejected": [],
    }
    second = json.loads(digest("ingest", "--json", cwd=home).stdout)
    assert (second["new"], second["updated"], second["duplicates"]) == (0, 0, 2)
    plain = digest("ingest", cwd=home)
    assert plain.returncode == 0
    assert plain.stdout.strip() == "1 file(s): 0 new, 0 updated, 2 duplicate(s); 2 papers in the store"


def test_rejections_exit_1_with_one_line_each_and_the_rest_ingested(home: Path) -> None:
    (home / "inbox" / "good.txt").write_text(
        spaced_digest(
            ("Good Paper", abstract_for("good")), ("Lonely Title", None), ("Other Paper", abstract_for("other"))
        ),
        encoding="utf-8",
    )
    (home / "inbox" / "empty.json").write_text("")
    (home / "inbox" / "wrong.json").write_text('{"nope": true}')
    result = digest("ingest", "--json", "inbox", "missing.xml", cwd=home)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    # Inputs are named the way they were given (here relative to the working folder).
    assert lines == [
        "rejected: inbox/empty.json: empty file",
        "rejected: inbox/good.txt:15: title 'Lonely Title' has no abstract; skipped",
        'rejected: inbox/wrong.json: JSON must be a list of papers (or {"papers": [...]}), got dict',
        "rejected: missing.xml: no such file or folder",
    ]
    report = json.loads(result.stdout)
    assert report["new"] == 2
    assert [r["path"] for r in report["rejected"]] == [
        "inbox/empty.json",
        "inbox/good.txt",
        "inbox/wrong.json",
        "missing.xml",
    ]


def test_papers_json_lists_newest_first_with_sources(home: Path) -> None:
    (home / "inbox" / "a.txt").write_text(spaced_digest(("Older Paper", abstract_for("old"))), encoding="utf-8")
    assert digest("ingest", cwd=home).returncode == 0
    later = home / "later.json"
    later.write_text(json.dumps([{"id": "2404.00001v2", "title": "Newer Paper", "abstract": "Newer."}]))
    assert digest("ingest", str(later), cwd=home, env={"DIGEST_NOW": "2026-11-21T09:00:00+00:00"}).returncode == 0
    result = digest("papers", "--json", cwd=home)
    assert result.returncode == 0, result.stderr
    papers = json.loads(result.stdout)
    assert [p["title"] for p in papers] == ["Newer Paper", "Older Paper"]
    assert set(papers[0]) >= {"id", "title", "url", "first_seen", "sources"}
    assert papers[0]["id"] == "2404.00001" and papers[0]["url"] == "https://arxiv.org/abs/2404.00001"
    assert papers[0]["sources"] == [str(later.resolve())]
    assert papers[0]["first_seen"] > papers[1]["first_seen"]
    limited = json.loads(digest("papers", "--json", "--limit", "1", cwd=home).stdout)
    assert [p["title"] for p in limited] == ["Newer Paper"]


def test_shared_digests_through_the_command(home: Path) -> None:
    files = shared_digests()
    result = digest("ingest", "--json", *files, cwd=home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["files"], report["entries"], report["new"], report["rejected"]) == (5, 524, 459, [])
    assert len(json.loads(digest("papers", "--json", cwd=home).stdout)) == 459


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[paths]\ninbx = "x"\n', "[paths] inbx is not a known key"),
        ('[sources]\ntimeout = "soon"\n', "[sources] timeout must be a number (got 'soon')"),
        ("[ingest]\nmax_file_mb = 0\n", "[ingest] max_file_mb must be greater than 0 (got 0)"),
        ("[paths\n", "invalid TOML"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "my.toml"
    path.write_text(text, encoding="utf-8")
    result = digest("--config", path, "ingest", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: {expected}")


def test_missing_config_file_named_by_option_or_environment(tmp_path: Path) -> None:
    by_option = digest("--config", "absent.toml", "papers", cwd=tmp_path)
    assert by_option.returncode == 2
    assert by_option.stderr == "error: absent.toml: file not found; create it or pass another path\n"
    by_env = digest("papers", cwd=tmp_path, env={"DIGEST_CONFIG": str(tmp_path / "env.toml")})
    assert by_env.returncode == 2
    assert by_env.stderr == f"error: {tmp_path / 'env.toml'}: file not found; create it or pass another path\n"
    default = digest("papers", cwd=tmp_path)
    assert default.stderr == "error: config.toml: file not found; create it or pass another path\n"


def test_environment_config_is_used_and_relative_paths_follow_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "digest.toml").write_text('[paths]\ndatabase = "state/papers.db"\ninbox = "in"\n', encoding="utf-8")
    (conf / "in").mkdir()
    (conf / "in" / "a.txt").write_text(spaced_digest(("Env Paper", abstract_for("env"))), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    result = digest("ingest", cwd=work, env={"DIGEST_CONFIG": "../conf/digest.toml"})
    assert result.returncode == 0, result.stderr
    assert (conf / "state" / "papers.db").is_file()
    assert not (work / "state").exists()


def test_traceback_only_with_verbose(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[smtp]\nport = 'x'\n", encoding="utf-8")
    quiet = digest("papers", cwd=tmp_path)
    assert "Traceback" not in quiet.stderr and quiet.returncode == 2
    loud = digest("-v", "papers", cwd=tmp_path)
    assert "Traceback" in loud.stderr and loud.returncode == 2
    assert loud.stderr.rstrip().endswith("[smtp] port must be an integer (got 'x')")


def test_unusable_database_is_one_line(home: Path) -> None:
    (home / "var").mkdir()
    (home / "var" / "digest.db").write_text("not sqlite " * 500)
    result = digest("papers", cwd=home)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {home / 'var' / 'digest.db'}: not a paper-digest database")


@pytest.mark.parametrize("command", ["ingest", "papers", "demo"])
def test_commands_have_help(tmp_path: Path, command: str) -> None:
    result = digest(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert f"Usage: digest {command}" in result.stdout
    assert len(result.stdout.split("\n\n")[1].strip()) > 20  # a real description, not just the usage line


def test_demo_runs_and_prints_its_workspace(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    # The first demo runs as a real process on purpose: the one end-to-end run of `python -m digest demo` with a
    # fresh interpreter (imports, logging set-up, exit status); the calls after it run in-process.
    result = subprocess.run(
        [sys.executable, "-m", "digest", "demo", "--dir", str(target)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"demo workspace: {target.resolve()}" in result.stdout
    assert (target / "config.toml").is_file()
    papers = json.loads(digest("--config", target / "config.toml", "papers", "--json", cwd=tmp_path).stdout)
    assert len(papers) >= 5
    # Running it again recreates the workspace instead of failing or piling up state.
    again = digest("demo", "--dir", target, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    listed = digest("--config", target / "config.toml", "papers", "--json", cwd=tmp_path)
    assert len(json.loads(listed.stdout)) == len(papers)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "digest"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("digest, version ")


def test_the_help_list_matches_every_commands_own_help() -> None:
    """`digest --help` lists commands from COMMAND_SUMMARIES without importing them: it must say what they say."""
    import click

    from digest.commands import COMMAND_MODULES, COMMAND_SUMMARIES, load_command

    assert set(COMMAND_SUMMARIES) == set(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        command = load_command(name)
        assert command is not None
        for limit in (30, 45, 60, 90):
            listed = click.Command(name, help=COMMAND_SUMMARIES[name]).get_short_help_str(limit)
            assert listed == command.get_short_help_str(limit), (name, limit)


@pytest.mark.parametrize("args", [["--help"], ["papers", "--help"], ["subscribers", "--help"]])
def test_light_commands_do_not_load_scikit_learn(args: list[str]) -> None:
    """A fresh interpreter: what `digest --help` or `digest papers` import must not include the ranking stack."""
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom digest.cli import main\n"
        f"result = CliRunner().invoke(main, {args!r})\nassert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('sklearn', 'scipy', 'numpy') if m in sys.modules)\nprint(heavy)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


def test_history_of_an_unknown_subscriber_says_so(workspace: Path) -> None:
    unknown = digest("history", "nobody", cwd=workspace)
    assert unknown.returncode != 0 and "no subscriber 'nobody'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    known = digest("history", "ada", cwd=workspace)
    assert known.returncode == 0 and "no messages yet" in known.stderr


def test_the_demo_prints_next_steps_that_work_as_pasted_in_a_new_shell(tmp_path: Path) -> None:
    """After `make demo` the command lives in .venv/bin, which a new shell does not have on PATH: the demo prints
    a command that runs anyway, and running it (without --open) previews the demo's email."""
    import shlex

    program = Path(sys.executable).with_name("digest")
    if not program.exists():
        pytest.skip(f"no console script next to {sys.executable} (not an installed environment)")
    env = {**os.environ, "PATH": "/usr/bin:/bin", "DIGEST_EMBEDDINGS": "off"}
    env.pop("DIGEST_CONFIG", None)
    demo = subprocess.run(
        [str(program), "demo", "--dir", str(tmp_path / "demo")], capture_output=True, text=True, env=env, timeout=300
    )
    assert demo.returncode == 0, demo.stderr[-1000:]
    line = next(line for line in demo.stdout.splitlines() if line.startswith("open a preview:"))
    pasted = shlex.split(line.removeprefix("open a preview:").strip())
    assert pasted[0] == str(program.resolve()) and pasted[-1] == "--open"
    preview = subprocess.run(
        [*pasted[:-1], "--format", "json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert preview.returncode == 0, preview.stderr[-1000:]
    assert json.loads(preview.stdout)["subscriber"] == "ada"
