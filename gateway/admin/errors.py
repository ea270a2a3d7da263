"""The admin API's one error: raised by its handlers to answer, and by its client when a call fails."""

from __future__ import annotations


class AdminError(Exception):
    """An admin API error as {"code", "message"} JSON with an HTTP status.

    The server's handlers raise it to answer with it; the client raises it for every failed call,
    with status 0 when no HTTP answer came back at all (unreachable, timeout).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message if status == 0 else f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message = status, code, message
