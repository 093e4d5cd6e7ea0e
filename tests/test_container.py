"""The container image, checked as far as a machine without a Docker engine allows.

The Dockerfile is parsed and its instructions checked (base, user, port,
healthcheck, entry point, environment). Then its two install steps are replayed
outside Docker: the command lines of its ``packaging/install.sh`` RUN lines are
taken from the Dockerfile and run with its paths mapped to temporary ones, so
the wheels are built and installed as the image builds and installs them. The
installed ``cachecore-server`` then serves a secret from moto with the image's
environment, and the image's HEALTHCHECK command is run against it with that
environment's Python. The ECS and Kubernetes examples in docs/ are parsed and
checked against the Dockerfile.

The environment is made with ``python3.12`` (the image's Python) when one runs
here, else with the interpreter running the tests; ``CACHECORE_IMAGE_PYTHON``
names another. pip's cache keeps the downloads from one run to the next.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import TOKEN, free_port, request, sidecar_env, stop, wait_for_port

from cachecore_server import TOKEN_HEADER

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCS = ROOT / "docs"
ECS_TASK = DOCS / "ecs" / "task-definition.json"
KUBERNETES = sorted((DOCS / "kubernetes").glob("*.yaml"))
INSTALL_SCRIPT = "packaging/install.sh"
IMAGE_VENV = "/opt/cachecore"
#: What CACHECORE_SHUTDOWN_TIMEOUT allows by default: the examples' stop bounds
#: must leave the sidecar at least this long.
SHUTDOWN_TIMEOUT_SECONDS = 5
UID = 10001
#: The distributions the image holds: the server, the library, their dependencies.
RUNTIME = {
    "cachecore-server",
    "cachecore-secrets",
    "falcon",
    "gunicorn",
    "waitress",
    "botocore",
}
NEVER_IN_IMAGE = {
    "moto",
    "boto3",
    "pytest",
    "pip",
    "setuptools",
    "wheel",
    "hatchling",
    "cachecore-lambda",
    "cachecore-client",
}
#: What pip prints when it cannot reach the index. Offline it also prints "No matching
#: distribution found", but so does a wrong pin with the network up: only a
#: connection error is a reason to skip.
OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Name or service not known|"
    r"Network is unreachable|Connection refused|ConnectTimeoutError|"
    r"ReadTimeoutError|Read timed out|ProxyError"
)


@dataclass
class Instruction:
    keyword: str
    arguments: str
    stage: int


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """The ARG defaults before the first FROM, and every instruction by stage."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments end nothing: continued lines go on after them
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends in a continued line"

    args: dict[str, str] = {}
    instructions: list[Instruction] = []
    stage = -1
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        if keyword == "ARG" and stage == -1:
            name, _, default = arguments.partition("=")
            args[name] = default
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    return args, instructions


ARGS, INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
FINAL = max(i.stage for i in INSTRUCTIONS)


def final(keyword: str) -> list[str]:
    return [
        i.arguments for i in INSTRUCTIONS if i.stage == FINAL and i.keyword == keyword
    ]


def environment(stage: int, until: Instruction | None = None) -> dict[str, str]:
    """The ENV of a stage, all of it or as it stands at instruction ``until``."""
    found: dict[str, str] = {}
    for i in INSTRUCTIONS:
        if i is until:
            break
        if i.stage == stage and i.keyword == "ENV":
            found.update(word.split("=", 1) for word in shlex.split(i.arguments))
    return found


def healthcheck_command() -> list[str]:
    (line,) = final("HEALTHCHECK")
    _, _, command = line.partition("CMD ")
    return list(json.loads(command))


@dataclass
class Step:
    """One ``packaging/install.sh`` command line of a RUN instruction."""

    env: dict[str, str]
    script: str
    action: str
    paths: list[str]
    mounts: dict[str, dict[str, str]]


