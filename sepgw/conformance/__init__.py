"""The profile's requirement catalogue and the conformance matrix built from the tests.

This package uses only the standard library, so that ``tools/conformance.py`` can load it
without importing the rest of sepgw (or Twisted).
"""
