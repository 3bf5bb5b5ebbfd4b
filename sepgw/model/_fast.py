"""Generated fast paths for the codec (an optimisation; behaviour is defined by codec.py).

For each model class specialised functions are generated (Python source, compiled once per
class on first use):

* an encoder that reads the slots directly and writes strings, with inline checks for the
  common value types.  Any value it cannot vouch for is handed to the leaf codec's
  ``encode``, which raises on invalid input; and any exception at all makes
  :func:`sepgw.model.codec.serialize` re-run the generic encoder, which produces the
  path-qualified :class:`ModelError`;
* a scanner (:func:`scan`) that reads documents in the plain form sepgw itself writes
  straight from the text with regular expressions, without building an lxml tree (see the
  section below for the exact subset it accepts);
* a tree decoder (:func:`decoder`) for the lxml tree of the documents the scanner gives up
  on.

So the fast paths never decide what is valid on their own: they only skip work for input
that is certainly valid, and give up (raise, or return None) on anything else, after which
the generic code decides and explains.
"""

from __future__ import annotations

import re as _re
from typing import Any, Callable

from .types import (
    _XS_WS, BoolCodec, EnumCodec, FlagCodec, HexBytesCodec, IntCodec, OpenEnumCodec,
    StringCodec, UriCodec,
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
    # open_/close are embedded in generated f-strings: tag and attribute names only.
    assert not any(ch in open_ + close for ch in "'{}\\"), (open_, close)
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
            f"{indent}    a(f'{open_}{{{var}}}{close}')",  # int: str() is int.__repr__
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
            f"{indent}    a(f'{open_}{{int({var}):{codec.fmt}}}{close}')",
            f"{indent}else:",
            f"{indent}    a(O{k} + E{k}({var}) + C{k})",
        ]
    elif isinstance(codec, BoolCodec):
        ns[f"T{k}"] = f"{open_}true{close}"
        ns[f"F{k}"] = f"{open_}false{close}"
        lines += [f"{indent}a(T{k} if {var} is True else F{k} if {var} is False else "
                  f"O{k} + E{k}({var}) + C{k})"]
    elif isinstance(codec, HexBytesCodec):
        ns[f"X{k}"] = codec.max_len
        test = f"len({var}) == X{k}" if codec.exact else f"len({var}) <= X{k}"
        lines += [
            f"{indent}if {var}.__class__ is bytes and {test}:",
            f"{indent}    a(f'{open_}{{{var}.hex().upper()}}{close}')",
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
                f"{ind}    a(f' {f.xml}=\"{{v}}\"')",
                f"{ind}else:",
                f"{ind}    a(P{k} + E{k}(v).translate(ESC_ATTR) + QUOTE)",
            ]
        elif isinstance(f.codec, (IntCodec, FlagCodec, HexBytesCodec)):
            # Digits and hex digits: nothing to escape; written like a leaf element.
            _leaf_code(lines, ns, "v", f.codec, f' {f.xml}="', '"', ind, k)
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
                f"{ind}if N{k}({var}, a): a(C{k})",
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
    # Registered before the children's encoders are made, so recursive types terminate.
    _encoders[cls] = ns["enc"]
    for i, f in enumerate(spec.elems):
        if f.kind == _CHILD:
            ns[f"Ne{i}"] = encoder(f.cls)
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
        fn = _decoders[cls] = _entry(_inner.get(cls) or _generate_decoder(cls))
    return fn