def install_step(stage: int) -> Step:
    runs = [i for i in INSTRUCTIONS if i.stage == stage and i.keyword == "RUN"]
    found = [run for run in runs if INSTALL_SCRIPT.split("/")[-1] in run.arguments]
    assert len(found) == 1, f"stage {stage} runs {INSTALL_SCRIPT} once"
    words = shlex.split(found[0].arguments)
    mounts = {}
    for word in [w for w in words if w.startswith("--mount=")]:
        options = dict(o.split("=", 1) for o in word[len("--mount=") :].split(","))
        mounts[options["target"]] = options
    words = [w for w in words if not w.startswith("--mount=")]
    script = next(n for n, w in enumerate(words) if w.endswith("install.sh"))
    env = environment(stage, until=found[0]) | dict(
        w.split("=", 1) for w in words[:script]
    )
    return Step(env, words[script], words[script + 1], words[script + 2 :], mounts)


def test_dockerfile_builds_from_a_slim_python_pinned_by_tag():
    froms = [i.arguments.split() for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) >= 2, "a build stage and a final stage"
    for words in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: ARGS[m.group(1)], words[0])
        assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-\w+)?(@sha256:\w+)?", image)
    assert froms[0][1:] == ["AS", "build"]
    assert len(froms[-1]) == 1, "the final stage is the last, unnamed"


def test_dockerfile_runs_as_fixed_non_root_user():
    (user,) = final("USER")
    uid, _, gid = user.partition(":")
    assert (uid, gid) == (str(UID), str(UID))
    keywords = [i.keyword for i in INSTRUCTIONS if i.stage == FINAL]
    last_run = max(n for n, k in enumerate(keywords) if k == "RUN")
    assert keywords.index("USER") > last_run, "installs as root, runs as the user"


def test_dockerfile_exposes_port_stops_on_sigterm_and_runs_the_server():
    assert final("EXPOSE") == ["8015"]
    assert final("STOPSIGNAL") == ["SIGTERM"]
    assert [json.loads(e) for e in final("ENTRYPOINT")] == [["cachecore-server"]]
    assert final("CMD") == []
    options, _, _ = final("HEALTHCHECK")[0].partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    assert healthcheck_command() == ["python", f"{IMAGE_VENV}/healthcheck.py"]


