"""Generated fast paths for the codec (an optimisation; behaviour is defined by codec.py).

For each model class a specialised encoder function is generated (Python source, compiled
once per class on first use) that reads the slots directly and writes strings, with inline
checks for the common value types.  Any value it cannot vouch for is handed to the leaf
codec's ``encode``, which raises on invalid input; and any exception at all makes
:func:`sepgw.model.codec.serialize` re-run the generic encoder, which produces the
path-qualified :class:`ModelError`.  So the fast path never decides what is valid on its own
— it only skips work for values that are certainly valid.
"""

from __future__ import annotations

from typing import Any, Callable

from .types import (
    BoolCodec, EnumCodec, FlagCodec, HexBytesCodec, IntCodec, OpenEnumCodec, StringCodec,
    UriCodec,
)

_ESC_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ESC_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                           "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})

_encoders: dict[type, Callable[[Any, Any], None]] = {}


def encoder(cls: type) -> Callable[[Any, Any], None]:
    """The generated encoder for ``cls``: ``enc(obj, append)`` writes the attributes, the
    closing ``>`` (or ``/>`` when empty) and the content, but not the start of the tag nor
    the end tag; it returns True when the element had content (the caller then writes the
    end tag)."""
    fn = _encoders.get(cls)
    if fn is None:
        fn = _encoders[cls] = _generate(cls)
    return fn


def _leaf_code(lines: list[str], ns: dict[str, Any], var: str, codec: Any, open_: str,
               close: str, indent: str, k: str) -> None:
    """Append code writing leaf value ``var`` with ``codec`` between open_/close."""
    ns[f"E{k}"] = codec.encode
    ns[f"O{k}"] = open_
    ns[f"C{k}"] = close
    if isinstance(codec, EnumCodec) and not isinstance(codec, OpenEnumCodec):
        ns[f"M{k}"] = {int(m): f"{open_}{int(m)}{close}" for m in codec.members}
        ns[f"K{k}"] = codec.enum
        lines += [
            f"{indent}c = {var}.__class__",
            f"{indent}s = M{k}.get({var}) if (c is K{k} or c is int) else None",
            f"{indent}a(s if s is not None else O{k} + E{k}({var}) + C{k})",
        ]
    elif isinstance(codec, IntCodec):
        ns[f"L{k}"] = codec.lo
        ns[f"H{k}"] = codec.hi
        lines += [
            f"{indent}if {var}.__class__ is int and L{k} <= {var} <= H{k}:",
            f"{indent}    a(O{k} + int_repr({var}) + C{k})",
            f"{indent}else:",
            f"{indent}    a(O{k} + E{k}({var}) + C{k})",
        ]
    elif isinstance(codec, FlagCodec):
        ns[f"H{k}"] = codec.hi
        ns[f"F{k}"] = codec.fmt
        ns[f"K{k}"] = codec.flag if codec.flag is not None else int
        lines += [
            f"{indent}c = {var}.__class__",
            f"{indent}if (c is int or c is K{k}) and 0 <= {var} <= H{k}:",
            f"{indent}    a(O{k} + format(int({var}), F{k}) + C{k})",
            f"{indent}else:",
            f"{indent}    a(O{k} + E{k}({var}) + C{k})",
        ]
    elif isinstance(codec, BoolCodec):
        lines += [f"{indent}a(O{k} + E{k}({var}) + C{k})"]
    elif isinstance(codec, HexBytesCodec):
        ns[f"X{k}"] = codec.max_len
        test = f"len({var}) == X{k}" if codec.exact else f"len({var}) <= X{k}"
        lines += [
            f"{indent}if {var}.__class__ is bytes and {test}:",
            f"{indent}    a(O{k} + {var}.hex().upper() + C{k})",
            f"{indent}else:",
            f"{indent}    a(O{k} + E{k}({var}) + C{k})",
        ]
    elif isinstance(codec, StringCodec):
        # Printable ASCII is always valid XML; only the markup characters need escaping.
        limit = f" and len({var}) <= {codec.max_len}" if codec.max_len is not None else ""
        strip = (f" and {var}[:1] != ' ' and {var}[-1:] != ' '"
                 if isinstance(codec, UriCodec) else "")
        lines += [
            f"{indent}if {var}.__class__ is str{limit}{strip} and {var}.isascii() and "
            f"{var}.isprintable():",
            f"{indent}    a(O{k} + ({var} if '&' not in {var} and '<' not in {var} and '>' not in "
            f"{var} else {var}.translate(ESC_TEXT)) + C{k})",
            f"{indent}else:",
            f"{indent}    a(O{k} + E{k}({var}).translate(ESC_TEXT) + C{k})",
        ]
    else:  # pragma: no cover - every codec kind is handled above
        lines += [f"{indent}a(O{k} + E{k}({var}) + C{k})"]


