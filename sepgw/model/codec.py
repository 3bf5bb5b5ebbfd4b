"""The declarative XML codec: field specs, the decorators, parse and serialize.

A resource is a slotted, keyword-only dataclass whose fields are declared in XSD sequence
order (base type fields first, which dataclass inheritance gives for free).  Each field's
``typing.Annotated`` hint says how it is carried:

* ``Annotated[int, UINT16]`` – a leaf element with a :class:`~sepgw.model.types.LeafCodec`;
* ``Annotated[str, Attr(URI)]`` – an XML attribute;
* a model class, e.g. ``ActivePower`` – a nested complex element;
* ``list[X]`` – a repeated element (``Annotated[list[X], Occurs(1, 10)]`` for bounds);
* ``Annotated[Resource, XsiTyped()]`` – an element whose type is given by ``xsi:type``.

A field whose hint includes ``None`` (or a list) is optional; anything else is required
(``minOccurs=1`` / ``use="required"``).  The element name is the field name.

At decoration time the class gets a :class:`ClassSpec` with precomputed tag maps, open and
close tags and sequence indexes, so parsing is one pass over each element's children and
serializing is string building.
"""

from __future__ import annotations

import dataclasses
import re
import types as _pytypes
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar, overload

from . import _fast
from .errors import ModelError, _Bad
from .types import BOOLEAN, BoolCodec, LeafCodec, MRID

if TYPE_CHECKING:
    from lxml import etree

__all__ = [
    "NS", "MEDIA_TYPE", "XSI_NS", "Model", "Attr", "Occurs", "XsiTyped", "ClassSpec",
    "FieldSpec", "resource", "complex_type", "parse", "parse_lenient", "serialize",
    "registry", "Deviation", "SCHEMA_VER", "ELEMENT_2023", "EDITION_2023",
    "DEFAULT_MAX_SIZE", "DEFAULT_MAX_DEPTH", "prepare",
]

NS = "urn:ieee:std:2030.5:ns"
#: The IEEE 2030.5 XML media type.
MEDIA_TYPE = "application/sep+xml"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_NSB = "{" + NS + "}"
_XSI_TYPE = "{" + XSI_NS + "}type"
_HEX = re.compile(r"[0-9A-Fa-f]*")

DEFAULT_MAX_SIZE = 64 * 1024
DEFAULT_MAX_DEPTH = 16

T = TypeVar("T")
M = TypeVar("M", bound="Model")

_ATTR, _LEAF, _CHILD, _POLY = 0, 1, 2, 3


class Attr:
    """``Annotated`` marker: the field is an XML attribute carried with ``codec``."""

    __slots__ = ("codec",)

    def __init__(self, codec: LeafCodec[Any]) -> None:
        self.codec = codec


class Occurs:
    """``Annotated`` marker on a ``list`` field: ``minOccurs``/``maxOccurs`` (None = unbounded)."""

    __slots__ = ("min", "max")

    def __init__(self, min: int = 0, max: int | None = None) -> None:
        self.min = min
        self.max = max


class XsiTyped:
    """``Annotated`` marker: the element's concrete type is named by ``xsi:type``."""

    __slots__ = ()


class FieldSpec:
    """How one dataclass field maps to XML (precomputed; see module docstring)."""

    __slots__ = ("name", "xml", "tag", "kind", "codec", "cls", "required", "many", "min",
                 "max", "index", "open", "close", "attr_prefix", "escape", "alias")

    def __init__(self, name: str, xml: str, kind: int, *, codec: LeafCodec[Any] | None = None,
                 cls: type[Model] | None = None, required: bool = False, many: bool = False,
                 min: int = 0, max: int | None = None, index: int = -1) -> None:
        self.name = name
        self.xml = xml
        self.tag = _NSB + xml
        self.kind = kind
        self.codec: Any = codec
        self.cls: Any = cls
        self.required = required
        self.many = many
        self.min = min
        self.max = max
        self.index = index
        self.open = f"<{xml}>"
        self.close = f"</{xml}>"
        self.attr_prefix = f' {xml}="'
        self.escape = bool(codec is not None and codec.escape)
        #: For lenient-mode aliases: the misspelt element name that was accepted.
        self.alias: str | None = None

    def __repr__(self) -> str:
        return f"<FieldSpec {self.xml}>"


