"""The studies `bench infer` times, in a module of their own so that the CLI lists them without loading torch."""

from __future__ import annotations

from ..data.phantoms import ScanGeometry

CASES = {
    "full_512x512x200": ScanGeometry(0.78, 2.5, 200),
    "large_512x512x800": ScanGeometry(0.7, 0.7, 800),
    "lits_117": None,  # the real case, from the PyPI wheel (lib/data/fixtures.py)
}
