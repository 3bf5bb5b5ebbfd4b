"""Namespace under which drop-in plugin modules are imported.

:mod:`sepgw.registry` points this package's ``__path__`` at the bundled ``plugins/``
directory and the configured drop-in directories before asking Twisted for plugins, so a
module ``foo.py`` in any of them is imported as ``sepgw.dropins.foo``.
"""
