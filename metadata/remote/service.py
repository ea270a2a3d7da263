"""The metadata service: an Index served over HTTP to the rest of the cluster.

    POST /v1/<operation>   an Index method (metadata/remote/protocol.py); needs a valid cluster signature
    GET  /health/live      the process answers (shallow)
    GET  /health/ready     the index answers a read (deep)
    GET  /metrics          Prometheus text: requests and their durations by operation and status

Built on the service skeleton (cluster/service): a request to any route but the probes is
authenticated before anything else is looked at: a missing or bad signature, or a body that does
not match the hash it was signed with, gets 403 and the index is not touched.
The app serves the index it is given and does not close it: its owner does, after the runner's
cleanup (which waits for requests in flight).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from cluster.service import (
    SERVICE,
    ClusterAuthenticator,
    ErrorAnswer,
    Errors,
    Handler,
    ReadyCheck,
    make_service_app,
)
from metadata.index import Index
from metadata.remote import protocol
from metadata.replica import service as replica_service
from metadata.replica.store import ReplicaStore

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0  # seconds for the readiness read
READY_PROBE = ".ready-probe"  # not a valid S3 bucket name, so never a real bucket

ERRORS = Errors(forbidden=protocol.FORBIDDEN[0], internal=protocol.INTERNAL[0], http_kinds=protocol.HTTP_KINDS)


def _operation(index: Index, op: protocol.Operation) -> Handler:
    async def call(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise ErrorAnswer(405, "MethodNotAllowed", "operations are called with POST")
        body = await request.read()  # read and checked against its signature already
        try:
            result = await getattr(index, op.name)(**protocol.decode_request(op, body))
        except Exception as exc:
            known = protocol.error_document(exc)
            if known is None:
                raise  # a bug: the skeleton logs it and answers 500
            status, doc = known
            raise ErrorAnswer(status, doc.pop("error"), doc.pop("message"), **doc) from None
        return web.Response(body=protocol.encode_result(result), content_type=protocol.MSGPACK)

    return call


async def _no_such_operation(request: web.Request) -> web.StreamResponse:
    raise ErrorAnswer(404, "NotFound", f"no operation {request.match_info['tail']!r}")


def _readiness(index: Index, replica: ReplicaStore | None) -> ReadyCheck:
    async def check() -> tuple[bool, dict[str, Any]]:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                if replica is not None:
                    # A replica is ready when its own store answers: the cluster's quorum is the gateways'
                    # concern, and a replica must come up while its peers are still down.
                    await replica.count("buckets")
                    return True, {"status": "ready", "initialized": replica.initialized}
                await index.get_bucket(READY_PROBE)
        except Exception as exc:
            return False, {"status": "unavailable", "error": repr(exc)}
        return True, {"status": "ready"}

    return check


def make_meta_app(index: Index, secret: bytes, replica: ReplicaStore | None = None) -> web.Application:
    """The metadata service over `index`, accepting requests signed with the cluster `secret`.

    With `replica`, it also serves the replica protocol (metadata/replica/service.py) over that store.
    """
    app = make_service_app(
        namespace="tessera_meta",
        log=log,
        errors=ERRORS,
        authenticate=ClusterAuthenticator(secret, max_body=protocol.MAX_BODY),
        ready=_readiness(index, replica),
        client_max_size=protocol.MAX_BODY,
    )
    svc = app[SERVICE]
    for op in protocol.OPERATIONS.values():
        svc.route("*", op.path, _operation(index, op), operation=op.name)
    svc.route("*", protocol.PREFIX + "{tail:.*}", _no_such_operation, operation="unknown")
    if replica is not None:
        replica_service.add_routes(svc, replica)
    return app