def _generate(cls: type) -> Callable[[Any, Any], None]:
    from .codec import _CHILD, _LEAF, _POLY, XSI_NS, registry

    spec = cls._sep_spec  # type: ignore[attr-defined]
    ns: dict[str, Any] = {"ESC_TEXT": _ESC_TEXT, "ESC_ATTR": _ESC_ATTR, "int_repr": int.__repr__,
                          "QUOTE": '"',
                          "encoder": encoder, "registry": registry, "Missing": _Missing}
    lines = ["def enc(obj, a):"]
    for i, f in enumerate(spec.attrs):
        k = f"a{i}"
        ns[f"E{k}"] = f.codec.encode
        ns[f"P{k}"] = f.attr_prefix
        lines.append(f"    v = obj.{f.name}")
        if f.required:
            lines.append(f"    if v is None: raise Missing({f.xml!r})")
            ind = "    "
        else:
            lines.append("    if v is not None:")
            ind = "        "
        if isinstance(f.codec, UriCodec):
            lines += [
                f"{ind}if v.__class__ is str and v[:1] != ' ' and v[-1:] != ' ' and "
                "v.isascii() and v.isprintable() and '&' not in v and '<' not in v and "
                "'>' not in v and QUOTE not in v:",
                f"{ind}    a(P{k} + v + QUOTE)",
                f"{ind}else:",
                f"{ind}    a(P{k} + E{k}(v).translate(ESC_ATTR) + QUOTE)",
            ]
        elif f.escape:
            lines.append(f"{ind}a(P{k} + E{k}(v).translate(ESC_ATTR) + '\"')")
        else:
            lines.append(f"{ind}a(P{k} + E{k}(v) + '\"')")
    if not spec.elems:
        lines += ["    a('/>')", "    return False"]
    else:
        lines += ["    a('>')", "    empty = True"]
    for i, f in enumerate(spec.elems):
        k = f"e{i}"
        lines.append(f"    v = obj.{f.name}")
        if f.many:
            if f.max is not None:
                ns[f"N{k}"] = f.max
                lines.append(f"    if len(v) > N{k}: raise Missing({f.xml!r})")
            if f.min:
                ns[f"Q{k}"] = f.min
                lines.append(f"    if len(v) < Q{k}: raise Missing({f.xml!r})")
            lines.append("    if v:")
            lines.append("        empty = False")
            lines.append("        for w in v:")
            ind, var = "            ", "w"
        elif f.required:
            lines.append(f"    if v is None: raise Missing({f.xml!r})")
            lines.append("    empty = False")
            ind, var = "    ", "v"
        else:
            lines.append("    if v is not None:")
            lines.append("        empty = False")
            ind, var = "        ", "v"
        if f.kind == _LEAF:
            _leaf_code(lines, ns, var, f.codec, f.open, f.close, ind, k)
        elif f.kind == _CHILD:
            ns[f"T{k}"] = f.cls
            ns[f"O{k}"] = f.open[:-1]
            ns[f"C{k}"] = f.close
            lines += [
                f"{ind}if {var}.__class__ is not T{k}: raise TypeError({var})",
                f"{ind}a(O{k})",
                f"{ind}if encoder(T{k})({var}, a): a(C{k})",
            ]
        else:
            assert f.kind == _POLY
            ns[f"O{k}"] = f'<{f.xml} xmlns:xsi="{XSI_NS}" xsi:type="'
            ns[f"C{k}"] = f.close
            lines += [
                f"{ind}t = {var}.__class__",
                f"{ind}if registry().get(t._sep_spec.tag) is not t: raise TypeError(t)",
                f"{ind}a(O{k} + t._sep_spec.tag + '\"')",
                f"{ind}if encoder(t)({var}, a): a(C{k})",
            ]
    if spec.elems:
        # An element that turned out empty: its '>' is the last string written; make it
        # '/>' (the caller then writes no end tag).
        lines += ["    if empty:", "        a.__self__[-1] = '/>'", "    return not empty"]
    src = "\n".join(lines)
    exec(compile(src, f"<sepgw.model encoder {spec.tag}>", "exec"), ns)
    return ns["enc"]  # type: ignore[no-any-return]


