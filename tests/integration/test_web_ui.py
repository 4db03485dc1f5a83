"""The Flink web UI in a real browser (Debian's Chromium driven by playwright), as an operator uses it.

A standalone cluster configured like docker-compose.yml's JobManager (`web.submit.enable: false`) runs the job,
submitted with `flink run` (REST job submission is not the UI's jar upload, which is off). In the browser:
the job is listed RUNNING, its operators show the `ecg` metric group (records in, dead-lettered, suppressed),
the Checkpoints tab lists completed checkpoints; *Cancel Job* (with its confirmation) cancels it. The compose
submitter (docker/submit_job.py, `flink run -s` through scripts/flink) resumes from the retained checkpoint,
*Latest Restore* names it (and the REST checkpoint stats), InfluxDB ends with exactly the reference model's
points, and the cardio branch, which the submitter starts as a second `flink run` (flink_jobs/cardio_job.py),
publishes model updates. The cluster puts no repository on the workers' path (devstack.flink_cluster), so both
jobs run on exactly the packages they ship (flink_jobs/shipping.py). (This was also test_cluster_mode.py, with
the same cluster start, `flink run`, cancel and `flink run -s`, until issue 21 merged the two.)

The same cluster gets an anonymized view through `flink run` (views.ViewManager's fallback when /jars is off).

ECG_SCREENSHOT_DIR=DIR pytest tests/integration/test_web_ui.py  also saves the job graph as
DIR/flink-job-graph.png.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.checkpoints import latest_checkpoint
from connectors.config import PROJECT_ROOT
from devstack.flink_cluster import FlinkCluster
from devstack.simulator import SimConfig, generate_messages, produce
from testkit.jobs import TEST_SECRET, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun
from views import Outputs, Profile, ViewManager

JOB_FILE = PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
K = 5
START_MS = 1_763_812_800_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlinkCluster]:
    """One cluster for the module's tests (the view test with a cluster of its own took 58.6 s in a CI rehearsal,
    the view itself ~13 s): each test cancels the jobs it started."""
    flink = FlinkCluster(tmp_path_factory.mktemp("flink"), rest_port=0, parallelism=1,
                         extra_config={"web.submit.enable": "false"})
    flink.start()
    try:
        yield flink
    finally:
        flink.stop()
        assert flink.pids() == [], "cluster processes left behind"


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") or os.environ.get("ECG_REQUIRE_STACK") == "1":
            pytest.fail(f"{CHROMIUM} missing: run scripts/setup.sh")
        pytest.skip(f"{CHROMIUM} missing: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(30_000)
        try:
            yield context.new_page()
        finally:
            context.close()


def as_environment(flags: list[str]) -> dict[str, str]:
    """`--kafka-bootstrap X --k-anonymity 5` -> {"KAFKA_BOOTSTRAP": "X", "K_ANONYMITY": "5"} (settings by env,
    the way the compose submitter passes them)."""
    return {flags[i][2:].upper().replace("-", "_"): flags[i + 1] for i in range(0, len(flags), 2)}


def submitter(cluster: FlinkCluster, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """docker/submit_job.py against this cluster, with scripts/flink as the Flink CLI."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "docker" / "submit_job.py"), "--jobmanager",
         f"127.0.0.1:{cluster.rest_port}", "--flink", str(PROJECT_ROOT / "scripts" / "flink"), "--resume", "auto",
         "--wait-seconds", "60"],
        env={**cluster.env(), **environment}, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        check=False,
    )


def vertex_names(cluster: FlinkCluster, job_id: str) -> list[str]:
    return [str(vertex["name"]) for vertex in cluster.rest_get(f"/jobs/{job_id}")["vertices"]]


def vertex_metric(cluster: FlinkCluster, job_id: str, vertex_name: str, suffix: str) -> float | None:
    """Value of the vertex's metric whose id ends with `suffix` (REST), None before it is reported."""
    (vertex,) = [v for v in cluster.rest_get(f"/jobs/{job_id}")["vertices"] if v["name"] == vertex_name]
    path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
    ids = [m["id"] for m in cluster.rest_get(path) if str(m["id"]).endswith(suffix)]
    if not ids:
        return None
    values = cluster.rest_get(f"{path}?get={urllib.parse.quote(ids[0], safe='')}")  # ids contain "+"
    return float(values[0]["value"]) if values and "value" in values[0] else None


