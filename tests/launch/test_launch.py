"""Cluster files, checked with the real tools: `sweep launch slurm` scripts with shellcheck,
`sweep launch k8s` manifests with kubernetes-validate, the Dockerfile with hadolint and
docker-compose.yml with `docker-compose config`; and gpu_slot's GPU locks across processes.

A tool that is missing skips its test with the reason; CI installs them all (the [test] extras
bring hadolint, shellcheck and kubernetes-validate, .ci/setup.d/slurm.sh docker-compose).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep.config import bundled_demo_path
from tests.conftest import REPO, invoke
from tests.conftest import error_line as _error_line

VENV_BIN = Path(sys.executable).parent
# The Kubernetes release whose schemas the manifest must satisfy: recent, and the first where
# everything it uses is GA (pod failure policy 1.31, backoffLimitPerIndex 1.33).
KUBERNETES_VERSION = "1.34.0"
SECRET_URL = "postgresql+psycopg://sweep:s3cret-pw@db.example.org:5432/sweep"


def tool(name: str) -> str:
    """Path of a linter/validator (the venv's bin first, then PATH), or skip."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (pip install -e '.[test]', .ci/setup.d/slurm.sh)")
    return found


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    return _error_line(result)


@pytest.fixture
def launch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = tmp_path, no SWEEP_STORAGE from outside."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    return tmp_path


def shellcheck(text: str, tmp_path: Path, shell: str = "bash") -> None:
    path = tmp_path / f"check.{shell}"
    path.write_text(text)
    done = subprocess.run(
        [tool("shellcheck"), "--shell", shell, "--severity=style", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def sbatch_options(script: str) -> list[str]:
    return [
        line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH")
    ]


# -- sweep launch slurm ---------------------------------------------------------------------


def test_slurm_script_for_gpu_nodes(launch_env: Path) -> None:
    result = invoke(
        "launch", "slurm", str(bundled_demo_path()), "--storage", "postgresql+psycopg://sweep@db/sweep",
        "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--account", "ml",
        "--time", "04:00:00", "--cpus-per-task", "8", "--trials", "40",
        "--checkpoint-dir", "/shared/ckpt",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    script = result.stdout
    options = sbatch_options(script)
    for expected in (
        "--job-name=sweep-demo",
        "--nodes=2",
        "--ntasks=8",  # one task per GPU
        "--ntasks-per-node=4",
        "--gpus-per-task=1",  # each task bound to its own GPU
        "--cpus-per-task=8",
        "--partition=gpu",
        "--account=ml",
        "--time=04:00:00",
        "--signal=B:TERM@120",  # TERM to the batch shell 2 minutes before the limit
        "--requeue",
        "--export=ALL",
        f"--output={launch_env}/slurm-logs/%x-%j.out",
    ):
        assert expected in options, (expected, options)
    assert script.startswith("#!/bin/bash\n")
    # The storage URL has no password: it is written, and wins over the study file's sqlite.
    assert "export SWEEP_STORAGE=postgresql+psycopg://sweep@db/sweep" in script
    # One srun step, a log per task, the worker with the shared directories and the budget.
    assert '--output="$log_dir/%x-%j-task%t.out"' in script
    assert "--cpus-per-task=8" in script.split("srun", 1)[1]
    assert f"sweep worker {bundled_demo_path()}" in script
    assert "checkpoint_dir=/shared/ckpt" in script
    assert "--trials 40" in script
    # TERM goes to the tasks (not through srun, which would kill them), then the job requeues.
    assert 'scancel --signal=TERM "$SLURM_JOB_ID"' in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script
    shellcheck(script, launch_env)


def test_slurm_cpu_workers(launch_env: Path) -> None:
    result = invoke(
        "launch", "slurm", "demo", "--storage", "postgresql+psycopg://u@h/db",
        "--gpus-per-node", "0", "--workers-per-node", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    options = sbatch_options(result.stdout)
    assert "--ntasks=3" in options and "--ntasks-per-node=3" in options
    assert not [o for o in options if "gpu" in o]
    assert "sweep worker demo " in result.stdout  # a study name is passed as it is
    shellcheck(result.stdout, launch_env)


def test_slurm_never_writes_a_password(launch_env: Path) -> None:
    result = invoke("launch", "slurm", "demo", "--storage", SECRET_URL)
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.stdout and "db.example.org" not in result.stdout
    assert ': "${SWEEP_STORAGE:?' in result.stdout  # the job reads it from the environment
    assert "export it before running sbatch" in result.stderr
    # The same from $SWEEP_STORAGE.
    result = invoke("launch", "slurm", "demo", env={"SWEEP_STORAGE": SECRET_URL})
    assert result.exit_code == 0 and "s3cret-pw" not in result.stdout


def test_slurm_output_file(launch_env: Path) -> None:
    out = launch_env / "job.sh"
    result = invoke(
        "launch", "slurm", "demo", "--storage", "postgresql+psycopg://u@h/db", "-o", str(out),
        "--log-dir", "logs",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text().startswith("#!/bin/bash")
    assert out.stat().st_mode & stat.S_IXUSR
    # sbatch opens the job's log before the script runs: the directory must exist already.
    assert (launch_env / "logs").is_dir()


def test_slurm_submit_without_sbatch(launch_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(launch_env))
    result = invoke(
        "launch", "slurm", "demo", "--storage", "postgresql+psycopg://u@h/db", "--submit"
    )
    assert "sbatch not found" in error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0"], "--nodes must be at least 1"),
        (["--gpus-per-node", "4", "--workers-per-node", "2"], "one worker per GPU"),
        (["--time", "90"], "--time must be HH:MM:SS"),
        (["--time", "00:61:00"], "minutes and seconds below 60"),
        (["--time", "00:02:00"], "too short"),
        (["--partition", "gpu queue"], "--partition must be a Slurm name"),
        (["--storage", "sqlite:///s.db", "--nodes", "2"], "SQLite file"),
        (["--storage", "nosuchdb://x"], "storage URL"),
        (["--log-dir", "my logs"], "--log-dir"),
        (["--trials", "0"], "--trials must be at least 1"),
    ],
)
def test_slurm_user_errors(launch_env: Path, args: list[str], message: str) -> None:
    if "--storage" not in args:
        args = [*args, "--storage", "postgresql+psycopg://u@h/db"]
    result = invoke("launch", "slurm", "demo", *args)
    assert message in error_line(result)
    assert result.stdout == ""


def test_slurm_checks_the_study_file_and_the_storage(launch_env: Path) -> None:
    bad = launch_env / "bad.yaml"
    bad.write_text("name: x\ndata: {demo: true}\nmodelz: {}\n")
    line = error_line(
        invoke("launch", "slurm", str(bad), "--storage", "postgresql+psycopg://u@h/db")
    )
    assert "bad.yaml" in line and "models" in line  # named before any job is written
    line = error_line(invoke("launch", "slurm", "demo"))
    assert "no storage" in line


# -- sweep launch k8s -----------------------------------------------------------------------


def k8s_manifest(*args: str) -> tuple[str, dict]:
    result = invoke("launch", "k8s", *args, env={"SWEEP_STORAGE": SECRET_URL})
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert len(documents) == 1  # one Job; no Service (the workers only talk to the database)
    return result.stdout, documents[0]


def k8s_validate(manifest: dict) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_k8s_manifest(launch_env: Path) -> None:
    text, job = k8s_manifest(
        "studies/sst2.yaml", "--storage-secret", "sweep-db", "--workers", "4",
        "--image", "registry.example.org/sweep:0.1.0", "--trials", "40",
    )  # fmt: skip
    k8s_validate(job)
    assert "s3cret-pw" not in text and "db.example.org" not in text

    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] == 4
    rules = spec["podFailurePolicy"]["rules"]
    # Preempted or evicted pods, and workers stopped by TERM, are retried without counting.
    assert {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    } in rules
    ignored = [
        r["onExitCodes"]["values"] for r in rules if r["action"] == "Ignore" and "onExitCodes" in r
    ]
    assert ignored == [[143]]
    failing = [r["onExitCodes"]["values"] for r in rules if r["action"] == "FailJob"]
    assert failing == [[2]]

    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by a pod failure policy
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.org/sweep:0.1.0"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert container["env"] == [
        {"name": "SWEEP_STORAGE", "valueFrom": {"secretKeyRef": {"name": "sweep-db", "key": "url"}}}
    ]
    assert container["args"] == [
        "studies/sst2.yaml", "--checkpoint-dir", "/sweep/checkpoints",
        "--artifacts-dir", "/sweep/artifacts", "--trials", "40",
    ]  # fmt: skip
    mounts = {m["mountPath"]: m["subPath"] for m in container["volumeMounts"]}
    assert mounts == {"/sweep/checkpoints": "checkpoints", "/sweep/artifacts": "artifacts"}
    assert pod["volumes"] == [
        {"name": "shared", "persistentVolumeClaim": {"claimName": "sweep-checkpoints"}}
    ]
    assert job["metadata"]["name"] == "sweep-sst2"  # the study file's name:
    shellcheck(container["command"][2], launch_env, shell="sh")


def test_k8s_cpu_workers_and_options(launch_env: Path) -> None:
    _, job = k8s_manifest(
        "demo", "--storage-secret", "db", "--secret-key", "dsn", "--gpus-per-worker", "0",
        "--checkpoint-claim", "team-nfs", "--checkpoint-dir", "/data/ck",
        "--artifacts-dir", "/data/models", "--job-name", "nightly-demo",
    )  # fmt: skip
    k8s_validate(job)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "resources" not in container
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "dsn"}
    assert job["metadata"]["name"] == "nightly-demo"
    assert job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "team-nfs"
    }
    assert container["args"][:5] == [
        "demo",
        "--checkpoint-dir",
        "/data/ck",
        "--artifacts-dir",
        "/data/models",
    ]


