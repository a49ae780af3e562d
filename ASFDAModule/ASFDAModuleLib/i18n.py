"""Slicer's translation function where it exists (``slicer.i18n.tr``), the identity elsewhere.

Strings the user reads go through ``_()`` so that Slicer's translation tooling finds them; the library also
runs headless (tests, scripts with ``slicer-core``), where there is no ``slicer.i18n``.
"""

from __future__ import annotations

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # slicer-core or a plain interpreter

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


__all__ = ["_", "translate"]
