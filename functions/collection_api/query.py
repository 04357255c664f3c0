"""List queries of the read API: parsing, page tokens, and one evaluation per backend.

A request's query string becomes a frozen `ReadQuery`. It runs either as a Firestore query
(`to_firestore_query`) or over the items of a snapshot (`run_on_items`); both give the same
documents in the same order, because both follow Firestore's rules: documents lacking the
order field are left out, values of different types order by Firestore's type order, and ties
break on the document id in the direction of the sort.

Filters use PostgREST's style: `field=op.value` with op in eq, neq, lt, lte, gt, gte, in
(comma list), cs (array contains); a bare `field=value` means eq. Range filters (and `neq`)
must all be on one field, which is then the sort field. `updatedSince` is a range filter on
`updatedAt`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.encoding import encode_value
from shared.errors import BadRequest
from shared.records import MAX_ID_BYTES, id_problem
from shared.schema import CollectionSchema
from shared.times import parse_timestamp

RESERVED_PARAMS = frozenset({"limit", "pageToken", "orderBy", "fields", "updatedSince"})
RANGE_OPS = frozenset({"lt", "lte", "gt", "gte", "neq"})
FIRESTORE_OPS = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=",
                 "in": "in", "cs": "array_contains"}
MAX_IN_VALUES = 30
MAX_FILTERS = 20
MAX_PARAM_LENGTH = 2000


@dataclass(frozen=True)
class Filter:
    """One typed condition on a top-level field."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Cursor:
    """The position after the last document of a page: its sort value and its id."""

    value: Any
    doc_id: str


@dataclass(frozen=True)
class ReadQuery:
    """A validated list query; `order_field` None means by document id."""

    collection: str
    filters: tuple[Filter, ...] = ()
    order_field: str | None = None
    descending: bool = False
    limit: int = 100
    fields: tuple[str, ...] | None = None
    updated_since: dt.datetime | None = None
    cursor: Cursor | None = None

    def all_filters(self) -> tuple[Filter, ...]:
        """The filters including the one `updatedSince` implies."""
        if self.updated_since is None:
            return self.filters
        return (*self.filters, Filter("updatedAt", "gt", self.updated_since))

    def fingerprint(self) -> str:
        """A short hash of everything that defines the result set and its order (not the page)."""
        shape = {
            "c": self.collection,
            "f": sorted([f.field, f.op, _canonical(f.value)] for f in self.filters),
            "o": [self.order_field, self.descending],
            "u": _canonical(self.updated_since),
        }
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
        return digest[:16]


@dataclass(frozen=True)
class Page:
    """One page of results, already JSON-encoded per item."""

    items: list[dict[str, Any]]
    next_page_token: str | None


def _canonical(value: Any) -> Any:
    encoded = encode_value(value)
    return encoded if not isinstance(value, dt.datetime) else ["ts", encoded]


def check_document_id(doc_id: str) -> str:
    """`doc_id` when Firestore would accept it as a document id, else `BadRequest`."""
    if id_problem(doc_id):
        raise BadRequest(f"invalid document id {doc_id[:100]!r}", code="invalid_id")
    return doc_id


def parse_fields(raw: str | None, schema: CollectionSchema) -> tuple[str, ...] | None:
    """The `fields=a,b` projection: known fields only; `id` is always returned anyway."""
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise BadRequest("fields must name at least one field", code="invalid_fields")
    for name in names:
        if name != "id":
            schema.field_type(name)
    return tuple(dict.fromkeys(name for name in names if name != "id"))


