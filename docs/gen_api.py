"""Write docs/api.md from the docstrings of the public modules.

Usage: ``python docs/gen_api.py`` (from the repository root). The reference is
generated, never edited by hand: change a docstring, run this, commit both.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODULES = ["srtm", "srtm.middleware", "srtm.client", "srtm.sim"]


def entry(name: str, obj: object) -> list[str]:
    lines: list[str] = []
    if inspect.isclass(obj):
        try:
            signature = str(inspect.signature(obj))
        except (TypeError, ValueError):
            signature = "(...)"
        lines.append(f"### class `{name}{signature}`\n")
        lines.append(inspect.getdoc(obj) or "(undocumented)")
        members: dict[str, object] = {}
        for klass in reversed(obj.__mro__):  # inherited srtm methods too, nearest last
            if klass.__module__.startswith("srtm"):
                members.update(vars(klass))
        for attr, member in members.items():
            if attr.startswith("_") or not (
                inspect.isfunction(member) or isinstance(member, property)
            ):
                continue
            doc = inspect.getdoc(member) or ""
            first = doc.splitlines()[0] if doc else "(undocumented)"
            if isinstance(member, property):
                lines.append(f"- `{attr}` (property): {first}")
            else:
                lines.append(f"- `{attr}{inspect.signature(member)}`: {first}")
    elif callable(obj):
        lines.append(f"### `{name}{inspect.signature(obj)}`\n")
        lines.append(inspect.getdoc(obj) or "(undocumented)")
    else:
        lines.append(f"### `{name}`\n")
        lines.append(f"`{obj!r}`")
    return [*lines, ""]


def main() -> None:
    out = ["# API reference", "", "Generated from the docstrings by `docs/gen_api.py`.", ""]
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            print(f"skipping {module_name}: {exc}", file=sys.stderr)
            continue
        out += [f"## `{module_name}`", "", inspect.getdoc(module) or "", ""]
        for name in sorted(getattr(module, "__all__", [])):
            if name.startswith("__"):
                continue
            out += entry(name, getattr(module, name))
    path = Path(__file__).with_name("api.md")
    path.write_text("\n".join(out).rstrip() + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
