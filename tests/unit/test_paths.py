"""``paths.user_home``: the one source of "the user's home", and what it refuses."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from parallelr import paths
from parallelr.config import load_settings
from parallelr.context import Config
from parallelr.errors import ParallelrError

Account = collections.namedtuple("Account", "pw_dir")


def test_home_is_the_home_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.user_home() == tmp_path


def test_an_unset_home_is_the_password_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(paths.pwd, "getpwuid", lambda uid: Account("/srv/accounts/me"))
    assert paths.user_home() == Path("/srv/accounts/me")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "HOME is set but empty: set HOME to your home directory (an absolute path), "
             "or unset it to use the password database's"),
        ("home", "HOME is a relative path ('home'): set HOME to your home directory (an absolute path)"),
        (".", "HOME is a relative path ('.'): set HOME to your home directory (an absolute path)"),
        ("~", "HOME is a relative path ('~'): set HOME to your home directory (an absolute path)"),
    ],
    ids=["empty", "relative", "dot", "tilde"],
)
def test_an_empty_or_relative_home_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("HOME", value)
    with pytest.raises(ParallelrError) as caught:
        paths.user_home()
    assert str(caught.value) == message
    assert caught.value.exit_code == 1


def test_an_unset_home_without_an_account_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_entry(uid: int) -> Account:
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(paths.pwd, "getpwuid", no_entry)
    with pytest.raises(ParallelrError, match=r"^HOME is not set and user ID \d+ has no entry in the pass"):
        paths.user_home()
    monkeypatch.setattr(paths.pwd, "getpwuid", lambda uid: Account(""))
    with pytest.raises(ParallelrError, match=r"the home directory '', which is not an absolute path"):
        paths.user_home()


def test_every_home_of_the_app_comes_from_user_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Config.home, the user config and ``~`` in journal.path: none falls back to ``/``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Config(None, None).home == tmp_path / "parallelr"  # type: ignore[arg-type]
    assert paths.expand_user("~/jobs.db") == str(tmp_path / "jobs.db")
    assert paths.expand_user("~") == str(tmp_path)
    assert paths.expand_user("/abs/~/x") == "/abs/~/x"

    monkeypatch.setenv("HOME", "")
    with pytest.raises(ParallelrError, match=r"^HOME is set but empty"):
        Config(None, None).home  # type: ignore[arg-type]  # noqa: B018
    with pytest.raises(ParallelrError, match=r"^HOME is set but empty"):
        load_settings()
    with pytest.raises(ParallelrError, match=r"^HOME is set but empty"):
        paths.expand_user("~/jobs.db")  # os.path.expanduser would say /jobs.db
    assert os.path.expanduser("~/jobs.db") == "/jobs.db"
