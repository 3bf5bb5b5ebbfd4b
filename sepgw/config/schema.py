"""A small declarative schema for TOML configuration.

A :class:`Section` declares its keys; :meth:`Section.validate` checks a parsed TOML table,
fills in defaults, resolves relative paths and collects *every* problem as a
:class:`Problem` (key path + reason) instead of stopping at the first one. Unknown keys are
problems too: a typo must never be silently ignored.

Plugin factories use the same classes to declare their options, so the configuration
reference in ``docs/configuration.md`` and ``sepgw plugins --keys`` describe them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

REQUIRED: Any = object()
"""Marker for a key without a default."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a configuration, at a key path such as ``ports[1].meter``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ConfigError(Exception):
    """A configuration has problems; ``problems`` lists every one."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(sorted(problems))
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} configuration problem(s):\n{lines}")


@dataclass
class Context:
    """What validation needs besides the data: where relative paths are anchored."""

    base_dir: Path = Path(".")
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        self.problems.append(Problem(path, reason))


def join(path: str, key: str) -> str:
    """The key path of ``key`` inside ``path``."""
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class Field:
    """Base of everything a Section can hold."""

    doc: str = ""
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_label(self) -> str:
        raise NotImplementedError

    def check(self, value: Any, path: str, ctx: Context) -> Any:
        """Return the validated value, or record problems and return None."""
        raise NotImplementedError

    def default_value(self, ctx: Context) -> Any:
        return self.default


class Key(Field):
    """A scalar or array value.

    ``kind`` is one of ``str``, ``int``, ``float``, ``bool``, ``path`` (a filesystem path,
    relative paths resolved against the configuration file's directory), or a list of one of
    these written ``[kind]``.
    """

    KINDS = ("str", "int", "float", "bool", "path")

    def __init__(
        self,
        kind: str | list[str],
        default: Any = REQUIRED,
        doc: str = "",
        *,
        choices: Sequence[Any] | None = None,
        min: float | None = None,
        max: float | None = None,
        validator: Callable[[Any], str | None] | None = None,
        non_empty: bool = False,
    ) -> None:
        self.is_list = isinstance(kind, list)
        self.kind = kind[0] if isinstance(kind, list) else kind
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown key kind {kind!r}")
        self.default = default
        self.doc = doc
        self.choices = tuple(choices) if choices is not None else None
        self.min = min
        self.max = max
        self.validator = validator
        self.non_empty = non_empty

    def type_label(self) -> str:
        label = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
                 "path": "path"}[self.kind]
        if self.choices:
            label = " or ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        return f"array of {label}" if self.is_list else label

    def default_value(self, ctx: Context) -> Any:
        if self.default is REQUIRED or self.default is None:
            return self.default
        if self.kind == "path":
            if self.is_list:
                return [self._path(v, ctx) for v in self.default]
            return self._path(self.default, ctx)
        return list(self.default) if self.is_list else self.default

    @staticmethod
    def _path(value: str, ctx: Context) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (ctx.base_dir / p)

    def check(self, value: Any, path: str, ctx: Context) -> Any:
        if self.is_list:
            if not isinstance(value, list):
                ctx.add(path, f"expected an array of {self.type_label()[9:]}, got "
                              f"{_type_name(value)}")
                return None
            if self.non_empty and not value:
                ctx.add(path, "must not be empty")
                return None
            out = [self._one(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]
            return None if any(v is None for v in out) else out
        return self._one(value, path, ctx)

    def _one(self, value: Any, path: str, ctx: Context) -> Any:
        kind = self.kind
        ok = {
            "str": isinstance(value, str),
            "path": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        }[kind]
        if not ok:
            wanted = {"str": "a string", "path": "a path (string)", "bool": "a boolean",
                      "int": "an integer", "float": "a number"}[kind]
            ctx.add(path, f"expected {wanted}, got {_type_name(value)} {value!r}")
            return None
        if kind == "float":
            value = float(value)
            if not math.isfinite(value):
                ctx.add(path, f"{value!r} is not a finite number")
                return None
        if kind in ("str", "path") and self.non_empty and not value:
            ctx.add(path, "must not be empty")
            return None
        if self.choices is not None and value not in self.choices:
            ctx.add(path, f"{value!r} is not one of {', '.join(map(repr, self.choices))}")
            return None
        if self.min is not None and value < self.min:
            ctx.add(path, f"{value!r} is below the minimum {self.min:g}")
            return None
        if self.max is not None and value > self.max:
            ctx.add(path, f"{value!r} is above the maximum {self.max:g}")
            return None
        if self.validator is not None:
            reason = self.validator(value)
            if reason:
                ctx.add(path, reason)
                return None
        if kind == "path":
            return self._path(value, ctx)
        return value


class Section(Field):
    """A TOML table with declared keys; unknown keys are problems.

    ``rules`` are whole-section checks run after the keys validated; each gets the validated
    mapping and returns ``(key, reason)`` pairs.
    """

    def __init__(
        self,
        keys: Mapping[str, Field],
        doc: str = "",
        *,
        optional: bool = False,
        rules: Sequence[Callable[[dict[str, Any]], Iterator[tuple[str, str]]]] = (),
    ) -> None:
        self.keys = dict(keys)
        self.doc = doc
        self.optional = optional
        self.rules = tuple(rules)
        # A section with no required key can be omitted and gets its defaults.
        self.default = None if optional else (
            REQUIRED if any(f.required for f in self.keys.values()) else {}
        )

    def type_label(self) -> str:
        return "table"

    def default_value(self, ctx: Context) -> Any:
        if self.optional:
            return None
        return self.check({}, "", ctx) if self.default is not REQUIRED else REQUIRED

    def check(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            ctx.add(path, f"expected a table, got {_type_name(value)}")
            return None
        before = len(ctx.problems)
        out: dict[str, Any] = {}
        for key in value:
            if key not in self.keys:
                ctx.add(join(path, key), _unknown_key(key, self.keys))
        for key, spec in self.keys.items():
            kpath = join(path, key)
            if key in value:
                out[key] = spec.check(value[key], kpath, ctx)
            elif spec.required:
                ctx.add(kpath, f"required {spec.type_label()} is missing")
                out[key] = None
            else:
                out[key] = spec.default_value(ctx)
        if len(ctx.problems) == before:
            for rule in self.rules:
                for key, reason in rule(out):
                    ctx.add(join(path, key) if key else path, reason)
        return out

    def validate(self, data: Mapping[str, Any], base_dir: Path = Path(".")) -> tuple[
            dict[str, Any], list[Problem]]:
        """Validate a whole document; return the normalised mapping and every problem."""
        ctx = Context(base_dir=base_dir)
        result = self.check(dict(data), "", ctx)
        return result, ctx.problems


class ArrayOf(Field):
    """An array of tables (``[[ports]]``), each validated by ``item``."""

    def __init__(self, item: Section, doc: str = "", *, min_items: int = 0,
                 default: Any = REQUIRED) -> None:
        self.item = item
        self.doc = doc
        self.min_items = min_items
        self.default = default

    def type_label(self) -> str:
        return "array of tables"

    def check(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            ctx.add(path, f"expected an array of tables, got {_type_name(value)}")
            return None
        if len(value) < self.min_items:
            ctx.add(path, f"needs at least {self.min_items} entr"
                          f"{'y' if self.min_items == 1 else 'ies'}")
        return [self.item.check(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]


class PluginRef(Field):
    """A table selecting a plugin by ``plugin = "name"``; its other keys are the plugin's own.

    The static pass only checks the shape; :mod:`sepgw.config.loader` resolves the plugin and
    validates the remaining keys against the plugin's declared options.
    """

    def __init__(self, kind: str, doc: str = "", *, optional: bool = False) -> None:
        self.kind = kind
        self.doc = doc
        self.default = None if optional else REQUIRED

    def type_label(self) -> str:
        return f"table selecting {_a(self.kind)} plugin"

    def check(self, value: Any, path: str, ctx: Context) -> Any:
        if isinstance(value, str):
            value = {"plugin": value}
        if not isinstance(value, dict):
            ctx.add(path, f"expected a table with plugin = \"<name>\", got {_type_name(value)}")
            return None
        name = value.get("plugin")
        if not isinstance(name, str) or not name:
            ctx.add(join(path, "plugin"), f"required name of {_a(self.kind)} plugin is missing")
            return None
        return {"plugin": name, "options": {k: v for k, v in value.items() if k != "plugin"},
                "kind": self.kind, "path": path}


def _a(word: str) -> str:
    """``word`` with its indefinite article."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _unknown_key(key: str, known: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    allowed = ", ".join(sorted(known)) or "none"
    return f"unknown key{hint}; allowed keys: {allowed}"
