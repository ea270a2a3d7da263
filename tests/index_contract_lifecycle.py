"""The Index contract for a bucket's lifecycle rules and the lifecycle worker's cursor (part of IndexContract)."""

from __future__ import annotations

import time
import uuid

import pytest

from metadata.index import Index, NoSuchBucket
from metadata.records import BucketRecord


class LifecycleContract:
    async def test_bucket_lifecycle_and_cursor(self, index: Index) -> None:
        name = f"lc-{uuid.uuid4().hex[:8]}"
        await index.create_bucket(BucketRecord(name, "AKIA", time.time()))
        await index.set_bucket_tags(name, {"team": "x"})
        await index.set_bucket_lifecycle(name, '[{"id":"r"}]')
        await index.set_lifecycle_cursor(name, "logs/0042")
        rec = await index.get_bucket(name)
        assert rec is not None
        assert (rec.lifecycle, rec.lifecycle_cursor, rec.tags) == ('[{"id":"r"}]', "logs/0042", {"team": "x"})
        await index.set_bucket_tags(name, {})  # other bucket settings keep the rules and the cursor
        await index.set_bucket_lifecycle(name, "")
        rec = await index.get_bucket(name)
        assert rec is not None and (rec.lifecycle, rec.lifecycle_cursor, rec.tags) == ("", "logs/0042", {})
        for call in (index.set_bucket_lifecycle, index.set_lifecycle_cursor):
            with pytest.raises(NoSuchBucket):
                await call(f"missing-{uuid.uuid4().hex[:8]}", "x")
