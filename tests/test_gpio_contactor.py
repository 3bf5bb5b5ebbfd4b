"""Tests of the GPIO contactor (``plugins/gpio_contactor.py``): at unit level against a fake
libgpiod that models the lines' electrical levels (active-low inverted as the kernel does),
with the real ``gpiod`` bindings' LineSettings, and against the kernel's gpio-sim where the
machine has it."""

from __future__ import annotations

import enum
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from sepgw.interfaces import (BuildContext, ContactorRefused, ContactorState, IContactor,
                              IContactorFeedback)
from sepgw.registry import PluginRegistry, bundled_plugin_dir

_MODULE: Any = None


def plugin() -> Any:
    """The plugin module, imported as discovery imports it."""
    global _MODULE
    if _MODULE is None:
        PluginRegistry.discover([bundled_plugin_dir()]).find("contactor", "gpio")
        _MODULE = importlib.import_module("sepgw.dropins.gpio_contactor")
    return _MODULE


# -- a fake libgpiod 2 -------------------------------------------------------------------------


class Direction(enum.Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


class Bias(enum.Enum):
    AS_IS = 1
    UNKNOWN = 2
    DISABLED = 3
    PULL_UP = 4
    PULL_DOWN = 5


class LineSettings:
    def __init__(self, direction: Direction = Direction.AS_IS, active_low: bool = False,
                 bias: Bias = Bias.AS_IS, output_value: Value = Value.INACTIVE) -> None:
        self.direction = direction
        self.active_low = active_low
        self.bias = bias
        self.output_value = output_value


class Board:
    """Electrical levels of a chip's lines (1 high, 0 low) and a contactor wired to them:
    the coil line energizes the coil when at ``coil_on_level``; the auxiliary line reads
    ``aux_closed_level`` while the contacts are closed. ``welded`` keeps them closed;
    ``lag`` seconds pass between the coil switching and the contacts following."""

    def __init__(self, clock: Clock, coil: int = 3, aux: int = 5, coil_on_level: int = 1,
                 aux_closed_level: int = 1, lag: float = 0.02) -> None:
        self.clock = clock
        self.coil, self.aux = coil, aux
        self.coil_on_level, self.aux_closed_level = coil_on_level, aux_closed_level
        self.lag = lag
        self.levels = {coil: 1 - coil_on_level}
        self.contacts_closed = False
        self.welded = False
        self.requests: list[FakeRequest] = []
        self.fail_get = False
        self.fail_request: Exception | None = None

    def energized(self) -> bool:
        return self.levels.get(self.coil) == self.coil_on_level

    def coil_changed(self) -> None:
        def follow() -> None:
            if not self.welded:
                self.contacts_closed = self.energized()
        self.clock.callLater(self.lag, follow)

    def aux_level(self) -> int:
        return self.aux_closed_level if self.contacts_closed else 1 - self.aux_closed_level

    def request_lines(self, path: str, config: dict[Any, Any], consumer: str | None = None,
                      **_: Any) -> "FakeRequest":
        if self.fail_request is not None:
            raise self.fail_request
        request = FakeRequest(self, path, config, consumer)
        for offset, settings in config.items():
            if settings.direction is Direction.OUTPUT:
                level = settings.output_value is Value.ACTIVE
                self.levels[offset] = int(level != settings.active_low)
        self.requests.append(request)
        return request

    def lib(self) -> Any:
        return SimpleNamespace(request_lines=self.request_lines, LineSettings=LineSettings,
                               line=SimpleNamespace(Direction=Direction, Value=Value,
                                                    Bias=Bias))


class FakeRequest:
    def __init__(self, board: Board, path: str, config: dict[Any, Any],
                 consumer: str | None) -> None:
        self.board, self.path, self.config, self.consumer = board, path, config, consumer
        self.released = False
        self.log: list[tuple[str, Any]] = []

    def _logical(self, offset: int, level: int) -> Value:
        active = bool(level) != self.config[offset].active_low
        return Value.ACTIVE if active else Value.INACTIVE

    def get_value(self, offset: int) -> Value:
        assert not self.released, "used after release"
        if self.board.fail_get:
            raise OSError(5, "Input/output error")
        level = self.board.aux_level() if offset == self.board.aux else self.board.levels[offset]
        return self._logical(offset, level)

    def set_value(self, offset: int, value: Value) -> None:
        assert not self.released, "used after release"
        assert self.config[offset].direction is Direction.OUTPUT
        self.board.levels[offset] = int((value is Value.ACTIVE) != self.config[offset].active_low)
        self.log.append(("set", self.board.levels[offset]))
        self.board.coil_changed()

    def release(self) -> None:
        self.log.append(("release", None))
        self.released = True


def options(**values: Any) -> dict[str, Any]:
    validated, problems = plugin().contactor.options.validate(values)
    assert not problems, problems
    return dict(validated)


# -- unit tests ------------------------------------------------------------------------------


class GpioContactorTests(SynchronousTestCase):
    def make(self, board: Board | None = None, **config: Any) -> tuple[Any, Board]:
        self.clock = Clock()
        board = board or Board(self.clock)
        board.clock = self.clock
        config.setdefault("coil", board.coil)
        c = plugin().build_contactor(options(**config),
                                     BuildContext(reactor=self.clock, name="ports[0].contactor"),
                                     lib=board.lib())
        return c, board

    def fired(self, d: Any) -> Any:
        return self.successResultOf(d)

    def test_provides_interfaces(self) -> None:
        """The built component provides IContactor and IContactorFeedback; ``feedback`` says
        whether an auxiliary line is configured."""
        c, _ = self.make(aux=5)
        self.assertTrue(verifyObject(IContactor, c))
        self.assertTrue(verifyObject(IContactorFeedback, c))
        self.assertTrue(c.feedback)
        self.assertFalse(self.make()[0].feedback)

    def test_requested_with_coil_off(self) -> None:
        """start() requests the coil as an output that is inactive from the first instant
        (de-energized), the aux as an input with the configured bias, on the configured chip."""
        c, board = self.make(aux=5, chip="/dev/gpiochip7", aux_bias="pull-up")
        c.start()
        [request] = board.requests
        self.assertEqual(request.path, "/dev/gpiochip7")
        self.assertEqual(request.config[3].direction, Direction.OUTPUT)
        self.assertEqual(request.config[3].output_value, Value.INACTIVE)
        self.assertEqual((request.config[5].direction, request.config[5].bias),
                         (Direction.INPUT, Bias.PULL_UP))
        self.assertFalse(board.energized())
        self.assertEqual((c.state, c.sensed), (ContactorState.open, ContactorState.open))
        c.stop()

    def test_not_allowed_never_closes(self) -> None:
        """While closing is not allowed, close() fails with ContactorRefused and the coil is
        never energized (the IContactor contract)."""
        c, board = self.make(aux=5)
        c.start()
        self.failureResultOf(c.close(), ContactorRefused)
        self.clock.advance(1)
        self.assertFalse(board.energized())
        self.assertEqual(c.state, ContactorState.open)
        c.stop()

    def test_close_confirmed_by_aux_then_open(self) -> None:
        """With an auxiliary contact, close() fires once the contacts are sensed closed, and
        open() once they are sensed open."""
        c, board = self.make(aux=5)
        c.start()
        c.set_allowed(True)
        d = c.close()
        self.assertTrue(board.energized())
        self.assertNoResult(d)
        self.clock.advance(0.05)
        self.assertEqual(self.fired(d), ContactorState.closed)
        self.assertEqual(c.sensed, ContactorState.closed)
        d = c.open()
        self.assertFalse(board.energized())
        self.assertNoResult(d)
        self.clock.advance(0.05)
        self.assertEqual(self.fired(d), ContactorState.open)
        c.stop()

    def test_close_without_feedback(self) -> None:
        """Without an auxiliary line the state is the commanded one once the coil line is
        driven, and ``sensed`` stays unknown."""
        c, board = self.make()
        c.start()
        c.set_allowed(True)
        self.assertEqual(self.fired(c.close()), ContactorState.closed)
        self.assertTrue(board.energized())
        self.assertEqual(c.sensed, ContactorState.unknown)
        self.assertEqual(self.fired(c.open()), ContactorState.open)
        self.assertFalse(board.energized())
        c.stop()

    def test_active_low_coil_and_aux(self) -> None:
        """Active-low options: a coil energized by a low level and an aux contact that pulls
        the input low when closed are driven and read correctly (requested active-low)."""
        clock = Clock()
        board = Board(clock, coil_on_level=0, aux_closed_level=0)
        c, board = self.make(board, aux=5, coil_active_low=True, aux_active_low=True,
                             aux_bias="pull-up")
        c.start()
        self.assertEqual(board.levels[3], 1)  # high: coil off
        self.assertTrue(board.requests[0].config[3].active_low)
        self.assertTrue(board.requests[0].config[5].active_low)
        self.assertEqual(c.sensed, ContactorState.open)
        c.set_allowed(True)
        d = c.close()
        self.assertEqual(board.levels[3], 0)
        self.clock.advance(0.05)
        self.assertEqual(self.fired(d), ContactorState.closed)
        c.stop()
        self.assertEqual(board.levels[3], 1)

    def test_forbid_cancels_pending_close(self) -> None:
        """set_allowed(False) while a close waits for its confirmation de-energizes the coil
        at once and fails the close with ContactorRefused."""
        c, board = self.make(aux=5)
        c.start()
        c.set_allowed(True)
        d = c.close()
        c.set_allowed(False)
        self.assertFalse(board.energized())
        self.failureResultOf(d, ContactorRefused)
        self.clock.advance(1)
        self.assertFalse(board.contacts_closed)
        c.stop()

    def test_close_not_sensed_fails_and_de_energizes(self) -> None:
        """A close the auxiliary contact does not confirm within confirm_s fails naming the
        chip, lines and reading, and the coil is de-energized."""
        clock = Clock()
        board = Board(clock, lag=10)  # contacts never follow within the deadline
        c, board = self.make(board, aux=5, confirm_s=0.2)
        c.start()
        c.set_allowed(True)
        d = c.close()
        self.clock.pump([0.05] * 5)
        f = self.failureResultOf(d, plugin().ContactorFailed)
        self.assertEqual(str(f.value), "ports[0].contactor: /dev/gpiochip0 line 3 driven active "
                         "but the auxiliary contact on /dev/gpiochip0 line 5 still reads open "
                         "after 0.2 s")
        self.assertFalse(board.energized())
        self.flushLoggedErrors()
        c.stop()

    def test_welded_open_reports_closed(self) -> None:
        """A welded contactor: open() de-energizes the coil but fires ``closed`` (sensed) after
        confirm_s, and ``sensed`` keeps reporting closed for the gatekeeper's weld check."""
        c, board = self.make(aux=5, confirm_s=0.2)
        c.start()
        c.set_allowed(True)
        d = c.close()
        self.clock.advance(0.05)
        self.fired(d)
        board.welded = True
        d = c.open()
        self.assertFalse(board.energized())
        self.clock.pump([0.05] * 5)
        self.assertEqual(self.fired(d), ContactorState.closed)
        self.assertEqual(c.sensed, ContactorState.closed)
        c.stop()

    def test_coil_found_active_while_forbidden(self) -> None:
        """A coil line found active while closing is not allowed (another writer, a glitch) is
        driven inactive on the next poll."""
        c, board = self.make(aux=5, interval=0.05)
        c.start()
        board.levels[3] = 1
        self.clock.advance(0.05)
        self.assertFalse(board.energized())
        c.stop()

    def test_unreadable_aux_is_unknown(self) -> None:
        """An input that cannot be read makes ``sensed`` and ``state`` unknown, with the error
        naming the line; a later good reading restores them."""
        c, board = self.make(aux=5, interval=0.05)
        c.start()
        board.fail_get = True
        self.clock.advance(0.05)
        self.assertEqual((c.sensed, c.state), (ContactorState.unknown, ContactorState.unknown))
        self.assertIn("/dev/gpiochip0 line 3", c.error)
        board.fail_get = False
        self.clock.advance(0.05)
        self.assertEqual(c.sensed, ContactorState.open)
        self.assertIsNone(c.error)
        c.stop()

    def test_stop_de_energizes_then_releases(self) -> None:
        """stop() drives the coil inactive before releasing the lines, even while closed and
        allowed; stop before start is harmless."""
        c, board = self.make(aux=5)
        c.stop()  # never started
        c.start()
        c.set_allowed(True)
        self.clock.advance(0.05)
        c.close()
        self.clock.advance(0.05)
        c.stop()
        request = board.requests[0]
        self.assertEqual(request.log[-2:], [("set", 0), ("release", None)])
        self.assertTrue(request.released)
        self.assertFalse(board.energized())
        self.assertFalse(c.allowed)
        self.clock.advance(1)  # nothing touches the released request

    def test_request_failure_names_chip_and_lines(self) -> None:
        """A line that cannot be requested stops start-up with the chip, lines and cause."""
        c, board = self.make(aux=5)
        board.fail_request = OSError(16, "Device or resource busy")
        with self.assertRaises(plugin().ContactorFailed) as cm:
            c.start()
        self.assertEqual(str(cm.exception), "ports[0].contactor: cannot request /dev/gpiochip0 "
                         "lines 3 and 5: OSError: [Errno 16] Device or resource busy")

    def test_close_before_start(self) -> None:
        """close() before start() fails (no line to drive) rather than pretending."""
        c, _ = self.make()
        c.set_allowed(True)
        self.failureResultOf(c.close(), plugin().ContactorFailed)

    def test_options(self) -> None:
        """The coil line is required; aux equal to coil and a bad bias are refused with the
        key named."""
        factory = plugin().contactor
        _, problems = factory.options.validate({})
        self.assertEqual([(p.path, p.reason) for p in problems],
                         [("coil", "required integer is missing")])
        _, problems = factory.options.validate({"coil": 4, "aux": 4})
        self.assertEqual([p.path for p in problems], ["aux"])
        _, problems = factory.options.validate({"coil": 4, "aux_bias": "up"})
        self.assertEqual([p.path for p in problems], ["aux_bias"])

    def test_missing_gpiod_names_extra(self) -> None:
        """Without the gpiod module, building names `pip install sepgw[gpio]`."""
        from sepgw.plugin import MissingDependency

        saved = sys.modules.get("gpiod", False)
        sys.modules["gpiod"] = None  # type: ignore[assignment]  # import raises ImportError
        try:
            with self.assertRaises(MissingDependency) as cm:
                plugin().build_contactor(options(coil=1),
                                         BuildContext(reactor=Clock(), name="x"))
        finally:
            if saved is False:
                del sys.modules["gpiod"]
            else:
                sys.modules["gpiod"] = saved  # type: ignore[assignment]
        self.assertIn("pip install sepgw[gpio]", str(cm.exception))
        self.assertIn("'gpiod'", str(cm.exception))


class RealBindingsTests(SynchronousTestCase):
    """The LineSettings the plugin builds are accepted by the real libgpiod 2 bindings."""

    def setUp(self) -> None:
        try:
            self.gpiod = importlib.import_module("gpiod")
        except ImportError:
            raise SkipTest("gpiod is not installed (pip install sepgw[gpio])")

    def test_settings_accepted(self) -> None:
        """Requesting through the real gpiod.LineSettings and enums gives an output inactive
        at request, active-low where asked, and a pulled-up input."""
        gpiod = self.gpiod
        seen: dict[str, Any] = {}

        def request_lines(path: str, config: Any, consumer: str | None = None) -> Any:
            seen.update(path=path, config=config, consumer=consumer)
            return SimpleNamespace(get_value=lambda o: gpiod.line.Value.INACTIVE,
                                   set_value=lambda o, v: None, release=lambda: None)

        lib = SimpleNamespace(request_lines=request_lines, LineSettings=gpiod.LineSettings,
                              line=gpiod.line)
        c = plugin().build_contactor(options(coil=2, aux=6, coil_active_low=True,
                                             aux_bias="pull-up"),
                                     BuildContext(reactor=Clock(), name="p"), lib=lib)
        c.start()
        coil, aux = seen["config"][2], seen["config"][6]
        self.assertEqual((coil.direction, coil.output_value, coil.active_low),
                         (gpiod.line.Direction.OUTPUT, gpiod.line.Value.INACTIVE, True))
        self.assertEqual((aux.direction, aux.bias, aux.active_low),
                         (gpiod.line.Direction.INPUT, gpiod.line.Bias.PULL_UP, False))
        c.stop()


# -- the kernel's gpio-sim ---------------------------------------------------------------------

CONFIGFS = Path("/sys/kernel/config")
GPIO_SIM = CONFIGFS / "gpio-sim"


def gpio_sim_unavailable() -> str | None:
    """Why gpio-sim cannot be used here (None when it can), trying to load it as root."""
    try:
        importlib.import_module("gpiod")
    except ImportError:
        return "gpiod is not installed (pip install sepgw[gpio])"
    if not GPIO_SIM.is_dir() and os.geteuid() == 0:
        if _which("modprobe"):
            subprocess.run(["modprobe", "gpio-sim"], capture_output=True, check=False)
        if not CONFIGFS.is_dir() or not os.path.ismount(CONFIGFS):
            subprocess.run(["mount", "-t", "configfs", "none", str(CONFIGFS)],
                           capture_output=True, check=False)
    if GPIO_SIM.is_dir():
        return None if os.access(GPIO_SIM, os.W_OK) else f"{GPIO_SIM} is not writable (root)"
    filesystems = Path("/proc/filesystems").read_text()
    if "configfs" not in filesystems:
        return ("gpio-sim unavailable: this kernel has no configfs (not in /proc/filesystems), "
                f"so {GPIO_SIM} cannot exist")
    if os.geteuid() != 0:
        return f"gpio-sim unavailable: {GPIO_SIM} missing and not root (modprobe gpio-sim)"
    return (f"gpio-sim unavailable: {GPIO_SIM} missing after `modprobe gpio-sim` (module not "
            "built for this kernel, or no modprobe)")


def _which(name: str) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep))


