"""Fixtures of the multi-host area: a SeaweedFS cluster (separate master, 2 volume servers with
replication 001, filer, S3) with the same identities and security as `weed mini`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SeaweedServer


@pytest.fixture(scope="module")
def seaweed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    from tonglu.evidence.seaweed import SeaweedCluster

    cluster = SeaweedCluster(tmp_path_factory.mktemp("cluster") / "store")
    ep = cluster.start()
    try:
        idents = load(cluster)
        yield SeaweedServer(store=cluster, endpoint=ep.s3_url, credentials=idents)
    finally:
        cluster.stop()


def load(cluster) -> dict[str, tuple[str, str]]:
    from tonglu.evidence.seaweed import load_identities

    return {role: (i.access_key, i.secret_key) for role, i in load_identities(cluster.store_dir).items()}
