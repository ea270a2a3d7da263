"""How a service names its failures and answers them: JSON {"error": kind, "message": ..., ...}
unless the service plugs in a renderer of its own (the gateway answers S3 XML)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError

from cluster.auth import ClusterAuthError


@dataclass(frozen=True, slots=True)
class Failure:
    """What the client is told: a status, an error kind in the service's vocabulary, a message."""

    status: int
    kind: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)  # more of the error document
    exc: BaseException | None = None  # what was raised, for a renderer that wants it

    def document(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message, **self.fields}


class ErrorAnswer(Exception):
    """Raised by a handler or an authenticator: answer the request with this error."""

    def __init__(self, status: int, kind: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.failure = Failure(status, kind, message, fields, self)


Classify = Callable[[BaseException], Failure | None]


class Errors:
    """A service's error vocabulary: the kinds for refused signatures, bugs and aiohttp's own HTTP
    errors, plus `classify` for the exceptions its handlers raise on purpose."""

    def __init__(
        self,
        *,
        forbidden: str,
        internal: str,
        http_kinds: Mapping[int, str],
        classify: Classify | None = None,
    ) -> None:
        self.forbidden = forbidden
        self.internal_kind = internal
        self.http_kinds = http_kinds
        self._classify = classify

    def classify(self, exc: BaseException) -> Failure | None:
        """The failure an exception stands for; None for an exception nobody meant (a bug)."""
        if isinstance(exc, ErrorAnswer):
            return exc.failure
        if isinstance(exc, ClusterAuthError):
            return Failure(403, self.forbidden, str(exc), exc=exc)
        if self._classify is not None:
            failure = self._classify(exc)
            if failure is not None:
                return failure
        if isinstance(exc, HttpProcessingError):  # a malformed body (chunked encoding, length): the client's
            return self.protocol(exc)
        if isinstance(exc, web.HTTPException):  # raised by aiohttp itself: no route, a body too large
            return Failure(exc.status, self.http_kinds.get(exc.status, f"http_{exc.status}"), exc.reason, exc=exc)
        return None

    def protocol(self, exc: HttpProcessingError) -> Failure:
        """A request aiohttp's HTTP parser refused: a client error, never a bug."""
        status = 405 if isinstance(exc, BadHttpMethod) else exc.code if 400 <= exc.code < 500 else 400
        message = exc.message if isinstance(exc.message, str) and exc.message else "malformed request"
        return Failure(status, self.http_kinds.get(status, f"http_{status}"), message, exc=exc)

    def internal(self, exc: BaseException) -> Failure:
        # The client learns that it is our fault, not what broke: the log has the traceback.
        message = f"internal error ({type(exc).__name__}); see the service's log"
        return Failure(500, self.internal_kind, message, exc=exc)

    def render(self, request: web.Request, failure: Failure) -> web.StreamResponse:
        return web.json_response(failure.document(), status=failure.status)
