"""What only the Flask front door does: Flask's cookie rules, settings and tagged values, on
every store.

What every front door does (through gunicorn too) is in tests/test_front_doors.py.
"""

from __future__ import annotations

import decimal
import time
import uuid
import warnings
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from markupsafe import Markup

from cloudsessions import ConfigurationError, SessionValueError
from cloudsessions.flask import CloudSessions, FlaskSessionSettingWarning
from tests.front_doors import DEFAULT, LIFETIME, FlaskDoor, age, flask_app, open_door, stored
from tests.stores import Instrumented

# ------------------------------------------------------------------ Flask's cookie rules


@pytest.mark.parametrize(
    ("permanent", "refresh_after", "remaining", "trips", "resent"),
    [
        (False, DEFAULT, LIFETIME * 0.95, (1, 0), False),  # a browser-session cookie
        (True, DEFAULT, LIFETIME * 0.95, (1, 0), True),  # re-sent, though nothing is written
        (True, DEFAULT, LIFETIME * 0.5, (1, 1), True),  # a refresh is due: the record too
        (True, None, LIFETIME * 0.01, (1, 0), False),  # SESSION_REFRESH_EACH_REQUEST = False
    ],
)
def test_flasks_cookie_rules_apply_apart_from_store_writes(
    on_store: Instrumented,
    permanent: bool,
    refresh_after: float | None,
    remaining: float,
    trips: tuple[int, int],
    resent: bool,
) -> None:
    """A permanent session's cookie expires with its record and is re-sent on every request
    while SESSION_REFRESH_EACH_REQUEST is on; any other is a browser-session cookie. The
    record expires PERMANENT_SESSION_LIFETIME after its last write either way, and the
    store is written only when a refresh is due."""
    store = on_store.store
    with open_door("flask", store, refresh_after=refresh_after) as door:
        assert isinstance(door, FlaskDoor)
        (header,) = door.write(_permanent=permanent, a=1).cookies  # session.permanent's key
        assert ("Expires" in header) == permanent
        key = door.sid
        assert key is not None
        record = store.load(key)
        assert record is not None
        assert record.expires_at == pytest.approx(time.time() + LIFETIME, abs=5)
        age(store, key, remaining)

        on_store.trips.reset()
        answer = door.get("/read")
        assert on_store.trips.counts == trips
        assert len(answer.cookies) == (1 if resent else 0)
        assert answer.headers["vary"] == "Cookie"
        record = store.load(key)
        cookie = door.client.get_cookie("session")
        assert record is not None and cookie is not None
        if resent:  # the cookie expires with its record, never later
            assert cookie.expires is not None
            assert cookie.expires.timestamp() == pytest.approx(record.expires_at, abs=2)


