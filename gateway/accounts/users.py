"""S3 users: kept in the index, cached in every gateway so that signing a request costs no index read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time

from cluster.workers import Periodic
from gateway.accounts import policy as policies
from gateway.accounts.authorize import ANONYMOUS, Principal
from gateway.accounts.credentials import Credentials, generate
from metadata.index import Index, IndexUnavailable
from metadata.records import UserRecord

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0  # how long a user removed through another gateway may keep working here
_NAME_RE = re.compile(r"[A-Za-z0-9_.@+=-]{1,64}")
_RESERVED_NAMES = frozenset({"root"})
RELOAD_BURST = 3  # reloads that unknown access keys may cause at once ...
RELOADS_PER_SECOND = 1.0  # ... and after that, per second
_CHANGE_MEMORY = 120.0  # seconds a local add/remove is remembered, to outlive any reload started before it


class InvalidUserName(ValueError):
    pass


class UserDirectory:
    """Who may sign requests: the root (always) and the users in the index.

    The cache is complete after each reload; a key missing from it triggers a reload at once (so a user
    added through another gateway works on the first request), within a budget (see ensure()), and a
    periodic refresh drops users removed elsewhere. The workers of one server tell each other of the users
    they add and remove at once (gateway/siblings.py: forget(), ensure(limited=False)).
    """

    def __init__(self, index: Index, root: Credentials, refresh: float = REFRESH_SECONDS) -> None:
        self._index = index
        self._root = root
        self._secrets: dict[str, str] = {}  # user access key -> secret key
        self._profiles: dict[str, tuple[str, str]] = {}  # user access key -> (name, policy JSON or "")
        # Policies set here, as _changes: a reload that read the index before must not bring the old one back.
        self._policy_changes: dict[str, tuple[float, tuple[str, str]]] = {}
        # Adds and removes made here, by access key: (monotonic time, secret or None when removed). A reload
        # that started before one of them read the index before it, so must not undo it.
        self._changes: dict[str, tuple[float, str | None]] = {}
        self._inflight: asyncio.Future[None] | None = None
        self._inflight_started = 0.0
        self._tokens, self._tokens_at = float(RELOAD_BURST), time.monotonic()  # reloads unknown keys may cause
        # Drops users removed elsewhere; a refresh that fails keeps serving the users known.
        self.refresher = Periodic("users", self._reload_shared, refresh, what="users refresh")

    # -- the hot path (no awaits)
    def secret(self, access_key: str) -> str | None:
        if access_key == self._root.access_key:
            return self._root.secret_key
        return self._secrets.get(access_key)

    def is_root(self, access_key: str) -> bool:
        return bool(access_key) and access_key == self._root.access_key

    def principal(self, access_key: str) -> Principal:
        """Who a request signed with access_key ("" when unsigned) is, with their policy."""
        if not access_key:
            return ANONYMOUS
        if access_key == self._root.access_key:
            return Principal(access_key, "root", root=True)
        name, text = self._profiles.get(access_key, ("", ""))
        return Principal(access_key, name, policy=policies.cached(text) if text else None)

    def known(self, access_key: str) -> bool:
        return access_key == self._root.access_key or access_key in self._secrets

    async def ensure(self, access_key: str, limited: bool = True) -> None:
        """Reload from the index if access_key is not cached; after this the cache knows it if the index did
        when this call started, unless the reload budget is spent. Raises IndexUnavailable when the index
        cannot answer.

        Every request signed with a key we do not know lands here, junk keys included, so the reloads they
        cause are coalesced (one at a time; joining one costs the index nothing) and, when `limited`,
        rate-limited: past the budget the caller answers InvalidAccessKeyId at once and the periodic
        refresh catches up with users created through other gateways."""
        arrived = time.monotonic()
        while not self.known(access_key):
            if self._inflight is not None and not self._inflight.done():
                started = self._inflight_started
                await asyncio.shield(self._inflight)
                if started >= arrived:
                    return
                continue  # it read the index before this key's user may have been created: one more
            if limited and not self._take_reload_token():
                return
            await self._reload_shared()
            return

    def forget(self, access_key: str) -> None:
        """Drop a user removed by another worker of this server (the root cannot be forgotten)."""
        self._secrets.pop(access_key, None)
        self._profiles.pop(access_key, None)
        self._remember(access_key, None)

    def _take_reload_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(RELOAD_BURST, self._tokens + (now - self._tokens_at) * RELOADS_PER_SECOND)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # -- lifecycle
    async def start(self) -> None:
        with contextlib.suppress(Exception):  # the index may be down now; ensure() and the refresher retry
            await self._reload_shared()
        self.refresher.start()

    async def close(self) -> None:
        await self.refresher.stop()

    # -- administration
    async def add(self, name: str, policy: str = "") -> UserRecord:
        """Create a user with new credentials and `policy` (checked: policy.parse). Raises InvalidUserName,
        PolicyError, metadata.index.UserExists."""
        check_name(name, self._root.access_key)
        if policy:
            policies.parse(policy)
        creds = generate()
        while self.known(creds.access_key):  # astronomically unlikely, but a clash would merge two identities
            creds = generate()
        rec = UserRecord(name, creds.access_key, creds.secret_key, time.time(), policy)
        await self._index.create_user(rec)
        self._secrets[rec.access_key] = rec.secret_key
        self._profiles[rec.access_key] = (rec.name, rec.policy)
        self._remember(rec.access_key, rec.secret_key)
        return rec

    async def set_policy(self, name: str, policy: str) -> UserRecord | None:
        """Replace a user's policy ("" : the default); None if there is no such user. Raises PolicyError."""
        if policy:
            policies.parse(policy)
        rec = await self._index.update_user(name, {"policy": policy})
        if rec is not None:
            self._profiles[rec.access_key] = (rec.name, rec.policy)
            self._policy_changes[rec.access_key] = (time.monotonic(), (rec.name, rec.policy))
        return rec

    async def remove(self, name: str) -> UserRecord | None:
        rec = await self._index.delete_user(name)
        if rec is not None:
            self._secrets.pop(rec.access_key, None)
            self._profiles.pop(rec.access_key, None)
            self._remember(rec.access_key, None)
        return rec

    async def list(self) -> list[UserRecord]:
        return sorted(await self._index.list_users(), key=lambda u: u.name)

    # -- internals
    async def _reload_shared(self) -> float:
        """One reload at a time: concurrent callers wait for the same one. Returns when it started."""
        if self._inflight is None or self._inflight.done():
            self._inflight_started = time.monotonic()
            self._inflight = asyncio.ensure_future(self._reload(self._inflight_started))
            # Retrieved here so that a reload whose callers all went away does not log "never retrieved".
            self._inflight.add_done_callback(lambda f: f.cancelled() or f.exception())
        started = self._inflight_started
        # shield: a caller that goes away (client disconnect) must not cancel the others' reload.
        await asyncio.shield(self._inflight)
        return started

    async def _reload(self, started: float) -> None:
        try:
            users = await self._index.list_users()
        except IndexUnavailable:
            raise
        except Exception as exc:  # anything else from the index is still "cannot tell now", not a crash
            log.exception("cannot load users from the index")
            raise IndexUnavailable(f"cannot load users: {exc!r}") from exc
        secrets = {u.access_key: u.secret_key for u in users}
        now = time.monotonic()
        for key, (when, secret) in list(self._changes.items()):
            if when < now - _CHANGE_MEMORY:
                del self._changes[key]
            elif when >= started:
                if secret is None:
                    secrets.pop(key, None)
                else:
                    secrets[key] = secret
        secrets.pop(self._root.access_key, None)  # the root's secret comes from its own configuration only
        profiles = {u.access_key: (u.name, u.policy) for u in users if u.access_key in secrets}
        for key in secrets.keys() - profiles.keys():  # added here since the reload began: keep what we know
            profiles[key] = self._profiles.get(key, ("", ""))
        for key, (when, profile) in list(self._policy_changes.items()):
            if when < now - _CHANGE_MEMORY:
                del self._policy_changes[key]
            elif when >= started and key in profiles:
                profiles[key] = profile
        self._secrets, self._profiles = secrets, profiles

    def _remember(self, access_key: str, secret: str | None) -> None:
        self._changes[access_key] = (time.monotonic(), secret)


def check_name(name: str, root_access_key: str = "") -> None:
    if not _NAME_RE.fullmatch(name):
        raise InvalidUserName("a user name is 1-64 characters of A-Za-z0-9_.@+=-")
    # "root" and the root's access key would read as the root in listings and logs.
    if name.lower() in _RESERVED_NAMES or name == root_access_key:
        raise InvalidUserName(f"the user name {name!r} is reserved")
