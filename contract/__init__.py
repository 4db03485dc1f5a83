"""The ECG stream contract: message validation and dead-letter format (pure Python + numpy)."""

from contract.frames import (
    Control,
    EcgFrame,
    ParseResult,
    Rejection,
    dead_letter_message,
    parse_frame,
)

__all__ = ["Control", "EcgFrame", "ParseResult", "Rejection", "dead_letter_message", "parse_frame"]