class GpioSimTests(SynchronousTestCase):
    """Against a simulated chip: the coil line's level is read back from sysfs, the
    auxiliary input is driven with the simulator's pull (``sim_gpioN/pull``)."""

    def setUp(self) -> None:
        reason = gpio_sim_unavailable()
        if reason:
            raise SkipTest(reason)
        self.dev = GPIO_SIM / f"sepgw-test-{os.getpid()}"
        bank = self.dev / "bank0"
        bank.mkdir(parents=True)
        self.addCleanup(self._remove)
        (bank / "num_lines").write_text("8")
        (self.dev / "live").write_text("1")
        self.chip = "/dev/" + (bank / "chip_name").read_text().strip()
        dev_name = (self.dev / "dev_name").read_text().strip()
        self.sysfs = Path("/sys/devices/platform") / dev_name / Path(self.chip).name

    def _remove(self) -> None:
        (self.dev / "live").write_text("0")
        (self.dev / "bank0").rmdir()
        self.dev.rmdir()

    def level(self, line: int) -> int:
        return int((self.sysfs / f"sim_gpio{line}" / "value").read_text())

    def pull(self, line: int, up: bool) -> None:
        (self.sysfs / f"sim_gpio{line}" / "pull").write_text("pull-up" if up else "pull-down")

    def test_coil_and_aux_on_gpio_sim(self) -> None:
        """On a real GPIO character device: the coil is requested low (off), driven high by
        an allowed close and low by open, the auxiliary input follows the simulator's pull,
        and stop leaves the coil low and the lines free to request again."""
        import gpiod

        clock = Clock()
        c = plugin().build_contactor(options(chip=self.chip, coil=1, aux=2),
                                     BuildContext(reactor=clock, name="sim"))
        self.pull(2, up=False)
        c.start()
        self.assertEqual(self.level(1), 0)
        self.assertEqual(c.sensed, ContactorState.open)
        c.set_allowed(True)
        d = c.close()
        self.assertEqual(self.level(1), 1)
        self.pull(2, up=True)  # the contacts close
        clock.advance(0.05)
        self.assertEqual(self.successResultOf(d), ContactorState.closed)
        d = c.open()
        self.assertEqual(self.level(1), 0)
        self.pull(2, up=False)
        clock.advance(0.05)
        self.assertEqual(self.successResultOf(d), ContactorState.open)
        c.set_allowed(True)
        c.close()
        c.stop()
        self.assertEqual(self.level(1), 0)
        gpiod.request_lines(self.chip, config={1: None, 2: None}).release()

    def test_active_low_on_gpio_sim(self) -> None:
        """coil_active_low: the coil line is high while off and low while on."""
        clock = Clock()
        c = plugin().build_contactor(options(chip=self.chip, coil=3, coil_active_low=True),
                                     BuildContext(reactor=clock, name="sim"))
        c.start()
        self.assertEqual(self.level(3), 1)
        c.set_allowed(True)
        self.successResultOf(c.close())
        self.assertEqual(self.level(3), 0)
        c.stop()
        self.assertEqual(self.level(3), 1)