def test_k8s_output_file(launch_env: Path) -> None:
    out = launch_env / "job.yaml"
    result = invoke("launch", "k8s", "demo", "--storage-secret", "db", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    done = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage-secret", "Bad_Name"], "--storage-secret must be a Kubernetes object name"),
        (["--storage-secret", "db", "--workers", "0"], "--workers must be at least 1"),
        (["--storage-secret", "db", "--checkpoint-dir", "ck"], "must be an absolute path"),
        (["--storage-secret", "db", "--image", "a b"], "--image"),
        (["--storage-secret", "db", "--job-name", "x" * 60], "--job-name"),
        (["--storage-secret", "db", "--secret-key", "a/b"], "--secret-key"),
    ],
)
def test_k8s_user_errors(launch_env: Path, args: list[str], message: str) -> None:
    assert message in error_line(invoke("launch", "k8s", "demo", *args))


def test_k8s_wrapper_turns_a_term_stop_into_a_retry(tmp_path: Path) -> None:
    """The pod's wrapper: a worker that exits 0 after TERM makes the pod exit 143 (retried by
    the failure policy); a worker that ends by itself keeps its exit code.

    `sweep` here is a stand-in with the worker's exit contract (TERM: exit 0), since a real
    worker needs seconds to start; the wrapper is what is under test.
    """
    from sweep.launch.k8s import _WRAPPER

    stand_in = tmp_path / "sweep"
    stand_in.write_text(
        "#!/bin/sh\n"
        "trap 'echo \"worker: checkpointed\"; exit 0' TERM\n"
        'if [ "$2" = "done" ]; then exit 0; fi\n'
        'if [ "$2" = "bad" ]; then exit 2; fi\n'
        "while :; do sleep 0.1; done\n"
    )
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}

    def wrapper(arg: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["/bin/sh", "-c", _WRAPPER, "sweep-worker", arg],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )

    assert wrapper("done").wait(timeout=10) == 0
    assert wrapper("bad").wait(timeout=10) == 2
    running = wrapper("study.yaml")
    time.sleep(1.0)
    running.terminate()  # what the kubelet sends the container's first process
    assert running.wait(timeout=10) == 143
    assert "worker: checkpointed" in running.stdout.read()


