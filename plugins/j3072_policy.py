"""Bundled plugin: the SAE J3072 authorization policy of the V2G-AC profile, section 4.6.4.

:class:`J3072Policy` grants discharge only when every condition holds, and otherwise lists
every failing one (V2G-4.6.4-1):

1. the PEV is certified: DeviceInformation ``mfHwVer`` contains ``certified_marker``;
2. its ISM number (DeviceInformation ``mfModel``) is on the approved list (a text file);
3. its 2- or 4-quadrant capability (DERCapability: a reactive-power mode and any reactive
   rating make it 4-quadrant, see :func:`~sepgw.plugin.is_four_quadrant`) matches
   the site's ``quadrants``;
4. its DERSettings are within the site limits and include setMaxWh (V2G-4.9.4-1);
5. every management-information DERControl has its Received and Started responses;
6. optionally, its LFDI and its certificate's HardwareModuleName hwType are allowed.

The mapping of "certified" and "ISM number" to DeviceInformation fields follows the
profile's own example (section 5.4: ``mfHwVer`` "J3072 Certified", ``mfModel`` "ISM Value");
SAE J3072 Table C4, which defines them, is not available to the project. See
``docs/policy.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.plugin import (
    REACTIVE_RATINGS, BuildContext, Decision, IAuthorizationPolicy, Key, PluginFactory,
    PolicyFacts, Section, is_four_quadrant, missing_responses, mrid_text, normalize_lfdi,
    rating_text, reactive_modes, reactive_ratings, real_value, show, status_text,
)

#: The DERSettings checked against the site limits: (element, unit, rule), where the rule is
#: "max" (PEV ≤ site), "min" (PEV ≥ site) or "equal".
SETTING_LIMITS: tuple[tuple[str, str, str], ...] = (
    ("setMaxW", "W", "max"),
    ("setMaxV", "V", "max"),
    ("setMinV", "V", "min"),
    ("setMaxVar", "var", "max"),
    ("setMaxVarNeg", "var", "max"),
    ("setMaxChargeRateW", "W", "max"),
    ("setMaxDischargeRateW", "W", "max"),
    ("setVRef", "V", "equal"),
)

#: Reactive-power settings a 2-quadrant PEV has no reason to report.
_REACTIVE_SETTINGS = frozenset({"setMaxVar", "setMaxVarNeg"})


def read_approved_list(text: str) -> frozenset[str]:
    """The ISM numbers in an approved-list file's text: one per line, ``#`` starts a comment
    (to the end of the line), surrounding white space and blank lines are ignored."""
    numbers = set()
    for line in text.splitlines():
        number = line.split("#", 1)[0].strip()
        if number:
            numbers.add(number)
    return frozenset(numbers)


class ApprovedList:
    """The approved ISM numbers of a text file, re-read when the file changes.

    The file is stat'ed at most once every ``interval`` seconds on ``clock`` and read only
    when its modification time (or size) differs from the last read. Both happen in the
    caller's thread: the file is small and the stat is rare, so this costs microseconds and
    keeps :meth:`J3072Policy.evaluate` synchronous.
    """

    log = Logger()

    def __init__(self, path: Path, clock: Any, interval: float, name: str) -> None:
        self.path = Path(path)
        self._clock = clock
        self._interval = interval
        self._name = name
        self._checked_at: float | None = None
        self._stamp: tuple[int, int] | None = None
        self.numbers: frozenset[str] | None = None
        """The approved ISM numbers, or None while the file cannot be read."""
        self.error: str | None = None
        """Why the file cannot be read, or None."""

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if ``interval`` has passed (or ``force``) and it changed."""
        now = self._clock.seconds()
        if not force and self._checked_at is not None and now - self._checked_at < self._interval:
            return
        self._checked_at = now
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp and self.error is None:
                return
            numbers = read_approved_list(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self._failed(f"{type(e).__name__}: {detail}")
            return
        self._stamp, self.numbers, self.error = stamp, numbers, None
        self.log.info("{name}: {count} approved ISM number(s) read from {path}",
                      name=self._name, count=len(numbers), path=str(self.path))

    def _failed(self, error: str) -> None:
        if error != self.error:
            self.log.error("{name}: approved ISM list {path} unreadable ({error}); every PEV is "
                           "denied until it can be read", name=self._name, path=str(self.path),
                           error=error)
        self._stamp, self.numbers, self.error = None, None, error


@implementer(IAuthorizationPolicy)
class J3072Policy:
    """The profile's 4.6.4 authorization conditions; :meth:`evaluate` collects every reason."""

    log = Logger()

    def __init__(self, *, name: str, clock: Any, approved_list: Path, reload_interval: float,
                 certified_marker: str = "J3072 Certified", quadrant_match: str = "at_least",
                 lfdi_allow: list[str] | tuple[str, ...] = (),
                 hw_types_allow: list[str] | tuple[str, ...] = ()) -> None:
        self._name = name
        self.approved = ApprovedList(approved_list, clock, reload_interval, name)
        self.certified_marker = certified_marker
        self.quadrant_match = quadrant_match
        self.lfdi_allow = frozenset(normalize_lfdi(v) for v in lfdi_allow)
        self.hw_types_allow = frozenset(hw_types_allow)

    # IComponent

    def start(self) -> None:
        """Read the approved list now, so that a problem with it is logged at start-up."""
        self.approved.refresh(force=True)

    def stop(self) -> None:
        pass

    # IAuthorizationPolicy

    def evaluate(self, facts: PolicyFacts) -> Decision:
        """Grant when every condition holds; otherwise deny with every failing one."""
        reasons = [
            *self._certified(facts),
            *self._ism(facts),
            *self._quadrants(facts),
            *self._settings(facts),
            *self._responses(facts),
            *self._identity(facts),
        ]
        return Decision(granted=not reasons, reasons=tuple(reasons))

    # The conditions; each returns its reasons, none when it holds.

    def _certified(self, facts: PolicyFacts) -> list[str]:
        info = facts.device_information
        if info is None:
            return ["PEV not certified: no DeviceInformation received"]
        if self.certified_marker not in info.mfHwVer:
            return [f"PEV not certified: DeviceInformation mfHwVer {info.mfHwVer!r} does not "
                    f"contain {self.certified_marker!r}"]
        return []

    def _ism(self, facts: PolicyFacts) -> list[str]:
        info = facts.device_information
        if info is None:
            return ["ISM number unknown: no DeviceInformation received"]
        self.approved.refresh()
        if self.approved.numbers is None:
            return [f"ISM number cannot be checked: approved list {self.approved.path} "
                    f"unreadable ({self.approved.error})"]
        if info.mfModel not in self.approved.numbers:
            return [f"ISM number not approved: DeviceInformation mfModel {info.mfModel!r} is "
                    f"not in {self.approved.path}"]
        return []

    def _quadrants(self, facts: PolicyFacts) -> list[str]:
        site = int(facts.site.get("quadrants", 4))
        capability = facts.der_capability
        if capability is None:
            return [f"PEV quadrants unknown: no DERCapability received (site quadrants {site})"]
        four = is_four_quadrant(capability)
        modes = f"{int(capability.modesSupported):08X}"
        if site == 4 and not four:
            reactive = reactive_modes(capability)
            why = (f"DERCapability has no reactive-power rating ({', '.join(REACTIVE_RATINGS)}"
                   f" all absent; reactive modes {', '.join(reactive)})"
                   if reactive else
                   f"DERCapability modesSupported {modes} has no reactive-power mode")
            return [f"PEV is 2-quadrant, site quadrants 4 requires a 4-quadrant PEV: {why}"]
        if site == 2 and four and self.quadrant_match == "exact":
            ratings = ", ".join(rating_text(capability, n) for n in reactive_ratings(capability))
            return [f"PEV is 4-quadrant, site quadrants 2 requires a 2-quadrant PEV "
                    f"(quadrant_match 'exact'): DERCapability modesSupported {modes} has "
                    f"{', '.join(reactive_modes(capability))} and {ratings}"]
        return []

    def _settings(self, facts: PolicyFacts) -> list[str]:
        settings = facts.der_settings
        if settings is None:
            return ["no DERSettings received: settings cannot be checked against the site "
                    "limits"]
        four = is_four_quadrant(facts.der_capability)
        reasons = []
        for element, unit, rule in SETTING_LIMITS:
            limit_q = getattr(facts.site_settings, element)
            if limit_q is None:
                continue  # the site does not limit it
            limit = real_value(limit_q)
            value_q = getattr(settings, element)
            if value_q is None:
                if element in _REACTIVE_SETTINGS and not four:
                    continue  # a 2-quadrant inverter has no reactive-power setting
                reasons.append(f"DERSettings {element} missing (site limit {show(limit)} {unit})")
                continue
            value = real_value(value_q)
            if rule == "max" and value > limit:
                reasons.append(f"DERSettings {element} {show(value)} {unit} exceeds the site "
                               f"limit {show(limit)} {unit}")
            elif rule == "min" and value < limit:
                reasons.append(f"DERSettings {element} {show(value)} {unit} is below the site "
                               f"limit {show(limit)} {unit}")
            elif rule == "equal" and value != limit:
                reasons.append(f"DERSettings {element} {show(value)} {unit} differs from the "
                               f"site {element} {show(limit)} {unit}")
        if settings.setMaxWh is None:
            reasons.append("DERSettings setMaxWh missing (required, V2G-4.9.4-1)")
        return reasons

    def _responses(self, facts: PolicyFacts) -> list[str]:
        missing = missing_responses(facts.controls, facts.responses)
        if not missing:
            return []
        items = []
        for control, lacking in missing:
            label = mrid_text(control.mRID)
            if control.description:
                label += f" ({control.description})"
            items.append(f"{label} lacks {', '.join(status_text(s) for s in lacking)}")
        return [f"responses missing for {len(missing)} of {len(facts.controls)} "
                f"management-information DERControl(s): {'; '.join(items)}"]

    def _identity(self, facts: PolicyFacts) -> list[str]:
        reasons = []
        if self.lfdi_allow:
            try:
                allowed = normalize_lfdi(facts.lfdi) in self.lfdi_allow
            except ValueError:
                allowed = False
            if not allowed:
                reasons.append(f"LFDI {facts.lfdi} not in lfdi_allow")
        if self.hw_types_allow:
            name = facts.hardware_module_name
            if name is None:
                reasons.append("no HardwareModuleName in the PEV certificate (hw_types_allow "
                               "is set)")
            elif name.hw_type not in self.hw_types_allow:
                reasons.append(f"HardwareModuleName hwType {name.hw_type} not in "
                               f"hw_types_allow")
        return reasons


# --------------------------------------------------------------------------------------------
# Factory


def _lfdi(value: str) -> str | None:
    try:
        normalize_lfdi(value)
    except ValueError:
        return f"{value!r} is not an LFDI (40 hexadecimal digits)"
    return None


def _oid(value: str) -> str | None:
    parts = value.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return f"{value!r} is not an OID in dotted form (e.g. 1.3.6.1.4.1.99999.1)"
    return None


def _build(config: Mapping[str, Any], context: BuildContext) -> J3072Policy:
    return J3072Policy(
        name=context.name, clock=context.reactor, approved_list=config["approved_list"],
        reload_interval=config["reload_interval"], certified_marker=config["certified_marker"],
        quadrant_match=config["quadrant_match"], lfdi_allow=config["lfdi_allow"],
        hw_types_allow=config["hw_types_allow"],
    )


policy = PluginFactory(
    kind="policy",
    name="j3072",
    description="SAE J3072 authorization to discharge (V2G-AC profile 4.6.4): certified, "
                "approved ISM, quadrants, site limits, responses.",
    options=Section({
        "approved_list": Key(
            "path", "approved-pevs.txt",
            doc="Text file of approved ISM numbers (DeviceInformation mfModel), one per line, "
                "`#` starts a comment; relative to the configuration file. Re-read when its "
                "modification time changes; unreadable or missing, every PEV is denied."),
        "reload_interval": Key(
            "float", 5.0, doc="Least seconds between two checks of the approved list's "
                              "modification time.", min=0, max=3600),
        "certified_marker": Key(
            "str", "J3072 Certified", doc="Text DeviceInformation mfHwVer must contain for "
                                          "the PEV to count as J3072 certified.",
            non_empty=True),
        "quadrant_match": Key(
            "str", "at_least", doc="`at_least`: a 2-quadrant site accepts 4-quadrant PEVs "
                                   "too; `exact`: it accepts only 2-quadrant PEVs. A "
                                   "4-quadrant site always requires a 4-quadrant PEV.",
            choices=("at_least", "exact")),
        "lfdi_allow": Key(
            ["str"], [], doc="LFDIs allowed to discharge; empty allows any.",
            validator=_lfdi),
        "hw_types_allow": Key(
            ["str"], [], doc="Certificate HardwareModuleName hwType OIDs (PEV make and model) "
                             "allowed to discharge; empty allows any, otherwise a PEV without "
                             "HardwareModuleName is denied.", validator=_oid),
    }),
    build=_build,
)
