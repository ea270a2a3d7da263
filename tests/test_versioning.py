"""Versioning against a real `tessera server` (the embedded server, LocalIndex): the cases of
tests/versioning_cases.py, and what only the embedded server shows (GC of deleted versions' fragments)."""

from __future__ import annotations

from tests.versioning_cases import (  # noqa: F401  (collected here)
    test_bucket_with_versions_is_not_empty_until_purged,
    test_copy_and_multipart_versions,
    test_delete_markers,
    test_delete_objects_with_versions,
    test_list_object_versions_pages_prefixes_and_encoding,
    test_null_version,
    test_versioning_configuration,
    test_versions_put_get_head_delete,
)