class ClassSpec:
    """Everything the codec needs to know about one model class."""

    __slots__ = ("cls", "tag", "attrs", "elems", "by_tag", "attr_map", "required_elems",
                 "required_attrs", "bounded", "lenient_by_tag", "root_head", "root_close")

    def __init__(self, cls: type[Model], tag: str, attrs: list[FieldSpec],
                 elems: list[FieldSpec]) -> None:
        self.cls = cls
        self.tag = tag
        self.attrs = attrs
        self.elems = elems
        self.by_tag = {f.tag: f for f in elems}
        self.attr_map = {f.xml: f for f in attrs}
        self.required_elems = [f for f in elems if f.required or f.min > 0]
        self.required_attrs = [f for f in attrs if f.required]
        self.bounded = [f for f in elems if f.many and f.max is not None]
        self.root_head = f'<{tag} xmlns="{NS}"'
        self.root_close = f"</{tag}>"
        self.lenient_by_tag = dict(self.by_tag)
        for wrong, right in _LENIENT_ALIASES.items():
            target = next((f for f in elems if f.xml == right), None)
            if target is not None:
                alias = FieldSpec(target.name, target.xml, target.kind, codec=target.codec,
                                  cls=target.cls, required=target.required, index=target.index)
                alias.alias = wrong
                self.lenient_by_tag[_NSB + wrong] = alias


# Element-name misspellings of the V2G-AC profile's section 5 examples (see docs/model.md).
_LENIENT_ALIASES = {"lfdi": "lFDI", "sfdi": "sFDI", "updatedAtTime": "updatedTime"}

_REGISTRY: dict[str, type[Model]] = {}


def registry() -> dict[str, type[Model]]:
    """A copy of the root element name → class map of every registered resource."""
    return dict(_REGISTRY)


class Model:
    """Base of every model class (resources and nested complex types)."""

    __slots__ = ()
    _sep_spec: ClassVar[ClassSpec]

    def __repr__(self) -> str:
        # One repr for every class, instead of one generated per dataclass (memory).
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                           for f in dataclasses.fields(self)  # type: ignore[arg-type]
                           if getattr(self, f.name) is not None)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        # One comparison for every class, instead of one generated per dataclass.
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name)
                   for name in self.__dataclass_fields__)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable values


def _unwrap(hint: Any) -> tuple[Any, list[Any], bool]:
    """Return (base type, Annotated metadata, optional) for a field hint."""
    optional = False
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is _pytypes.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) != len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        hint = args[0]
        origin = typing.get_origin(hint)
    meta: list[Any] = []
    if origin is typing.Annotated:
        base, *meta = typing.get_args(hint)
        hint, inner_meta, inner_optional = _unwrap(base)
        meta += inner_meta
        optional = optional or inner_optional
    return hint, meta, optional