def _leaf_decode_code(lines: list[str], ns: dict[str, Any], codec: Any, k: str,
                      ind: str, attr: bool = False) -> None:
    """Code decoding text ``x`` (None for an empty element, never for an attribute) into
    ``v``.  Each quick path accepts only text the codec's ``decode`` accepts, with the same
    result; anything else goes to ``decode`` itself (which raises on invalid text)."""
    ns[f"D{k}"] = codec.decode
    if isinstance(codec, EnumCodec) and not isinstance(codec, OpenEnumCodec):
        ns[f"M{k}"] = {str(int(m)): m for m in codec.members.values()}
        lines += [f"{ind}v = M{k}.get(x)",
                  f"{ind}if v is None: v = D{k}(x)"]
    elif isinstance(codec, IntCodec) and not isinstance(codec, EnumCodec):
        ns[f"L{k}"] = codec.lo
        ns[f"H{k}"] = codec.hi
        # Digits only: int() of ASCII digits is what IntCodec._int computes.
        check = f"v > H{k}" if codec.lo <= 0 else f"v > H{k} or v < L{k}"
        lines += [f"{ind}if x and x.isdigit() and x.isascii():",
                  f"{ind}    v = int(x)",
                  f"{ind}    if {check}: raise Fallback"]
        if codec.lo < 0:
            lines += [f"{ind}elif x and x[0] == '-' and x[1:].isdigit() and x.isascii():",
                      f"{ind}    v = int(x)",
                      f"{ind}    if v < L{k}: raise Fallback"]
        lines += [f"{ind}else:",
                  f"{ind}    v = D{k}(x)"]
    elif isinstance(codec, BoolCodec):
        lines += [f"{ind}v = BOOLS.get(x)",
                  f"{ind}if v is None: v = D{k}(x)"]
    elif isinstance(codec, HexBytesCodec):
        # bytes.fromhex skips whitespace between pairs, so only accept the canonical form
        # here: alphanumeric ASCII (fromhex rejects non-hex letters), right length.
        n = codec.max_len * 2
        test = f"len(x) == {n}" if codec.exact else f"len(x) <= {n}"
        lines += [f"{ind}if x and {test} and x.isalnum() and x.isascii():",
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
    elif type(codec) is UriCodec and attr:
        lines += [f"{ind}v = x.strip(XS_WS)"]
    elif type(codec) is StringCodec:
        limit = f" and len(x) <= {codec.max_len}" if codec.max_len is not None else ""
        lines += [f"{ind}v = x if x is not None{limit} else D{k}(x)"]
    else:
        lines += [f"{ind}v = D{k}(x)"]


def _decoder_names(spec: Any) -> list[str]:
    return [f"a{i}" for i in range(len(spec.attrs))] + [f"e{i}" for i in range(len(spec.elems))]


def _generate_decoder(cls: type) -> Callable[..., Any]:
    """Generate ``dec(el, nxt, depth, maxd)``.  ``nxt`` steps a document-order iterator
    over the whole tree (``root.iter()``); ``dec`` reads ``el``'s ``len(el)`` children from it,
    and each complex child's decoder reads that child's own descendants, so after ``dec``
    the iterator stands after ``el``'s subtree.  Leaves are not checked for children here:
    :func:`decoder`'s entry point checks that the whole tree was consumed, which fails when
    any element read as a leaf had children (their descendants would not be accounted for).

    Children are matched in schema order, one comparison per field: a child whose tag is
    not the next field's (unknown, out of order, repeated) is left over and rejected."""
    from .codec import _CHILD, _LEAF

    spec = cls._sep_spec  # type: ignore[attr-defined]
    ns: dict[str, Any] = {"Fallback": Fallback, "CLS": cls, "fromhex": bytes.fromhex,
                          "XS_WS": _XS_WS,
                          "BOOLS": {"true": True, "false": False, "1": True, "0": False}}
    names = _decoder_names(spec)
    lines = ["def dec(el, nxt, depth, maxd):",
             "    if depth > maxd: raise Fallback"]
    if names:
        lines.append("    " + " = ".join(names) + " = None")
    if spec.attrs:
        lines.append("    for k, x in el.items():")
        for i, f in enumerate(spec.attrs):
            k = f"a{i}"
            lines.append(f"        {'if' if i == 0 else 'elif'} k == {f.xml!r}:")
            _leaf_decode_code(lines, ns, f.codec, k, "            ", attr=True)
            lines.append(f"            {k} = v")
        lines.append("        else: raise Fallback")
    else:
        lines.append("    if el.keys(): raise Fallback")
    lines += ["    x = el.text",
              "    if x is not None and not x.isspace(): raise Fallback"]
    if spec.elems:
        lines += ["    n = len(el)",
                  "    if n:",
                  "        c = nxt()",
                  "        t = c.tag"]
        advance = ["n -= 1",
                   "if n:",
                   "    c = nxt()",
                   "    t = c.tag",
                   "else:",
                   "    t = None"]

        def body(i: int, ind: str) -> None:
            f = spec.elems[i]
            k = f"e{i}"
            lines.extend([f"{ind}x = c.tail",
                          f"{ind}if x is not None and not x.isspace(): raise Fallback"])
            if f.kind == _LEAF:
                lines.extend([f"{ind}if c.keys(): raise Fallback",
                              f"{ind}x = c.text"])
                _leaf_decode_code(lines, ns, f.codec, k, ind)
            else:
                assert f.kind == _CHILD
                lines.append(f"{ind}v = N{k}(c, nxt, depth + 1, maxd)")

        # Long sparse sequences (DERControlBase: 36 optional fields) are split into groups
        # entered by one set lookup, so an absent group costs one test, not one per field.
        elems = spec.elems
        group = 8 if len(elems) > 12 else len(elems)
        for g0 in range(0, len(elems), group):
            ind = "        "
            if group < len(elems):
                ns[f"G{g0}"] = frozenset(f.tag for f in elems[g0:g0 + group])
                lines.append(f"{ind}if t in G{g0}:")
                ind += "    "
            for i in range(g0, min(g0 + group, len(elems))):
                f = elems[i]
                k = f"e{i}"
                ns[f"T{k}"] = f.tag
                if f.kind not in (_LEAF, _CHILD):  # xsi:typed: the generic decoder
                    lines.append(f"{ind}if t == T{k}: raise Fallback")
                    continue
                if f.many:
                    lines += [f"{ind}if t == T{k}:",
                              f"{ind}    {k} = []",
                              f"{ind}    while t == T{k}:"]
                    body(i, ind + "        ")
                    lines.append(f"{ind}        {k}.append(v)")
                    lines += [f"{ind}        {a}" for a in advance]
                else:
                    lines.append(f"{ind}if t == T{k}:")
                    body(i, ind + "    ")
                    lines.append(f"{ind}    {k} = v")
                    lines += [f"{ind}    {a}" for a in advance]
        lines.append("        if t is not None: raise Fallback")
    for i, f in enumerate(spec.attrs):
        if f.required:
            lines.append(f"    if a{i} is None: raise Fallback")
    args = [f"{f.name}=a{i}" for i, f in enumerate(spec.attrs)]
    for i, f in enumerate(spec.elems):
        k = f"e{i}"
        if f.many:
            if f.min:
                lines.append(f"    if {k} is None or len({k}) < {f.min}: raise Fallback")
            if f.max is not None:
                lines.append(f"    if {k} is not None and len({k}) > {f.max}: raise Fallback")
            args.append(f"{f.name}=[] if {k} is None else {k}")
        else:
            if f.required:
                lines.append(f"    if {k} is None: raise Fallback")
            args.append(f"{f.name}={k}")
    lines.append(f"    return CLS({', '.join(args)})")
    src = "\n".join(lines)
    code = compile(src, f"<sepgw.model decoder {spec.tag}>", "exec")
    # Registered before the children's decoders are made, so recursive types terminate.
    exec(code, ns)
    _inner[cls] = ns["dec"]
    for i, f in enumerate(spec.elems):
        if f.kind == _CHILD:
            ns[f"Ne{i}"] = _inner.get(f.cls) or _generate_decoder(f.cls)
    return ns["dec"]  # type: ignore[no-any-return]


_inner: dict[type, Callable[..., Any]] = {}


def _entry(inner: Callable[..., Any]) -> Callable[..., Any]:
    def dec(el: Any, depth: int, maxd: int) -> Any:
        it = el.iter()
        nxt = it.__next__
        nxt()  # el itself
        obj = inner(el, nxt, depth, maxd)
        # The whole subtree was read: no element read as a leaf had children.
        for _ in it:
            raise Fallback
        return obj
    return dec


# -- decoding straight from the document text -------------------------------------------------
#
# For the documents sepgw and its peers actually exchange (no comments, no entity or character
# references, ASCII only), reading the text directly is several times cheaper than building
# and walking an lxml tree.  The scanner accepts only a small subset of XML whose lxml reading
# is evident: the document is ASCII; an optional `<?xml version="1.0" encoding="UTF-8"?>`;
# the root element opens with `<Name xmlns="urn:ieee:std:2030.5:ns"`, and no other namespace
# declaration appears; the schema's own element names, unprefixed; attributes written
# ` name="value"` in schema order (the order serialize writes), values of printable ASCII
# without `"`, `<` or `&` other than in `&amp;` `&lt;` `&gt;` `&quot;` `&apos;`; element
# content matching the leaf type (digits, hex digits, true/false/1/0, or printable ASCII
# without `<` or `>`, `&` only in those five references), or child elements with only
# space/tab/CR/LF between them; `<X/>` for empty elements; only whitespace after the root.
# Such a document is well-formed, and every string the scanner hands to a leaf codec is the
# one lxml would give (references replaced; empty content handed over as None, as lxml's
# `.text` is).  The
# expressions are possessive (`?+`, `*+`): the alternatives start with distinct tags, so no
# match is lost, and possessive ones can only match less.  Anything else — and any value the
# quick checks cannot vouch for — makes the scanner give up (``None``), and ``parse`` goes on
# with lxml, the generated tree decoders and, when they give up too, the generic decoder.

_XML_WS = " \t\r\n"
_WS = _re.compile(r"[ \t\r\n]*").match
_ROOT = _re.compile(r'(?:<\?xml version="1\.0" encoding="UTF-8"\?>[ \t\r\n]*)?'
                    r'<([A-Za-z][A-Za-z0-9]*) xmlns="urn:ieee:std:2030\.5:ns"').match

#: The root start tag's attributes (as the scanner accepts them), and the IEEE 2030.5-2023
#: ``schemaVer`` among them, with a value of the 2023 schema's SEPVersion pattern.
_ROOT_ATTR = _re.compile(r' ([A-Za-z][A-Za-z0-9]*)="([^"<&]*)"').match
SEP_VERSION = _re.compile(r"[1-9][0-9]{0,2}[.](?:0|[1-9][0-9]{0,2})")
"""The 2023 schema's SEPVersion (``schemaVer``): digits, a dot, digits (e.g. ``2.2``)."""

_scanners: dict[type, Callable[..., Any]] = {}


def scan(data: Any, expected: type | None, max_depth: int,
         schema_ver: list[str] | None = None) -> Any:
    """The object ``data`` encodes, or None when the scanner cannot vouch for the document
    (then lxml and the decoders decide, see above). A 2023-edition ``schemaVer`` attribute
    of the root element is skipped, and its value appended to ``schema_ver``."""
    from .codec import _REGISTRY
    try:
        s = data.decode("ascii")
        m = _ROOT(s)
        if m is None:
            return None
        cls = _REGISTRY.get(m.group(1))
        if cls is None or (expected is not None and not issubclass(cls, expected)):
            return None
        start = m.end()
        version = _ROOT_ATTR(s, start)
        while version is not None and version.group(1) != "schemaVer":
            version = _ROOT_ATTR(s, version.end())
        if version is not None:
            if schema_ver is None or not SEP_VERSION.fullmatch(version.group(2)):
                return None
            s = s[:version.start()] + s[version.end():]
        fn = _scanners.get(cls) or _generate_scanner(cls)
        obj, p = fn(s, start, cls._sep_spec.root_close, 1, max_depth)
        if s[p:].strip(_XML_WS):  # only whitespace may follow the root element
            return None
        if version is not None and schema_ver is not None:
            schema_ver.append(version.group(2))
        return obj
    except Exception:
        return None


# Printable ASCII but & < > (content) or " & < (attribute values), and the five predefined
# entity references, which lxml replaces by their characters (as _unescape does).
_ENT = r"&(?:amp|lt|gt|quot|apos);"
_TC = r"[\x20-\x25\x27-\x3b\x3d\x3f-\x7e]*+"
_AC = r"[\x20\x21\x23-\x25\x27-\x3b\x3d-\x7e]*+"
_TEXT = rf"{_TC}(?:{_ENT}{_TC})*+"
_AVAL = rf"{_AC}(?:{_ENT}{_AC})*+"


def _unescape(x: str) -> str:
    # &amp; last: "&amp;lt;" is "&lt;", not "<".
    return (x.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))

