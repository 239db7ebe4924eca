"""What the DynamoDB store sends, and how it reads what comes back: no I/O here.

Every request names the item's full key (with the fixed sort key value on tables that have
a sort key), so other items sharing a partition are never touched. Attribute names are
options and may be reserved words (`data` and `ttl` are), so they always go through
ExpressionAttributeNames (#p partition key, #d data, #o key order, #t expiry, #u user id,
#m metadata).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from ...errors import SessionGone
from ...store import Changes, EncodedRecord, SessionInfo, decode_meta
from .options import DynamoDBOptions

# DynamoDB caps each expression string at 4 KB; a save of very many keys is split.
_MAX_EXPRESSION = 4096
_BATCH_WRITE_MAX = 25  # items per BatchWriteItem request
_BATCH_GET_MAX = 100  # keys per BatchGetItem request
# An ordinal a save gives a new key: microseconds since the epoch (16-17 digits), which
# DynamoDB counts as (digits + 1) // 2 + 1 bytes.
_SAVE_ORDINAL_BYTES = 10
_RECORD_ID_BYTES = 64  # hex SHA-256

Params = dict[str, Any]


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _number(value: float) -> dict[str, str]:
    # Millisecond precision keeps the exact expiry without DynamoDB's 38-digit limit.
    return {"N": f"{value:.3f}"}


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _number_size(text: str) -> int:
    """Bytes DynamoDB counts for a Number: one per two significant digits, plus one."""
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


class Requests:
    """The parameters of each call for one table and its options; the parts they share are
    built once, so the hot paths only add the record's values."""

    def __init__(self, table: str, options: DynamoDBOptions) -> None:
        self.table = table
        self.options = options
        o = options
        self._sort_item = {o.sort_key: {"S": o.sort_key_value}} if o.sort_key else {}
        # The whole item, with no ProjectionExpression: it holds nothing but what a load
        # reads (and its key), a read is billed on the whole item either way, and the
        # expression costs every read its parsing, in DynamoDB and in botocore
        # (benchmarks/django_latency.py measured about 0.2 ms a read on DynamoDB Local).
        self._get: Params = {"TableName": table, "ConsistentRead": o.consistent_read}

    def key(self, rid: str) -> Params:
        return {self.options.partition_key: {"S": rid}, **self._sort_item}

    # ------------------------------------------------------------- one session each

    def get(self, rid: str) -> Params:
        return {**self._get, "Key": self.key(rid)}

    def put(self, rid: str, record: EncodedRecord) -> Params:
        o = self.options
        item: Params = {
            **self.key(rid),
            o.data_attribute: {"M": {f: {"S": v} for f, v in record.fields.items()}},
            o.ttl_attribute: _number(record.expires_at),
        }
        if o.order_attribute:
            item[o.order_attribute] = {"M": {f: {"N": str(i)} for i, f in enumerate(record.fields)}}
        if record.user_id is not None:
            item[o.user_attribute] = {"S": record.user_id}
        if record.meta is not None:
            item[o.meta_attribute] = {"S": record.meta}
        return {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#p)",
            "ExpressionAttributeNames": {"#p": o.partition_key},
        }

    def updates(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> list[Params]:
        """One UpdateItem, or a few if the changed keys overflow DynamoDB's 4 KB expression."""
        o = self.options
        order = o.order_attribute
        sets = ["#t = :t"]
        removes: list[str] = []
        names = {"#p": o.partition_key, "#t": o.ttl_attribute, "#u": o.user_attribute}
        values: Params = {":t": _number(expires_at), ":now": _number(now)}
        if user_id is None:
            removes.append("#u")
        else:
            # The same value again writes nothing to the (keys-only) user index.
            sets.append("#u = :u")
            values[":u"] = {"S": user_id}
        if changes.meta is not None:
            sets.append("#m = :m")
            names["#m"] = o.meta_attribute
            values[":m"] = {"S": changes.meta}
        requests = []
        size = 0
        # New keys go after every existing one (created with ordinals 0, 1, ...); a key
        # that exists keeps its ordinal, hence its place, through if_not_exists.
        first_ordinal = int(now * 1_000_000)
        pending: list[tuple[str, str | None]] = list(changes.set_fields.items())
        pending += [(f, None) for f in changes.removed_fields]
        for n, (field_name, value) in enumerate(pending):
            t = f"{n:x}"
            if value is None:
                parts = [f"#d.#f{t}"] + ([f"#o.#f{t}"] if order else [])
            else:
                parts = [f"#d.#f{t} = :v{t}"]
                if order:
                    parts.append(f"#o.#f{t} = if_not_exists(#o.#f{t}, :o{t})")
            length = sum(len(part) + 2 for part in parts)
            # 64: room for "SET ", " REMOVE " and the expiry, user and metadata parts.
            if size + length + 64 > _MAX_EXPRESSION:
                requests.append(self._update(rid, sets, removes, names, values))
                sets, removes, size = [], [], 0
                names = {"#p": o.partition_key, "#t": o.ttl_attribute}
                values = {":now": values[":now"]}
            names["#d"] = o.data_attribute
            if order:
                names["#o"] = order
            names[f"#f{t}"] = field_name
            if value is None:
                removes += parts
            else:
                sets += parts
                values[f":v{t}"] = {"S": value}
                if order:
                    values[f":o{t}"] = {"N": str(first_ordinal + n)}
            size += length
        requests.append(self._update(rid, sets, removes, names, values))
        return requests

    def _update(
        self, rid: str, sets: list[str], removes: list[str], names: dict[str, str], values: Params
    ) -> Params:
        expression = []
        if sets:
            expression.append("SET " + ", ".join(sets))
        if removes:
            expression.append("REMOVE " + ", ".join(removes))
        return {
            "TableName": self.table,
            "Key": self.key(rid),
            "UpdateExpression": " ".join(expression),
            "ConditionExpression": "attribute_exists(#p) AND #t > :now",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def delete(self, rid: str) -> Params:
        return {"TableName": self.table, "Key": self.key(rid)}

    def increment(
        self,
        rid: str,
        field: str,
        delta: int,
        base: int,
        expires_at: float,
        now: float,
        plain: bool,
    ) -> Params:
        """Add to a counter (absent counts as base), or, if `plain`, replace a plain value."""
        o = self.options
        names = {"#p": o.partition_key, "#t": o.ttl_attribute, "#d": o.data_attribute, "#f": field}
        values: Params = {":t": _number(expires_at), ":now": _number(now)}
        condition = "attribute_exists(#p) AND #t > :now AND "
        if plain:
            update = "SET #t = :t, #d.#f = :sum"
            condition += "attribute_type(#d.#f, :S)"
            values.update({":sum": {"N": str(base + delta)}, ":S": {"S": "S"}})
        else:
            update = "SET #t = :t, #d.#f = if_not_exists(#d.#f, :base) + :delta"
            condition += "(attribute_not_exists(#d.#f) OR attribute_type(#d.#f, :N))"
            values.update(
                {":base": {"N": str(base)}, ":delta": {"N": str(delta)}, ":N": {"S": "N"}}
            )
        if o.order_attribute:
            update += ", #o.#f = if_not_exists(#o.#f, :o)"
            names["#o"] = o.order_attribute
            values[":o"] = {"N": str(int(now * 1_000_000))}
        return {
            "TableName": self.table,
            "Key": self.key(rid),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "UPDATED_NEW",
            # Tells a deleted or expired session from a field that holds a plain value.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def counter(self, response: Mapping[str, Any], field: str) -> int:
        """The new value of the counter an increment updated."""
        return int(response["Attributes"][self.options.data_attribute]["M"][field]["N"])

    def holds_plain_value(self, failure: ClientError, field: str, now: float) -> bool:
        """After a failed increment: True to retry as a conversion, False to retry as is.

        Raises SessionGone if the session is no longer there to increment.
        """
        if code(failure) != "ConditionalCheckFailedException":
            raise failure
        record = self.record(failure.response.get("Item"))
        if record is None or record.expires_at <= now:
            raise SessionGone("the session was deleted or has expired") from None
        return field in record.fields

    def record(self, item: Mapping[str, Any] | None) -> EncodedRecord | None:
        """The record an item holds; None for no item, or an item that is not a session."""
        if item is None:
            return None
        o = self.options
        try:
            data = item[o.data_attribute]["M"]
            expires_at = float(item[o.ttl_attribute]["N"])
            order = item.get(o.order_attribute, {}).get("M") if o.order_attribute else None
            if order:
                ordinals = {f: int(n["N"]) for f, n in order.items()}
                data = {f: data[f] for f in sorted(data, key=lambda f: ordinals.get(f, 0))}
            fields: dict[str, str] = {}
            counters: dict[str, int] = {}
            for name, value in data.items():
                text = value.get("S")
                if text is not None:
                    fields[name] = text
                else:
                    counters[name] = int(value["N"])
        except (KeyError, TypeError, AttributeError, ValueError):
            # Not a cloudsessions item (e.g. left by another session engine): no session.
            return None
        user, meta = item.get(o.user_attribute), item.get(o.meta_attribute)
        return EncodedRecord(
            fields,
            expires_at,
            user.get("S") if user else None,
            counters,
            meta.get("S") if meta else None,  # absent from items written before metadata
        )

    def record_size(self, record: EncodedRecord) -> int:
        """DynamoDB's own item size: attribute names plus values, 3 + 1 per entry for a map."""
        o = self.options
        size = _utf8(o.partition_key) + _RECORD_ID_BYTES
        if o.sort_key and o.sort_key_value is not None:
            size += _utf8(o.sort_key) + _utf8(o.sort_key_value)
        size += _utf8(o.data_attribute) + 3
        size += sum(_utf8(f) + _utf8(v) + 1 for f, v in record.fields.items())
        if o.order_attribute:
            size += _utf8(o.order_attribute) + 3
            size += sum(_utf8(f) + _SAVE_ORDINAL_BYTES + 1 for f in record.fields)
        size += _utf8(o.ttl_attribute) + _number_size(_number(record.expires_at)["N"])
        if record.user_id is not None:
            size += _utf8(o.user_attribute) + _utf8(record.user_id)
        if record.meta is not None:
            size += _utf8(o.meta_attribute) + _utf8(record.meta)
        return size

    # ----------------------------------------------------------- many sessions each

    def user_query(self, user_id: str) -> Params:
        """The record ids of one user's sessions, through the user index.

        Only keys: the index projects nothing else (see admin._index_spec), so that a save
        that refreshes the expiry or the metadata does not write the index too.
        """
        o = self.options
        return self._sessions_only(
            {"IndexName": o.user_index, "KeyConditionExpression": "#u = :u"},
            {"#u": o.user_attribute},
            {":u": {"S": user_id}},
            projection="#p",
        )

    def batch_gets(self, rids: list[str]) -> Iterator[Params]:
        """BatchGetItem's RequestItems, for at most 100 records each: what a listing shows."""
        o = self.options
        names = {
            "#p": o.partition_key,
            "#t": o.ttl_attribute,
            "#u": o.user_attribute,
            "#m": o.meta_attribute,
        }
        for start in range(0, len(rids), _BATCH_GET_MAX):
            keys = [self.key(rid) for rid in rids[start : start + _BATCH_GET_MAX]]
            yield {
                self.table: {
                    "Keys": keys,
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                    "ConsistentRead": o.consistent_read,
                }
            }

    def session_info(self, item: Mapping[str, Any], user_id: str) -> SessionInfo | None:
        """What a listing shows of an item BatchGetItem read; None if it is not `user_id`'s
        session (any more: the index is eventually consistent)."""
        o = self.options
        try:
            expires_at = float(item[o.ttl_attribute]["N"])
            owner = item[o.user_attribute]["S"]
        except (KeyError, TypeError, ValueError):
            return None
        if owner != user_id:
            return None
        meta = item.get(o.meta_attribute)
        text = meta.get("S") if meta else None
        return SessionInfo(self.record_id(item), expires_at, user_id, decode_meta(text))

    def revoke(self, rid: str, user_id: str) -> Params:
        """A DeleteItem of the record only if it is `user_id`'s."""
        return {
            "TableName": self.table,
            "Key": self.key(rid),
            "ConditionExpression": "#u = :u",
            "ExpressionAttributeNames": {"#u": self.options.user_attribute},
            "ExpressionAttributeValues": {":u": {"S": user_id}},
        }

    def record_id(self, item: Mapping[str, Any]) -> str:
        return str(item[self.options.partition_key]["S"])

    def expired_scan(self, now: float) -> Params:
        """Session items (they have a data attribute) that expired by `now`, keys only."""
        o = self.options
        return self._sessions_only(
            {"ConsistentRead": o.consistent_read},
            {"#t": o.ttl_attribute, "#d": o.data_attribute},
            {":now": _number(now)},
            projection="#p",
            condition="#t <= :now AND attribute_exists(#d)",
        )

    def _sessions_only(
        self,
        params: Params,
        names: dict[str, str],
        values: Params,
        projection: str,
        condition: str = "",
    ) -> Params:
        """A Query or Scan (#p is the partition key); on a table with a sort key, filtered
        on its session value: items of other types may share the partitions."""
        o = self.options
        names = {"#p": o.partition_key, **names}
        if o.sort_key:
            names["#s"] = o.sort_key
            values = {**values, ":s": {"S": o.sort_key_value}}
            condition = f"{condition} AND #s = :s" if condition else "#s = :s"
        params = {
            "TableName": self.table,
            **params,
            "ProjectionExpression": projection,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if condition:
            params["FilterExpression"] = condition
        return params

    def batch_deletes(self, rids: list[str]) -> Iterator[Params]:
        """BatchWriteItem's RequestItems, for at most 25 items each."""
        for start in range(0, len(rids), _BATCH_WRITE_MAX):
            batch = rids[start : start + _BATCH_WRITE_MAX]
            yield {self.table: [{"DeleteRequest": {"Key": self.key(rid)}} for rid in batch]}
