"""The ECG stream contract: message validation (pure Python + numpy). Dead letters: privacy.dead_letters."""

from contract.frames import (
    Control,
    EcgFrame,
    ParseResult,
    Rejection,
    parse_frame,
)

__all__ = ["Control", "EcgFrame", "ParseResult", "Rejection", "parse_frame"]