def open_metrics_tab(page: Any, job_url: str, vertex_name: str) -> None:
    page.goto(job_url)
    page.get_by_text(vertex_name, exact=True).first.click()
    page.get_by_role("tab", name="Metrics").or_(page.get_by_text("Metrics", exact=True)).first.click()
    page.locator("nz-select").first.wait_for()


def metric_options(page: Any, search: str) -> list[str]:
    """The *Add Metric* choices matching `search` (the list is virtual-scrolled: search narrows it)."""
    select = page.locator("nz-select").first
    select.click()
    page.keyboard.type(search)
    page.locator(".ant-select-item-option").first.wait_for()
    options = [text.strip() for text in page.locator(".ant-select-item-option").all_inner_texts()]
    page.keyboard.press("Escape")
    return options


def test_web_ui_shows_the_job_and_cancel_then_resume_from_its_checkpoint(
    isolated_run: IsolatedRun, cluster: FlinkCluster, browser_page: Any, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path
) -> None:
    run, page = isolated_run, browser_page
    monkeypatch.setenv("PSEUDONYM_SECRET", TEST_SECRET)
    messages = list(generate_messages(SimConfig(patients=12, duration_s=40, start_ms=START_MS, sites=2,
                                                bad_fraction=0.05, end_of_stream=True, partitions=4, seed=4)))
    expected = expected_output(messages, k=K)
    first, rest = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    flags = run.job_args("--k-anonymity", str(K))

    # `flink run` works with web.submit.enable: false; the UI's jar upload endpoints do not exist.
    assert produce(first, run.stack.kafka_bootstrap, run.raw_topic).errors == 0
    job_id = cluster.submit(JOB_FILE, flags)
    with pytest.raises(urllib.error.HTTPError) as no_jars:
        urllib.request.urlopen(f"{cluster.rest_url}/jars", timeout=10)
    assert no_jars.value.code == 404
    wait_until(lambda: cluster.job_state(job_id) == "RUNNING", 120, "job RUNNING")
    names = vertex_names(cluster, job_id)
    (parse_vertex,) = [name for name in names if "parse" in name]
    (anonymity_vertex,) = [name for name in names if "anonymity" in name]
    # Chained into one task: the paced closes work only if the k-anonymity function's bundles hold the task
    # that closes windows (operators/k_anonymity.py with_window_closes).
    assert "window closes" in anonymity_vertex, names
    wait_until(lambda: vertex_metric(cluster, job_id, parse_vertex, ".ecg.records_in") == len(first), 120,
               f"records_in = {len(first)}")
    wait_until(lambda: run.points() > 0, 120, "first points")
    wait_until(lambda: latest_checkpoint(run.checkpoint_dir), 60, "a completed checkpoint")

    # Job list: RUNNING; no "Submit New Job" in the menu.
    page.goto(f"{cluster.rest_url}/#/job/running-jobs")
    page.get_by_text("ecg-anonymization").first.wait_for()
    assert "RUNNING" in page.locator("body").inner_text()
    assert "Submit New Job" not in page.locator(".ant-menu-root").inner_text()

    job_url = f"{cluster.rest_url}/#/job/running/{job_id}/overview"

    # The ecg metric group per operator: records in and dead letters at the parser, suppression at the sink.
    open_metrics_tab(page, job_url, parse_vertex)
    options = metric_options(page, ".ecg.")
    assert any(o.endswith(".ecg.records_in") for o in options), options
    assert any(o.endswith(".ecg.dead_lettered") for o in options), options
    page.locator("nz-select").first.click()
    page.keyboard.type(".ecg.records_in")
    page.locator(".ant-select-item-option").first.click()
    page.get_by_text("Numeric", exact=True).first.click()
    page.get_by_text(str(len(first)), exact=True).first.wait_for()  # the value the REST API reports
    open_metrics_tab(page, job_url, anonymity_vertex)
    assert any(o.endswith(".ecg.frames_suppressed") for o in metric_options(page, ".ecg.frames_suppressed"))

    # Checkpoints tab: completed checkpoints.
    page.goto(f"{cluster.rest_url}/#/job/running/{job_id}/checkpoints")
    page.get_by_text("Latest Completed Checkpoint").first.wait_for()
    text = page.locator("body").inner_text()
    completed = re.search(r"Completed:\s*(\d+)", text)
    assert completed and int(completed[1]) >= 1, text[-2000:]
    assert re.search(r"Latest Completed Checkpoint\s+ID:\s*\d+", text), text[-2000:]

    # The job graph, once the operators report their metrics.
    page.goto(job_url)
    page.get_by_text(anonymity_vertex, exact=True).first.wait_for()
    page.get_by_text("Busy (max): N/A").first.wait_for(state="detached")
    screenshot = page.screenshot(path=str(tmp_path / "flink-job-graph.png"))
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ECG_SCREENSHOT_DIR"):
        (Path(os.environ["ECG_SCREENSHOT_DIR"]) / "flink-job-graph.png").write_bytes(screenshot)

    # Cancel Job, confirmed in its pop-up.
    page.get_by_text("Cancel Job", exact=True).click()
    page.locator(".ant-popover").get_by_role("button").last.click()
    assert cluster.wait_for_job(job_id, ("CANCELED",), timeout=60) == "CANCELED"
    retained = latest_checkpoint(run.checkpoint_dir)
    assert retained is not None and retained.parent.name == job_id and (retained / "_metadata").exists()
    assert 0 < run.points() < expected.points

    # Resume the compose way: the submitter finds the newest retained checkpoint and runs `flink run -s`.
    assert produce(rest, run.stack.kafka_bootstrap, run.raw_topic).errors == 0
    environment = {**as_environment(flags), "PSEUDONYM_SECRET": TEST_SECRET}
    submitted = submitter(cluster, environment)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert f"-s {retained} " in submitted.stdout, submitted.stdout
    resumed = wait_until(lambda: next((j["jid"] for j in cluster.jobs_overview()
                                         if j["state"] == "RUNNING" and not j["name"].endswith("-cardio")), None),
                         120, "resumed job RUNNING")
    again = submitter(cluster, environment)  # re-running `docker-compose up` must not start a second job
    assert again.returncode == 0 and f"already RUNNING ({resumed})" in again.stdout, again.stdout + again.stderr
    try:
        page.goto(f"{cluster.rest_url}/#/job/running/{resumed}/checkpoints")
        page.get_by_text("Latest Restore").first.wait_for()

        def restore_shown() -> bool:
            page.reload()
            return f"{job_id}/{retained.name}" in latest_restore_text(page)

        wait_until(restore_shown, 60, "Latest Restore naming the retained checkpoint", poll=3)
        wait_until(lambda: run.points() >= expected.points, 180, f"{expected.points} points after the resume")
        time.sleep(4)
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        restored = (cluster.rest_get(f"/jobs/{resumed}/checkpoints").get("latest") or {}).get("restored") or {}
        assert str(restored.get("external_path", "")).rstrip("/").endswith(f"{job_id}/{retained.name}"), restored
        wait_until(lambda: run.model_updates(), 120, "the cardio branch's model updates after the resume")
    finally:
        for running in [j["jid"] for j in cluster.jobs_overview() if j["state"] == "RUNNING"]:  # with the branch
            cluster.cancel(running)
            cluster.wait_for_job(running, ("CANCELED", "FAILED", "FINISHED"), timeout=60)