def parse_list_query(args: Iterable[tuple[str, str]], schema: CollectionSchema, *,
                     default_limit: int, max_limit: int) -> ReadQuery:
    """Validate a list request's parameters into a `ReadQuery`; `BadRequest` on any defect."""
    params: dict[str, list[str]] = {}
    for key, value in args:
        if len(key) > 200 or len(value) > MAX_PARAM_LENGTH:
            raise BadRequest("query parameter too long", code="invalid_parameter")
        params.setdefault(key, []).append(value)
    for key in RESERVED_PARAMS & params.keys():
        if len(params[key]) > 1:
            raise BadRequest(f"{key} given more than once", code="invalid_parameter")

    limit = _parse_limit(params.get("limit", [None])[0], default_limit, max_limit)
    fields = parse_fields(params.get("fields", [None])[0], schema)
    updated_since = None
    if "updatedSince" in params:
        try:
            updated_since = parse_timestamp(params["updatedSince"][0])
        except ValueError:
            raise BadRequest("updatedSince must be an RFC 3339 timestamp",
                             code="invalid_parameter") from None

    filters = [
        _parse_filter(key, raw, schema)
        for key, values in params.items() if key not in RESERVED_PARAMS
        for raw in values
    ]
    if len(filters) > MAX_FILTERS:
        raise BadRequest(f"at most {MAX_FILTERS} filters", code="invalid_filter")
    for op in ("in", "neq", "cs"):
        if sum(1 for f in filters if f.op == op) > 1:
            raise BadRequest(f"at most one '{op}' filter per query", code="invalid_filter")

    order_field, descending = _parse_order(params.get("orderBy", [None])[0], schema)
    range_fields = {f.field for f in filters if f.op in RANGE_OPS}
    if updated_since is not None:
        range_fields.add("updatedAt")
    if len(range_fields) > 1:
        raise BadRequest("range filters (lt, lte, gt, gte, neq, updatedSince) must all be on "
                         "one field", code="invalid_filter")
    if range_fields:
        (range_field,) = range_fields
        if "orderBy" not in params:
            order_field = range_field
        elif order_field != range_field:
            raise BadRequest(f"with a range filter on {range_field}, orderBy must be "
                             f"{range_field} or -{range_field}", code="invalid_filter")

    query = ReadQuery(collection=schema.name, filters=tuple(filters), order_field=order_field,
                      descending=descending, limit=limit, fields=fields,
                      updated_since=updated_since)
    token = params.get("pageToken", [None])[0]
    if token is not None:
        query = _with_cursor(query, token, schema)
    return query


def _parse_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise BadRequest(f"limit must be an integer from 1 to {maximum}", code="invalid_limit")
    return int(raw)


def _parse_order(raw: str | None, schema: CollectionSchema) -> tuple[str | None, bool]:
    if raw is None:
        return None, False
    descending = raw.startswith("-")
    name = raw[1:] if descending else raw
    if name == "id":
        return None, descending
    if schema.field_type(name) in ("array", "map"):
        raise BadRequest(f"cannot order by {name}: it is not a scalar field", code="invalid_order")
    return name, descending


def _parse_filter(field: str, raw: str, schema: CollectionSchema) -> Filter:
    kind = schema.field_type(field)
    op, _, text = raw.partition(".")
    if op not in FIRESTORE_OPS or not _:
        op, text = "eq", raw
    if kind == "array":
        if op != "cs":
            raise BadRequest(f"{field} is an array: only cs (contains) filters apply",
                             code="invalid_filter")
        return Filter(field, op, schema.parse_value(field, text, element=True))
    if op == "cs":
        raise BadRequest(f"cs applies to array fields only, not {field}", code="invalid_filter")
    if kind == "map":
        raise BadRequest(f"cannot filter on the map field {field}", code="invalid_filter")
    if op == "in":
        inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
        values = [part for part in inner.split(",")]
        if not 1 <= len(values) <= MAX_IN_VALUES:
            raise BadRequest(f"in takes 1 to {MAX_IN_VALUES} values", code="invalid_filter")
        return Filter(field, op, tuple(schema.parse_value(field, value) for value in values))
    return Filter(field, op, schema.parse_value(field, text))


# --- page tokens -----------------------------------------------------------------------------

