"""The docker-compose deployment, the plugin image's Dockerfile and .dockerignore.

No image can be pulled on the test machines, so nothing here starts the deployment. The
compose file is read the way Compose reads it: with ``docker compose config`` when the
Compose plugin is installed, otherwise parsed as YAML with Compose's variable
interpolation (``${VAR:-default}``, ``${VAR:?message}``, ``$$``) applied by
``_interpolate`` below. Every test runs either way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from airflow_orchest_jobs.core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
CELERY_FILE = REPO / "docker-compose.celery.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
ORCHEST_FOLDERS = {"projects": "PROJECTS_DIR", "store": "STORE_DIR", "data": "DATA_DIR"}
DOCKER_SOCKET = "/var/run/docker.sock"

#: What a user puts in .env (see the header of docker-compose.yml).
USER_ENV = {"ORCHEST_JOBS_ROOT": "/srv/aoj compose", "DOCKER_GID": "105", "AIRFLOW_UID": "1000"}


# --- reading the compose file as Compose does ---------------------------------------------

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def _interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string in the file (keys are left alone)."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        current = env.get(name)
        unset_or_empty = not current
        if op in (":-", "-") and (unset_or_empty if op == ":-" else current is None):
            return arg
        if op in (":?", "?") and (unset_or_empty if op == ":?" else current is None):
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(replace, value)


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return probe.returncode == 0


HAS_COMPOSE = _compose_plugin()


def _split_volume(entry) -> tuple[str, str]:
    """(source, target) of a short-syntax string or a long-syntax mapping."""
    if isinstance(entry, dict):
        return str(entry.get("source", "")), str(entry["target"])
    parts = entry.split(":")
    if len(parts) == 1:
        return "", parts[0]
    return parts[0], parts[1]


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _deep_merge(base, override):
    """Compose's merge of an override into a service: mappings key by key, the rest
    replaced (enough for docker-compose.celery.yml, which overrides no sequences)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return override


def _apply_override(model: dict, override: dict) -> dict:
    """``model`` with a later ``-f`` file applied: services merged, ``extends`` resolved."""
    services = dict(model["services"])
    for name, service in (override.get("services") or {}).items():
        service = dict(service)
        extends = service.pop("extends", None)
        if extends:
            assert Path(extends["file"]).name == COMPOSE_FILE.name
            start = model["services"][extends["service"]]
        else:
            start = services.get(name, {})
        services[name] = _deep_merge(start, service)
    return {**model, **{k: v for k, v in override.items() if not k.startswith("x-")},
            "services": services, "volumes": {**(model.get("volumes") or {}),
                                              **(override.get("volumes") or {})}}


