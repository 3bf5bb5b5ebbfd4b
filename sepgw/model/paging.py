"""List paging shared by the server and the client (IEEE 2030.5 list query parameters).

A GET of a list resource may carry ``s`` (start index, 0-based), ``a`` (after: a TimeType;
only entries whose time key is at or after it) and ``l`` (limit: the most entries to return;
**1 when absent**, as 2030.5 specifies, which is why the profile's un-queried DERControlList
GET shows ``all="9" results="1"``).  The response's ``all`` is the number of entries in the
(``a``-filtered) list and ``results`` the number in this page.

Server side::

    q = parse_query(request.args, max_limit=100)
    body = fill_list(DERControlList(href="/pev/derp/1/derc"), controls, q)

Client side, :func:`query_string` builds ``?s=3&l=3`` and :func:`next_start` says whether
another page is due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs

from .codec import Model, _LEAF
from .errors import ModelError, shown

__all__ = [
    "ListQuery", "parse_query", "page", "fill_list", "query_string", "next_start",
    "sort_key", "sort_list", "DEFAULT_LIMIT",
]

T = TypeVar("T")
L = TypeVar("L", bound=Model)

#: The 2030.5 default for ``l`` when the query does not give one.
DEFAULT_LIMIT = 1
_UINT32_MAX = 0xFFFFFFFF
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Validated list query: ``start`` (s), ``after`` (a, or None), ``limit`` (l)."""

    start: int = 0
    after: int | None = None
    limit: int = DEFAULT_LIMIT


_NAMES = (("s", b"s"), ("a", b"a"), ("l", b"l"))


def _text(v: str | bytes) -> str:
    return v.decode("ascii", "replace") if isinstance(v, bytes) else v


MAX_QUERY_INT_CHARS = 40
"""Longest integer accepted in a query parameter (checked before ``int()``)."""


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    t = raw.strip()
    if len(t) > MAX_QUERY_INT_CHARS:
        raise ModelError(f"query/{name}", f"integer of {len(t)} characters is too long "
                                          f"(at most {MAX_QUERY_INT_CHARS})")
    body = t[1:] if t[:1] in "+-" else t
    if not (body.isascii() and body.isdigit()):
        raise ModelError(f"query/{name}", f"{shown(raw)} is not an integer")
    v = int(t)
    if v < lo or v > hi:
        raise ModelError(f"query/{name}", f"{v} is out of range ({lo}..{hi})")
    return v


def parse_query(query: str | bytes | Mapping[Any, Sequence[Any]] | None, *,
                max_limit: int | None = None) -> ListQuery:
    """Validate ``s``, ``a`` and ``l`` from a raw query string (``"s=0&l=3"``, with or
    without ``?``) or a parsed mapping (``twisted.web`` ``request.args`` with bytes keys, or
    ``parse_qs`` output).  Other parameters are ignored.  A repeated or malformed parameter
    raises :class:`ModelError`.  ``max_limit`` caps ``l`` (a server's page size)."""
    if query is None:
        args: dict[str, list[str]] = {}
    elif isinstance(query, (str, bytes)):
        qs = _text(query).lstrip("?")
        try:
            args = parse_qs(qs, keep_blank_values=True, strict_parsing=False)
        except ValueError as e:  # pragma: no cover - parse_qs is forgiving
            raise ModelError("query", str(e)) from None
    else:  # only the three names 2030.5 defines are looked at, as bytes or str keys
        args = {}
        for name, raw in _NAMES:
            vs = query.get(raw)
            if vs is None:
                vs = query.get(name)
            if vs is not None:
                args[name] = [_text(v) for v in vs]
    values: dict[str, str] = {}
    for name in ("s", "a", "l"):
        vs = args.get(name)
        if vs is None:
            continue
        if len(vs) != 1:
            raise ModelError(f"query/{name}", "given more than once")
        values[name] = vs[0]
    start = _int("s", values["s"], 0, _UINT32_MAX) if "s" in values else 0
    after = _int("a", values["a"], *_INT64) if "a" in values else None
    limit = _int("l", values["l"], 0, _UINT32_MAX) if "l" in values else DEFAULT_LIMIT
    if max_limit is not None:
        limit = min(limit, max_limit)
    return ListQuery(start, after, limit)


