"""Discovery of drop-in plugins with :func:`twisted.plugin.getPlugins`.

Plugin modules live in the bundled ``plugins/`` directory and in the drop-in directories a
configuration names. Each module exposes, at module level, objects providing
:class:`sepgw.interfaces.IPluginFactory`. The directories are searched as the ``__path__``
of the :mod:`sepgw.dropins` package, so ``foo.py`` is imported as ``sepgw.dropins.foo``.

Nothing is skipped silently: modules that fail to import and objects that claim to be
plugin factories but do not verify are recorded with their file, so that a configuration
that names them fails with a message naming the plugin and the file.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

import sepgw
import sepgw.dropins
from sepgw.interfaces import IPluginFactory, PluginKind


def bundled_plugin_dir() -> Path:
    """The directory of the plugins shipped with sepgw.

    In a source checkout (or an editable install) it is ``plugins/`` next to the package;
    a regular install puts the same files in ``<prefix>/share/sepgw/plugins``.
    """
    source = Path(sepgw.__file__).resolve().parent.parent / "plugins"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "sepgw" / "plugins"


@dataclass(frozen=True)
class PluginInfo:
    """A discovered, verified plugin factory."""

    kind: PluginKind
    name: str
    description: str
    source: Path
    factory: Any


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin module that could not be used, and why."""

    source: Path
    reason: str


class PluginLookupError(LookupError):
    """A configured plugin cannot be used; the message names the plugin and the file."""


@dataclass
class PluginRegistry:
    """The plugins found in a list of directories."""

    dirs: tuple[Path, ...]
    plugins: list[PluginInfo] = field(default_factory=list)
    broken: list[BrokenPlugin] = field(default_factory=list)

    log = Logger()

    @classmethod
    def discover(cls, dirs: Iterable[Path]) -> "PluginRegistry":
        """Find every plugin factory in ``dirs`` (missing directories are recorded)."""
        registry = cls(dirs=tuple(Path(d).absolute() for d in dirs))
        registry._scan()
        return registry

    def _scan(self) -> None:
        existing = []
        for d in self.dirs:
            if d.is_dir():
                existing.append(d)
            else:
                self.broken.append(BrokenPlugin(d, "plugin directory does not exist"))
        clashes = self._check_name_clashes(existing)
        for name in [m for m in sys.modules if m.startswith("sepgw.dropins.")]:
            del sys.modules[name]
            vars(sepgw.dropins).pop(name.rpartition(".")[2], None)
        sepgw.dropins.__path__[:] = [str(d) for d in existing]

        # Import every module first, so that one that fails is recorded with its file and
        # replaced by an empty placeholder: getPlugins then sees no plugins in it instead of
        # logging a traceback, and a configuration naming its plugin fails with the reason.
        for d in existing:
            for f in sorted(d.glob("*.py")):
                if f.stem != "__init__" and f not in clashes:
                    self._import(f, existing)
        found = list(getPlugins(IPluginFactory, sepgw.dropins))
        owners = {id(obj): Path(mod.__file__ or "<unknown>")
                   for name, mod in list(sys.modules.items())
                   if name.startswith("sepgw.dropins.") and mod is not None
                   for obj in vars(mod).values()}
        for factory in found:
            self._add(factory, owners.get(id(factory), Path("<unknown>")))

    def _import(self, source: Path, dirs: Sequence[Path]) -> None:
        name = f"sepgw.dropins.{source.stem}"
        try:
            importlib.import_module(name)
        except BaseException as e:  # a plugin may raise anything, even SystemExit
            if isinstance(e, KeyboardInterrupt):
                raise
            self.broken.append(BrokenPlugin(source, f"failed to import: {_describe(e)}"))
            placeholder = types.ModuleType(name, "placeholder for a module that failed to import")
            placeholder.__file__ = str(source)
            sys.modules[name] = placeholder
            setattr(sepgw.dropins, source.stem, placeholder)

    def _check_name_clashes(self, dirs: Sequence[Path]) -> set[Path]:
        clashes: set[Path] = set()
        seen: dict[str, Path] = {}
        for d in dirs:
            for f in sorted(d.glob("*.py")):
                if f.stem in seen:
                    self.broken.append(BrokenPlugin(
                        f, f"module name {f.stem!r} is also used by {seen[f.stem]}; only one "
                           "of them can be loaded: rename one"))
                    clashes.add(f)
                else:
                    seen[f.stem] = f
        return clashes

    def _add(self, factory: Any, source: Path) -> None:
        try:
            verifyObject(IPluginFactory, factory)
            kind = PluginKind(factory.kind)
        except (Invalid, ValueError) as e:
            name = getattr(factory, "name", "?")
            self.broken.append(BrokenPlugin(
                source, f"plugin {name!r} does not provide IPluginFactory: {_one_line(e)}"))
            return
        self.plugins.append(PluginInfo(kind, str(factory.name), str(factory.description),
                                       source, factory))

    def where(self) -> str:
        """The searched directories, for messages."""
        return ", ".join(str(d) for d in self.dirs) or "no directories"

    def of_kind(self, kind: PluginKind) -> list[PluginInfo]:
        return [p for p in self.plugins if p.kind == kind]

    def find(self, kind: PluginKind | str, name: str) -> PluginInfo:
        """The plugin of ``kind`` called ``name``, or PluginLookupError saying why not."""
        kind = PluginKind(kind)
        matches = [p for p in self.plugins if p.name == name and p.kind == kind]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            files = ", ".join(str(p.source) for p in matches)
            raise PluginLookupError(f"{kind.value} plugin {name!r} is defined more than once: "
                                    f"{files}")
        other = [p for p in self.plugins if p.name == name]
        if other:
            raise PluginLookupError(
                f"plugin {name!r} in {other[0].source} is a {other[0].kind.value} plugin, "
                f"not a {kind.value} plugin")
        message = f"{kind.value} plugin {name!r} not found in {self.where()}"
        suspects = [b for b in self.broken if b.source.stem == name] or [
            b for b in self.broken if b.source.suffix == ".py"]
        if suspects:
            message += "; unusable plugin modules: " + "; ".join(
                f"{b.source}: {b.reason}" for b in suspects)
        raise PluginLookupError(message)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