def latest_restore_text(page: Any) -> str:
    page.get_by_text("Latest Restore").first.wait_for()
    text = str(page.locator("body").inner_text())
    return text.split("Latest Restore", 1)[1][:600]


def test_a_cluster_without_web_submission_gets_the_view_through_flink_run(cluster: FlinkCluster,
                                                                           tmp_path: Path) -> None:
    """web.submit.enable: false (as in production): /jars answers 404, the upload breaks the connection; the
    view goes through `flink run -d -m HOST:PORT` instead and runs (its output is never reached here). Here, not
    in test_views.py: it needs this module's cluster, not one of its own."""
    manager = ViewManager(tmp_path / "views", cluster.rest_url, {"KAFKA_BOOTSTRAP": "127.0.0.1:9"},
                          {"PSEUDONYM_SECRET": TEST_SECRET})
    view = manager.create("fallback", Profile(k=5), Outputs(http_url="http://127.0.0.1:9/ingest"), wait_running=120)
    try:
        assert view.submit_mode == "flink-run"
        running = [(job["name"], job["state"]) for job in cluster.jobs_overview() if job["state"] != "CANCELED"]
        assert running == [("view-fallback", "RUNNING")]
        assert manager.views()["fallback"].job_id == view.job_id
    finally:
        cluster.cancel(view.job_id)
        cluster.wait_for_job(view.job_id, ("CANCELED", "FAILED", "FINISHED"), timeout=60)