def _build_spec(cls: type[Model], tag: str) -> ClassSpec:
    hints = typing.get_type_hints(cls, include_extras=True)
    attrs: list[FieldSpec] = []
    elems: list[FieldSpec] = []
    for fld in dataclasses.fields(cls):  # type: ignore[arg-type]
        base, meta, optional = _unwrap(hints[fld.name])
        many = False
        occurs = next((m for m in meta if isinstance(m, Occurs)), None)
        if typing.get_origin(base) is list:
            many = True
            (inner,) = typing.get_args(base)
            base, inner_meta, _ = _unwrap(inner)
            meta = meta + inner_meta
        attr = next((m for m in meta if isinstance(m, Attr)), None)
        leaf = next((m for m in meta if isinstance(m, LeafCodec)), None)
        required = not optional and not many
        if attr is not None:
            attrs.append(FieldSpec(fld.name, fld.name, _ATTR, codec=attr.codec,
                                   required=required))
            continue
        index = len(elems)
        lo, hi = (occurs.min, occurs.max) if occurs is not None else (0, None)
        if leaf is not None:
            elems.append(FieldSpec(fld.name, fld.name, _LEAF, codec=leaf, required=required,
                                   many=many, min=lo, max=hi, index=index))
        elif any(isinstance(m, XsiTyped) for m in meta):
            elems.append(FieldSpec(fld.name, fld.name, _POLY, cls=base, required=required,
                                   many=many, min=lo, max=hi, index=index))
        elif isinstance(base, type) and issubclass(base, Model):
            elems.append(FieldSpec(fld.name, fld.name, _CHILD, cls=base, required=required,
                                   many=many, min=lo, max=hi, index=index))
        else:
            raise TypeError(f"{cls.__name__}.{fld.name}: no codec for {hints[fld.name]!r}")
    return ClassSpec(cls, tag, attrs, elems)


def _decorate(cls: type[M], tag: str | None, root: bool) -> type[M]:
    dc = dataclass(slots=True, kw_only=True, repr=False, eq=False)(cls)
    spec = _build_spec(dc, tag or cls.__name__)
    dc._sep_spec = spec
    if root:
        _REGISTRY[spec.tag] = dc
    return dc


@typing.dataclass_transform(kw_only_default=True)
def resource(cls: type[M]) -> type[M]:
    """Class decorator for a resource that can be a document root (registered by name)."""
    return _decorate(cls, None, True)


@typing.dataclass_transform(kw_only_default=True)
def complex_type(cls: type[M]) -> type[M]:
    """Class decorator for a nested complex type that is never a document root."""
    return _decorate(cls, None, False)


# -- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deviation:
    """A departure from the 2018 schema that was accepted: a known V2G-AC profile example
    deviation (lenient mode only), or what the 2023 edition adds to a 2018 document (any
    mode, kinds :data:`EDITION_2023`)."""

    path: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


class _Ctx:
    __slots__ = ("lenient", "max_depth", "deviations")

    def __init__(self, lenient: bool, max_depth: int) -> None:
        self.lenient = lenient
        self.max_depth = max_depth
        self.deviations: list[Deviation] = []


def _secure_parser() -> etree.XMLParser:
    from lxml import etree
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True, collect_ids=False, strip_cdata=True)


# lxml parsers are not thread-safe; the model is used from the reactor thread.  A parser per
# thread would be the fix if that ever changes.  lxml (about 5 MiB of RSS) is imported at the
# first document the scanner (_fast.scan) gives up on, not at start-up: sepgw's own peers
# never need it.
_parser: etree.XMLParser | None = None


def _lxml_parser() -> etree.XMLParser:
    global _parser
    if _parser is None:
        _parser = _secure_parser()
    return _parser


def _lenient_leaf(f: FieldSpec, text: str | None, path: str, ctx: _Ctx) -> Any:
    """Retry a failed leaf decode with the known example deviations (lenient mode only)."""
    codec = f.codec
    t = (text or "").strip(" \t\r\n")
    if codec is MRID and len(t) == 34 and _HEX.fullmatch(t):
        trimmed = _trim_mrid(bytes.fromhex(t))
        if trimmed is not None:
            ctx.deviations.append(Deviation(
                path, "17-byte mRID", f"{t} trimmed to {trimmed.hex().upper()}"))
            return trimmed
    if isinstance(codec, BoolCodec) and t.startswith(">"):
        value = BOOLEAN.decode(t[1:])
        ctx.deviations.append(Deviation(path, "stray '>' in boolean", repr(t)))
        return value
    return None


