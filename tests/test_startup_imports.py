"""The EVSE's start-up import path stays light (idle RSS budget, docs/benchmarks.md): lxml is
imported by the codec only for a document its fast scanner gives up on."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import REPO

PLAIN = (b'<DERStatus xmlns="urn:ieee:std:2030.5:ns"><inverterStatus><dateTime>1</dateTime>'
         b'<value>3</value></inverterStatus><readingTime>1</readingTime></DERStatus>')
#: The same document as another XML writer might send it: a comment and a namespace prefix.
FOREIGN = (b'<?xml version="1.0"?><!-- from another writer --><s:DERStatus '
           b'xmlns:s="urn:ieee:std:2030.5:ns"><s:inverterStatus><s:dateTime>1</s:dateTime>'
           b'<s:value>3</s:value></s:inverterStatus><s:readingTime>1</s:readingTime>'
           b'</s:DERStatus>')


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()


class LazyLxmlTests(SynchronousTestCase):
    def test_start_up_path_does_not_import_lxml(self) -> None:
        """Importing the EVSE service and the model, and parsing a document in the plain form
        sepgw's peers write, loads no lxml (about 5 MiB of RSS)."""
        out = run("import sys; import sepgw.service.evse, sepgw.model as m; "
                  f"d = m.parse({PLAIN!r}); "
                  "print(d.inverterStatus.value, 'lxml' in sys.modules)")
        self.assertEqual(out, "3 False")

    def test_other_writers_documents_still_parse(self) -> None:
        """A document the scanner gives up on (comment, prefixed namespace) is read by lxml,
        imported then, to the same values; and a DOCTYPE is still refused."""
        out = run("import sys; import sepgw.model as m; "
                  f"d = m.parse({FOREIGN!r}); "
                  "print(d.inverterStatus.value, d.readingTime, 'lxml' in sys.modules)")
        self.assertEqual(out, "3 1 True")
        out = run("import sepgw.model as m\n"
                  "try:\n"
                  "    m.parse(b'<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"v\">]>"
                  "<DERStatus xmlns=\"urn:ieee:std:2030.5:ns\"/>')\n"
                  "except m.ModelError as e:\n"
                  "    print('refused', e)\n")
        self.assertTrue(out.startswith("refused"), out)