_WSP = r"[ \t\r\n]*+"


def _scan_leaf(codec: Any, ns: dict[str, Any], k: str, x: str) -> tuple[str, list[str]]:
    """(regular expression of the content, code decoding the captured content ``x`` into
    ``v``).  The expressions admit only text whose lxml reading is the text itself."""
    ns[f"D{k}"] = codec.decode
    ns[f"L{k}"] = getattr(codec, "lo", None)
    ns[f"H{k}"] = getattr(codec, "hi", None)
    if isinstance(codec, EnumCodec) and not isinstance(codec, OpenEnumCodec):
        ns[f"M{k}"] = {str(int(m)): m for m in codec.members.values()}
        return "([0-9]++)", [f"v = M{k}.get({x})", f"if v is None: v = D{k}({x})"]
    if isinstance(codec, IntCodec) and not isinstance(codec, EnumCodec):
        lo, hi = int(codec.lo), int(codec.hi)
        if lo < 0:
            return "(-?[0-9]++)", [f"v = int({x})", f"if v > {hi} or v < {lo}: raise Fallback"]
        if lo == 0:  # digits only: never negative
            return "([0-9]++)", [f"v = int({x})", f"if v > {hi}: raise Fallback"]
        return "([0-9]++)", [f"v = int({x})", f"if v > {hi} or v < {lo}: raise Fallback"]
    if isinstance(codec, BoolCodec):
        return "(true|false|1|0)", [f"v = BOOLS[{x}]"]
    if isinstance(codec, HexBytesCodec):
        n = codec.max_len * 2
        test = f"len({x}) != {n}" if codec.exact else f"len({x}) > {n}"
        return "([0-9A-Fa-f]*+)", [f"if {test}: raise Fallback", f"v = fromhex({x})"]
    if isinstance(codec, FlagCodec):
        ns[f"Z{k}"] = {}
        return "([0-9A-Fa-f]++)", [f"v = Z{k}.get({x})",
                                  "if v is None:",
                                  f"    v = D{k}({x})",
                                  f"    if len(Z{k}) < 64: Z{k}[{x}] = v"]
    if type(codec) is StringCodec and codec.max_len is not None:
        return f"({_TEXT})", [f"if '&' in {x}: {x} = UNESC({x})",
                              f"if len({x}) > {codec.max_len}: raise Fallback", f"v = {x}"]
    return f"({_TEXT})", [f"if '&' in {x}: {x} = UNESC({x})", f"v = D{k}({x} or None)"]


