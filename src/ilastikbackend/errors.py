"""Errors answered to whoever asked, with an HTTP status; no web framework needed to raise them."""

from __future__ import annotations

from typing import Any

QUOTE_LIMIT = 64


class ApiError(Exception):
    """An error answered as JSON: ``{"error": message, "status": status, ...details}``; ``headers`` are
    sent with it (e.g. ``Retry-After``)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_of_answer(response: Any) -> str | None:
    """The message of an :class:`ApiError` answer as another service (or client) received it (an object with
    ``.json()``, e.g. a ``requests`` response); None when the body is not such an answer."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return None


def quote_input(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of user input for an error message, cut to ``limit`` characters."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"… ({len(text)} characters)"
