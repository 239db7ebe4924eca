"""Field-name encoding, value encoding and session ids: the pieces every store relies on."""

from __future__ import annotations

import re
import string

from hypothesis import given
from hypothesis import strategies as st

from cloudsessions import codec, session_ids

FIELD_SHAPE = re.compile(r"k[A-Za-z0-9_%-]*")


@given(st.text())
def test_field_names_round_trip_and_are_safe_in_every_store(key: str) -> None:
    field = codec.encode_field(key)
    assert FIELD_SHAPE.fullmatch(field), field  # no '.', '$', '/', '`', spaces, empty names
    assert not (field.startswith("__") and field.endswith("__"))  # Firestore's reserved names
    assert codec.decode_field(field) == key


def test_distinct_keys_get_distinct_fields() -> None:
    sample = ["a.b", "a%2Eb", "a_b", "a-b", "a b", "", "k", "kk", "%", "%25", ".", "~"]
    assert len({codec.encode_field(k) for k in sample}) == len(sample)


def test_new_keys_are_valid_distinct_and_from_the_whole_alphabet() -> None:
    made = [session_ids.new_session_id() for _ in range(2000)]
    assert all(session_ids.is_valid_session_id(k) and len(k) == session_ids.ID_LENGTH for k in made)
    assert len(set(made)) == len(made)
    assert set("".join(made)) == set(string.ascii_lowercase + string.digits)


def test_record_ids_are_sha256_hex_and_differ_from_the_key() -> None:
    key = session_ids.new_session_id()
    rid = session_ids.record_id(key)
    assert re.fullmatch(r"[0-9a-f]{64}", rid) and key not in rid
    assert rid == session_ids.record_id(key) != session_ids.record_id(session_ids.new_session_id())


def test_is_valid_key_rejects_non_strings() -> None:
    assert not session_ids.is_valid_session_id(None)
    assert not session_ids.is_valid_session_id(b"a" * 32)
    assert not session_ids.is_valid_session_id(["a" * 32])