# -- Dockerfile and docker-compose.yml --------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_installs_the_way_the_readme_does() -> None:
    readme = (REPO / "README.md").read_text()
    install = next(line for line in readme.splitlines() if line.startswith("python3 -m venv"))
    torch_pin = re.search(r"pip install (torch==\S+)", install).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    version = re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert f"torch=={version}" == torch_pin
    assert "python3 -m venv" in dockerfile
    assert '"torch==${TORCH_VERSION}"' in dockerfile
    assert "pip install --no-cache-dir -e ." in dockerfile and "pip install -e ." in install
    # torch before the project, as in the README
    assert dockerfile.index('install --no-cache-dir "torch==') < dockerfile.index(
        "RUN pip install --no-cache-dir -e ."
    )


def _compose(directory: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "COMPOSE_"))}
    return subprocess.run(
        [tool("docker-compose"), "--project-directory", str(directory),
         "-f", str(directory / "docker-compose.yml"), *args, "config"],
        capture_output=True, text=True, env=env, cwd=directory, check=False,
    )  # fmt: skip


def test_compose_file(tmp_path: Path) -> None:
    for name in ("docker-compose.yml", ".env.example", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text())
    done = _compose(tmp_path)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"postgres", "dashboard", "worker"}

    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "change-me"  # from .env
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in postgres["volumes"])

    url = "postgresql+psycopg://sweep:change-me@postgres:5432/sweep"
    worker = services["worker"]
    assert worker["build"]["context"] == str(tmp_path)  # the Dockerfile beside it
    assert worker["environment"]["SWEEP_STORAGE"] == url
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    (gpus,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpus["capabilities"] == ["gpu"] and gpus["driver"] == "nvidia"
    assert "deploy" not in services["dashboard"] and "replicas" not in worker.get("deploy", {})
    command = worker["command"]
    assert command[command.index("--") + 1 : command.index("--") + 4] == [
        "sweep", "worker", "studies/demo.yaml",
    ]  # fmt: skip
    assert command[command.index("--checkpoint-dir") + 1] == "/sweep/checkpoints"
    assert any(v.startswith("sweep-data:/sweep") for v in worker["volumes"])

    dashboard = services["dashboard"]
    assert dashboard["environment"]["SWEEP_STORAGE"] == url
    assert dashboard["ports"] == ["127.0.0.1:8080:8080/tcp"]  # published on localhost only
    assert dashboard["command"][:2] == ["sweep", "dashboard"]
    assert dashboard["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The command's own options are accepted: listening on 0.0.0.0 inside the container needs
    # --allow-remote (the published port is the host's localhost only), and it stays read-only.
    from sweep.report.dashboard import listen_address

    options = dashboard["command"][2:]
    host = options[options.index("--host") + 1]
    assert not listen_address(host, allow_remote="--allow-remote" in options).loopback
    assert "--allow-writes" not in options


def test_compose_needs_the_env_file(tmp_path: Path) -> None:
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    done = _compose(tmp_path)
    assert done.returncode != 0
    assert (
        "set POSTGRES_USER in .env" in done.stderr or "set POSTGRES_PASSWORD in .env" in done.stderr
    )


# -- gpu_slot: one GPU per compose replica ----------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from sweep.launch.gpu_slot import claim_gpu
claimed = claim_gpu(Path(sys.argv[1]), sys.argv[2:])
print(claimed[0] if claimed else "none", flush=True)
time.sleep(30)
"""


def test_gpu_locks_are_exclusive_across_processes(tmp_path: Path) -> None:
    from sweep.launch.gpu_slot import claim_gpu

    gpus = ["GPU-aaaa", "GPU-bbbb"]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path), *gpus], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "GPU-aaaa"
        second = claim_gpu(tmp_path, gpus)
        assert second is not None and second[0] == "GPU-bbbb"
        assert claim_gpu(tmp_path, gpus) is None  # both taken
        os.close(second[1])
    finally:
        holder.kill()
        holder.wait()
    # The holder's lock went with its process.
    again = claim_gpu(tmp_path, gpus)
    assert again is not None and again[0] == "GPU-aaaa"
    os.close(again[1])


def test_gpu_slot_runs_the_command_on_its_own_gpu(tmp_path: Path) -> None:
    """End to end through exec. `nvidia-smi` is a stand-in listing two GPUs (there is no GPU
    here); the locking, the exec and the inherited lock are real."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho GPU-1111\necho GPU-2222\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    locks = tmp_path / "locks"

    def slot(seconds: float) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "sweep.launch.gpu_slot", "--lock-dir", str(locks), "--",
             "sh", "-c", f'echo "gpu=$CUDA_VISIBLE_DEVICES"; exec sleep {seconds}'],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first, second = slot(20), slot(20)
    try:
        seen = {first.stdout.readline().strip(), second.stdout.readline().strip()}
        assert seen == {"gpu=GPU-1111", "gpu=GPU-2222"}
        third = slot(0)
        _, err = third.communicate(timeout=30)
        assert third.returncode == 2
        assert "all 2 GPUs are taken" in err
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()
    # A replica started after the others stopped gets a GPU again.
    fourth = slot(0)
    out, _ = fourth.communicate(timeout=30)
    assert fourth.returncode == 0 and out.strip() == "gpu=GPU-1111"

    # A GPU chosen by the user is left alone.
    pinned = subprocess.run(
        [sys.executable, "-m", "sweep.launch.gpu_slot", "--lock-dir", str(locks), "--",
         "sh", "-c", 'echo "gpu=$CUDA_VISIBLE_DEVICES"'],
        env={**env, "CUDA_VISIBLE_DEVICES": "3"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert pinned.stdout.strip() == "gpu=3"
