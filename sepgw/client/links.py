"""Link following and list paging, for every client role."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

from sepgw.model import Model, next_start, query_string

M = TypeVar("M", bound=Model)


def link_map(resource: Any) -> dict[str, str]:
    """The links (``...Link`` attributes with an href) of a resource, by name."""
    links = {}
    for name in (f.name for f in dataclasses.fields(resource)):
        if name.endswith("Link"):
            link = getattr(resource, name, None)
            if link is not None and getattr(link, "href", None):
                links[name] = link.href
    return links


def list_items(lst: Model) -> list[Any]:
    """The entries of a 2030.5 list resource (its one list-valued field)."""
    for name in (f.name for f in dataclasses.fields(lst)):  # type: ignore[arg-type]
        value = getattr(lst, name)
        if isinstance(value, list):
            return value
    return []


def short_query(start: int, limit: int) -> str:
    """``?l=50``, ``?s=50&l=50``: the defaults left out."""
    return query_string(start, limit) or f"?l={limit}"


def full_query(start: int, limit: int) -> str:
    """``?s=0&l=50``: both always given."""
    return f"?s={start}&l={limit}"


async def fetch_all(http: Any, href: str, cls: type[M], page_size: int = 50,
                    max_items: int = 10000, *, start: int = 0,
                    query: Callable[[int, int], str] = short_query,
                    until: Callable[[Any], bool] | None = None) -> tuple[M, list[Any]]:
    """GET every page of the list at ``href`` from entry ``start`` (``s``/``l`` paging until
    ``all``); return the first page read (for its pollRate and attributes) and the entries
    in list order. With ``until``, paging stops after the page holding the first entry for
    which it is true."""
    first: M | None = None
    items: list[Any] = []
    at: int | None = start
    while at is not None and len(items) < max_items:
        page = await http.get(href, cls, query(at, page_size))
        if first is None:
            first = page
        entries = list_items(page)
        items.extend(entries)
        if until is not None and any(until(e) for e in entries):
            break
        at = next_start(page, at) if entries else None
    assert first is not None
    return first, items
