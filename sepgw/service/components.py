"""Building configured plugin components, verified against their kind's interface."""

from __future__ import annotations

from typing import Any

from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from sepgw.config import ResolvedPlugin
from sepgw.interfaces import KIND_INTERFACES, OPTIONAL_INTERFACES, BuildContext


class ComponentError(Exception):
    """A configured plugin could not build a working component; the message names it."""


def build_component(plugin: ResolvedPlugin, context: BuildContext) -> Any:
    """Build the component of ``plugin`` and check it provides its kind's interface."""
    info = plugin.info
    where = f"{plugin.path}: {info.kind.value} plugin {info.name!r} ({info.source})"
    try:
        component = info.factory.build(plugin.options, context)
    except Exception as e:
        raise ComponentError(f"{where} failed to build: {type(e).__name__}: {e}") from e
    interfaces = [KIND_INTERFACES[info.kind]] + [
        extra for extra in OPTIONAL_INTERFACES.get(info.kind, ()) if extra.providedBy(component)]
    for interface in interfaces:
        try:
            verifyObject(interface, component)
        except Invalid as e:
            detail = " ".join(str(e).split())
            raise ComponentError(f"{where} built {component!r}, which does not provide "
                                 f"{interface.__name__}: {detail}") from e
    return component
