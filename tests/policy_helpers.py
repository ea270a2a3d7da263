"""What the policy tests share: users made through the admin client, their boto3 clients, anonymous requests
and policy documents."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from gateway.admin.client import AdminClient
from tests.server_process import ACCESS_KEY, SECRET_KEY

ARN = "arn:aws:s3:::"


def user_arn(name: str) -> str:
    return f"arn:aws:iam::tessera:user/{name}"


@dataclass
class User:
    name: str
    access_key: str
    secret_key: str
    s3: Any


def admin_call(endpoint: str, call: Any, root: tuple[str, str] = (ACCESS_KEY, SECRET_KEY)) -> Any:
    async def go() -> Any:
        async with AdminClient(endpoint, *root) as client:
            return await call(client)

    return asyncio.run(go())


def make_user(endpoint: str, name: str, policy: str = "", document: bytes = b"", **root: Any) -> User:
    doc = admin_call(endpoint, lambda c: c.add_user(name, policy, document), **root)
    return User(name, doc["access_key"], doc["secret_key"], client(endpoint, doc["access_key"], doc["secret_key"]))


def client(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


def anonymous_client(endpoint: str) -> Any:
    """boto3 sending unsigned requests, as a browser or curl would."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"mode": "standard", "max_attempts": 1}),
    )


def anonymous(endpoint: str, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes]:
    """One unsigned request: (status, body)."""
    req = urllib.request.Request(endpoint + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def statement(effect: str, principal: Any, action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource, **extra}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def public_read(bucket: str) -> str:
    return policy(statement("Allow", "*", "s3:GetObject", f"{ARN}{bucket}/*"))
