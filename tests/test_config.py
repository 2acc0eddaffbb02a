"""config.toml: defaults, relative paths, and one-line errors naming the file, the key and what is expected.

Library-level tests here; the exit status and the absence of tracebacks are checked through the real
command in test_cli_basics.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO
from pydantic import ValidationError

from digest.config import CONFIG_ENV, Config, default_config, load_config, resolve_config_path
from digest.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_file_gives_every_default_rooted_at_its_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.paths.database == (tmp_path / "var" / "digest.db").resolve()
    assert config.paths.inbox == (tmp_path / "inbox").resolve()
    assert config.sources.urls == [] and config.sources.timeout == 20.0
    assert config.ingest.max_file_mb == 20.0
    assert config.source_file == (tmp_path / "config.toml").resolve()


def test_the_shipped_config_toml_is_valid_and_matches_the_defaults() -> None:
    shipped = load_config(REPO / "config.toml")
    defaults = default_config(REPO)
    assert shipped.paths == defaults.paths
    assert shipped.sources == defaults.sources
    assert shipped.ingest == defaults.ingest


def test_relative_paths_resolve_against_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, '[paths]\ndatabase = "data/d.db"\ninbox = "../shared-inbox"\nfeeds = "/abs/feeds"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "conf" / "config.toml")
    assert config.paths.database == (folder / "data" / "d.db").resolve()
    assert config.paths.inbox == (tmp_path / "shared-inbox").resolve()
    assert config.paths.feeds == Path("/abs/feeds")
    assert config.source_file == path.resolve()


def test_sources_and_ingest_values_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[sources]\nurls = ["https://example.org/a.xml"]\ntimeout = 2.5\n[ingest]\nmax_file_mb = 1\n')
    )
    assert config.sources.urls == ["https://example.org/a.xml"]
    assert config.sources.timeout == 2.5
    assert config.ingest.max_file_mb == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[paths]\ninbx = "x"\n',
            "[paths] inbx is not a known key (allowed: database, feeds, inbox, subscribers, templates); "
            "remove it or fix its spelling",
        ),
        (
            "[sourcez]\n",
            "sourcez is not a known key (allowed: database, delivery, enrich, ingest, paths, rank, schedule, smtp, "
            "sources, web); remove it or fix its spelling",
        ),
        (
            'source_file = "/etc/passwd"\n',
            "source_file is not a known key (allowed: database, delivery, enrich, ingest, paths, rank, schedule, smtp, "
            "sources, web); remove it or fix its spelling",
        ),
        ('[smtp]\nport = "x"\n', "[smtp] port must be an integer (got 'x')"),
        ("[smtp]\nport = 99999\n", "[smtp] port must be less than or equal to 65535 (got 99999)"),
        ('[sources]\ntimeout = "fast"\n', "[sources] timeout must be a number (got 'fast')"),
        ("[sources]\ntimeout = 0\n", "[sources] timeout must be greater than 0 (got 0)"),
        (
            '[sources]\nurls = "https://example.org/feed"\n',
            '[sources] urls must be a list, like ["a", "b"] (got \'https://example.org/feed\')',
        ),
        (
            '[sources]\nurls = ["ftp://example.org/feed"]\n',
            "[sources] urls must be http(s) URLs (got 'ftp://example.org/feed')",
        ),
        ("[ingest]\nmax_file_mb = -1\n", "[ingest] max_file_mb must be greater than 0 (got -1)"),
        ('[ingest]\nmax_file_mb = "big"\n', "[ingest] max_file_mb must be a number (got 'big')"),
        ("[paths]\ninbox = 3\n", "[paths] inbox must be a path, as a string (got 3)"),
        ("paths = 3\n", "paths must be a table (got 3)"),
        (
            '[database]\nurl = "postgresql://digest:hunter2@db.example.org/digest"\n',
            "[database] url must not hold a password: put it in an environment variable and name that in [database] "
            "password_env (got 'postgresql://digest:***@db.example.org/digest')",
        ),
        (
            '[database]\nurl = "mysql://digest@db.example.org/digest"\n',
            "[database] url must be a URL like postgresql://user@host:5432/dbname "
            "(got 'mysql://digest@db.example.org/digest')",
        ),
        (
            '[database]\nurl = "postgresql://digest@db.example.org"\n',
            "[database] url must be a URL like postgresql://user@host:5432/dbname (got 'postgresql://digest@db.example.org')",
        ),
        (
            '[schedule]\ningest_every = "soon"\n',
            "[schedule] ingest_every must be a duration like '30m', '2h' or seconds (got 'soon')",
        ),
    ],
)
def test_invalid_values_are_one_line_naming_file_key_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {message}"
    assert caught.value.exit_code == 2


def test_several_problems_get_a_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp]\nport = "x"\n[sources]\ntimeout = "y"\n[ingest]\nmax_file_mb = "z"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}: [sources] timeout must be a number (got 'y')",
        f"{path}: [ingest] max_file_mb must be a number (got 'z')",
        f"{path}: [smtp] port must be an integer (got 'x')",
    ]


def test_a_list_of_strings_is_asked_for_as_a_list(tmp_path: Path) -> None:
    from digest.subscribers import load_profile

    path = tmp_path / "ada.toml"
    path.write_text('name = "Ada"\nemail = "ada@example.org"\n[interests]\nkeywords = "graphs"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert str(caught.value) == f'{path}: [interests] keywords must be a list, like ["a", "b"] (got \'graphs\')'


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[paths]\ninbox = "x"\n[sources\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: invalid TOML: ")
    assert "line 3" in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found; create it or pass another path$"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "utf16.toml").write_bytes("[paths]\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"utf16\.toml: is not UTF-8 text; save it as UTF-8$"):
        load_config(tmp_path / "utf16.toml")


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert resolve_config_path(None) == Path("config.toml")
    monkeypatch.setenv(CONFIG_ENV, "/from/env.toml")
    assert resolve_config_path(None) == Path("/from/env.toml")
    assert resolve_config_path("given.toml") == Path("given.toml")
    assert os.environ[CONFIG_ENV] == "/from/env.toml"


def test_config_objects_are_frozen(tmp_path: Path) -> None:
    config: Config = load_config(write(tmp_path, ""))
    with pytest.raises(ValidationError, match="frozen"):
        config.sources.timeout = 1.0  # type: ignore[misc]


def test_the_example_config_names_every_key() -> None:
    """config.toml is the reference: every key of every section appears in it (set, or commented out)."""
    import re
    from pathlib import Path

    from digest.config import Config

    text = (Path(__file__).resolve().parent.parent / "config.toml").read_text(encoding="utf-8")
    missing = []
    for section, field in Config.model_fields.items():
        if field.exclude:
            continue
        model = field.annotation
        header = f"[{section}]"
        assert header in text, header
        block = text.split(header, 1)[1].split("\n[", 1)[0]
        for name, sub in model.model_fields.items():  # type: ignore[union-attr]
            key = sub.alias or name
            if not re.search(rf"^#? ?{re.escape(key)} =", block, re.M):
                missing.append(f"{header} {key}")
    assert not missing, missing