class _Missing(Exception):
    """Raised by generated code; the generic encoder then reports the problem properly."""


# -- decoding ---------------------------------------------------------------------------------

class Fallback(Exception):
    """Raised by generated decoders: let the generic decoder decide (and explain)."""


_decoders: dict[type, Callable[..., Any]] = {}


def decoder(cls: type) -> Callable[..., Any]:
    """The generated decoder for ``cls``: ``dec(element, depth, max_depth) -> obj``.  It
    accepts only documents the generic decoder accepts; on anything unusual it raises, and
    the caller re-runs the generic decoder for the verdict and the error message."""
    fn = _decoders.get(cls)
    if fn is None:
        fn = _decoders[cls] = _generate_decoder(cls)
    return fn


def _leaf_decode_code(lines: list[str], ns: dict[str, Any], codec: Any, k: str,
                      ind: str) -> None:
    """Code decoding text ``x`` into ``v``."""
    ns[f"D{k}"] = codec.decode
    if isinstance(codec, EnumCodec) and not isinstance(codec, OpenEnumCodec):
        ns[f"M{k}"] = {str(int(m)): m for m in codec.members.values()}
        lines += [f"{ind}v = M{k}.get(x)",
                  f"{ind}if v is None: v = D{k}(x)"]
    elif isinstance(codec, IntCodec) and not isinstance(codec, EnumCodec):
        ns[f"L{k}"] = codec.lo
        ns[f"H{k}"] = codec.hi
        lines += [f"{ind}if x.__class__ is str and x.isdigit() and x.isascii():",
                  f"{ind}    v = int(x)",
                  f"{ind}    if v > H{k} or v < L{k}: raise Fallback",
                  f"{ind}else:",
                  f"{ind}    v = D{k}(x)"]
    elif isinstance(codec, BoolCodec):
        lines += [f"{ind}v = BOOLS.get(x)",
                  f"{ind}if v is None: v = D{k}(x)"]
    elif isinstance(codec, HexBytesCodec):
        # bytes.fromhex skips whitespace between pairs, so only accept the canonical form
        # here: alphanumeric ASCII (fromhex rejects non-hex letters), right length.
        n = codec.max_len * 2
        test = f"len(x) == {n}" if codec.exact else f"len(x) <= {n}"
        lines += [f"{ind}if x.__class__ is str and {test} and x.isalnum() and x.isascii():",
                  f"{ind}    v = fromhex(x)",
                  f"{ind}else:",
                  f"{ind}    v = D{k}(x)"]
    elif isinstance(codec, FlagCodec):
        n = codec.nbytes * 2
        ns[f"K{k}"] = codec.flag if codec.flag is not None else int
        # Flag values seen before come from a small cache (IntFlag construction is slow).
        ns[f"Z{k}"] = {}
        lines += [f"{ind}v = Z{k}.get(x)",
                  f"{ind}if v is None:",
                  f"{ind}    if x.__class__ is str and 0 < len(x) <= {n} and not len(x) & 1 and "
                  f"x.isalnum() and x.isascii():",
                  f"{ind}        v = K{k}(int.from_bytes(fromhex(x), 'big'))",
                  f"{ind}        if len(Z{k}) < 64: Z{k}[x] = v",
                  f"{ind}    else:",
                  f"{ind}        v = D{k}(x)"]
    else:
        lines += [f"{ind}v = D{k}(x)"]