def _flattenable(cls: type, seen: frozenset[type] = frozenset()) -> bool:
    """Whether ``cls``'s whole element can be read by one regular expression: no repeated
    or xsi:typed elements at any depth (and no recursion)."""
    from .codec import _CHILD, _LEAF
    if cls in seen:
        return False
    for f in cls._sep_spec.elems:  # type: ignore[attr-defined]
        if f.many or f.kind not in (_LEAF, _CHILD):
            return False
        if f.kind == _CHILD and not _flattenable(f.cls, seen | {cls}):
            return False
    return True


class _Gen:
    """State of one scanner's generation: its namespace and group/variable counters."""

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns
        self.n = 0

    def var(self) -> str:
        self.n += 1
        return f"g{self.n}"


def _attrs_pattern(gen: _Gen, spec: Any, code: list[str], ind: str) -> tuple[str, list[str]]:
    """The attributes (in schema order, as serialize writes them) and code decoding them;
    returns the pattern and the variables holding the values."""
    pat = ""
    out = []
    for f in spec.attrs:
        out.append(gen.var())
        pat += f'(?: {f.xml}="({_AVAL})")?+'
    for f, g in zip(spec.attrs, out):
        code.append(f"{ind}if {g}x is not None:")
        code.append(f"{ind}    x = {g}x")
        code.append(f"{ind}    if '&' in x: x = UNESC(x)")
        _leaf_decode_code(code, gen.ns, f.codec, g, ind + "    ", attr=True)
        code.append(f"{ind}    {g} = v")
        code.append(f"{ind}else:")
        code.append(f"{ind}    {g} = None")
        if f.required:
            code.append(f"{ind}if {g} is None: raise Fallback")
    return pat, out


