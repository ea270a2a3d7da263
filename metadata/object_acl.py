"""Index.update_object for both stores: an object's canned ACL rewritten in place, over the store's `_rewrite`
(as object_lock.LockRewrites does for retention)."""

from __future__ import annotations

from collections.abc import Callable

from metadata.records import ObjectManifest, object_changes


class AclRewrites:
    """Index.update_object for a store that rewrites a version in place with `_rewrite` (LocalIndex,
    ReplicatedIndex)."""

    async def _rewrite(self, bucket: str, key: str, version_id: str, change: Callable[[ObjectManifest], bool]) -> bool:
        raise NotImplementedError

    async def update_object(
        self, bucket: str, key: str, version_id: str, changes: dict[str, str | None]
    ) -> ObjectManifest | None:
        change, changed = object_changes(changes)
        return changed[-1] if await self._rewrite(bucket, key, version_id, change) else None