def _generate_decoder(cls: type) -> Callable[..., Any]:
    from .codec import _CHILD, _LEAF

    spec = cls._sep_spec  # type: ignore[attr-defined]
    ns: dict[str, Any] = {"Fallback": Fallback, "CLS": cls, "decoder": decoder,
                          "fromhex": bytes.fromhex,
                          "BOOLS": {"true": True, "false": False, "1": True, "0": False}}
    lines = ["def dec(el, depth, maxd):",
             "    if depth > maxd: raise Fallback"]
    lines.append("    kw = {}")
    if spec.attrs:
        lines.append("    for k, x in el.items():")
        for i, f in enumerate(spec.attrs):
            k = f"a{i}"
            lines.append(f"        {'if' if i == 0 else 'elif'} k == {f.xml!r}:")
            _leaf_decode_code(lines, ns, f.codec, k, "            ")
            lines.append(f"            kw[{f.name!r}] = v")
        lines.append("        else: raise Fallback")
    else:
        lines.append("    if el.attrib: raise Fallback")
    lines += ["    x = el.text",
              "    if x is not None and not x.isspace(): raise Fallback"]
    if spec.elems:
        ns["IDX"] = {f.tag: i for i, f in enumerate(spec.elems)}
        ns["MANY"] = frozenset(i for i, f in enumerate(spec.elems) if f.many)
        lines += ["    pos = -1",
                  "    for c in el:",
                  "        i = IDX[c.tag]",
                  "        if i <= pos and (i != pos or i not in MANY): raise Fallback",
                  "        pos = i",
                  "        x = c.tail",
                  "        if x is not None and not x.isspace(): raise Fallback"]

        def body(i: int, ind: str) -> None:
            f = spec.elems[i]
            k = f"e{i}"
            if f.kind == _LEAF:
                lines.append(f"{ind}if len(c) or c.attrib: raise Fallback")
                lines.append(f"{ind}x = c.text")
                _leaf_decode_code(lines, ns, f.codec, k, ind)
            elif f.kind == _CHILD:
                ns[f"T{k}"] = decoder(f.cls)
                lines.append(f"{ind}v = T{k}(c, depth + 1, maxd)")
            else:
                lines.append(f"{ind}raise Fallback")  # xsi:typed: generic decoder
                return
            if f.many:
                lines.extend([f"{ind}w = kw.get({f.name!r})",
                              f"{ind}if w is None: kw[{f.name!r}] = [v]",
                              f"{ind}else: w.append(v)"])
            else:
                lines.append(f"{ind}kw[{f.name!r}] = v")

        def tree(lo: int, hi: int, ind: str) -> None:
            if lo == hi:
                body(lo, ind)
                return
            mid = (lo + hi + 1) // 2
            lines.append(f"{ind}if i < {mid}:")
            tree(lo, mid - 1, ind + "    ")
            lines.append(f"{ind}else:")
            tree(mid, hi, ind + "    ")

        tree(0, len(spec.elems) - 1, "        ")
    for f in spec.attrs + spec.elems:
        if f.required or (f.many and f.min):
            lines.append(f"    if {f.name!r} not in kw: raise Fallback")
        if f.many and f.max is not None:
            lines.append(f"    if len(kw.get({f.name!r}, ())) > {f.max}: raise Fallback")
        if f.many and f.min > 1:
            lines.append(f"    if len(kw[{f.name!r}]) < {f.min}: raise Fallback")
    lines.append("    return CLS(**kw)")
    src = "\n".join(lines)
    exec(compile(src, f"<sepgw.model decoder {spec.tag}>", "exec"), ns)
    return ns["dec"]  # type: ignore[no-any-return]
