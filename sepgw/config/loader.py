"""Load and validate a configuration file before anything starts.

:func:`load` reads the TOML, checks it against the role's schema, discovers the plugins of
the bundled directory and the configured drop-in directories, resolves every plugin the
configuration names and validates that plugin's own options. Every problem of all three
passes is collected; if there is any, :class:`ConfigError` lists them all with their key
paths. ``sepgw check-config`` and the twistd service makers share this code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from sepgw.config.schema import ConfigError, Context, Problem, Section
from sepgw.config.sections import EVSE_SCHEMA, PEV_SCHEMA
from sepgw.registry import PluginInfo, PluginLookupError, PluginRegistry, bundled_plugin_dir

Role = Literal["evse", "pev"]

SCHEMAS: dict[str, Section] = {"evse": EVSE_SCHEMA, "pev": PEV_SCHEMA}
DEFAULT_PATHS: dict[str, Path] = {
    "evse": Path("/etc/sepgw/sepgw.toml"),
    "pev": Path("/etc/sepgw/pev.toml"),
}


@dataclass(frozen=True)
class ResolvedPlugin:
    """A configured plugin: where it is used, its factory and its validated options."""

    path: str
    info: PluginInfo
    options: dict[str, Any]


@dataclass(frozen=True)
class Config:
    """A validated configuration."""

    role: Role
    source: Path
    data: dict[str, Any]
    """The normalised document: defaults filled in, paths absolute, plugin references
    replaced by :class:`ResolvedPlugin`."""
    registry: PluginRegistry

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def general(self) -> dict[str, Any]:
        """The ``[gateway]`` (EVSE) or ``[pev]`` (PEV) section."""
        return self.data["gateway" if self.role == "evse" else "pev"]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a ConfigError naming the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem("", "file not found")])
    except OSError as e:
        raise ConfigError(str(path), [Problem("", f"cannot read: {e.strerror or e}")])
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [Problem("", f"invalid TOML: {e}")])


def load(path: Path | str, role: Role) -> Config:
    """Read and validate ``path`` for ``role``; raise ConfigError listing every problem."""
    path = Path(path)
    raw = read_toml(path)
    return validate(raw, role, source=path)


def validate(raw: dict[str, Any], role: Role, source: Path) -> Config:
    """Validate an already-parsed document (see :func:`load`)."""
    base_dir = source.resolve().parent
    data, problems = SCHEMAS[role].validate(raw, base_dir=base_dir)
    general = data.get("gateway" if role == "evse" else "pev") or {}
    dirs = [bundled_plugin_dir(), *(general.get("plugin_dirs") or [])]
    registry = PluginRegistry.discover(dirs)
    for broken in registry.broken:
        if broken.reason == "plugin directory does not exist" and broken.source != dirs[0]:
            index = dirs.index(broken.source) - 1
            problems.append(Problem(
                f"{'gateway' if role == 'evse' else 'pev'}.plugin_dirs[{index}]",
                f"{broken.source} does not exist or is not a directory"))
    for holder, key, ref in list(_plugin_refs(data)):
        holder[key] = _resolve(ref, registry, base_dir, problems)
    if problems:
        raise ConfigError(str(source), problems)
    return Config(role=role, source=source, data=data, registry=registry)


def _plugin_refs(node: Any) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    """Every plugin reference in the validated document, with its holder and key."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for key, value in items:
        if isinstance(value, dict) and set(value) == {"plugin", "options", "kind", "path"}:
            yield node, key, value
        elif isinstance(value, (dict, list)):
            yield from _plugin_refs(value)


def _resolve(ref: dict[str, Any], registry: PluginRegistry, base_dir: Path,
             problems: list[Problem]) -> ResolvedPlugin | None:
    try:
        info = registry.find(ref["kind"], ref["plugin"])
    except PluginLookupError as e:
        problems.append(Problem(ref["path"], str(e)))
        return None
    ctx = Context(base_dir=base_dir)
    options = info.factory.options.check(ref["options"], ref["path"], ctx)
    problems.extend(ctx.problems)
    return ResolvedPlugin(ref["path"], info, options)
