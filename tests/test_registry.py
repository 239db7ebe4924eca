"""The URL scheme registry: our stores, and other packages' through entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from cloudsessions import ConfigurationError, new_session_id, open_store
from cloudsessions.registry import registered
from cloudsessions.stores.sqlite import SQLiteStore
from cloudsessions.testing import live


@pytest.fixture
def third_party_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed package "notes_store" whose entry point registers the notes:// scheme."""
    (tmp_path / "notes_store.py").write_text(
        textwrap.dedent(
            '''
            from cloudsessions.stores.sqlite import SQLiteStore

            class NotesStore(SQLiteStore):
                """SQLite under another name: what matters is how it is found."""
                kind = "notes"
            '''
        )
    )
    dist = tmp_path / "notes_store-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: notes-store\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[cloudsessions.stores]\nnotes = notes_store:NotesStore\nsqlite = notes_store:NotesStore\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "notes_store", raising=False)
    return "notes"


def test_a_store_registered_by_entry_point_opens_by_its_scheme(
    third_party_store: str, tmp_path: Path
) -> None:
    store = open_store(f"{third_party_store}:///{tmp_path / 'notes.db'}?table=notes")
    assert type(store).__name__ == "NotesStore" and store.kind == "notes"
    session_id = new_session_id()
    store.create(session_id, live({"a": 1}))
    record = store.load(session_id)
    assert record is not None and record.data == {"a": 1}
    store.close()


def test_a_package_cannot_take_over_one_of_our_schemes(third_party_store: str) -> None:
    assert registered()["sqlite"] == "cloudsessions.stores.sqlite:SQLiteStore"
    assert type(open_store("sqlite:///unused.db")) is SQLiteStore


def test_unknown_schemes_list_every_registered_one(third_party_store: str) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown store URL scheme postgres://") as raised:
        open_store("postgres://db/sessions")
    assert "notes://" in str(raised.value) and "dynamodb://" in str(raised.value)


def test_a_registered_store_whose_package_is_gone_says_so(
    third_party_store: str, tmp_path: Path
) -> None:
    (tmp_path / "notes_store.py").unlink()
    missing = r"notes:// store \(notes_store\) is not installed"
    with pytest.raises(ConfigurationError, match=missing):
        open_store("notes:///x.db")
