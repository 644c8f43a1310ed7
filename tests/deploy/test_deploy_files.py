"""The sample deployment files parse and name what the code expects (they cannot rot silently)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import yaml

from tonglu.app import ROLES

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
UNITS = DEPLOY / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((UNITS / name).read_text())
    return cp


def argv(name: str) -> list[str]:
    return shlex.split(unit(name)["Service"]["ExecStart"])


def test_tonglu_units_run_their_role():
    for name, role in (("tonglu-web.service", "web"), ("tonglu-recorder@.service", "recorder"),
                       ("tonglu-worker.service", "worker")):
        args = argv(name)
        assert args[0].endswith("/tonglu") and args[1] == "up"
        assert args[args.index("--role") + 1] == role and role in ROLES
        assert unit(name)["Service"]["UMask"] == "0077"
    rec = argv("tonglu-recorder@.service")
    for opt in ("--web", "--advertise", "--capacity"):
        assert opt in rec
    assert int(unit("tonglu-recorder@.service")["Service"]["TimeoutStopSec"]) >= 60  # sealing on SIGTERM


def test_seaweed_units_match_the_cluster_command_lines(tmp_path):
    from tonglu.evidence.seaweed import Endpoint, SeaweedCluster

    ours = SeaweedCluster(tmp_path, weed=Path("/x/weed")).commands(
        Endpoint("127.0.0.1", {"master": 1, "volume1": 2, "volume2": 3, "filer": 4, "s3": 5})
    )
    for comp in ("master", "volume", "filer", "s3"):
        args = argv(f"seaweedfs-{comp}.service")
        assert args[1] == comp, comp
        flags = {a.split("=")[0] for a in args[2:]}
        expected = {a.split("=")[0] for a in ours[comp if comp != "volume" else "volume1"][2:]}
        # every security-relevant flag of the tested cluster is in the unit
        for flag in ("-disableHttp", "-defaultReplication", "-config", "-allowDeleteBucketNotEmpty",
                     "-ui.deleteDir", "-defaultReplicaPlacement"):
            assert (flag in expected) == (flag in flags), (comp, flag)


def test_postgresql_dropin_orders_before_tonglu():
    cp = unit("postgresql.service.d/tonglu.conf")
    assert "tonglu-web.service" in cp["Unit"]["Before"]


def test_compose_has_the_three_host_layout():
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    expected = {"postgresql", "tonglu-web", "tonglu-worker", "tonglu-recorder-1", "tonglu-recorder-2",
                "seaweed-master", "seaweed-volume-1", "seaweed-volume-2", "seaweed-filer", "seaweed-s3"}
    assert expected <= set(services)
    roles = {name: s["command"][s["command"].index("--role") + 1] for name, s in services.items()
             if name.startswith("tonglu-")}
    assert roles == {"tonglu-web": "web", "tonglu-worker": "worker",
                     "tonglu-recorder-1": "recorder", "tonglu-recorder-2": "recorder"}
    for name in ("tonglu-recorder-1", "tonglu-recorder-2"):
        env = services[name]["environment"]
        assert env["TONGLU_ICE_PORT_MIN"] and env["TONGLU_ICE_PORT_MAX"] and env["TONGLU_ICE_HOST"]
        assert services[name]["network_mode"] == "host"
    assert "-defaultReplication=001" in services["seaweed-master"]["command"]
    assert "-disableHttp" in services["seaweed-filer"]["command"]
    assert services["tonglu-web"]["environment"]["TONGLU_REGISTRATION_SECRET"]


def test_readme_documents_coturn_and_object_lock_stores():
    text = (DEPLOY / "README.md").read_text()
    for needle in ("use-auth-secret", "static-auth-secret", "TONGLU_ICE_PORT_MIN", "MinIO", "Ceph RGW",
                   "tonglu host certify"):
        assert needle in text, needle