def make_page_token(query: ReadQuery, last_item: Mapping[str, Any]) -> str:
    """An opaque token for the page after `last_item` (an encoded item with all sort fields)."""
    value = last_item.get(query.order_field) if query.order_field else None
    payload = {"q": query.fingerprint(), "v": value, "id": last_item["id"]}
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _with_cursor(query: ReadQuery, token: str, schema: CollectionSchema) -> ReadQuery:
    invalid = BadRequest("invalid pageToken", code="invalid_page_token")
    if len(token) > 4 * MAX_ID_BYTES + 512:
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(payload, dict) or set(payload) != {"q", "v", "id"}:
        raise invalid
    if payload["q"] != query.fingerprint() or not isinstance(payload["id"], str):
        raise BadRequest("pageToken belongs to another query", code="invalid_page_token")
    try:
        check_document_id(payload["id"])
        value = None
        if query.order_field is not None:
            value = _decode_typed(schema.field_type(query.order_field), payload["v"])
    except (BadRequest, ValueError, TypeError):
        raise invalid from None
    return ReadQuery(**{**query.__dict__, "cursor": Cursor(value, payload["id"])})


def _decode_typed(kind: str, value: Any) -> Any:
    """Decode an encoded JSON value of a declared type back to the Python value Firestore uses."""
    if value is None:
        return None
    if kind == "timestamp":
        if not isinstance(value, str):
            raise TypeError("timestamp expected")
        return parse_timestamp(value)
    if kind == "string" and not isinstance(value, str):
        raise TypeError("string expected")
    if kind in ("number", "integer") and (isinstance(value, bool)
                                          or not isinstance(value, (int, float))):
        raise TypeError("number expected")
    if kind == "boolean" and not isinstance(value, bool):
        raise TypeError("boolean expected")
    return value


# --- evaluation over snapshot items ------------------------------------------------------------

def _type_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, dt.datetime):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, bytes):
        return 5
    if isinstance(value, (list, tuple)):
        return 8
    return 9


def sort_key(value: Any) -> tuple:
    """Firestore's total order of values: by type first, then by value."""
    rank = _type_rank(value)
    if rank == 2:
        return (rank, (0, 0.0) if isinstance(value, float) and math.isnan(value) else (1, value))
    if rank == 8:
        return (rank, tuple(sort_key(item) for item in value))
    if rank == 9:
        return (rank, tuple((key, sort_key(item)) for key, item in sorted(value.items())))
    return (rank, value)


def _same(a: Any, b: Any) -> bool:
    return _type_rank(a) == _type_rank(b) and sort_key(a) == sort_key(b)


def _matches(value: Any, present: bool, flt: Filter) -> bool:
    if not present:
        return False
    if flt.op == "eq":
        return _same(value, flt.value)
    if flt.op == "neq":
        return value is not None and not _same(value, flt.value)
    if flt.op == "in":
        return any(_same(value, option) for option in flt.value)
    if flt.op == "cs":
        return isinstance(value, list) and any(_same(item, flt.value) for item in value)
    if _type_rank(value) != _type_rank(flt.value):
        return False
    left, right = sort_key(value), sort_key(flt.value)
    return {"lt": left < right, "lte": left <= right,
            "gt": left > right, "gte": left >= right}[flt.op]


def run_on_items(items: Iterable[Mapping[str, Any]], query: ReadQuery,
                 schema: CollectionSchema, memo: dict[Any, Any] | None = None) -> Page:
    """Answer `query` from encoded items (a snapshot) exactly as Firestore would.

    `memo` is a dict kept with the items (a parsed snapshot keeps one per generation): each
    field's decoded values and each sort order are computed once in it, so a later query walks
    its sort order from the cursor (a binary search) and stops when its page is full.
    """
    items = items if isinstance(items, Sequence) else list(items)
    memo = {} if memo is None else memo

    def column(field: str) -> list[tuple[Any, bool]]:
        found = memo.get(("column", field))
        if found is None:
            kind = schema.field_types.get(field, "string")
            found = memo[("column", field)] = [_typed(item, field, kind) for item in items]
        return found

    def ordered(field: str | None) -> tuple[list[tuple[Any, str]], list[int]]:
        """Sort keys `(value's sort key, id)` ascending and the items' positions in that order;
        items lacking the field are left out, as Firestore does."""
        found = memo.get(("order", field))
        if found is None:
            if field is None:
                pairs = [(((), item["id"]), index) for index, item in enumerate(items)]
            else:
                pairs = [((sort_key(value), items[index]["id"]), index)
                         for index, (value, present) in enumerate(column(field)) if present]
            pairs.sort(key=lambda pair: pair[0])
            found = memo[("order", field)] = ([key for key, _ in pairs],
                                               [index for _, index in pairs])
        return found

    keys, positions = ordered(query.order_field)
    start, stop = 0, len(positions)
    if query.cursor is not None:
        position = ((sort_key(query.cursor.value) if query.order_field else ()),
                    query.cursor.doc_id)
        if query.descending:
            stop = bisect.bisect_left(keys, position)
        else:
            start = bisect.bisect_right(keys, position)
    checks = [(column(flt.field), flt) for flt in query.all_filters()]
    page: list[dict[str, Any]] = []
    for rank in (range(stop - 1, start - 1, -1) if query.descending else range(start, stop)):
        index = positions[rank]
        if all(_matches(*values[index], flt) for values, flt in checks):
            page.append(items[index])
            if len(page) > query.limit:
                break
    return finish_page(page, query)


