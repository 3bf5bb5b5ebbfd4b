"""The codec's text scanner agrees with lxml and the generic decoder.

For documents in the plain form sepgw writes, ``sepgw.model._fast.scan`` reads the text
without building an lxml tree. It must never accept what the generic path (lxml + the
generic decoder) refuses, and never read a value differently; on anything it is not sure of
it returns None and lxml decides. These tests hold it to that on generated documents and on
mutations of them.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sepgw.model import (
    DERControlList,
    DERSettings,
    DERStatus,
    DeviceInformation,
    MirrorMeterReading,
    MirrorUsagePoint,
    ModelError,
    Response,
    serialize,
)
from sepgw.model import _fast
from sepgw.model.codec import DEFAULT_MAX_DEPTH, _Ctx, _decode, _REGISTRY
from lxml import etree
from sepgw.model.codec import _lxml_parser
from tests.test_model_helpers import model_strategy, populate

TYPES = [DERControlList, DERSettings, DERStatus, DeviceInformation, MirrorMeterReading,
         MirrorUsagePoint, Response]


def generic(data: bytes) -> Any:
    """What the generic path makes of ``data``: an object, or the ModelError."""
    try:
        root = etree.fromstring(data, _lxml_parser())
        name = root.tag.split("}")[1]
        cls = _REGISTRY[name]
        return _decode(cls._sep_spec, root, name, _Ctx(False, DEFAULT_MAX_DEPTH), 1)
    except (ModelError, etree.XMLSyntaxError, KeyError, IndexError) as e:
        return e


MUTATIONS = [
    lambda s: s.replace("><", ">\n  <"),                       # pretty-printed
    lambda s: s.replace("</", "<!-- c --></", 1),             # a comment
    lambda s: s.replace(">", "> &amp; ", 2),                  # an entity in content
    lambda s: s.replace(">", ">&#65;", 3),                    # a character reference
    lambda s: re.sub(r"<(\w+)></\1>", r"<\1/>", s),           # empty elements
    lambda s: s.replace("<", "<![CDATA[x]]><", 3),            # CDATA
    lambda s: s.replace('"', "'", 2),                         # other quotes
    lambda s: re.sub(r"(<\w+)( \w+=\"[^\"]*\")( \w+=\"[^\"]*\")", r"\1\3\2", s, 1),
    lambda s: s.replace("1", "01", 1),                        # a changed value
    lambda s: s.replace("</", "</x", 1),                      # a broken end tag
    lambda s: s.replace("<", "<x", 2),                        # an unknown element
    lambda s: s[: len(s) // 2],                               # truncated
]


class ScannerAgreementTests(SynchronousTestCase):
    accepted = 0

    def check(self, data: bytes) -> None:
        scanned = _fast.scan(data, None, DEFAULT_MAX_DEPTH)
        if scanned is None:
            return
        self.accepted += 1
        verdict = generic(data)
        if isinstance(verdict, Exception):
            self.fail(f"scanner accepted what the generic path refuses ({verdict}): {data!r}")
        self.assertEqual(scanned, verdict, data)

    def test_plain_documents_scanned(self) -> None:
        """The documents of the codec benchmark (plain ASCII, as sepgw writes them) are read
        by the scanner, to the same object as the generic path; fully populated documents of
        every type agree or are left to lxml."""
        import importlib.util
        from pathlib import Path

        path = Path(__file__).resolve().parent.parent / "benchmarks" / "codec.py"
        spec = importlib.util.spec_from_file_location("codec_benchmark", path)
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        for build in (bench.der_control_list, bench.der_settings, bench.mirror_meter_reading):
            data = serialize(build())
            scanned = _fast.scan(data, None, DEFAULT_MAX_DEPTH)
            self.assertIsNotNone(scanned, build.__name__)
            self.assertEqual(scanned, generic(data))
        for cls in TYPES:
            for variant in (0, 1):
                self.check(serialize(populate(cls, variant)))

    def test_generated_and_mutated_documents_agree(self) -> None:
        """On generated documents and mutations of them (whitespace, comments, entities,
        character references, empty-element tags, CDATA, quotes, attribute order, values,
        broken tags, truncation) the scanner either gives up or agrees with the generic
        path; it never accepts a document the generic path refuses."""

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.sampled_from(TYPES).flatmap(model_strategy), st.integers(0, 2**16))
        def check(obj: Any, which: int) -> None:
            text = serialize(obj).decode("utf-8")
            self.check(text.encode("utf-8"))
            for i, mutate in enumerate(MUTATIONS):
                if which >> (i % 16) & 1 or i < 4:
                    self.check(mutate(text).encode("utf-8"))

        check()
        self.assertGreater(self.accepted, 100)  # the scanner was really exercised
