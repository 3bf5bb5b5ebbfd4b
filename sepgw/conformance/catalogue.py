"""Load the catalogue of V2G-AC profile requirements (``requirements.toml``).

Standard library only, and no imports from the rest of sepgw: ``tools/conformance.py`` loads
this file by path so that the Makefile's ``--check`` stays fast and dependency-free.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

#: Where the catalogue lives, next to this module.
CATALOGUE_PATH: Path = Path(__file__).with_name("requirements.toml")

#: Roles a requirement can bind.
ROLES: tuple[str, ...] = ("EVSE", "PEV", "both")

#: Levels, in the order reports list them; only the first three count towards coverage.
NORMATIVE_LEVELS: tuple[str, ...] = ("mandatory", "recommended", "optional")
LEVELS: tuple[str, ...] = NORMATIVE_LEVELS + ("informative",)

#: Syntax of a requirement ID, e.g. ``V2G-4.8.1.1-3``: section ``4.8.1.1``, number 3.
ID_PATTERN: re.Pattern[str] = re.compile(r"V2G-([0-9.]+)-([0-9]+)")


class CatalogueError(ValueError):
    """The catalogue file is malformed."""


@dataclass(frozen=True)
class Requirement:
    """One requirement sentence of the profile."""

    id: str
    role: str
    level: str
    summary: str
    section: str

    @property
    def normative(self) -> bool:
        """True unless the line is informative (it then never counts in coverage)."""
        return self.level in NORMATIVE_LEVELS

    @property
    def sort_key(self) -> tuple[tuple[int, ...], int]:
        """Natural order: section numbers numerically, then the sentence number."""
        return id_sort_key(self.id)


def id_sort_key(requirement_id: str) -> tuple[tuple[int, ...], int]:
    """Sort key for an ID: ``V2G-4.10-1`` comes after ``V2G-4.9.7-1``."""
    m = ID_PATTERN.fullmatch(requirement_id)
    if m is None:
        raise CatalogueError(f"malformed requirement ID {requirement_id!r}")
    section, number = m.groups()
    return tuple(int(p) for p in section.split(".")), int(number)


def section_of(requirement_id: str) -> str:
    """The section part of an ID: ``V2G-4.5.3-2`` -> ``4.5.3``."""
    m = ID_PATTERN.fullmatch(requirement_id)
    if m is None:
        raise CatalogueError(f"malformed requirement ID {requirement_id!r}")
    return m.group(1)


def load_section_titles(path: Path | None = None) -> dict[str, str]:
    """Map section number to a short title, for the sections the catalogue uses."""
    data = _read(path)
    titles = data.get("sections", {})
    if not isinstance(titles, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in titles.items()
    ):
        raise CatalogueError("[sections] must map section numbers to title strings")
    return dict(titles)


def load_catalogue(path: Path | None = None) -> list[Requirement]:
    """Read and validate the catalogue; return its requirements in natural ID order.

    Raises CatalogueError on a malformed entry, an unknown role or level, a duplicate ID,
    or a multi-line summary.
    """
    data = _read(path)
    entries = data.get("requirements")
    if not isinstance(entries, list):
        raise CatalogueError("catalogue has no 'requirements' array")
    seen: set[str] = set()
    result: list[Requirement] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise CatalogueError(f"requirement entry is not a table: {entry!r}")
        try:
            rid, role, level, summary = (
                entry["id"], entry["role"], entry["level"], entry["summary"]
            )
        except KeyError as e:
            raise CatalogueError(f"requirement {entry!r} lacks {e.args[0]!r}") from None
        if rid in seen:
            raise CatalogueError(f"duplicate requirement ID {rid}")
        seen.add(rid)
        if role not in ROLES:
            raise CatalogueError(f"{rid}: role {role!r} is not one of {ROLES}")
        if level not in LEVELS:
            raise CatalogueError(f"{rid}: level {level!r} is not one of {LEVELS}")
        if not isinstance(summary, str) or not summary.strip() or "\n" in summary:
            raise CatalogueError(f"{rid}: summary must be one non-empty line")
        result.append(Requirement(rid, role, level, summary.strip(), section_of(rid)))
    result.sort(key=lambda r: r.sort_key)
    return result


def _read(path: Path | None) -> dict[str, object]:
    with open(path or CATALOGUE_PATH, "rb") as f:
        return tomllib.load(f)