def _typed(item: Mapping[str, Any], field: str, kind: str) -> tuple[Any, bool]:
    """A field of an encoded item decoded by its declared type, and whether it is present."""
    if field not in item:
        return None, False
    try:
        return _decode_typed(kind, item[field]), True
    except (TypeError, ValueError):
        return item[field], True


def finish_page(fetched: list[dict[str, Any]], query: ReadQuery) -> Page:
    """Cut `limit + 1` fetched items to a page, mint the next token, apply the projection."""
    has_more = len(fetched) > query.limit
    items = fetched[: query.limit]
    token = make_page_token(query, items[-1]) if has_more and items else None
    return Page([project(item, query.fields) for item in items], token)


def project(item: Mapping[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """Keep `id` and the requested fields; without a projection, the item itself (items are
    never changed once encoded: a snapshot's are shared by every request)."""
    if fields is None:
        return item if isinstance(item, dict) else dict(item)
    return {"id": item["id"], **{name: item[name] for name in fields if name in item}}


# --- Firestore ---------------------------------------------------------------------------------

def is_descending_key_scan(query: ReadQuery) -> bool:
    """True for `orderBy=-id` with no field filter: Firestore scans its keys backwards, which
    needs the `__name__ DESCENDING` index of firestore.indexes.json (production) and which
    Google's emulator refuses ("Firestore does not support descending key scans")."""
    return query.order_field is None and query.descending and not query.all_filters()


def to_ascending_key_scan(collection_ref: Any, query: ReadQuery) -> Any:
    """The plan for a descending key scan where the engine refuses one: the same documents in
    ascending id order, up to the cursor. The caller keeps the last `limit + 1` and reverses
    them; it reads every document before the cursor, so it is the fallback, not the plan."""
    fs_query = collection_ref.order_by("__name__")
    if query.cursor is not None:
        fs_query = fs_query.end_before({"__name__": query.cursor.doc_id})
    if query.fields is not None:
        fs_query = fs_query.select(sorted(query.fields))
    return fs_query


def to_firestore_query(collection_ref: Any, query: ReadQuery) -> Any:
    """The Firestore query (on a CollectionReference) that returns `limit + 1` documents."""
    from google.cloud.firestore_v1 import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    fs_query = collection_ref
    for flt in query.all_filters():
        value = list(flt.value) if flt.op == "in" else flt.value
        fs_query = fs_query.where(filter=FieldFilter(flt.field, FIRESTORE_OPS[flt.op], value))
    direction = Query.DESCENDING if query.descending else Query.ASCENDING
    if query.order_field is not None:
        fs_query = fs_query.order_by(query.order_field, direction=direction)
    fs_query = fs_query.order_by("__name__", direction=direction)
    if query.cursor is not None:
        position: dict[str, Any] = {"__name__": query.cursor.doc_id}
        if query.order_field is not None:
            position = {query.order_field: query.cursor.value, **position}
        fs_query = fs_query.start_after(position)
    if query.fields is not None:
        selected = set(query.fields)
        if query.order_field is not None:
            selected.add(query.order_field)
        fs_query = fs_query.select(sorted(selected))
    return fs_query.limit(query.limit + 1)
