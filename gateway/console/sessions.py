"""Console sessions: sign-in checked against the user directory, a random cookie, a CSRF token per session,
and a rate limit on sign-in attempts.

A session keeps no secret. It names an access key; every request takes that key's secret from the
user directory again (in this process), so a user removed or re-keyed loses their sessions at once. Sessions
live in this process's memory: with `tessera server --workers N` only the primary worker serves the console.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from gateway.accounts.users import UserDirectory

DEFAULT_TTL = 12 * 3600.0  # seconds a session lasts after sign-in, however busy
MAX_SESSIONS = 10_000  # past this, the oldest sessions are dropped first
ATTEMPT_BURST = 5  # failed sign-ins from one address in a row ...
ATTEMPTS_PER_SECOND = 0.2  # ... and then one every five seconds
_ADDRESSES_KEPT = 4096


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    access_key: str
    root: bool
    csrf: str
    expires: float  # epoch seconds
    secret_digest: bytes  # the secret signed in with, to notice a re-keyed user


class SignInRefused(Exception):
    pass


class TooManyAttempts(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("too many sign-in attempts")
        self.retry_after = retry_after


class Sessions:
    def __init__(self, users: UserDirectory, ttl: float = DEFAULT_TTL) -> None:
        self.users = users
        self.ttl = ttl
        self._sessions: dict[str, Session] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    def _tokens(self, address: str) -> float:
        now = time.monotonic()
        tokens, then = self._buckets.get(address, (float(ATTEMPT_BURST), now))
        return min(float(ATTEMPT_BURST), tokens + (now - then) * ATTEMPTS_PER_SECOND)

    def _check_attempts(self, address: str) -> None:
        tokens = self._tokens(address)
        if tokens < 1:
            raise TooManyAttempts((1 - tokens) / ATTEMPTS_PER_SECOND)

    def _failed(self, address: str) -> None:
        tokens = self._tokens(address)
        if len(self._buckets) >= _ADDRESSES_KEPT and address not in self._buckets:
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[address] = (tokens - 1, time.monotonic())

    async def sign_in(self, access_key: str, secret_key: str, address: str) -> Session:
        """A new session, or SignInRefused (wrong key or secret: one answer for both) / TooManyAttempts.
        Failed attempts are what is rate-limited, per address: guessing is slow, signing in is not."""
        self._check_attempts(address)
        if access_key and len(access_key) <= 128 and not self.users.known(access_key):
            await self.users.ensure(access_key)  # a user added through another gateway a moment ago
        known = self.users.secret(access_key) if access_key else None
        # Compared even when the key is unknown, so that the answer takes as long either way.
        expected = _digest(known if known is not None else secrets.token_hex(20))
        if not hmac.compare_digest(expected, _digest(secret_key)) or known is None:
            self._failed(address)
            raise SignInRefused("the access key or the secret key is wrong")
        now = time.time()
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:  # sign-ins are rare: a sweep
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session = Session(
            sid=secrets.token_urlsafe(32),
            access_key=access_key,
            root=self.users.is_root(access_key),
            csrf=secrets.token_urlsafe(24),
            expires=now + self.ttl,
            secret_digest=expected,
        )
        self._sessions[session.sid] = session
        return session

    def find(self, sid: str) -> tuple[Session, str] | None:
        """The live session of a cookie and its user's secret now; None when it ended, expired, or its
        user was removed or given another secret since."""
        session = self._sessions.get(sid) if sid else None
        if session is None:
            return None
        secret = self.users.secret(session.access_key)
        if (
            session.expires <= time.time()
            or secret is None
            or not hmac.compare_digest(_digest(secret), session.secret_digest)
        ):
            self._sessions.pop(sid, None)
            return None
        return session, secret

    def end(self, sid: str) -> None:
        self._sessions.pop(sid, None)
