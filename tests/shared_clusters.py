"""One `tessera dev` cluster (six nodes, three metadata replicas, two gateways) shared by the test modules that
only use it through S3 and leave its processes alone: started once per run, stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cli.dev import DevCluster
from tests.s3_helpers import dev_client, unique


@pytest.fixture(scope="session")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(tmp_path_factory.mktemp("replicated-shared"), nodes=6, metas=3, gateways=2)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def replicated_s3(replicated_cluster: DevCluster) -> Any:
    """boto3 (root) through the shared cluster's first gateway."""
    return dev_client(replicated_cluster, 1)


@pytest.fixture
def replicated_bucket(replicated_s3: Any) -> str:
    name = unique()
    replicated_s3.create_bucket(Bucket=name)
    return name
