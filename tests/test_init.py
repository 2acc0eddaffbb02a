"""`digest init`: a new workspace (the packaged config.toml, inbox/, subscribers/, a first commented profile) from
flags or prompts; bad answers are one-line errors naming the flag; nothing is ever overwritten.

The pip-installed path (wheel, fresh venv, init -> ingest -> preview) is tests/test_packaging.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import cli
import pytest
from conftest import REPO

import digest.commands.init as init_command
from digest.config import load_config
from digest.starter import Reader, build_profile, local_timezone, profile_toml, starter_config, suggest_id
from digest.subscribers import Interests, Profile, load_profile

ADA = ("--name", "Ada Example", "--email", "ada@example.org", "--keywords", "graph neural networks, message passing")


def digest(*args: str | Path, cwd: Path, input: str | None = None) -> cli.Ran:
    return cli.digest(*args, cwd=cwd, env={"DIGEST_CONFIG": None, "TZ": "Europe/London"}, input=input)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a terminal: init asks for what no flag gave (click's runner feeds the answers)."""
    monkeypatch.setattr(init_command, "stdin_is_a_terminal", lambda: True)


def one_line_error(ran: cli.Ran) -> str:
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    return lines[0]


# --- what it writes -------------------------------------------------------------------------------------------


def test_init_here_writes_the_reference_config_the_folders_and_a_valid_profile(tmp_path: Path) -> None:
    ran = digest("init", *ADA, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "config.toml").read_bytes() == (REPO / "config.toml").read_bytes()
    assert (tmp_path / "inbox").is_dir() and (tmp_path / "subscribers").is_dir()
    config = load_config(tmp_path / "config.toml")
    assert config.paths.subscribers == (tmp_path / "subscribers").resolve()
    profile = load_profile(tmp_path / "subscribers" / "ada.toml")
    assert (profile.id, profile.name, profile.email) == ("ada", "Ada Example", "ada@example.org")
    assert profile.interests.keywords == ("graph neural networks", "message passing")
    assert profile.timezone == "Europe/London"  # the machine's ($TZ here)
    defaults = Profile(name="x", email="x@example.org")
    assert (profile.format, profile.schedule, profile.max_papers) == ("html", defaults.schedule, defaults.max_papers)
    steps = ran.stdout[ran.stdout.index("next steps:") :]
    config_path = str(tmp_path / "config.toml")
    for step in ("ingest", "preview ada --open", "send ada"):
        assert f"--config {config_path} {step}" in steps, steps
    assert str(tmp_path / "inbox") in steps


def test_init_creates_the_folder_it_is_given(tmp_path: Path) -> None:
    ran = digest("init", "new/digest", *ADA, "--id", "ada-l", "--timezone", "Asia/Tokyo", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    profile = load_profile(tmp_path / "new" / "digest" / "subscribers" / "ada-l.toml")
    assert profile.timezone == "Asia/Tokyo"


def test_the_packaged_starter_config_is_the_repositorys_config_toml() -> None:
    """One file, not two copies: digest/config.toml links to the reference config.toml (which
    tests/test_config.py checks names every key), and the wheel holds it as a file (tests/test_packaging.py)."""
    assert (REPO / "digest" / "config.toml").resolve() == (REPO / "config.toml").resolve()
    assert starter_config() == (REPO / "config.toml").read_bytes()


def test_the_profile_names_every_key_and_its_commented_lines_are_the_defaults() -> None:
    profile = build_profile(Reader("Ada Example", "ada@example.org", ("graphs",), timezone="UTC"))
    text = profile_toml(profile)
    for model in (Profile, Interests):
        for key, field in model.model_fields.items():
            if not field.exclude:
                line = rf"^((# )?{key} = |\[{key}\]$)"  # a key, set or commented out, or a table
                assert re.search(line, text, flags=re.M), f"{key} is not in the written profile"
    # Uncommenting every key gives the same profile: the commented values are the defaults.
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M)
    assert Profile.model_validate(tomllib.loads(uncommented)) == Profile.model_validate(tomllib.loads(text))
    assert Profile.model_validate(tomllib.loads(text)) == profile.model_copy(update={"id": ""})


