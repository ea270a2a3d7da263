"""The S3 action (IAM policy reference) of every operation, and the judging step that runs before each
handler (gateway/app.py): docs/access.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import MultiDictProxy

from gateway.context import Gateway
from gateway.handlers import access
from gateway.handlers import attributes as attributes_api
from gateway.handlers import bucket_access as access_api
from gateway.handlers import buckets as bucket_api
from gateway.handlers import cors as cors_api
from gateway.handlers import deletes as delete_api
from gateway.handlers import lifecycle as lifecycle_api
from gateway.handlers import listing as listing_api
from gateway.handlers import multipart as multipart_api
from gateway.handlers import notifications as notify_api
from gateway.handlers import object_lock as lock_api
from gateway.handlers import objects as object_api
from gateway.handlers import post_object as post_api
from gateway.handlers import tagging as tagging_api
from gateway.handlers import versions as version_api
from gateway.s3.errors import S3Error
from gateway.s3.request import S3Request

Handler = Callable[[Gateway, S3Request], Awaitable[web.StreamResponse]]

# Bucket access configurations: (method, subresource) -> handler (gateway/handlers/bucket_access.py).
_ACCESS_CONFIGS = ("policyStatus", "policy", "publicAccessBlock", "ownershipControls", "acl")
_BUCKET_ACCESS: dict[tuple[str, str], Handler] = {
    ("PUT", "policy"): access_api.put_bucket_policy,
    ("GET", "policy"): access_api.get_bucket_policy,
    ("DELETE", "policy"): access_api.delete_bucket_policy,
    ("GET", "policyStatus"): access_api.get_bucket_policy_status,
    ("PUT", "publicAccessBlock"): access_api.put_public_access_block,
    ("GET", "publicAccessBlock"): access_api.get_public_access_block,
    ("DELETE", "publicAccessBlock"): access_api.delete_public_access_block,
    ("PUT", "ownershipControls"): access_api.put_ownership_controls,
    ("GET", "ownershipControls"): access_api.get_ownership_controls,
    ("DELETE", "ownershipControls"): access_api.delete_ownership_controls,
    ("PUT", "acl"): access_api.put_bucket_acl,
    ("GET", "acl"): access_api.get_bucket_acl,
}

# The S3 action (IAM policy reference) each operation is judged as, before its handler runs. An operation
# missing here is left to the bucket's owner and the root (access.judge): add new operations here. "" marks
# an operation that judges itself, once its bucket is known to exist (each key of a DeleteObjects, a form
# POST's signer, a CORS preflight by the bucket's rules), with accounts.authorize.authorize or access.may_key.
ACTIONS: dict[Handler, str] = {
    bucket_api.list_buckets: "s3:ListAllMyBuckets",
    bucket_api.create_bucket: "s3:CreateBucket",
    bucket_api.delete_bucket: "s3:DeleteBucket",
    bucket_api.head_bucket: "s3:ListBucket",
    bucket_api.bucket_location: "s3:GetBucketLocation",
    listing_api.list_objects: "s3:ListBucket",
    listing_api.list_uploads: "s3:ListBucketMultipartUploads",
    object_api.get_object: "s3:GetObject",
    object_api.head_object: "s3:GetObject",
    object_api.put_object: "s3:PutObject",
    object_api.copy_object: "s3:PutObject",
    delete_api.delete_object: "s3:DeleteObject",  # s3:DeleteObjectVersion with ?versionId: see _VERSIONED
    delete_api.delete_objects: "",  # s3:DeleteObject on each key, judged by the handler (access.may_key)
    multipart_api.create_upload: "s3:PutObject",
    multipart_api.upload_part: "s3:PutObject",
    multipart_api.upload_part_copy: "s3:PutObject",
    multipart_api.complete_upload: "s3:PutObject",
    multipart_api.abort_upload: "s3:AbortMultipartUpload",
    multipart_api.list_parts: "s3:ListMultipartUploadParts",
    access_api.put_bucket_policy: "s3:PutBucketPolicy",
    access_api.get_bucket_policy: "s3:GetBucketPolicy",
    access_api.delete_bucket_policy: "s3:DeleteBucketPolicy",
    access_api.get_bucket_policy_status: "s3:GetBucketPolicyStatus",
    access_api.put_public_access_block: "s3:PutBucketPublicAccessBlock",
    access_api.get_public_access_block: "s3:GetBucketPublicAccessBlock",
    access_api.delete_public_access_block: "s3:PutBucketPublicAccessBlock",
    access_api.put_ownership_controls: "s3:PutBucketOwnershipControls",
    access_api.get_ownership_controls: "s3:GetBucketOwnershipControls",
    access_api.delete_ownership_controls: "s3:PutBucketOwnershipControls",
    access_api.put_bucket_acl: "s3:PutBucketAcl",
    access_api.get_bucket_acl: "s3:GetBucketAcl",
    access_api.get_object_acl: "s3:GetObjectAcl",
    access_api.put_object_acl: "s3:PutObjectAcl",
    tagging_api.get_bucket_tagging: "s3:GetBucketTagging",
    tagging_api.put_bucket_tagging: "s3:PutBucketTagging",
    tagging_api.delete_bucket_tagging: "s3:PutBucketTagging",
    tagging_api.get_object_tagging: "s3:GetObjectTagging",
    tagging_api.put_object_tagging: "s3:PutObjectTagging",
    tagging_api.delete_object_tagging: "s3:DeleteObjectTagging",
    attributes_api.get_object_attributes: "s3:GetObjectAttributes",
    version_api.get_bucket_versioning: "s3:GetBucketVersioning",
    version_api.put_bucket_versioning: "s3:PutBucketVersioning",
    version_api.list_object_versions: "s3:ListBucketVersions",
    lock_api.get_lock_configuration: "s3:GetBucketObjectLockConfiguration",
    lock_api.put_lock_configuration: "s3:PutBucketObjectLockConfiguration",
    lock_api.get_retention: "s3:GetObjectRetention",
    lock_api.put_retention: "s3:PutObjectRetention",
    lock_api.get_legal_hold: "s3:GetObjectLegalHold",
    lock_api.put_legal_hold: "s3:PutObjectLegalHold",
    lifecycle_api.get_lifecycle: "s3:GetLifecycleConfiguration",
    lifecycle_api.put_lifecycle: "s3:PutLifecycleConfiguration",
    lifecycle_api.delete_lifecycle: "s3:PutLifecycleConfiguration",  # as AWS judges DeleteBucketLifecycle
    cors_api.put_bucket_cors: "s3:PutBucketCORS",
    cors_api.get_bucket_cors: "s3:GetBucketCORS",
    cors_api.delete_bucket_cors: "s3:PutBucketCORS",  # as AWS: DeleteBucketCors is judged as PutBucketCORS
    cors_api.preflight: "",  # anonymous, allowed or refused by the bucket's CORS rules
    post_api.post_object: "",  # s3:PutObject for the form's signer (or anyone), judged once the key is known
    notify_api.get_notification: "s3:GetBucketNotification",
    notify_api.put_notification: "s3:PutBucketNotification",
}
# With ?versionId, an object operation is judged as its Version action, as S3 does.
_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
}
# Operations that write an object and take a canned ACL with it (x-amz-acl).
_TAKES_ACL = frozenset({object_api.put_object, object_api.copy_object, multipart_api.create_upload})
_COPIES = frozenset({object_api.copy_object, multipart_api.upload_part_copy})


async def judge_request(gw: Gateway, req: S3Request, handler: Handler) -> None:
    """The one place every S3 request is judged before its handler runs (docs/access.md)."""
    action = ACTIONS.get(handler)
    if action and "versionId" in req.query:
        action = _VERSIONED.get(action, action)
    await access.judge(gw, req, action)
    if handler in _TAKES_ACL:
        rec = access.judged_bucket(req)
        if rec is not None:
            access.check_acl(rec, access.requested_acl(req))
    if handler in _COPIES:  # reading the source is a GetObject (of a version) of its own
        raw = req.headers["x-amz-copy-source"]
        bucket, key = object_api.parse_copy_source(raw)
        read = "s3:GetObject" if object_api.copy_source_version(raw) is None else "s3:GetObjectVersion"
        await access.judge(gw, req, read, bucket, key)


def bucket_access_handler(method: str, query: MultiDictProxy[str]) -> Handler | None:
    """The handler of a bucket access configuration request (?policy, ?acl, ...), None if it is not one."""
    for config in _ACCESS_CONFIGS:
        if config in query:
            return _BUCKET_ACCESS.get((method, config))
    return None


def object_acl_handler(method: str) -> Handler:
    if method == "GET":
        return access_api.get_object_acl
    if method == "PUT":
        return access_api.put_object_acl
    raise S3Error("MethodNotAllowed")
