"""What the user chose that should survive a restart of Slicer: kept in QSettings under ``ASFDA/``.

The store is anything with QSettings' ``value(key, default)`` and ``setValue(key, value)``; Slicer's
``qt.QSettings()`` in the application, a dictionary-backed double in tests.
"""

from __future__ import annotations

from enum import Enum

from .i18n import _

GROUP = "ASFDA"
REMEMBERED = ("modelPath", "sessionFolder", "device", "backendUrl")


class LeavePolicy(str, Enum):
    """What happens to the previous case's nodes when the next case opens."""

    ASK = "ask"
    HIDE = "hide"
    CLOSE = "close"
    KEEP = "keep"


class ModuleSettings:
    def __init__(self, store=None):
        if store is None:
            import qt  # only in the application

            store = qt.QSettings()
        self.store = store

    def load(self) -> dict[str, str]:
        """The remembered values; a key never saved is absent."""
        values = {}
        for name in REMEMBERED:
            value = self.store.value(f"{GROUP}/{name}", "")
            if value not in (None, ""):
                values[name] = str(value)
        return values

    def save(self, **values) -> None:
        for name, value in values.items():
            if name not in REMEMBERED:
                raise KeyError(_("ASFDA does not remember {name!r}").format(name=name))
            self.store.setValue(f"{GROUP}/{name}", "" if value is None else str(value))

    @property
    def leavePolicy(self) -> LeavePolicy:
        value = self.store.value(f"{GROUP}/leavePolicy", LeavePolicy.ASK.value)
        try:
            return LeavePolicy(value)
        except ValueError:
            return LeavePolicy.ASK

    @leavePolicy.setter
    def leavePolicy(self, policy: LeavePolicy) -> None:
        self.store.setValue(f"{GROUP}/leavePolicy", LeavePolicy(policy).value)
