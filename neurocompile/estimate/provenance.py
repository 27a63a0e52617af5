"""Where every constant of the target file comes from: the comment on its line, as written.

``targets/<name>.toml`` says after each number where it comes from, or that it is an assumption.
Reports show these comments next to the numbers they used, so a reader sees at a glance what is
sourced and what is assumed (a comment containing "assumption" counts as assumed).
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^#]*?)\s*(?:#\s*(.*))?$")


def _text(target) -> str:
    path = Path(target.source)
    if path.is_file():
        return path.read_text(errors="replace")
    entry = resources.files("neurocompile.targets") / f"{target.name}.toml"
    return entry.read_text() if entry.is_file() else ""


def constant_sources(target) -> dict[str, str]:
    """``"section.key" -> comment`` for every key of the target file that has a comment."""
    out, section = {}, ""
    for line in _text(target).splitlines():
        head = _SECTION.match(line)
        if head:
            section = head.group(1).strip()
            continue
        match = _KEY.match(line)
        if match and match.group(3):
            out[f"{section}.{match.group(1)}" if section else match.group(1)] = \
                match.group(3).strip()
    return out


def is_assumption(comment: str) -> bool:
    return "assum" in comment.lower()


def used_constants(target, energy_model: str) -> list[dict]:
    """The constants a report relies on (its energy model, [chip], [core], [mesh], [timing])."""
    sources = constant_sources(target)
    prefixes = (f"energy.models.{energy_model}.", "chip.", "core.", "mesh.", "timing.")
    rows = []
    for key, comment in sources.items():
        if key.startswith(prefixes) and not key.endswith((".description", ".kind")):
            rows.append({"key": key, "source": comment, "assumption": is_assumption(comment)})
    return rows
