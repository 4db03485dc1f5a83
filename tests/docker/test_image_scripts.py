"""The scripts of the production image (docker/): pure parts. The submitter runs for real in
tests/integration/test_web_ui.py (resume from the newest checkpoint, no second job)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from connectors.config import PROJECT_ROOT


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"image_{name}", PROJECT_ROOT / "docker" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_taskmanager_is_found_by_its_address_in_the_jobmanager_list() -> None:
    healthcheck = load("healthcheck")
    # Shape of Flink 2.0's REST /taskmanagers entries in a container network.
    registered = [{"id": "172.18.0.5:35211-8a7a0b", "path": "pekko.tcp://flink@172.18.0.5:35211/user/rpc/taskmanager_0"}]
    assert healthcheck.taskmanager_registered(registered, {"tm-1", "172.18.0.5"})
    assert not healthcheck.taskmanager_registered(registered, {"tm-2", "172.18.0.6"})
    assert not healthcheck.taskmanager_registered(registered, {"172.18.0.50"})  # no prefix match
    assert not healthcheck.taskmanager_registered([], {"172.18.0.5"})


def test_submitter_command_restores_only_when_given_a_checkpoint() -> None:
    submit = load("submit_job")
    job = Path("/opt/ecg/flink_jobs/ecg_anonymization_job.py")
    assert submit.build_command("flink", "jobmanager:8081", job, None) == [
        "flink", "run", "-d", "-m", "jobmanager:8081", "-py", str(job)]
    checkpoint = Path("/flink-checkpoints/abc/chk-7")
    assert submit.build_command("flink", "jobmanager:8081", job, checkpoint) == [
        "flink", "run", "-d", "-m", "jobmanager:8081", "-s", str(checkpoint), "-py", str(job)]