def test_flask_cookie_settings_are_honoured(on_store: Instrumented) -> None:
    app = flask_app(
        on_store.store,
        TESTING=True,
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_DOMAIN="example.test",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    response = app.test_client().get("/write", query_string={"a": "1"})
    (header,) = response.headers.getlist("Set-Cookie")
    assert header.startswith("sid=")
    parts = {p.strip().split("=")[0].lower(): p for p in header.split(";")}
    assert parts["domain"].strip() == "Domain=example.test"
    assert parts["path"].strip() == "Path=/app"
    assert "secure" in parts and "samesite" in parts and "httponly" not in parts
    assert parts["samesite"].strip() == "SameSite=Strict"
    assert response.headers["Vary"] == "Cookie"


# ------------------------------------------------------------------ Flask's tagged values

TAGGED: dict[str, Any] = {
    "t": (1, 2, 3),
    "b": b"\x00\xff",
    "m": Markup("<b>hi</b>"),
    "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "d": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def test_flasks_tagged_values_round_trip_through_the_store(on_store: Instrumented) -> None:
    app = flask_app(on_store.store, TESTING=True)

    @app.get("/tagged")
    def tagged() -> Any:
        session.update(TAGGED)
        return {"ok": True}

    @app.get("/tagged-repr")
    def tagged_repr() -> Any:
        return {k: repr(v) for k, v in session.items()}

    door = FlaskDoor(on_store.store, app)
    door.get("/tagged")
    assert door.get("/tagged-repr").json == {k: repr(v) for k, v in TAGGED.items()}
    assert stored(on_store.store, door.sid) == {  # Flask's own tag form, as in its cookie
        "t": {" t": [1, 2, 3]},
        "b": {" b": "AP8="},
        "m": {" m": "<b>hi</b>"},
        "u": {" u": "12345678123456781234567812345678"},
        "d": {" d": "Tue, 02 Jan 2024 03:04:05 GMT"},
    }
    with pytest.raises(SessionValueError, match=r"'tags'.*Flask tagged JSON"):
        door.get("/write-set")  # a set has no tag


def test_values_flasks_json_provider_accepts_are_stored_as_it_stores_them(
    on_store: Instrumented,
) -> None:
    # Flask's cookie session encodes through app.json: a date and a Decimal are accepted
    # and come back as the strings Flask's provider makes of them. So here.
    app = flask_app(on_store.store, TESTING=True)

    @app.get("/provider")
    def provider() -> Any:
        session["when"] = {"day": date(2026, 1, 2), "price": decimal.Decimal("1.50")}
        return {"ok": True}

    door = FlaskDoor(on_store.store, app)
    door.get("/provider")
    expected = {"day": "Fri, 02 Jan 2026 00:00:00 GMT", "price": "1.50"}
    assert door.get("/read").json["data"] == {"when": expected}


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("CLOUDSESSIONS_STOR", "oops"),
        ("CLOUDSESSIONS_REFRESH_AFTER", 2),
        ("CLOUDSESSIONS_STORE", 42),
        ("CLOUDSESSIONS_ROTATE_ON_LOGIN", "yes"),
        ("CLOUDSESSIONS_RETRY_AFTER", -1),
    ],
)
def test_settings_are_checked_at_init_app(tmp_path: Path, setting: str, value: object) -> None:
    app = Flask(__name__)
    app.config.update({"CLOUDSESSIONS_STORE": f"sqlite:///{tmp_path / 'x.db'}", setting: value})
    with pytest.raises(ConfigurationError, match=setting):
        CloudSessions(app)


def test_leftover_flask_session_settings_are_named_once_with_what_to_use(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(
        CLOUDSESSIONS_STORE=f"sqlite:///{tmp_path / 'x.db'}",
        SESSION_TYPE="redis",
        SESSION_PERMANENT=False,
        SESSION_USE_SIGNER=True,
        SESSION_KEY_PREFIX="session:",
    )

    @app.get("/")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning recorded: "once" is the code's doing
        CloudSessions(app)
        client = app.test_client()
        assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
    (warning,) = [w for w in caught if w.category is FlaskSessionSettingWarning]
    assert warning.filename == __file__, "it points at the app's CloudSessions(app)"
    text = str(warning.message)
    for name, instead in [
        ("SESSION_TYPE", "use CLOUDSESSIONS_STORE"),
        ("SESSION_PERMANENT", "session.permanent = True"),
        ("SESSION_USE_SIGNER", "not signed"),
        ("SESSION_KEY_PREFIX", "{'prefix': ...}"),
    ]:
        (line,) = [line for line in text.splitlines() if line.strip().startswith(f"{name}:")]
        assert instead in line

    # Flask's own session settings are honoured, not leftovers.
    clean = Flask("clean")
    clean.config.update(
        CLOUDSESSIONS_STORE=f"sqlite:///{tmp_path / 'x.db'}",
        SESSION_COOKIE_NAME="sid",
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlaskSessionSettingWarning)
        CloudSessions(clean)


def test_the_store_is_created_lazily_once_per_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lazy.db'}"
    extension = CloudSessions()
    apps = [Flask("one"), Flask("two")]
    for app in apps:
        app.config["CLOUDSESSIONS_STORE"] = url
        extension.init_app(app)
    assert not (tmp_path / "lazy.db").exists(), "init_app touched nothing"
    store = CloudSessions.get_store(apps[0])
    assert store is CloudSessions.get_store(apps[1]), "one store per configuration"