def _trim_mrid(raw: bytes) -> bytes | None:
    """Drop one 0x00 byte from the longest run of zero bytes (the profile examples pad the
    zero run between the prefix and the PEN by one byte)."""
    best_start, best_len, i = -1, 0, 0
    while i < len(raw):
        if raw[i] == 0:
            j = i
            while j < len(raw) and raw[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    if best_len == 0:
        return None
    return raw[:best_start] + raw[best_start + 1:]


def _decode(spec: ClassSpec, el: Any, path: str, ctx: _Ctx, depth: int,
            xsi_ok: bool = False) -> Any:
    if depth > ctx.max_depth:
        raise ModelError(path, f"nesting deeper than {ctx.max_depth} levels")
    values: dict[str, Any] = {}
    attrib = el.attrib
    if attrib:
        amap = spec.attr_map
        for k, v in attrib.items():
            f = amap.get(k)
            if f is None:
                if k == _XSI_TYPE and xsi_ok:
                    continue
                raise ModelError(path, f"unknown attribute {_local(k)!r}")
            try:
                values[f.name] = f.codec.decode(v)
            except _Bad as e:
                raise ModelError(f"{path}/@{f.xml}", e.reason) from None
        for f in spec.required_attrs:
            if f.name not in values:
                raise ModelError(path, f"missing required attribute {f.xml!r}")
    elif spec.required_attrs:
        raise ModelError(path, f"missing required attribute {spec.required_attrs[0].xml!r}")
    text = el.text
    if text is not None and not text.isspace():
        raise ModelError(path, f"unexpected text {text.strip()[:40]!r}")
    by_tag = spec.lenient_by_tag if ctx.lenient else spec.by_tag
    pos = -1
    prev: FieldSpec | None = None
    for child in el:
        f = by_tag.get(child.tag)
        if f is None:
            raise ModelError(path, _unknown(child.tag, spec, prev))
        if f.alias is None:
            idx = f.index
            if idx < pos:
                assert prev is not None
                raise ModelError(path, f"element {f.xml!r} is out of schema order "
                                       f"(it must come before {prev.xml!r})")
            pos = idx
            prev = f
        else:
            # Lenient alias (lfdi, sfdi, updatedAtTime): accepted wherever it appears.
            ctx.deviations.append(Deviation(
                f"{path}/{f.alias}", "misspelt element", f"{f.alias!r} read as {f.xml!r}"))
        if not f.many and f.name in values:
            raise ModelError(path, f"element {f.xml!r} appears more than once")
        kind = f.kind
        if kind == _LEAF:
            if len(child) or child.attrib:
                raise ModelError(f"{path}/{f.xml}", "a simple value cannot have attributes "
                                                    "or child elements")
            try:
                value = f.codec.decode(child.text)
            except _Bad as e:
                value = None
                if ctx.lenient:
                    value = _lenient_leaf(f, child.text, f"{path}/{f.xml}", ctx)
                if value is None:
                    raise ModelError(f"{path}/{f.xml}", e.reason) from None
        else:
            if f.many:
                cpath = f"{path}/{f.xml}[{len(values.get(f.name, ())) + 1}]"
            else:
                cpath = f"{path}/{f.xml}"
            if kind == _CHILD:
                value = _decode(f.cls._sep_spec, child, cpath, ctx, depth + 1)
            else:
                value = _decode(_xsi_spec(child, f, cpath), child, cpath, ctx, depth + 1, True)
        if f.many:
            lst = values.get(f.name)
            if lst is None:
                values[f.name] = [value]
            else:
                lst.append(value)
        else:
            values[f.name] = value
        tail = child.tail
        if tail is not None and not tail.isspace():
            raise ModelError(path, f"unexpected text {tail.strip()[:40]!r}")
    for f in spec.required_elems:
        if f.name not in values:
            raise ModelError(path, f"missing required element {f.xml!r}")
        if f.min > 1 and len(values[f.name]) < f.min:
            raise ModelError(path, f"element {f.xml!r} must occur at least {f.min} times")
    for f in spec.bounded:
        if f.name in values and len(values[f.name]) > f.max:  # type: ignore[operator]
            raise ModelError(path, f"element {f.xml!r} may occur at most {f.max} times")
    return spec.cls(**values)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


def _unknown(tag: Any, spec: ClassSpec, prev: FieldSpec | None) -> str:
    if not isinstance(tag, str):
        return "unexpected non-element content"
    if not tag.startswith(_NSB):
        ns = tag[1:].partition("}")[0] if tag[:1] == "{" else ""
        return (f"element {_local(tag)!r} is not in namespace {NS}"
                + (f" (it is in {ns!r})" if ns else " (it has no namespace)"))
    name = tag[len(_NSB):]
    for f in spec.elems:
        if f.xml.lower() == name.lower():
            return f"unknown element {name!r} (did you mean {f.xml!r}?)"
    return f"unknown element {name!r} in {spec.tag}"


def _xsi_spec(el: Any, f: FieldSpec, path: str) -> ClassSpec:
    qname = el.get(_XSI_TYPE)
    if qname is None:
        raise ModelError(path, "missing xsi:type naming the resource type")
    prefix, _, local = qname.strip().rpartition(":")
    ns = el.nsmap.get(prefix or None)
    if ns != NS:
        raise ModelError(path, f"xsi:type {qname!r} is not a type of namespace {NS}")
    cls = _REGISTRY.get(local)
    if cls is None or not issubclass(cls, f.cls):
        raise ModelError(path, f"xsi:type {qname!r} is not a known {f.cls.__name__} type")
    return cls._sep_spec


@overload
def parse(data: bytes | str, expected: type[M], *, lenient: bool = ...,
          on_deviation: Callable[[Deviation], None] | None = ..., max_size: int = ...,
          max_depth: int = ...) -> M: ...


@overload
def parse(data: bytes | str, expected: None = ..., *, lenient: bool = ...,
          on_deviation: Callable[[Deviation], None] | None = ..., max_size: int = ...,
          max_depth: int = ...) -> Model: ...


def parse(data: bytes | str, expected: type[M] | None = None, *, lenient: bool = False,
          on_deviation: Callable[[Deviation], None] | None = None,
          max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse one IEEE 2030.5 XML document into its model object.

    ``expected`` (a model class) makes any other root element an error; a subclass is
    accepted (``Response`` accepts ``DERControlResponse``).  Strict by default: every
    deviation from the 2018 schema raises :class:`ModelError`, except what a 2023-edition
    client adds to a 2018 document (``schemaVer`` on the root element; ``modesResponded``
    and ``modesResponded2`` at the end of a DERControlResponse), which is checked, ignored in
    either mode and reported to ``on_deviation``.  ``lenient=True`` also accepts exactly the V2G-AC profile
    example deviations (see ``docs/model.md``) and reports each to ``on_deviation``.  Documents larger than ``max_size`` bytes, nested deeper than
    ``max_depth``, or carrying a DOCTYPE (hence entities: XXE, billion laughs) are rejected.
    """
    obj, deviations = _parse(data, expected, lenient, max_size, max_depth)
    if on_deviation is not None:
        for d in deviations:
            on_deviation(d)
    return obj


def parse_lenient(data: bytes | str, expected: type[M] | None = None, *,
                  max_size: int = DEFAULT_MAX_SIZE,
                  max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[Any, list[Deviation]]:
    """Parse in lenient mode; return the object and the list of deviations accepted."""
    return _parse(data, expected, True, max_size, max_depth)


def _parse(data: bytes | str, expected: type[M] | None, lenient: bool, max_size: int,
           max_depth: int) -> tuple[Any, list[Deviation]]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse() wants bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise ModelError("", f"document is {len(data)} bytes, the limit is {max_size}")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ModelError("", "DOCTYPE and entity declarations are not allowed")
    if not lenient:
        # Documents in the plain form sepgw writes are read straight from the text; the
        # scanner gives up (None) on anything else, and lxml and the decoders below decide.
        versions: list[str] = []
        obj = _fast.scan(data, expected, max_depth, versions)
        if obj is not None:
            return obj, [_schema_ver_note(obj._sep_spec.tag, v) for v in versions]
    parser = _lxml_parser()
    from lxml import etree
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        raise ModelError("", f"not well-formed XML: {e}") from None
    except ValueError as e:  # e.g. a str with an encoding declaration
        raise ModelError("", f"not well-formed XML: {e}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        # Reached only for encodings the byte check cannot see (e.g. UTF-16).
        raise ModelError("", "DOCTYPE and entity declarations are not allowed")
    tag = root.tag
    if not isinstance(tag, str) or not tag.startswith(_NSB):
        raise ModelError(_local(str(tag)), f"root element is not in namespace {NS}")
    name = tag[len(_NSB):]
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ModelError(name, "not a known IEEE 2030.5 resource"
                         + (f" (expected {expected._sep_spec.tag})" if expected else ""))
    if expected is not None and not issubclass(cls, expected):
        raise ModelError(name, f"expected a {expected._sep_spec.tag} document, got {name}")
    notes: list[Deviation] = []
    version = root.get("schemaVer")
    if version is not None:
        # IEEE 2030.5-2023 puts schemaVer on the root element of every document; the 2018
        # schema has no such attribute. Accepted (when well-formed) and ignored.
        if not _fast.SEP_VERSION.fullmatch(version):
            raise ModelError(f"{name}/@schemaVer", f"{version[:20]!r} is not a schema version "
                                                   "(digits.digits, e.g. '2.2')")
        del root.attrib["schemaVer"]
        notes.append(_schema_ver_note(name, version))
    tail = _EDITION_2023_TAIL.get(name)
    appended: list[Deviation] = []
    while tail and len(root) and _local(str(root[-1].tag)) in tail and \
            str(root[-1].tag).startswith(_NSB):
        # Elements the 2023 edition appended to a 2018 type (at the end of the root's
        # sequence): their value checked, then ignored.
        child = root[-1]
        local = _local(child.tag)
        text = (child.text or "").strip(" \t\r\n")
        if len(child) or child.attrib or not _HEX32.fullmatch(text):
            raise ModelError(f"{name}/{local}", "not a HexBinary32 (IEEE 2030.5-2023 "
                                                "element)")
        root.remove(child)
        appended.insert(0, Deviation(f"{name}/{local}", ELEMENT_2023,
                                     f"IEEE 2030.5-2023 element {local} {text!r} ignored"))
    notes += appended
    if not lenient:
        try:
            return _fast.decoder(cls)(root, 1, max_depth), notes
        except Exception:
            # The generated fast path met something it does not vouch for: the generic
            # decoder decides, and raises the path-qualified ModelError.
            pass
    ctx = _Ctx(lenient, max_depth)
    obj = _decode(cls._sep_spec, root, name, ctx, 1)
    return obj, notes + ctx.deviations


SCHEMA_VER = "2023 schemaVer"
"""The :attr:`Deviation.kind` of a 2023-edition ``schemaVer`` attribute that was ignored."""
ELEMENT_2023 = "2023 element"
"""The :attr:`Deviation.kind` of a 2023-edition element that was ignored."""
EDITION_2023 = frozenset({SCHEMA_VER, ELEMENT_2023})
"""The kinds of :class:`Deviation` that mean "a 2023-edition document", in any mode."""

#: Elements IEEE 2030.5-2023 appends to a 2018 root type's sequence, which a 2023 client
#: sends to any server (py20305's DERControlResponse: modesResponded), HexBinary32 each.
_EDITION_2023_TAIL: dict[str, tuple[str, ...]] = {
    "DERControlResponse": ("modesResponded", "modesResponded2"),
}
_HEX32 = re.compile(r"[0-9A-Fa-f]{1,8}")


def _schema_ver_note(root: str, version: str) -> Deviation:
    return Deviation(f"{root}/@schemaVer", SCHEMA_VER,
                     f"IEEE 2030.5-2023 schemaVer {version!r} ignored")


# -- serializing ------------------------------------------------------------------------------

_ESC_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ESC_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                           "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})


def _encode(spec: ClassSpec, obj: Any, out: list[str], head: str, close: str,
            path: str) -> None:
    append = out.append
    append(head)
    for f in spec.attrs:
        v = getattr(obj, f.name)
        if v is None:
            if f.required:
                raise ModelError(path, f"required attribute {f.xml!r} is missing")
            continue
        try:
            s = f.codec.encode(v)
        except _Bad as e:
            raise ModelError(f"{path}/@{f.xml}", e.reason) from None
        append(f.attr_prefix)
        append(s.translate(_ESC_ATTR) if f.escape else s)
        append('"')
    append(">")
    mark = len(out)
    for f in spec.elems:
        v = getattr(obj, f.name)
        if v is None or (f.many and not v):
            if f.required or f.min:
                raise ModelError(path, f"required element {f.xml!r} is missing")
            continue
        kind = f.kind
        if f.many:
            if f.max is not None and len(v) > f.max:
                raise ModelError(path, f"element {f.xml!r} may occur at most {f.max} times")
            if len(v) < f.min:
                raise ModelError(path, f"element {f.xml!r} must occur at least {f.min} times")
            items = v
        else:
            items = (v,)
        for n, item in enumerate(items, 1):
            if kind == _LEAF:
                try:
                    s = f.codec.encode(item)
                except _Bad as e:
                    raise ModelError(f"{path}/{f.xml}", e.reason) from None
                append(f.open)
                append(s.translate(_ESC_TEXT) if f.escape else s)
                append(f.close)
                continue
            cpath = f"{path}/{f.xml}[{n}]" if f.many else f"{path}/{f.xml}"
            if not isinstance(item, f.cls):
                raise ModelError(cpath, f"{type(item).__name__} is not a {f.cls.__name__}")
            if kind == _CHILD:
                _encode(f.cls._sep_spec, item, out, f.open[:-1], f.close, cpath)
            else:
                ispec = type(item)._sep_spec
                if _REGISTRY.get(ispec.tag) is not type(item):
                    raise ModelError(cpath, f"{type(item).__name__} is not a registered type")
                head = (f'<{f.xml} xmlns:xsi="{XSI_NS}" xsi:type="{ispec.tag}"')
                _encode(ispec, item, out, head, f.close, cpath)
    if len(out) == mark:
        out[-1] = "/>"
    else:
        append(close)


_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def prepare(cls: type[Model]) -> None:
    """Generate now the fast encoder and scanner of ``cls`` and of the classes it contains,
    which the first document of each type would otherwise generate (a few milliseconds a
    type, tens for a session's types): a role prepares what its sessions exchange once it
    serves, so that its first peer does not wait for them."""
    _fast.prepare(cls)


def serialize(obj: Model, *, xml_declaration: bool = False) -> bytes:
    """Serialize a registered resource to UTF-8 XML in schema element order, default
    namespace ``urn:ieee:std:2030.5:ns``.  Values are checked as strictly as when parsing,
    so an object that serializes is a schema-valid document; problems raise
    :class:`ModelError` with the element path."""
    cls = type(obj)
    spec = getattr(cls, "_sep_spec", None)
    if spec is None or _REGISTRY.get(spec.tag) is not cls:
        raise TypeError(f"{cls.__name__} is not a registered IEEE 2030.5 resource")
    out: list[str] = [_XML_DECL] if xml_declaration else []
    append = out.append
    append(spec.root_head)
    try:
        if _fast.encoder(cls)(obj, append):
            append(spec.root_close)
    except Exception:
        # The generated fast path met something it does not vouch for: the generic encoder
        # decides, and raises the path-qualified ModelError if the object is invalid.
        out = [_XML_DECL] if xml_declaration else []
        _encode(spec, obj, out, spec.root_head, spec.root_close, spec.tag)
    return "".join(out).encode("utf-8")