def test_any_name_survives_the_round_trip_through_toml(tmp_path: Path) -> None:
    name = 'Zoë "Z" O\'Brien \\ 名前\t\x7f #1'
    ran = digest("init", "--name", name, "--email", "zoe@example.org", "--keywords", "a, b,, c ,", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    profile = load_profile(tmp_path / "subscribers" / "zoe.toml")
    assert profile.name == name.strip() and profile.interests.keywords == ("a", "b", "c")


def test_the_id_comes_from_the_email_address() -> None:
    assert suggest_id("Grace.Hopper+digest@Example.org") == "grace.hopper"
    assert suggest_id("élodie@example.org") == "elodie"
    assert suggest_id("all@example.org", "Alan Turing") == "alan-turing"  # "all" is the shared feed's name
    assert suggest_id("con@example.org", "!!!") == "reader"  # a Windows device name, then nothing usable


def test_the_machines_time_zone(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    assert local_timezone({}, etc) == "UTC"
    assert local_timezone({"TZ": ":Asia/Tokyo"}, etc) == "Asia/Tokyo"
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/America/New_York")
    assert local_timezone({"TZ": "Not/AZone"}, etc) == "America/New_York"
    (etc / "timezone").write_text("Europe/Paris\n", encoding="utf-8")
    assert local_timezone({}, etc) == "Europe/Paris"


# --- prompts --------------------------------------------------------------------------------------------------


def test_on_a_terminal_it_asks_and_asks_again_after_a_bad_answer(tmp_path: Path, terminal: None) -> None:
    answers = "Grace Example\nnot-an-address\ngrace@example.org\n , \ncompilers, COBOL\n"
    ran = digest("init", cwd=tmp_path, input=answers)
    assert ran.returncode == 0, ran.stderr
    assert "Your name:" in ran.stdout and "Your email address:" in ran.stdout
    assert "is not a valid email address" in ran.stdout and "must name at least one topic" in ran.stdout
    profile = load_profile(tmp_path / "subscribers" / "grace.toml")
    assert (profile.name, profile.email, profile.interests.keywords) == (
        "Grace Example",
        "grace@example.org",
        ("compilers", "COBOL"),
    )


def test_it_asks_only_for_what_no_flag_gave(tmp_path: Path, terminal: None) -> None:
    ran = digest("init", "--name", "Ada Example", "--email", "ada@example.org", cwd=tmp_path, input="graphs\n")
    assert ran.returncode == 0, ran.stderr
    assert "Your name" not in ran.stdout and "Topics you follow" in ran.stdout
    assert load_profile(tmp_path / "subscribers" / "ada.toml").interests.keywords == ("graphs",)


def test_without_a_terminal_a_missing_value_is_an_error_naming_the_flag(tmp_path: Path) -> None:
    error = one_line_error(digest("init", "--name", "Ada Example", cwd=tmp_path, input=""))
    assert "--email, --keywords are required" in error and "stdin is not a terminal" in error
    assert list(tmp_path.iterdir()) == []


def test_yes_never_asks(tmp_path: Path, terminal: None) -> None:
    error = one_line_error(digest("init", "--yes", "--name", "A", "--email", "a@example.org", cwd=tmp_path))
    assert "--keywords is required" in error and "--yes" in error


# --- errors: one line naming the flag, nothing written --------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--email", "ada@", "--email is not a valid email address"),
        ("--name", "  ", "--name must not be empty"),
        ("--keywords", " , ", "--keywords must name at least one topic"),
        ("--timezone", "Mars/Olympus", "--timezone is not a known time zone (got 'Mars/Olympus')"),
        ("--id", "../ada", "--id must be letters, digits"),
        ("--id", "ALL", "--id subscriber id 'ALL' is reserved"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_flag(tmp_path: Path, flag: str, value: str, expected: str) -> None:
    args = dict(zip(ADA[::2], ADA[1::2], strict=True)) | {flag: value}
    error = one_line_error(digest("init", *(x for pair in args.items() for x in pair), cwd=tmp_path))
    assert expected in error, error
    assert list(tmp_path.iterdir()) == []


def test_an_existing_config_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# mine\n", encoding="utf-8")
    error = one_line_error(digest("init", *ADA, cwd=tmp_path))
    assert "config.toml already exists" in error and "never overwrites" in error
    assert (tmp_path / "config.toml").read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / "subscribers").exists()


def test_an_existing_profile_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "subscribers").mkdir()
    (tmp_path / "subscribers" / "Ada.toml").write_text("# mine\n", encoding="utf-8")  # one file on macOS
    error = one_line_error(digest("init", *ADA, cwd=tmp_path))
    assert "--id 'ada' is taken" in error and "Ada.toml" in error
    assert not (tmp_path / "config.toml").exists()
    assert digest("init", *ADA, "--id", "ada2", cwd=tmp_path).returncode == 0
    assert (tmp_path / "subscribers" / "Ada.toml").read_text(encoding="utf-8") == "# mine\n"


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("", encoding="utf-8")
    assert "is a file, not a folder" in one_line_error(digest("init", "taken", *ADA, cwd=tmp_path))
