"""docker/influxdb/create-tokens.sh against a FAKE `influx` on PATH that records its arguments and answers like the
InfluxDB 2.x CLI (bucket ids, `--json` authorizations). This checks the script's command lines, its idempotence, the
token files and that no token is printed -- not InfluxDB itself: whether InfluxDB 2.x grants exactly these
permissions needs a real InfluxDB 2.x, which this machine does not have (README, "Who can read what (InfluxDB)")."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "docker" / "influxdb" / "create-tokens.sh"
ADMIN_TOKEN = "admin-token-s3cret-0123456789"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

FAKE_INFLUX = r'''
import json, os, sys
args = sys.argv[1:]
state_path = os.environ["FAKE_INFLUX_STATE"]
state = json.load(open(state_path))
state["calls"].append({"args": args, "token": os.environ.get("INFLUX_TOKEN"), "host": os.environ.get("INFLUX_HOST")})

def option(name):
    return args[args.index(name) + 1] if name in args else None

def save():
    json.dump(state, open(state_path, "w"))

if os.environ.get("INFLUX_TOKEN") != state["admin"]:
    save(); print("Error: unauthorized", file=sys.stderr); sys.exit(1)
if args[:2] == ["bucket", "list"]:
    save()
    name = option("--name")
    if name not in state["buckets"]:
        print(f'Error: bucket "{name}" not found', file=sys.stderr); sys.exit(1)
    print(f"{state['buckets'][name]}\t{name}\tinfinite\t168h0m0s\torgid0000000000\timplicit")
elif args[:2] == ["bucket", "create"]:
    name = option("--name")
    state["buckets"][name] = f"{len(state['buckets']) + 1:016x}"
    save()
    print(f"{state['buckets'][name]}\t{name}\tinfinite\t168h0m0s\torgid0000000000\timplicit")
elif args[:3] == ["v1", "dbrp", "list"]:
    save()
    db = option("--db")
    if db in state["dbrps"]:
        print(f"dbrpid\t{db}\t{state['dbrps'][db]}\tautogen\ttrue\tfalse\torgid")
elif args[:3] == ["v1", "dbrp", "create"]:
    state["dbrps"][option("--db")] = option("--bucket-id")
    save()
    print("created")
elif args[:2] == ["auth", "list"]:
    save()
    print(json.dumps([{"id": str(i), "token": t} for i, t in enumerate(state["tokens"])], indent=1))
elif args[:2] == ["auth", "create"]:
    state["made"] = state.get("made", 0) + 1
    token = f"generated-token-{state['made']}-s3cret"
    state["tokens"].append(token)
    save()
    print(json.dumps({"id": "0a", "description": option("--description"), "token": token, "status": "active",
                      "permissions": []}, indent=1))
else:
    save(); print("fake influx: unknown command", args, file=sys.stderr); sys.exit(2)
'''


def setup(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "influx"
    fake.write_text(f"#!{sys.executable}\n{FAKE_INFLUX}")
    fake.chmod(0o755)
    state = tmp_path / "state.json"
    # after InfluxDB's first setup: the main bucket, no DBRP, only the admin's token
    state.write_text(json.dumps({"admin": ADMIN_TOKEN, "buckets": {"ecg": "00000000000000aa"}, "dbrps": {},
                                 "tokens": [ADMIN_TOKEN], "calls": []}))
    admin_file = tmp_path / "admin.token"
    admin_file.write_text(ADMIN_TOKEN + "\n")
    (tmp_path / "job").mkdir()
    (tmp_path / "grafana").mkdir()
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_INFLUX_STATE": str(state),
           "INFLUX_HOST": "http://influxdb:8086", "INFLUX_TOKEN_FILE": str(admin_file), "INFLUX_ORG": "ecg",
           "ECG_BUCKET": "ecg", "ECG_BRANCH_BUCKET": "ecg-branch", "ECG_RETENTION": "",
           "JOB_TOKEN_FILE": str(tmp_path / "job" / "job.token"),
           "GRAFANA_TOKEN_FILE": str(tmp_path / "grafana" / "grafana.token")}
    return env, state


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


def calls(state: Path, *prefix: str) -> list[list[str]]:
    recorded = json.loads(state.read_text())["calls"]
    return [call["args"] for call in recorded if call["args"][:len(prefix)] == list(prefix)]


def test_creates_the_branch_bucket_and_two_least_privilege_tokens(tmp_path: Path) -> None:
    env, state = setup(tmp_path)
    result = run(env)
    assert result.returncode == 0, result.stderr
    recorded = json.loads(state.read_text())
    main, branch = recorded["buckets"]["ecg"], recorded["buckets"]["ecg-branch"]
    assert calls(state, "bucket", "create") == [["bucket", "create", "--name", "ecg-branch", "--hide-headers"]]
    assert recorded["dbrps"] == {"ecg": main, "ecg-branch": branch}
    assert calls(state, "auth", "create") == [
        ["auth", "create", "--org", "ecg", "--description", "ecg-job", "--write-bucket", main, "--write-bucket",
         branch, "--json"],
        ["auth", "create", "--org", "ecg", "--description", "ecg-grafana", "--read-bucket", main, "--json"],
    ]
    assert all(call["token"] == ADMIN_TOKEN and call["host"] == "http://influxdb:8086" for call in recorded["calls"])
    job, grafana = Path(env["JOB_TOKEN_FILE"]), Path(env["GRAFANA_TOKEN_FILE"])
    assert (job.read_text(), grafana.read_text()) == ("generated-token-1-s3cret", "generated-token-2-s3cret")
    assert stat.S_IMODE(job.stat().st_mode) == stat.S_IMODE(grafana.stat().st_mode) == 0o444
    assert sorted(p.name for p in job.parent.iterdir()) == ["job.token"]  # no temp file left
    assert "s3cret" not in result.stdout + result.stderr  # no token, not even the admin's, is printed


def test_a_second_run_keeps_everything_and_a_lost_token_is_made_again(tmp_path: Path) -> None:
    env, state = setup(tmp_path)
    assert run(env).returncode == 0
    before = (Path(env["JOB_TOKEN_FILE"]).read_text(), Path(env["GRAFANA_TOKEN_FILE"]).read_text())
    again = run(env)
    assert again.returncode == 0, again.stderr
    assert len(calls(state, "bucket", "create")) == 1 and len(calls(state, "v1", "dbrp", "create")) == 2
    assert len(calls(state, "auth", "create")) == 2
    assert (Path(env["JOB_TOKEN_FILE"]).read_text(), Path(env["GRAFANA_TOKEN_FILE"]).read_text()) == before
    # InfluxDB lost the Grafana token (e.g. a new data volume): a new one replaces the stale file
    recorded = json.loads(state.read_text())
    recorded["tokens"].remove(before[1])
    state.write_text(json.dumps(recorded))
    third = run(env)
    assert third.returncode == 0, third.stderr
    assert calls(state, "auth", "create")[-1][4:6] == ["--description", "ecg-grafana"]
    assert Path(env["GRAFANA_TOKEN_FILE"]).read_text() == "generated-token-3-s3cret"
    assert "s3cret" not in again.stdout + again.stderr + third.stdout + third.stderr


def test_refuses_one_bucket_for_both(tmp_path: Path) -> None:
    env, state = setup(tmp_path)
    result = run({**env, "ECG_BRANCH_BUCKET": "ecg"})
    assert result.returncode != 0 and "must differ" in result.stderr
    assert calls(state, "auth", "create") == []
    assert not Path(env["JOB_TOKEN_FILE"]).exists()
