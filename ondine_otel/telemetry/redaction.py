"""Redaction of prompt and completion text before it may leave the process.

Content capture is opt-in (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true), and even
then a trace store is no place for customers' e-mail addresses, phone or card numbers, or the
API keys people paste into prompts.
"""

from __future__ import annotations

import re

from ondine_otel.config import masking

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_PHONE = re.compile(
    r"(?<![\w])(?:\+?\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}[ .-]\d{3,4}[ .-]?\d{0,4}\b"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[REDACTED_CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[REDACTED_PHONE]" if 7 <= len(digits) <= 15 else match.group(0)


def redact(text: str) -> str:
    """The text with e-mails, key-like tokens, card and phone numbers replaced by markers."""
    text = _EMAIL.sub("[REDACTED_EMAIL]", text)
    text = masking.redact(text, "[REDACTED_KEY]")
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)