def _content_pattern(gen: _Gen, fields: list[Any], code: list[str], ind: str,
                     depth: str) -> tuple[str, list[str], list[str]]:
    """Pattern and code for a run of flattenable fields; returns (pattern, group variable
    names in order, value variables per field)."""
    from .codec import _LEAF
    pat = ""
    groups: list[str] = []
    vals: list[str] = []
    for f in fields:
        g = gen.var()
        vals.append(g)
        opt = "" if f.required else "?+"  # possessive: the tags never overlap
        if f.kind == _LEAF:
            cpat, dec = _scan_leaf(f.codec, gen.ns, g, f"{g}x")
            pat += f"(?:{f.open}{cpat}{f.close}{_WSP}){opt}"
            groups.append(f"{g}x")
            if f.required:
                # (None when the enclosing nested element is empty: <X/>)
                code += [f"{ind}if {g}x is None: raise Fallback"]
                code += [f"{ind}{d}" for d in dec] + [f"{ind}{g} = v"]
            else:
                code += [f"{ind}if {g}x is None:", f"{ind}    {g} = None", f"{ind}else:"]
                code += [f"{ind}    {d}" for d in dec] + [f"{ind}    {g} = v"]
        else:
            sub: list[str] = []
            cpat, cgroups = _element_pattern(gen, f.cls, f.xml, sub, ind + "    ",
                                             f"{depth} + 1", g)
            pat += f"(?:{cpat}){opt}"
            groups += [f"{g}o"] + cgroups
            code += [f"{ind}if {g}o is None:"]
            code += ([f"{ind}    raise Fallback"] if f.required else [f"{ind}    {g} = None"])
            code += [f"{ind}else:"] + sub
    return pat, groups, vals


