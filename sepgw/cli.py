"""The ``sepgw`` command: plugins, check-config, pki.

``sepgw plugins [--config FILE] [--keys]``
    list the plugins discovered in the bundled directory and the configured drop-ins.
``sepgw check-config FILE [--role evse|pev]``
    validate a configuration exactly as start-up does; exit 1 with every problem.
``sepgw pki ...``
    test PKI for labs and the demo (see ``sepgw pki --help``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from sepgw.config import ConfigError, load
from sepgw.config.loader import read_toml
from sepgw.config.schema import Section
from sepgw.registry import PluginRegistry, bundled_plugin_dir


def _guess_role(path: Path) -> str:
    try:
        raw = read_toml(path)
    except ConfigError:
        return "evse"
    return "pev" if "pev" in raw else "evse"


def check_config(path: Path, role: str | None, out: TextIO, err: TextIO) -> int:
    role = role or _guess_role(path)
    try:
        config = load(path, role)  # type: ignore[arg-type]
    except ConfigError as e:
        err.write(f"{e}\n")
        return 1
    from twisted.internet.task import Clock

    from sepgw.interfaces import BuildContext
    from sepgw.service.components import ComponentError, build_component

    plugins = _used_plugins(config.data)
    failed = 0
    for plugin in plugins:
        # Build (never start) each component to check it provides its kind's interface.
        try:
            build_component(plugin, BuildContext(reactor=Clock(), name=plugin.path))
        except ComponentError as e:
            err.write(f"{e}\n")
            failed += 1
    for broken in config.registry.broken:
        if broken.source.suffix == ".py":
            err.write(f"warning: unusable plugin module {broken.source}: {broken.reason}\n")
    if failed:
        return 1
    out.write(f"{path}: valid {role.upper()} configuration ({len(plugins)} plugin(s) "
              "configured)\n")
    return 0


def _used_plugins(node: object) -> list[Any]:
    from sepgw.config import ResolvedPlugin

    found: list[Any] = []
    items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for value in items:
        if isinstance(value, ResolvedPlugin):
            found.append(value)
        else:
            found.extend(_used_plugins(value))
    return found


def list_plugins(config: Path | None, show_keys: bool, out: TextIO, err: TextIO) -> int:
    dirs = [bundled_plugin_dir()]
    if config is not None:
        try:
            raw = read_toml(config)
        except ConfigError as e:
            err.write(f"{e}\n")
            return 1
        general = raw.get("gateway") or raw.get("pev") or {}
        base = config.resolve().parent
        dirs += [Path(p) if Path(p).is_absolute() else base / p
                 for p in general.get("plugin_dirs", []) if isinstance(p, str)]
    registry = PluginRegistry.discover(dirs)
    rows = sorted(registry.plugins, key=lambda p: (p.kind.value, p.name))
    width = max([len(p.name) for p in rows] + [4])
    out.write(f"{'KIND':<10} {'NAME':<{width}} SOURCE\n")
    for p in rows:
        out.write(f"{p.kind.value:<10} {p.name:<{width}} {p.source}\n")
        out.write(f"{'':<10} {'':<{width}}   {p.description}\n")
        if show_keys:
            for line in describe_options(p.factory.options):
                out.write(f"{'':<10} {'':<{width}}   {line}\n")
    for b in registry.broken:
        err.write(f"unusable: {b.source}: {b.reason}\n")
    return 0


def describe_options(section: Section, prefix: str = "") -> list[str]:
    """One line per option: name, type, default, doc."""
    from sepgw.config.schema import REQUIRED

    lines = []
    for name, spec in section.keys.items():
        default = "required" if spec.default is REQUIRED else f"default {spec.default!r}"
        lines.append(f"{prefix}{name} ({spec.type_label()}, {default}): {spec.doc}")
    return lines


def control(path: Path, words: list[str], out: TextIO, err: TextIO) -> int:
    """Send one operator command to a running EVSE and print its answer."""
    import json
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall((" ".join(words) + "\n").encode("utf-8"))
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        err.write(f"sepgw ctl: cannot reach {path}: {e.strerror or e}\n")
        return 1
    answer = json.loads(data or b"{}")
    if "error" in answer:
        err.write(f"sepgw ctl: {answer['error']}\n")
        return 1
    out.write(json.dumps(answer, indent=2) + "\n")
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that prints to the streams main() was given."""

    out: TextIO = sys.stdout
    err: TextIO = sys.stderr

    def _print_message(self, message: str, file: object = None) -> None:
        if message:
            (self.err if file is sys.stderr else self.out).write(message)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "pki":
        from sepgw.security.pki_cli import main as pki_main

        return pki_main(argv[1:], stdout=out, stderr=err)
    parser_class = type("Parser", (_Parser,), {"out": out, "err": err})
    parser = parser_class(prog="sepgw", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=parser_class)
    p = sub.add_parser("plugins", help="list discovered plugins")
    p.add_argument("--config", type=Path, help="also search this config's plugin_dirs")
    p.add_argument("--keys", action="store_true", help="show each plugin's config keys")
    c = sub.add_parser("check-config", help="validate a configuration file")
    c.add_argument("file", type=Path)
    c.add_argument("--role", choices=("evse", "pev"),
                   help="evse or pev (default: pev if the file has a [pev] table)")
    sub.add_parser("pki", help="test PKI: init, pev, show (sepgw pki --help)")
    k = sub.add_parser("ctl", help="operator commands to a running EVSE, PEV or lab DME")
    k.add_argument("--socket", type=Path, required=True,
                   help="the [operator] socket of the EVSE's, PEV's or DME's configuration")
    k.add_argument("words", nargs="+", metavar="COMMAND",
                   help="EVSE: status | fixed-w PORT PERCENT | clear-fixed-w PORT | "
                        "clear-fault PORT | help; "
                        "PEV: status | sleep | wake | help; "
                        "DME: status | devices | controls | add F=V... [duration=S] | "
                        "supersede MRID F=V... | cancel MRID | default F=V...|clear | "
                        "readings [N] [MUP] | responses [N] | help")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.command == "plugins":
        return list_plugins(args.config, args.keys, out, err)
    if args.command == "ctl":
        return control(args.socket, args.words, out, err)
    return check_config(args.file, args.role, out, err)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
