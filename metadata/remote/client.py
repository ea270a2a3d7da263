"""RemoteIndex: the Index seam over HTTP, as a client of one metadata service (metadata/remote/service.py).

Timeouts: every call has one budget, `timeout` seconds, for all its attempts and backoff sleeps
together, so no call takes longer whatever the network does.

Retries (the design rule is retries at one layer only: for a single service it is this one; the
replicated index will build its clients with attempts=1 and retry across replicas itself):
- Reads (protocol.READS) are retried on connection errors and on 502/503/504, up to `attempts`
  attempts, sleeping between them with capped exponential backoff and full jitter.
- Writes are retried only when the connection could not be made (aiohttp.ClientConnectorError):
  then the request never left this process. A write whose connection broke later, or that timed out,
  may have been applied, and repeating it is not harmless: writes return what they replaced or
  removed, for the gateway to collect its data. A repeated put_object or put_part would name the
  write's own record as replaced (and the data of a live object would be collected); a repeated
  delete or abort would return nothing (and the data would leak). Such a write raises
  IndexUnavailable instead; the S3 client retries the whole request, as SDKs do with a 503.
A timeout is never retried: it has spent the call's budget.

Errors the index raises on purpose come back as the same exception types (BucketAlreadyExists
with its owner, DriveClaimed with its drive and owner, ValueError for refused input); a refused
cluster signature raises cluster.auth.ClusterAuthError. The calls go through cluster/client.py's
RpcClient, which carries out this policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from yarl import URL

from cluster.client import RetryPolicy, RpcClient, Timeouts
from metadata.index import (
    Completed,
    IndexUnavailable,
    MetadataError,
    ObjectPage,
    PartPage,
    UploadPage,
    VersionPage,
)
from metadata.records import (
    BucketRecord,
    Condition,
    EventRecord,
    LockGuard,
    NodeRecord,
    NotifyTarget,
    ObjectManifest,
    PartRecord,
    RepairEntry,
    UploadRecord,
    Usage,
    UserRecord,
)
from metadata.remote import protocol

ATTEMPTS = 4
BACKOFF_BASE = 0.05  # seconds before the second attempt, at most; doubling after
BACKOFF_CAP = 1.0


class RemoteIndex:
    """The Index of the metadata service at base_url ("http://host:port"), signing with the cluster secret."""

    def __init__(
        self,
        base_url: str,
        secret: bytes,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        *,
        attempts: int = ATTEMPTS,
    ) -> None:
        base = URL(base_url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"the metadata service URL must be http://HOST:PORT, not {base_url!r}")
        self._base = base
        self._closed = False
        self._rpc = RpcClient(
            base_url,
            secret,
            session=session,
            timeouts=Timeouts(total=timeout),
            # 502/503/504: from the service or a proxy in front of it, "try again".
            retry=RetryPolicy(max(1, attempts), BACKOFF_BASE, BACKOFF_CAP, protocol.TRANSIENT),
            unavailable=lambda why: IndexUnavailable(f"{self._base}: {why}"),
            refused=lambda answer: protocol.error_from(answer.status, answer.doc),
        )

    async def close(self) -> None:
        self._closed = True
        await self._rpc.close()

    # -- plumbing

    async def _call(self, name: str, /, **args: Any) -> Any:
        if self._closed:
            raise RuntimeError("index is closed")
        op = protocol.OPERATIONS[name]
        data = await self._rpc.call(
            "POST",
            op.path,
            protocol.encode_request(op, args),
            idempotent=op.read,
            content_type=protocol.MSGPACK,
            limit=None,  # bounded by the budget; a manifest of 10,000 parts is a few MB
            unavailable=lambda why: IndexUnavailable(f"{op.name} at {self._base}: {why}"),
        )
        try:
            return protocol.decode_result(op, data)
        except protocol.WireError as exc:
            raise MetadataError(f"{op.name}: malformed answer from {self._base}: {exc}") from None

    # -- buckets

    async def create_bucket(self, rec: BucketRecord) -> None:
        await self._call("create_bucket", rec=rec)

    async def get_bucket(self, name: str) -> BucketRecord | None:
        return await self._call("get_bucket", name=name)

    async def update_object(
        self, bucket: str, key: str, version_id: str, changes: dict[str, str | None]
    ) -> ObjectManifest | None:
        return await self._call("update_object", bucket=bucket, key=key, version_id=version_id, changes=changes)

    async def update_bucket(self, name: str, changes: dict[str, str | None]) -> BucketRecord:
        return await self._call("update_bucket", name=name, changes=changes)

    async def set_versioning(self, name: str, status: str) -> None:
        await self._call("set_versioning", name=name, status=status)

    async def set_bucket_lock(self, name: str, mode: str = "", days: int = 0, years: int = 0) -> None:
        await self._call("set_bucket_lock", name=name, mode=mode, days=days, years=years)

    async def delete_bucket(self, name: str) -> list[PartRecord]:
        return await self._call("delete_bucket", name=name)

    async def list_buckets(self) -> list[BucketRecord]:
        return await self._call("list_buckets")

    async def set_bucket_tags(self, name: str, tags: dict[str, str]) -> None:
        await self._call("set_bucket_tags", name=name, tags=tags)

    async def set_bucket_lifecycle(self, name: str, rules: str) -> None:
        await self._call("set_bucket_lifecycle", name=name, rules=rules)

    async def set_lifecycle_cursor(self, name: str, cursor: str) -> None:
        await self._call("set_lifecycle_cursor", name=name, cursor=cursor)

    # -- objects

    async def put_object(
        self, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        return await self._call("put_object", man=man, cond=cond, events=list(events))

    async def get_object(self, bucket: str, key: str) -> ObjectManifest | None:
        return await self._call("get_object", bucket=bucket, key=key)

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectManifest | None:
        return await self._call("get_version", bucket=bucket, key=key, version_id=version_id)

    async def latest_version(self, bucket: str, key: str) -> ObjectManifest | None:
        return await self._call("latest_version", bucket=bucket, key=key)

    async def delete_version(
        self,
        bucket: str,
        key: str,
        version_id: str,
        guard: LockGuard | None = None,
        events: Sequence[EventRecord] = (),
    ) -> ObjectManifest | None:
        # Without a guard the argument stays off the wire: a service older than object lock still takes it.
        extra: dict[str, object] = {} if guard is None else {"guard": guard}
        args = {"bucket": bucket, "key": key, "version_id": version_id}
        return await self._call("delete_version", **args, events=list(events), **extra)

    async def set_retention(
        self, bucket: str, key: str, version_id: str, mode: str, until: float, guard: LockGuard
    ) -> bool:
        args = {"bucket": bucket, "key": key, "version_id": version_id, "mode": mode, "until": until}
        return await self._call("set_retention", **args, guard=guard)

    async def set_legal_hold(self, bucket: str, key: str, version_id: str, on: bool) -> bool:
        return await self._call("set_legal_hold", bucket=bucket, key=key, version_id=version_id, on=on)

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        delimiter: str = "",
        max_keys: int = 1000,
    ) -> VersionPage:
        return await self._call(
            "list_versions",
            bucket=bucket,
            prefix=prefix,
            key_marker=key_marker,
            version_id_marker=version_id_marker,
            delimiter=delimiter,
            max_keys=max_keys,
        )

    async def delete_object(
        self, bucket: str, key: str, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> ObjectManifest | None:
        return await self._call("delete_object", bucket=bucket, key=key, cond=cond, events=list(events))

    async def set_object_tags(self, bucket: str, key: str, version_id: str, tags: dict[str, str]) -> bool:
        return await self._call("set_object_tags", bucket=bucket, key=key, version_id=version_id, tags=tags)

    async def list_objects(
        self, bucket: str, prefix: str = "", start_after: str = "", delimiter: str = "", max_keys: int = 1000
    ) -> ObjectPage:
        return await self._call(
            "list_objects",
            bucket=bucket,
            prefix=prefix,
            start_after=start_after,
            delimiter=delimiter,
            max_keys=max_keys,
        )

    # -- multipart uploads

    async def create_upload(self, rec: UploadRecord) -> None:
        await self._call("create_upload", rec=rec)

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        return await self._call("get_upload", upload_id=upload_id)

    async def put_part(self, upload_id: str, part: PartRecord) -> PartRecord | None:
        return await self._call("put_part", upload_id=upload_id, part=part)

    async def list_parts(self, upload_id: str, marker: int = 0, max_parts: int = 1000) -> PartPage:
        return await self._call("list_parts", upload_id=upload_id, marker=marker, max_parts=max_parts)

    async def list_uploads(
        self,
        bucket: str,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        delimiter: str = "",
        max_uploads: int = 1000,
    ) -> UploadPage:
        return await self._call(
            "list_uploads",
            bucket=bucket,
            prefix=prefix,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            delimiter=delimiter,
            max_uploads=max_uploads,
        )

    async def complete_upload(
        self, upload_id: str, man: ObjectManifest, cond: Condition | None = None, events: Sequence[EventRecord] = ()
    ) -> Completed:
        return await self._call("complete_upload", upload_id=upload_id, man=man, cond=cond, events=list(events))

    async def abort_upload(self, upload_id: str) -> list[PartRecord]:
        return await self._call("abort_upload", upload_id=upload_id)

    # -- cluster membership

    async def upsert_node(self, rec: NodeRecord) -> NodeRecord:
        return await self._call("upsert_node", rec=rec)

    async def list_nodes(self) -> list[NodeRecord]:
        return await self._call("list_nodes")

    async def remove_node(self, node_id: str) -> bool:
        return await self._call("remove_node", node_id=node_id)

    async def set_node_state(self, node_id: str, state: str) -> NodeRecord:
        return await self._call("set_node_state", node_id=node_id, state=state)

    # -- repair

    async def update_part(self, bucket: str, key: str, version_id: str, part: PartRecord) -> bool:
        return await self._call("update_part", bucket=bucket, key=key, version_id=version_id, part=part)

    async def queue_repairs(self, entries: Sequence[RepairEntry]) -> None:
        await self._call("queue_repairs", entries=list(entries))

    async def list_repairs(self, after: RepairEntry | None = None, limit: int = 1000) -> list[RepairEntry]:
        return await self._call("list_repairs", after=after, limit=limit)

    async def remove_repairs(self, entries: Sequence[RepairEntry]) -> None:
        await self._call("remove_repairs", entries=list(entries))

    async def repair_backlog(self) -> int:
        return await self._call("repair_backlog")

    # -- users

    async def create_user(self, rec: UserRecord) -> None:
        await self._call("create_user", rec=rec)

    async def list_users(self) -> list[UserRecord]:
        return await self._call("list_users")

    async def update_user(self, name: str, changes: dict[str, str | None]) -> UserRecord | None:
        return await self._call("update_user", name=name, changes=changes)

    async def delete_user(self, name: str) -> UserRecord | None:
        return await self._call("delete_user", name=name)

    # -- leases

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        return await self._call("acquire_lease", name=name, holder=holder, ttl=ttl)

    async def release_lease(self, name: str, holder: str) -> bool:
        return await self._call("release_lease", name=name, holder=holder)

    # -- quotas and usage

    async def set_bucket_quota(self, name: str, max_size: int, max_objects: int) -> None:
        await self._call("set_bucket_quota", name=name, max_size=max_size, max_objects=max_objects)

    async def set_user_quota(self, name: str, max_size: int, max_objects: int) -> UserRecord | None:
        return await self._call("set_user_quota", name=name, max_size=max_size, max_objects=max_objects)

    async def bucket_usage(self, name: str) -> Usage:
        return await self._call("bucket_usage", name=name)

    # -- event notifications

    async def set_notifications(self, name: str, config: str) -> None:
        await self._call("set_notifications", name=name, config=config)

    async def put_notify_target(self, rec: NotifyTarget) -> None:
        await self._call("put_notify_target", rec=rec)

    async def list_notify_targets(self) -> list[NotifyTarget]:
        return await self._call("list_notify_targets")

    async def remove_notify_target(self, name: str) -> bool:
        return await self._call("remove_notify_target", name=name)

    async def list_events(self, limit: int = 1000) -> list[EventRecord]:
        return await self._call("list_events", limit=limit)

    async def update_events(self, done: Sequence[str], retry: Sequence[EventRecord]) -> None:
        await self._call("update_events", done=list(done), retry=list(retry))

    async def event_backlog(self) -> int:
        return await self._call("event_backlog")
