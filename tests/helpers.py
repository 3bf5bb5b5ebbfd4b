"""Shared test helpers: temporary configurations and drop-in plugin files."""

from __future__ import annotations

import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ETC = REPO / "etc"

GOOD_METER = '''
from zope.interface import implementer
from sepgw.interfaces import IMeter
from sepgw.plugin import PluginFactory, Section, Key

@implementer(IMeter)
class DropInMeter:
    interval = 1.0
    error = None
    def __init__(self, scale):
        self.scale = scale
    def add_listener(self, listener):
        pass
    def start(self):
        pass
    def stop(self):
        pass

meter = PluginFactory(kind="meter", name="{name}", description="A drop-in meter for tests.",
                      options=Section({{"scale": Key("float", 1.0, "Scale factor.")}}),
                      build=lambda config, context: DropInMeter(config["scale"]))
'''


def write_plugin(directory: Path, module: str, source: str) -> Path:
    """Write a drop-in plugin module and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}.py"
    path.write_text(textwrap.dedent(source))
    return path


def evse_config(directory: Path, extra: str = "", *, pki: Path | None = None,
                port: int = 8443, meter: str = '{ plugin = "simulated" }',
                plugin_dirs: list[str] | None = None) -> Path:
    """Write a minimal valid EVSE configuration into ``directory``; return its path."""
    pki = pki or directory / "pki"
    dirs = ", ".join(f'"{d}"' for d in (plugin_dirs or []))
    text = f'''
[gateway]
state_dir = "state"
plugin_dirs = [{dirs}]

[tls]
cert = "{pki}/evse.pem"
key = "{pki}/evse.key"
ca = ["{pki}/serca.pem"]

[server]
addresses = ["::1"]
port = {port}

[site]
max_w = 7200.0
max_var = 3600.0
max_var_neg = 3600.0
max_v = 264.0
min_v = 211.0
v_ref = 240.0
max_charge_rate_w = 7200.0
max_discharge_rate_w = 7200.0

[[ports]]
name = "port1"
transport = {{ plugin = "loopback" }}
contactor = {{ plugin = "simulated" }}
meter = {meter}
{extra}
'''
    path = directory / "sepgw.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


_PKI: Path | None = None


def shared_pki() -> Path:
    """A test PKI (``sepgw pki init``) made once per test process, removed at exit."""
    global _PKI
    if _PKI is None:
        import atexit
        import shutil
        import tempfile

        from sepgw.security.pki import init_pki

        top = Path(tempfile.mkdtemp(prefix="sepgw-test-pki-"))
        atexit.register(shutil.rmtree, top, True)
        init_pki(top / "pki")
        _PKI = top / "pki"
    return _PKI