def _element_pattern(gen: _Gen, cls: type, xml: str, code: list[str], ind: str, depth: str,
                     out: str) -> tuple[str, list[str]]:
    """Pattern of a whole flattenable element ``xml`` of type ``cls`` (its open tag captured
    as ``{out}o``) and code building the object into ``out``."""
    spec = cls._sep_spec  # type: ignore[attr-defined]
    gen.ns[f"K{out}"] = cls
    code.append(f"{ind}if {depth} > maxd: raise Fallback")
    apat, avars = _attrs_pattern(gen, spec, code, ind)
    cpat, cgroups, cvals = _content_pattern(gen, spec.elems, code, ind, depth)
    pat = f"(<{xml}){apat}(?:/>|>{_WSP}{cpat}</{xml}>){_WSP}"
    args = [f"{f.name}={v}" for f, v in zip(spec.attrs, avars)]
    args += [f"{f.name}={v}" for f, v in zip(spec.elems, cvals)]
    code.append(f"{ind}{out} = K{out}({', '.join(args)})")
    return pat, [f"{a}x" for a in avars] + cgroups


def prepare(cls: type, seen: set[type] | None = None) -> None:
    """Generate now what the first document of ``cls`` would: its encoder and scanner, and
    those of the classes it contains (each generated once, as on first use)."""
    from .codec import _CHILD

    seen = set() if seen is None else seen
    if cls in seen:
        return
    seen.add(cls)
    encoder(cls)
    if cls not in _scanners:
        _generate_scanner(cls)
    for f in cls._sep_spec.elems:  # type: ignore[attr-defined]
        if f.kind == _CHILD and f.cls is not None:
            prepare(f.cls, seen)