def page(items: Sequence[T], query: ListQuery,
         time_key: Callable[[T], int] | None = None) -> tuple[list[T], int]:
    """Return ``(entries of this page, all)`` for ``items`` already in list order.
    ``a`` needs ``time_key`` (the entry's time); without one ``a`` is ignored."""
    if query.after is not None and time_key is not None:
        after = query.after
        items = [i for i in items if time_key(i) >= after]
    total = len(items)
    return list(items[query.start:query.start + query.limit]), total


def _list_field(cls: type[Model]) -> str:
    spec = cls._sep_spec
    names = [f.name for f in spec.elems if f.many and f.kind != _LEAF]
    if len(names) != 1 or "all" not in spec.attr_map or "results" not in spec.attr_map:
        raise TypeError(f"{cls.__name__} is not a 2030.5 list resource")
    return names[0]


def fill_list(lst: L, items: Sequence[Any], query: ListQuery,
              time_key: Callable[[Any], int] | None = None) -> L:
    """Put this page of ``items`` (already in list order) into the list resource ``lst``
    and set its ``all`` and ``results``; returns ``lst``."""
    entries, total = page(items, query, time_key)
    setattr(lst, _list_field(type(lst)), entries)
    lst.all = total  # type: ignore[attr-defined]
    lst.results = len(entries)  # type: ignore[attr-defined]
    return lst


def query_string(start: int = 0, limit: int | None = None, after: int | None = None) -> str:
    """Client side: ``?s=..&a=..&l=..`` (empty string when everything is default)."""
    parts = []
    if start:
        parts.append(f"s={start}")
    if after is not None:
        parts.append(f"a={after}")
    if limit is not None:
        parts.append(f"l={limit}")
    return "?" + "&".join(parts) if parts else ""


def next_start(lst: Model, start: int) -> int | None:
    """Client side: the ``s`` of the next page after a page fetched at ``start``, or None
    when the list has been read to its end."""
    results = getattr(lst, "results")
    total = getattr(lst, "all")
    nxt = start + results
    return nxt if results and nxt < total else None


# -- 2030.5 list ordering ---------------------------------------------------------------------

class _Desc:
    """Inverts the order of a sortable value (for descending secondary keys)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.v == other.v


def _event_key(e: Any) -> tuple[Any, ...]:
    # Events: interval start ascending, then creationTime descending, then mRID descending.
    return (e.interval.start, _Desc(e.creationTime), _Desc(e.mRID))


def _program_key(p: Any) -> tuple[Any, ...]:
    # DERProgram: primacy ascending, then mRID descending.
    return (p.primacy, _Desc(p.mRID))


def _end_device_key(d: Any) -> tuple[Any, ...]:
    # EndDevice: sFDI ascending.
    return (d.sFDI,)


def _mrid_key(o: Any) -> tuple[Any, ...]:
    return (_Desc(o.mRID),)


_KEYS: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    "DERControl": _event_key,
    "DERProgram": _program_key,
    "EndDevice": _end_device_key,
}


def sort_key(cls: type[Model]) -> Callable[[Any], tuple[Any, ...]]:
    """The 2030.5 ordering key for entries of type ``cls``: events by start time (then
    newest creationTime, then mRID descending), DERPrograms by primacy (then mRID
    descending), EndDevices by sFDI, other identified objects by mRID descending."""
    key = _KEYS.get(cls._sep_spec.tag)
    if key is not None:
        return key
    if "mRID" in {f.name for f in cls._sep_spec.elems}:
        return _mrid_key
    raise TypeError(f"no 2030.5 list ordering known for {cls.__name__}")


def sort_list(items: Iterable[T], cls: type[Model]) -> list[T]:
    """``items`` in 2030.5 list order for their type ``cls``."""
    return sorted(items, key=sort_key(cls))
