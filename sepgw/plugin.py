"""What a plugin module needs: :class:`PluginFactory` and the schema classes for options.

A drop-in plugin is a ``.py`` file with one or more module-level factories::

    from sepgw.plugin import PluginFactory, Section, Key

    def build(config, context):
        return MyMeter(context.reactor, interval=config["interval"])

    meter = PluginFactory(
        kind="meter", name="my-meter", description="Reads my meter over Modbus/TCP.",
        options=Section({"interval": Key("float", 1.0, "Seconds between samples.", min=0.1)}),
        build=build,
    )

See ``docs/plugins.md`` for the whole guide.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from zope.interface import implementer

from sepgw.config.schema import ArrayOf, Key, Section
from sepgw.interfaces import BuildContext, IPluginFactory, PluginKind

__all__ = ["PluginFactory", "Section", "Key", "ArrayOf", "BuildContext", "PluginKind"]


@implementer(IPluginFactory)
class PluginFactory:
    """A plugin factory made from a build function; provides IPluginFactory."""

    def __init__(
        self,
        *,
        kind: PluginKind | str,
        name: str,
        description: str,
        build: Callable[[Mapping[str, Any], BuildContext], Any],
        options: Section | None = None,
    ) -> None:
        self.kind = PluginKind(kind)
        self.name = name
        self.description = description
        self.options = options if options is not None else Section({})
        self._build = build

    def build(self, config: Mapping[str, Any], context: BuildContext) -> Any:
        return self._build(config, context)

    def __repr__(self) -> str:
        return f"<PluginFactory {self.kind.value}:{self.name}>"
