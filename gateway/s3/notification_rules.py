"""Bucket notification rules (docs/notifications.md): the events a rule may name, whether an event matches a
rule, how rules are stored on the bucket record, and the EventRecord a write (or lifecycle) queues with its
change. No storage: the index queues the event in the write's own transaction.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass

from metadata.records import BucketRecord, EventRecord, ObjectManifest

CREATED = ("Put", "Post", "Copy", "CompleteMultipartUpload")
REMOVED = ("Delete", "DeleteMarkerCreated")
EXPIRED = ("Delete", "DeleteMarkerCreated")  # LifecycleExpiration: a version removed, a marker put by lifecycle
EVENTS = frozenset(
    [f"s3:ObjectCreated:{e}" for e in ("*", *CREATED)]
    + [f"s3:ObjectRemoved:{e}" for e in ("*", *REMOVED)]
    + [f"s3:LifecycleExpiration:{e}" for e in ("*", *EXPIRED)]
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    target: str  # NotifyTarget name
    arn: str  # as the client gave it (GET answers it back)
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def matches(self, event: str, key: str) -> bool:
        kind = event.split(":", 1)[0]
        wanted = f"s3:{event}" in self.events or f"s3:{kind}:*" in self.events
        return wanted and key.startswith(self.prefix) and key.endswith(self.suffix)


def target_of(arn: str) -> str | None:
    """The target name an ARN of ours names, None if it is not one."""
    parts = arn.split(":")
    if len(parts) == 5 and parts[:4] == ["arn", "tessera", "sqs", ""] and parts[4]:
        return parts[4]
    if len(parts) == 6 and parts[:4] == ["arn", "minio", "sqs", ""] and parts[4] and parts[5] == "webhook":
        return parts[4]
    return None


def to_json(rules: list[Rule]) -> str:
    """How the rules are stored on the bucket record ("" for none)."""
    return json.dumps({"rules": [{f: getattr(r, f) for f in Rule.__slots__} for r in rules]}) if rules else ""


@functools.lru_cache(maxsize=1024)
def rules_of(config: str) -> tuple[Rule, ...]:
    """A bucket's stored rules (parsed once per distinct configuration)."""
    if not config:
        return ()
    return tuple(Rule(**{**r, "events": tuple(r["events"])}) for r in json.loads(config)["rules"])


def new_seq(now: float) -> str:
    return f"{int(now * 1_000_000):016x}{os.urandom(8).hex()}"


def events_for(
    bucket: BucketRecord, name: str, key: str, man: ObjectManifest | None = None, principal: str = ""
) -> list[EventRecord]:
    """The event a write queues (one, listing every target whose rule matches), or none."""
    targets = sorted({r.target for r in rules_of(bucket.notifications) if r.matches(name, key)})
    if not targets:
        return []
    now = time.time()
    ev = EventRecord(new_seq(now), name, bucket.name, key, targets, time=now, principal=principal)
    if man is not None:
        ev.size, ev.etag, ev.version_id = man.size, man.etag, man.s3_version_id
    return [ev]