def _generate_scanner(cls: type) -> Callable[..., Any]:
    """Generate ``scan(s, p, close, depth, maxd) -> (obj, p)``: ``p`` is just after ``<name``
    of the element (after the namespace declaration for the root), ``close`` its end tag; the
    result ``p`` is after the end tag (or ``/>``).  Runs of elements without repetitions are
    read by one regular expression each (nested elements included); repeated elements by a
    loop."""
    from .codec import _CHILD, _LEAF

    spec = cls._sep_spec  # type: ignore[attr-defined]
    ns: dict[str, Any] = {"Fallback": Fallback, "CLS": cls, "fromhex": bytes.fromhex,
                          "XS_WS": _XS_WS, "WS": _WS, "UNESC": _unescape,
                          "BOOLS": {"true": True, "false": False, "1": True, "0": False}}
    gen = _Gen(ns)
    lines = ["def scan(s, p, close, depth, maxd):",
             "    if depth > maxd: raise Fallback"]
    # Segments: runs of flattenable fields (one expression each) and the others.
    segs: list[list[Any]] = [[]]
    for f in spec.elems:
        if (f.kind == _LEAF and not f.many) or (f.kind == _CHILD and not f.many
                                                 and _flattenable(f.cls)):
            segs[-1].append(f)
        else:
            segs.append([f])
            segs.append([])
    vals: dict[str, str] = {}
    acode: list[str] = []
    apat, avars = _attrs_pattern(gen, spec, acode, "    ")
    for f, v in zip(spec.attrs, avars):
        vals[f.name] = v
    # First expression: the rest of the start tag, then (unless '/>') the first run.
    body: list[str] = []
    cpat, cgroups, cvals = _content_pattern(gen, segs[0], body, "", "depth")
    ns["R0"] = _re.compile(f"{apat}(?:(/>)|>{_WSP}{cpat})").match
    groups = [f"{a}x" for a in avars] + ["empty"] + cgroups
    lines += ["    m = R0(s, p)",
              "    if m is None: raise Fallback",
              f"    {', '.join(groups)}, = m.groups()",
              "    p = m.end()"] + acode
    for f, v in zip(segs[0], cvals):
        vals[f.name] = v
    skip = "if s[p] != '<': p = WS(s, p).end()"
    for j, seg in enumerate(segs[1:], 1):
        if not seg:
            continue
        f = seg[0]
        if j % 2 == 1:  # a field that is not flattenable
            k = gen.var()
            vals[f.name] = k
            body.append(f"{k} = None")
            if f.kind == _CHILD:
                ns[f"O{k}"] = (f.open, f.open[:-1] + " ", f.open[:-1] + "/>")
                ns[f"C{k}"] = f.close
                ns[f"N{k}"] = f.cls
                test = f"s.startswith(O{k}, p)"
                call = f"v, p = SCAN[N{k}](s, p + {len(f.open) - 1}, C{k}, depth + 1, maxd)"
                if f.many:
                    body.extend([f"if {test}:", f"    {k} = []", f"    while {test}:",
                                 f"        {call}", f"        {k}.append(v)",
                                 f"        {skip}"])
                else:
                    body.extend([f"if {test}:", f"    {call}", f"    {k} = v", f"    {skip}"])
            elif f.kind == _LEAF:  # repeated leaf
                cp, dec = _scan_leaf(f.codec, ns, k, "y")
                ns[f"R{k}"] = _re.compile(f"{f.open}{cp}{f.close}{_WSP}").match
                body.extend([f"m = R{k}(s, p)",
                             "if m is not None:",
                             f"    {k} = []",
                             "    while m is not None:",
                             "        y, = m.groups()",
                             "        p = m.end()"])
                body.extend([f"        {d}" for d in dec])
                body.extend([f"        {k}.append(v)", f"        m = R{k}(s, p)"])
            # xsi:typed: left over, so the scanner gives up
            if f.many:
                if f.min:
                    body.append(f"if {k} is None or len({k}) < {f.min}: raise Fallback")
                if f.max is not None:
                    body.append(f"if {k} is not None and len({k}) > {f.max}: raise Fallback")
            elif f.required:
                body.append(f"if {k} is None: raise Fallback")
        else:
            sub: list[str] = []
            cp2, cg2, cv2 = _content_pattern(gen, seg, sub, "", "depth")
            r = gen.var()
            ns[f"R{r}"] = _re.compile(cp2).match
            body.extend([f"m = R{r}(s, p)",
                         "if m is None: raise Fallback",
                         f"{', '.join(cg2)}, = m.groups()",
                         "p = m.end()"] + sub)
            for ff, v in zip(seg, cv2):
                vals[ff.name] = v
    body += ["if not s.startswith(close, p): raise Fallback", "p += len(close)"]
    lines.append("    if empty is None:")
    lines += [f"        {x}" for x in body]
    lines += ["    else:", "        pass"]
    for f in spec.elems:
        lines.append(f"        {vals[f.name]} = None")
        if f.required or (f.many and f.min):
            lines.append("        raise Fallback")
    args = [f"{f.name}={vals[f.name]}" for f in spec.attrs]
    for f in spec.elems:
        v = vals[f.name]
        args.append(f"{f.name}=[] if {v} is None else {v}" if f.many else f"{f.name}={v}")
    lines.append(f"    return CLS({', '.join(args)}), p")
    src = "\n".join(lines)
    ns["SCAN"] = _scanners
    code_obj = compile(src, f"<sepgw.model scanner {spec.tag}>", "exec")
    exec(code_obj, ns)
    _scanners[cls] = ns["scan"]
    for f in spec.elems:
        if f.kind == _CHILD and f.cls not in _scanners:
            _generate_scanner(f.cls)
    return ns["scan"]  # type: ignore[no-any-return]
