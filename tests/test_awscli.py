"""The real aws-cli against a real `tessera server`: the commands users type."""

from __future__ import annotations

import filecmp
import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.s3_helpers import MiB, data, unique
from tests.server_process import ServerProcess


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "top.txt": b"top level\n",
        "empty": b"",
        "dir/a.bin": data(70_000, seed=1),
        "dir/sub/b.txt": b"nested\n",
        "dir/sub/deeper/c.bin": data(1 << 20, seed=2),
        "with space/odd+name=1&x.txt": b"odd names\n",
        "unicodé/файл.txt": "ünïcode\n".encode(),
    }
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return files


def _ls_keys(server: ServerProcess, url: str) -> list[str]:
    out = server.aws("s3", "ls", "--recursive", url).stdout
    return sorted(line.split(None, 3)[3] for line in out.splitlines() if line.strip())


def test_mb_ls_rb(server: ServerProcess, s3: Any) -> None:
    name = unique("cli")
    assert f"make_bucket: {name}" in server.aws("s3", "mb", f"s3://{name}").stdout
    listing = server.aws("s3", "ls").stdout
    assert name in [line.split()[-1] for line in listing.splitlines()]
    again = server.aws("s3", "mb", f"s3://{name}", check=False)
    assert again.returncode == 0, again.stderr  # the owner's repeated creation succeeds in us-east-1, as in S3
    assert f"remove_bucket: {name}" in server.aws("s3", "rb", f"s3://{name}").stdout
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_cp_small_up_and_down(server: ServerProcess, s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "hello world.txt"
    src.write_bytes(b"hello from aws-cli\n")
    out = server.aws("s3", "cp", str(src), f"s3://{bucket}/docs/hello world.txt").stdout
    assert "upload:" in out
    assert s3.get_object(Bucket=bucket, Key="docs/hello world.txt")["Body"].read() == src.read_bytes()
    cat = server.aws("s3", "cp", f"s3://{bucket}/docs/hello world.txt", "-")
    assert cat.stdout == "hello from aws-cli\n"


def test_cp_multipart_20mib(server: ServerProcess, s3: Any, bucket: str, tmp_path: Path) -> None:
    name = bucket
    src = tmp_path / "big.bin"
    src.write_bytes(data(20 * MiB, seed=3))
    server.aws("s3", "cp", str(src), f"s3://{name}/big.bin")
    head = s3.head_object(Bucket=name, Key="big.bin")
    assert head["ContentLength"] == 20 * MiB
    # aws-cli's default 8 MiB chunks: a multipart ETag of 3 parts
    assert head["ETag"].endswith('-3"')
    dst = tmp_path / "big.down"
    server.aws("s3", "cp", f"s3://{name}/big.bin", str(dst))
    assert filecmp.cmp(src, dst, shallow=False)


def test_sync_up_and_down(server: ServerProcess, s3: Any, bucket: str, tmp_path: Path) -> None:
    name = bucket
    up = tmp_path / "up"
    files = _make_tree(up)
    server.aws("s3", "sync", str(up), f"s3://{name}/tree")
    listed = s3.list_objects_v2(Bucket=name, Prefix="tree/")["Contents"]
    assert {o["Key"]: o["Size"] for o in listed} == {f"tree/{rel}": len(body) for rel, body in files.items()}
    down = tmp_path / "down"
    server.aws("s3", "sync", f"s3://{name}/tree", str(down))
    assert _tree(down) == files
    # A changed and a deleted file travel with --delete.
    (up / "top.txt").write_bytes(b"changed, and longer\n")
    (up / "dir/a.bin").unlink()
    server.aws("s3", "sync", "--delete", str(up), f"s3://{name}/tree")
    server.aws("s3", "sync", "--delete", f"s3://{name}/tree", str(down))
    assert _tree(down) == _tree(up)


def _keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_ls_and_rm(server: ServerProcess, s3: Any, tmp_path: Path) -> None:
    name = unique("cli")
    s3.create_bucket(Bucket=name)
    files = _make_tree(tmp_path)
    for rel, body in files.items():
        s3.put_object(Bucket=name, Key=rel, Body=body)
    assert _ls_keys(server, f"s3://{name}") == sorted(files)
    top = server.aws("s3", "ls", f"s3://{name}/").stdout
    assert "PRE dir/" in top
    assert "top.txt" in top
    assert "dir/a.bin" not in top
    sub = server.aws("s3", "ls", f"s3://{name}/dir/sub/").stdout
    assert "PRE deeper/" in sub and "b.txt" in sub
    server.aws("s3", "rm", f"s3://{name}/top.txt")
    assert "top.txt" not in _keys(s3, name)
    server.aws("s3", "rm", "--recursive", f"s3://{name}/dir/")
    assert _keys(s3, name) == sorted(k for k in files if not k.startswith("dir/") and k != "top.txt")
    refused = server.aws("s3", "rb", f"s3://{name}", check=False)
    assert refused.returncode != 0
    assert "BucketNotEmpty" in refused.stderr
    server.aws("s3", "rb", "--force", f"s3://{name}")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3api(server: ServerProcess, bucket: str, tmp_path: Path) -> None:
    name = bucket
    body = tmp_path / "body"
    body.write_bytes(b"s3api body")
    put = json.loads(
        server.aws(
            "s3api", "put-object", "--bucket", name, "--key", "k", "--body", str(body), "--metadata", "a=1"
        ).stdout
    )
    head = json.loads(server.aws("s3api", "head-object", "--bucket", name, "--key", "k").stdout)
    assert head["ETag"] == put["ETag"]
    assert head["ContentLength"] == len(b"s3api body")
    assert head["Metadata"] == {"a": "1"}
    missing = server.aws("s3api", "get-object", "--bucket", name, "--key", "nope", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0
    assert "NoSuchKey" in missing.stderr


def test_presign(server: ServerProcess, s3: Any, bucket: str) -> None:
    body = b"shared via a presigned url\n"
    s3.put_object(Bucket=bucket, Key="shared file+1.txt", Body=body)
    url = server.aws("s3", "presign", f"s3://{bucket}/shared file+1.txt", "--expires-in", "300").stdout.strip()
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.read() == body
