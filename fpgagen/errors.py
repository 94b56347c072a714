"""User-facing errors.

Every failure a user can cause (bad model, bad folding, network too big, bad image, ...) is raised as
:class:`FpgagenError`. The CLI prints it as ``fpgagen: error: <what>, <where>, <what to do>`` without a traceback.
"""

from __future__ import annotations


class FpgagenError(Exception):
    """An error caused by the user's input, with a message that says what, where and what to do."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(", ".join(p for p in (what, where, fix) if p))


class CSimError(FpgagenError):
    """The C-simulated accelerator failed (stream underflow, leftover data, mismatch)."""