def load_compose(env: dict[str, str], files: tuple[Path, ...] = (COMPOSE_FILE,)) -> dict:
    """The compose model of ``files`` (``-f`` order) after interpolation with exactly
    ``env`` (plus PATH/HOME)."""
    if HAS_COMPOSE:
        result = subprocess.run(
            ["docker", "compose", *[a for f in files for a in ("-f", str(f))], "--profile",
             "debug", "--profile", "flower", "config", "--format", "json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), **env},
        )
        if result.returncode != 0:
            raise MissingVariable(result.stderr)
        return json.loads(result.stdout)
    model = yaml.safe_load(files[0].read_text())
    for override in files[1:]:
        model = _apply_override(model, yaml.safe_load(override.read_text()))
    return _interpolate(model, env)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(USER_ENV)


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    """The file as written (YAML anchors merged, no interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --- docker-compose.yml -------------------------------------------------------------------


def test_interpolation_helper_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert _interpolate("${SET:-d}/${EMPTY:-d}/${UNSET:-d}", env) == "x/d/d"
    assert _interpolate("${EMPTY-d}|${UNSET-d}", env) == "|d"
    assert _interpolate("$$HOSTNAME and $${HOSTNAME}", env) == "$HOSTNAME and ${HOSTNAME}"
    with pytest.raises(MissingVariable, match="UNSET: say why"):
        _interpolate("${UNSET:?say why}", env)


def test_compose_has_the_airflow_3_services(compose):
    services = compose["services"]
    for name in ("postgres", *AIRFLOW_SERVICES):
        assert name in services, f"service {name} missing"
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    commands = {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    for name, command in commands.items():
        given = services[name]["command"]
        assert (given if isinstance(given, str) else " ".join(given)) == command
    ports = services["airflow-apiserver"]["ports"]
    published = [
        (str(p["published"]), int(p["target"])) if isinstance(p, dict) else tuple(p.split(":"))
        for p in ports
    ]
    assert ("8080", 8080) in published or ("8080", "8080") in published


def test_every_airflow_service_runs_the_plugin_image(compose):
    services = compose["services"]
    images = set()
    for name in AIRFLOW_SERVICES:
        build = services[name]["build"]
        context = Path(build["context"])
        assert (context if context.is_absolute() else REPO / context).resolve() == REPO
        assert build["dockerfile"] in ("docker/Dockerfile", str(DOCKERFILE))
        images.add(services[name]["image"])
    assert len(images) == 1, f"all Airflow services must share one image, got {images}"


def test_airflow_services_reach_the_host_docker_engine(compose):
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        mounts = dict(_split_volume(v)[::-1] for v in service["volumes"])
        assert mounts.get(DOCKER_SOCKET) == DOCKER_SOCKET, f"{name}: Docker socket not mounted"
        assert [str(g) for g in service["group_add"]] == [USER_ENV["DOCKER_GID"]], name
        env = _environment(service)
        assert env["AIRFLOW__ORCHEST_JOBS__DOCKER_URL"] == "unix://var/run/docker.sock"
        assert env["AIRFLOW__ORCHEST_JOBS__NETWORK_MODE"] == "bridge"


def test_docker_gid_is_required_with_a_helpful_message():
    env = {key: value for key, value in USER_ENV.items() if key != "DOCKER_GID"}
    with pytest.raises(MissingVariable, match=r"stat -c %g /var/run/docker.sock"):
        load_compose(env)


@pytest.mark.parametrize(
    "env, root",
    [
        (USER_ENV, USER_ENV["ORCHEST_JOBS_ROOT"]),
        ({"DOCKER_GID": "999"}, "/opt/orchest-jobs"),  # the default root
    ],
    ids=["ORCHEST_JOBS_ROOT set", "default root"],
)
def test_orchest_folders_have_the_same_path_inside_and_outside(env, root):
    """The path rule: DockerOperator's bind mounts are resolved by the host engine."""
    compose = load_compose(env)
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        pairs = [_split_volume(v) for v in service["volumes"]]
        config = _environment(service)
        for folder, key in ORCHEST_FOLDERS.items():
            path = f"{root}/{folder}"
            assert (path, path) in pairs, f"{name}: {path} not mounted at the same path"
            assert config[f"AIRFLOW__ORCHEST_JOBS__{key}"] == path, name
        settings = Settings.from_mapping(
            {key.lower(): config.get(f"AIRFLOW__ORCHEST_JOBS__{key.upper()}")
             for key in ("projects_dir", "store_dir", "data_dir", "environment_images",
                         "network_mode", "docker_url")}
        )
        assert settings.projects_dir == Path(root) / "projects"
        assert settings.store_dir == Path(root) / "store"
        assert settings.data_dir == Path(root) / "data"
        assert settings.environment_images == {}


def test_environment_images_pass_through_to_the_plugin_settings():
    compose = load_compose({**USER_ENV, "ORCHEST_JOBS_ENVIRONMENT_IMAGES": '{"*": "py:1"}'})
    config = _environment(compose["services"]["airflow-scheduler"])
    assert json.loads(config["AIRFLOW__ORCHEST_JOBS__ENVIRONMENT_IMAGES"]) == {"*": "py:1"}


def test_airflow_configuration(compose):
    for name in AIRFLOW_SERVICES:
        env = _environment(compose["services"][name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-apiserver:8080/execution/"
        )
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
        # One JWT secret for all components, or task tokens fail between them.
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
        mounts = {target: source for source, target in map(_split_volume,
                                                            compose["services"][name]["volumes"])}
        assert Path(mounts["/opt/airflow/dags"]).name == "dags"
        passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        assert str(passwords.parent) in mounts, f"{name}: password file not on a shared volume"
    secrets = {_environment(compose["services"][n])["AIRFLOW__API_AUTH__JWT_SECRET"]
               for n in AIRFLOW_SERVICES}
    assert len(secrets) == 1


def test_airflow_init_prepares_database_login_and_folders(compose):
    init = compose["services"]["airflow-init"]
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "airflow db migrate" in script
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    for key in ORCHEST_FOLDERS.values():
        assert f"AIRFLOW__ORCHEST_JOBS__{key}" in script
    env = _environment(init)
    assert env["_AIRFLOW_WWW_USER_USERNAME"] == "admin"
    assert env["_AIRFLOW_WWW_USER_PASSWORD"] == "admin"
    assert str(init["user"]).startswith("0")
    for name in AIRFLOW_SERVICES[1:]:
        depends = compose["services"][name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"


def test_airflow_init_script_runs(tmp_path):
    """Run airflow-init's script with stand-ins for the image's commands."""
    compose = load_compose(USER_ENV)
    init = compose["services"]["airflow-init"]
    script = init["command"][-1]
    assert init["entrypoint"] in ("/bin/bash", ["/bin/bash"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("airflow-orchest-jobs", "chown"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>"{calls}"\n')
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "python").symlink_to(shutil.which("python3") or shutil.which("python"))
    root = tmp_path / "root"
    env = {
        **_environment(init),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AIRFLOW__ORCHEST_JOBS__PROJECTS_DIR": str(root / "projects"),
        "AIRFLOW__ORCHEST_JOBS__STORE_DIR": str(root / "store"),
        "AIRFLOW__ORCHEST_JOBS__DATA_DIR": str(root / "data"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "auth" / "pw.json"),
    }
    # `docker compose config` may print "$$" for a literal "$"; the script uses no "$$".
    script = (script.replace("$$", "$")
              .replace("/opt/airflow/", f"{tmp_path}/opt/")
              .replace("/entrypoint ", f"{bin_dir}/airflow-orchest-jobs entrypoint "))
    (tmp_path / "auth").mkdir()
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for folder in ORCHEST_FOLDERS:
        assert (root / folder).is_dir()
    assert json.loads((tmp_path / "auth" / "pw.json").read_text()) == {"admin": "admin"}
    log = calls.read_text()
    assert "entrypoint airflow db migrate" in log
    assert f"chown 1000:0 {root / 'store'}" in log


def test_compose_file_documents_usage(raw_compose):
    header = COMPOSE_FILE.read_text().split("\n---", 1)[0]
    for needle in ("ORCHEST_JOBS_ROOT=$PWD/.compose", "docker compose up", "admin / admin",
                   "DOCKER_GID", "SAME absolute path"):
        assert needle in header, f"usage header lacks {needle!r}"
    # The DAGs folder is this repository's dags/ (dags/orchest_jobs.py calls the factory).
    dags = raw_compose["x-airflow-common"]["volumes"][0]
    assert dags.startswith("./dags:/opt/airflow/dags")


# --- docker-compose.celery.yml: the CeleryExecutor variant --------------------------------

CELERY_SERVICES = (*AIRFLOW_SERVICES, "airflow-worker")


@pytest.fixture(scope="module")
def celery() -> dict:
    return load_compose(USER_ENV, (COMPOSE_FILE, CELERY_FILE))


def test_celery_variant_adds_redis_and_workers(celery):
    services = celery["services"]
    assert services["redis"]["image"].startswith("redis:")
    assert "redis-cli" in " ".join(services["redis"]["healthcheck"]["test"])
    worker = services["airflow-worker"]
    command = worker["command"]
    assert (command if isinstance(command, str) else " ".join(command)) == "celery worker"
    assert "inspect ping" in " ".join(worker["healthcheck"]["test"])
    assert _environment(worker)["DUMB_INIT_SETSID"] == "0"
    for name in (*AIRFLOW_SERVICES[1:], "airflow-worker"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    # The LocalExecutor file alone is unchanged: no redis, no worker.
    assert "redis" not in load_compose(USER_ENV)["services"]


def test_celery_variant_configures_every_component_alike(celery):
    envs = {name: _environment(celery["services"][name]) for name in CELERY_SERVICES}
    for name, env in envs.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0", name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql"), name
        assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"], name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-apiserver:8080/execution/"), name
        assert int(env["AIRFLOW__CORE__DEFAULT_TASK_RETRIES"]) >= 1, name
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"):
        assert len({env[key] for env in envs.values()}) == 1, key
    # The Celery settings name a real object: Airflow's defaults plus the worker hooks.
    module, _, attr = envs["airflow-worker"]["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] \
        .rpartition(".")
    from importlib import import_module

    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    config = getattr(import_module(module), attr)
    assert set(DEFAULT_CELERY_CONFIG) <= set(config)


def test_celery_worker_starts_steps_like_the_scheduler_did(celery):
    """The worker runs the tasks: Docker socket, DOCKER_GID and the Orchest folders at
    the same path, and the same [orchest_jobs] settings as every other component."""
    worker = celery["services"]["airflow-worker"]
    pairs = [_split_volume(v) for v in worker["volumes"]]
    assert dict(pair[::-1] for pair in pairs).get(DOCKER_SOCKET) == DOCKER_SOCKET
    assert [str(g) for g in worker["group_add"]] == [USER_ENV["DOCKER_GID"]]
    for folder in ORCHEST_FOLDERS:
        path = f"{USER_ENV['ORCHEST_JOBS_ROOT']}/{folder}"
        assert (path, path) in pairs, folder
    env = _environment(worker)
    scheduler = _environment(celery["services"]["airflow-scheduler"])
    for key, value in scheduler.items():
        if key.startswith("AIRFLOW__ORCHEST_JOBS__"):
            assert env[key] == value, key
    assert worker["image"] == celery["services"]["airflow-scheduler"]["image"]


def test_celery_registry_passes_through():
    celery = load_compose({**USER_ENV, "ORCHEST_JOBS_REGISTRY": "registry.example.com:5000"},
                          (COMPOSE_FILE, CELERY_FILE))
    for name in CELERY_SERVICES:
        env = _environment(celery["services"][name])
        assert env["AIRFLOW__ORCHEST_JOBS__REGISTRY"] == "registry.example.com:5000", name
        settings = Settings.from_mapping({"registry": env["AIRFLOW__ORCHEST_JOBS__REGISTRY"]})
        assert settings.registry == "registry.example.com:5000"


def test_celery_file_documents_usage():
    header = CELERY_FILE.read_text().split("\n---", 1)[0]
    for needle in ("-f docker-compose.yml -f docker-compose.celery.yml", "--scale airflow-worker",
                   "SAME absolute path", "ORCHEST_JOBS_REGISTRY", "Several hosts"):
        assert needle in header, f"usage header lacks {needle!r}"


# --- docker/Dockerfile ----------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends in a continuation line"
    result = []
    for line in joined:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def test_dockerfile_builds_on_the_official_airflow_3_image():
    instructions = _dockerfile_instructions()
    args: dict[str, str] = {}
    for instruction, rest in instructions:
        if instruction == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            break
        assert instruction == "ARG", f"{instruction} before FROM"
        name, _, default = rest.partition("=")
        args[name] = default
    assert re.fullmatch(r"apache/airflow:3\.\d+\.\d+-python3\.\d+", base), base
    # The compose build uses the same default Airflow version.
    compose_args = yaml.safe_load(COMPOSE_FILE.read_text())["x-airflow-common"]["build"]["args"]
    assert _interpolate(compose_args["AIRFLOW_VERSION"], {}) == args["AIRFLOW_VERSION"]
    assert _interpolate(compose_args["PYTHON_VERSION"], {}) == args["PYTHON_VERSION"]


def test_dockerfile_installs_this_package_without_changing_airflow():
    instructions = _dockerfile_instructions()
    copied: dict[str, str] = {}
    for instruction, rest in instructions:
        if instruction == "COPY":
            words = [w for w in rest.split() if not w.startswith("--")]
            for source in words[:-1]:
                copied[source] = words[-1]
    assert "pyproject.toml" in copied and "src" in copied
    package_dir = copied["pyproject.toml"].rstrip("/")
    assert copied["src"].rstrip("/") == f"{package_dir}/src"
    # Files the package build reads (pyproject's readme) are copied too.
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    if readme:
        assert readme.group(1) in copied
    installs = [rest for instruction, rest in instructions
                if instruction == "RUN" and "pip install" in rest]
    assert installs, "no pip install"
    words = installs[0].split()
    assert package_dir in words, f"pip install does not install {package_dir}"
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in words, "Airflow is not pinned"
    assert not any(instruction == "USER" and rest.split(":")[0] in ("root", "0")
                   for instruction, rest in instructions), "pip must run as the airflow user"


# --- .dockerignore --------------------------------------------------------------------------


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def to_regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw[1:] if negate else raw).lstrip("/")
        if any(to_regex(pattern).fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_the_package_and_nothing_heavy():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    sent = ["pyproject.toml", "README.md", "src/airflow_orchest_jobs/__init__.py",
            "src/airflow_orchest_jobs/core/settings.py"]
    sent += [str(p.relative_to(REPO)) for p in (REPO / "src").rglob("*.json")]
    for path in sent:
        assert not _dockerignore_excludes(path, patterns), f"{path} left out of the build"
    for path in (".venv/bin/python", ".git/HEAD", ".compose/store/x", ".cache/images/a",
                 "tests/conftest.py", "src/airflow_orchest_jobs/__pycache__/cli.cpython-311.pyc",
                 "examples/projects/weather-report/scratch/big.bin"):
        assert _dockerignore_excludes(path, patterns), f"{path} sent to the build"
    # Everything the Dockerfile copies is sent.
    for instruction, rest in _dockerfile_instructions():
        if instruction == "COPY":
            for source in [w for w in rest.split() if not w.startswith("--")][:-1]:
                assert not _dockerignore_excludes(source, patterns), source


# --- the example project (plain JSON; loader-based checks live with the loader) -------------

EXAMPLE = REPO / "examples" / "projects" / "weather-report"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _example_pipeline() -> dict:
    return json.loads((EXAMPLE / "weather.orchest").read_text())


def _topological(steps: dict) -> list[str]:
    order: list[str] = []

    def visit(key: str, path: tuple[str, ...] = ()) -> None:
        assert key not in path, f"cycle through {key}"
        if key in order:
            return
        for parent in steps[key]["incoming_connections"]:
            visit(parent, (*path, key))
        order.append(key)

    for key in steps:
        visit(key)
    return order


def test_example_pipeline_is_a_valid_orchest_file():
    pipeline = _example_pipeline()
    assert pipeline["version"] == "1.2.3"
    assert 0 < len(pipeline["name"]) <= 255
    assert UUID4.fullmatch(pipeline["uuid"])
    assert pipeline["parameters"] == {"city": "Amsterdam", "days": 3}
    assert pipeline["settings"] == {
        "auto_eviction": False,
        "data_passing_memory_size": "1GB",
        "max_steps_parallelism": 0,
    }
    assert pipeline["services"] == {}
    steps = pipeline["steps"]
    environments = EXAMPLE / ".orchest" / "environments"
    for key, step in steps.items():
        assert step["uuid"] == key and UUID4.fullmatch(key)
        assert set(step) >= {"title", "file_path", "incoming_connections", "environment",
                             "kernel", "parameters", "meta_data"}
        assert (EXAMPLE / step["file_path"]).is_file(), step["file_path"]
        assert all(parent in steps for parent in step["incoming_connections"])
        assert step["kernel"] == {"name": "python", "display_name": "Python 3"}
        assert (environments / step["environment"] / "properties.json").is_file()
        assert step["meta_data"]["hidden"] is False and len(step["meta_data"]["position"]) == 2
    order = [Path(steps[key]["file_path"]).suffix for key in _topological(steps)]
    assert order == [".py", ".ipynb", ".py", ".sh"]
    # Pipeline and step parameters share the name "days" and stay separate.
    analyse = next(s for s in steps.values() if s["file_path"] == "analyse.ipynb")
    assert "days" in analyse["parameters"] and "days" in pipeline["parameters"]
    assert analyse["parameters"]["days"] != pipeline["parameters"]["days"]


def test_example_environment_definition():
    (env_dir,) = (EXAMPLE / ".orchest" / "environments").iterdir()
    properties = json.loads((env_dir / "properties.json").read_text())
    assert properties == {
        "uuid": env_dir.name,
        "name": "Python 3",
        "language": "python",
        "base_image": "orchest/base-kernel-py:2022.10.0",
        "gpu_support": False,
    }
    setup = env_dir / "setup_script.sh"
    assert setup.read_text().startswith("#!/bin/bash\n")
    assert subprocess.run(["bash", "-n", str(setup)]).returncode == 0


def test_example_notebook_is_valid_nbformat_4_with_outputs_cleared():
    notebook = json.loads((EXAMPLE / "analyse.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 5
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
    code = []
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("code", "markdown")
        assert isinstance(cell["metadata"], dict)
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            code.append(source)
    text = "\n".join(code)
    compile(text, "analyse.ipynb", "exec")
    for needle in ("orchest.get_inputs()", 'get_pipeline_param("days")',
                   'get_step_param("days"', 'orchest.output(summary, name="summary")'):
        assert needle in text
    assert not re.search(r"^\s*(import|from)\s+(pandas|numpy|matplotlib)", text, re.M)


def test_example_parameter_grid_uses_lists():
    pipeline = _example_pipeline()
    grid = json.loads((EXAMPLE / "weather.parameters.json").read_text())
    runs = 1
    for key, params in grid.items():
        defaults = (pipeline["parameters"] if key == "pipeline_parameters"
                    else pipeline["steps"][key]["parameters"])
        for name, values in params.items():
            assert name in defaults, f"{key}: unknown parameter {name}"
            assert isinstance(values, list) and values, f"{key}.{name} must be a non-empty list"
            runs *= len(values)
    assert next(iter(grid)) == "pipeline_parameters"
    assert grid["pipeline_parameters"] == {"city": ["Amsterdam", "Lisbon"]}
    assert runs == 4


def test_example_job_file():
    job = json.loads((EXAMPLE / "nightly.job.json").read_text())
    assert job == {
        "pipeline": "weather.orchest",
        "schedule": "0 3 * * *",
        "parameters": "weather.parameters.json",
        "env_variables": {"REPORT_TITLE": "Nightly weather"},
        "max_retained_pipeline_runs": 20,
        "snapshot": "per_job",
    }
    assert (EXAMPLE / job["pipeline"]).is_file() and (EXAMPLE / job["parameters"]).is_file()
    assert all(re.fullmatch(r"[0-9a-zA-Z\-_]+", name) for name in job["env_variables"])


def test_example_gitignore_keeps_scratch_and_orchest_state_out():
    lines = set((EXAMPLE / ".gitignore").read_text().splitlines())
    assert {".orchest/pipelines/*/logs/", ".orchest/pipelines/*/data/", ".orchest/plasma.sock",
            ".ipynb_checkpoints/", "scratch/"} <= lines
    assert not any(line.startswith("!") for line in lines), "Orchest's rsync ignores negation"


def test_example_scripts_parse():
    for name in ("generate.py", "render.py"):
        compile((EXAMPLE / name).read_text(), name, "exec")
    publish = EXAMPLE / "publish.sh"
    assert publish.read_text().startswith("#!/usr/bin/env bash\n")
    assert subprocess.run(["bash", "-n", str(publish)]).returncode == 0
    text = (EXAMPLE / "generate.py").read_text()
    for needle in ('get_pipeline_param("city"', 'get_pipeline_param("days"',
                   'get_step_param("seed"', 'orchest.output(data, name="readings")'):
        assert needle in text


@pytest.mark.docker
@pytest.mark.slow
def test_example_runs_in_the_python_image(docker_client, images, tmp_path):
    """One run of the grid (Lisbon, seed 2), step by step, under Orchest's step contract."""
    from docker.types import Mount

    pipeline = _example_pipeline()
    generate = next(k for k, s in pipeline["steps"].items() if s["file_path"] == "generate.py")
    pipeline["parameters"]["city"] = "Lisbon"
    pipeline["steps"][generate]["parameters"]["seed"] = 2
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    shutil.copytree(EXAMPLE, run_dir, ignore=shutil.ignore_patterns("scratch", "build"))
    data_dir.mkdir()
    definition = tmp_path / "pipeline.json"
    definition.write_text(json.dumps(pipeline))
    session = "5b0c1d7e-3f7a-4c55-9a62-0d6f3e1a2b4c"
    commands = {
        ".py": lambda f: ["python3", f],
        ".sh": lambda f: ["bash", f],
        ".ipynb": lambda f: [
            "python3", "-c",
            "import sys, nbformat, nbclient; nb = nbformat.read(sys.argv[1], 4); "
            "nbclient.NotebookClient(nb, kernel_name=nb.metadata.kernelspec.name, "
            "resources={'metadata': {'path': '.'}}).execute(); nbformat.write(nb, sys.argv[1])",
            f,
        ],
    }
    for key in _topological(pipeline["steps"]):
        file_path = Path(pipeline["steps"][key]["file_path"])
        docker_client.containers.run(
            images["python"],
            commands[file_path.suffix](file_path.name),
            working_dir=str(Path("/project-dir") / file_path.parent),
            environment={
                "REPORT_TITLE": "Nightly weather",
                "ORCHEST_STEP_UUID": key,
                "ORCHEST_PIPELINE_UUID": pipeline["uuid"],
                "ORCHEST_PIPELINE_PATH": "/pipeline.json",
                "ORCHEST_PROJECT_UUID": "0e4d3c2b-1a09-4f87-9e6d-5c4b3a291807",
                "ORCHEST_SESSION_UUID": session,
                "ORCHEST_SESSION_TYPE": "noninteractive",
            },
            mounts=[
                Mount("/project-dir", str(run_dir), type="bind"),
                Mount("/data", str(data_dir), type="bind"),
                Mount("/pipeline.json", str(definition), type="bind", read_only=True),
            ],
            network_mode="none",
            remove=True,
        )
    outputs = run_dir / ".orchest" / "pipelines" / pipeline["uuid"] / "data"
    heads = {p.parent.name: p.read_text() for p in outputs.glob("*/HEAD")}
    assert heads[generate].endswith("; readings")
    report = (data_dir / "weather-report" / f"{session}.md").read_text()
    assert report.startswith("# Nightly weather\n")
    assert f"- run: {session}" in report and "## Lisbon: 3 day(s), seed 2" in report
    assert "### The last 2 day(s)" in report  # the step's own "days", not the pipeline's 3
    assert report.count("| 2024-06-0") == 2
    index = (data_dir / "weather-report" / "index.tsv").read_text().splitlines()
    assert len(index) == 1 and index[0].split("\t")[1:] == [session, "Lisbon: 3 day(s), seed 2"]
    executed = json.loads((run_dir / "analyse.ipynb").read_text())
    assert any(cell.get("outputs") for cell in executed["cells"])