def test_dockerfile_adds_nothing_from_the_network_and_keeps_secrets_out():
    assert not [i for i in INSTRUCTIONS if i.keyword == "ADD"]
    assert not [n for n in ARGS if re.search(r"TOKEN|SECRET|PASSWORD|KEY", n)]
    for stage in range(FINAL + 1):
        for name, value in environment(stage).items():
            assert not re.search(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", name)
            assert name not in {"CACHECORE_HOST", "CACHECORE_AUTH"}, name
            assert "://" not in value
    env = environment(FINAL)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith(f"{IMAGE_VENV}/bin:")
    assert env["TMPDIR"] == "/dev/shm", "--server gunicorn's heartbeat, on a tmpfs"


def test_dockerfile_final_stage_installs_the_wheels_of_the_build_stage_only():
    build = install_step(0)
    assert build.action == "wheels"
    source, wheels = build.paths
    venv_step = install_step(FINAL)
    assert venv_step.action == "venv"
    mounted_wheels, venv = venv_step.paths
    mount = venv_step.mounts[mounted_wheels]
    assert (mount["from"], mount["source"]) == ("build", wheels)
    scripts = venv_step.mounts[str(Path(venv_step.script).parent)]
    assert (scripts["from"], scripts["source"]) == ("build", f"{source}/packaging")
    assert build.script == INSTALL_SCRIPT
    assert venv == IMAGE_VENV
    assert environment(FINAL)["PATH"].startswith(f"{venv}/bin:")
    assert venv_step.env["PIP_NO_CACHE_DIR"] == "1"
    # Nothing else reaches the final stage: no source, no wheel, no compiler.
    copies = final("COPY")
    assert copies == [
        "--from=build /src/packaging/healthcheck.py " + venv + "/healthcheck.py"
    ]
    for run in final("RUN"):
        assert not re.search(r"apt-get|apk|gcc|build-essential", run)


def test_dockerignore_lets_in_what_the_build_stage_copies():
    copied = [
        i.arguments.split()[0].rstrip("/")
        for i in INSTRUCTIONS
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
    ]
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything is left out but what is let in"
    assert sorted(copied) == sorted(line[1:] for line in patterns if line[0] == "!")


def image_python() -> str:
    """An interpreter of the image's Python version if one runs here."""
    wanted = re.search(r"python:(3\.\d+)", ARGS["PYTHON_IMAGE"]).group(1)
    named = os.environ.get("CACHECORE_IMAGE_PYTHON")
    for candidate in [named] if named else [f"python{wanted}"]:
        found = shutil.which(candidate)
        if (
            found
            and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0
        ):
            return found
        if named:
            pytest.fail(f"CACHECORE_IMAGE_PYTHON={named} does not run")
    return sys.executable


def replay(step: Step, paths: dict[str, Path], python: str, log: Path) -> None:
    env = dict(os.environ)  # a pip index or proxy of this machine still applies
    env.update(step.env)
    env.pop("PIP_NO_CACHE_DIR", None)  # the test keeps pip's cache; the image not
    env.update(PYTHON=python, PIP_RETRIES="1", PIP_TIMEOUT="15")
    command = ["sh", str(ROOT / INSTALL_SCRIPT), step.action]
    command += [str(paths[p]) for p in step.paths]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        said = output[-3000:]
        offline = [line for line in output.splitlines() if OFFLINE.search(line)]
        if offline:
            pytest.skip(
                f"the package index cannot be reached here, so {INSTALL_SCRIPT} "
                f"{step.action} cannot fetch the dependencies: {offline[0][-200:]}"
            )
        pytest.fail(f"{INSTALL_SCRIPT} {step.action} failed:\n{said}")


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Path:
    """The image's /opt/cachecore, made by the Dockerfile's own install steps."""
    here = tmp_path_factory.mktemp("image")
    build, install = install_step(0), install_step(FINAL)
    paths = {
        build.paths[0]: ROOT,
        build.paths[1]: here / "wheels",
        install.paths[0]: here / "wheels",
        install.paths[1]: here / "opt-cachecore",
    }
    python = image_python()
    replay(build, paths, python, here / "wheels.log")
    replay(install, paths, python, here / "venv.log")
    venv = paths[install.paths[1]]
    healthcheck = ROOT / "packaging" / "healthcheck.py"
    shutil.copy(healthcheck, venv / Path(healthcheck_command()[1]).name)
    return venv


def installed(venv: Path) -> dict[str, metadata.Distribution]:
    (site,) = venv.glob("lib/python3.*/site-packages")
    return {
        canonicalize_name(d.metadata["Name"]): d
        for d in metadata.distributions(path=[str(site)])
    }


def test_image_holds_only_the_server_the_library_and_their_dependencies(image_venv):
    found = installed(image_venv)
    version = subprocess.run(
        [image_venv / "bin" / "python", "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    )

    needed: set[str] = set()
    todo = ["cachecore-server"]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for line in found[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))

    assert set(found) == needed, f"with Python {version.stdout}"
    built = {
        canonicalize_name(wheel.name.split("-")[0])
        for wheel in (image_venv.parent / "wheels").glob("*.whl")
    }
    assert built == needed, "the build stage makes no wheel the image leaves out"
    assert set(found) >= RUNTIME
    assert not set(found) & NEVER_IN_IMAGE


def files_under(*roots: Path) -> set[Path]:
    return {path for root in roots for path in root.rglob("*")}


def children_of(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def open_files(*pids: int) -> list[str]:
    """What the processes ``pids`` hold open."""
    names = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                names.append(os.readlink(fd))
            except OSError:
                continue
    return names


def worker_tmp_files(pid: int) -> list[str]:
    """Files that the gunicorn worker (a child of ``pid``) holds open."""
    return open_files(*children_of(pid))


def kubernetes_secret_volume(directory: Path, **files: str) -> Path:
    """Files laid out as kubelet mounts a Secret: links through ``..data``."""
    version = directory / "..2026_01_01_00_00_00.000000000"
    version.mkdir(parents=True)
    (directory / "..data").symlink_to(version.name)
    for name, content in files.items():
        (version / name).write_text(content)
        (directory / name).symlink_to(f"..data/{name}")
    return directory / next(iter(files))


# The image's entry point as it stands (the default server, waitress), and with
# the one option that changes what is written: gunicorn's worker heartbeat.
@pytest.mark.parametrize(
    "options", [(), ("--server", "gunicorn")], ids=["entry point", "gunicorn"]
)
def test_installed_server_serves_a_secret_and_passes_the_healthcheck(
    image_venv, moto_url, secretsmanager, unique, tmp_path, options
):
    name = unique("container/db")
    secretsmanager.create_secret(Name=name, SecretString='{"password": "in-image"}')
    home, work, scratch = (tmp_path / d for d in ("home", "work", "tmp"))
    for d in (home, work, scratch):
        d.mkdir()
    port = free_port()
    image_env = environment(FINAL)
    token_file = kubernetes_secret_volume(tmp_path / "secret", token=TOKEN + "\n")
    env = sidecar_env(
        moto_url, CACHECORE_TOKEN=f"file://{token_file}", CACHECORE_PORT=str(port)
    )
    env.update({k: v for k, v in image_env.items() if k != "PATH"})
    env.update(
        PATH=f"{image_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        TMPDIR=str(scratch),
    )
    entrypoint = json.loads(final("ENTRYPOINT")[0])
    program = shutil.which(entrypoint[0], path=str(image_venv / "bin"))
    assert program is not None, "the venv has the entry point's command"
    before = files_under(image_venv)
    log = tmp_path / "server.log"

    def healthcheck() -> int:
        # The image's command, found on the image's PATH, with /opt/cachecore here.
        program, script = healthcheck_command()
        command = [
            shutil.which(program, path=str(image_venv / "bin")),
            script.replace(IMAGE_VENV, str(image_venv)),
        ]
        return subprocess.run(
            command, env=env, capture_output=True, timeout=10
        ).returncode

    with log.open("wb") as sink:
        server = subprocess.Popen(
            [program, *options],
            env=env,
            cwd=work,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, server, "cachecore-server from the image venv", log)
        ping = request(port, "GET", "/ping")
        answer = request(
            port,
            "GET",
            f"/secretsmanager/get?secretId={name}",
            headers={TOKEN_HEADER: TOKEN},
        )
        assert (ping.status, ping.text) == (200, "healthy")
        assert answer.status == 200, answer.text
        assert json.loads(answer.secret_string) == {"password": "in-image"}
        assert healthcheck() == 0
        if options:
            held = worker_tmp_files(server.pid)
            assert any(f.startswith(f"{scratch}/wgunicorn-") for f in held), held
        else:
            assert children_of(server.pid) == [], "waitress: one process, no worker"
            held = open_files(server.pid)
            assert not [f for f in held if f.startswith(f"{scratch}/")], held
    finally:
        code = stop(server)

    assert code == 0, log.read_text()
    server_name = "gunicorn" if options else "waitress"
    assert f"cachecore_server: starting {server_name} with " in log.read_text()
    assert healthcheck() == 1
    # A read-only root file system suffices: the server wrote nowhere but TMPDIR,
    # and there it unlinks what it makes.
    assert files_under(image_venv) == before
    assert files_under(home, work, scratch) == set()


def test_healthcheck_fails_when_nothing_listens(image_venv):
    env = {"PATH": os.environ.get("PATH", ""), "CACHECORE_PORT": str(free_port())}
    started = time.monotonic()
    done = subprocess.run(
        [image_venv / "bin" / "python", image_venv / "healthcheck.py"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 1
    assert "no answer" in done.stderr
    assert time.monotonic() - started < 5


def ecs_containers() -> tuple[dict, dict[str, dict]]:
    task = json.loads(ECS_TASK.read_text())
    return task, {c["name"]: c for c in task["containerDefinitions"]}


def test_ecs_example_starts_the_app_after_a_healthy_sidecar():
    task, containers = ecs_containers()
    sidecar, app = containers["cachecore"], containers["app"]
    assert task["networkMode"] == "awsvpc"
    assert {"containerName": "cachecore", "condition": "HEALTHY"} in app["dependsOn"]
    assert sidecar["healthCheck"]["command"] == ["CMD", *healthcheck_command()]
    assert sidecar["user"] == f"{UID}:{UID}"
    assert sidecar["readonlyRootFilesystem"] is True
    sidecar_env = {e["name"]: e["value"] for e in sidecar["environment"]}
    shutdown = float(
        sidecar_env.get("CACHECORE_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_SECONDS)
    )
    assert sidecar["stopTimeout"] > shutdown
    assert "portMappings" not in sidecar, "it serves the task's own loopback only"
    for container in (sidecar, app):
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        tokens = [s for s in container["secrets"] if s["name"] == "CACHECORE_TOKEN"]
        assert len(tokens) == 1 and tokens[0]["valueFrom"].startswith("arn:aws:")
        env = {e["name"] for e in container.get("environment", [])}
        assert not env & {"CACHECORE_HOST", "CACHECORE_AUTH", "CACHECORE_TOKEN"}


def allowed(policy_file: str, action: str) -> list[str]:
    """The resources a policy of docs/ecs/ allows ``action`` on."""
    policy = json.loads((DOCS / "ecs" / policy_file).read_text())
    found = []
    for statement in policy["Statement"]:
        actions = statement["Action"]
        if statement["Effect"] == "Allow" and action in (
            actions if isinstance(actions, list) else [actions]
        ):
            found.append(statement["Resource"])
    return found


def test_ecs_example_roles_allow_what_each_reads():
    _, containers = ecs_containers()
    (token,) = {
        s["valueFrom"]
        for c in containers.values()
        for s in c["secrets"]
        if s["name"] == "CACHECORE_TOKEN"
    }
    # ECS itself reads the shared token, with the execution role; the sidecar
    # reads the application's secrets, with the task role.
    fetched_by_ecs = allowed(
        "execution-role-policy.json", "secretsmanager:GetSecretValue"
    )
    assert any(fnmatch.fnmatchcase(token, arn) for arn in fetched_by_ecs)
    assert allowed("task-role-policy.json", "secretsmanager:GetSecretValue")


def kubernetes_pods() -> list[tuple[Path, dict]]:
    pods = []
    for path in KUBERNETES:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] == "Deployment":
                pods.append((path, document["spec"]["template"]["spec"]))
    return pods


def test_kubernetes_examples_run_the_sidecar_locked_down():
    pods = kubernetes_pods()
    assert {path.name for path, _ in pods} == {p.name for p in KUBERNETES}
    assert len(pods) >= 1
    for path, pod in pods:
        everything = pod["containers"] + pod.get("initContainers", [])
        (sidecar,) = [c for c in everything if c["name"] == "cachecore"]
        security = sidecar["securityContext"]
        assert security["runAsNonRoot"] is True, path
        assert security["runAsUser"] == UID, path
        assert security["readOnlyRootFilesystem"] is True, path
        assert security["allowPrivilegeEscalation"] is False, path
        assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT_SECONDS
        assert "limits" in sidecar["resources"] and "requests" in sidecar["resources"]
        probes = [
            sidecar[p] for p in ("readinessProbe", "livenessProbe") if p in sidecar
        ]
        probes += [sidecar["startupProbe"]] if "startupProbe" in sidecar else []
        assert probes, path
        for probe in probes:
            # kubelet sends httpGet probes to the pod's IP, which a sidecar bound
            # to 127.0.0.1 does not answer: the probes run inside the container.
            assert probe["exec"]["command"] == healthcheck_command(), path
        env = {e["name"]: e for e in sidecar.get("env", [])}
        assert "CACHECORE_HOST" not in env and "CACHECORE_AUTH" not in env
        assert env["CACHECORE_TOKEN"]["value"].startswith("file://"), path
        token_file = env["CACHECORE_TOKEN"]["value"][len("file://") :]
        mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
        assert any(token_file.startswith(f"{mount}/") for mount in mounts), path
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert all(name in volumes for name in mounts.values())
