"""A real one-node Slurm cluster on localhost for the tests: slurmctld + slurmd, munge auth.

`start_cluster(tmp)` writes a minimal slurm.conf under `tmp` (state, spool, logs and pid files
there too), starts both daemons on free ports and waits until the node is idle. Commands reach
it through $SLURM_CONF (`cluster.env`). `stop()` cancels what is left and stops the daemons.

The settings suit a container without systemd or cgroup control: process tracking by /proc
(proctrack/linuxproc), no task binding (task/none), no accounting, SlurmUser root. Needs root,
the slurm-wlm package and a running munged (.ci/setup.d/slurm.sh provides them); when something
is missing, `unavailable()` says what, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_BINARIES = ("slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel", "munge", "unmunge")
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
}
# The tests run 2-task jobs: a node needs at least this many CPUs.
MIN_CPUS = 2


def _munge_ok() -> bool:
    try:
        encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=False)
        decoded = subprocess.run(
            ["unmunge"], input=encoded.stdout, capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return encoded.returncode == 0 and decoded.returncode == 0


def _start_munge() -> None:
    """Start munged as its own user (what .ci/setup.d/slurm.sh does), for a machine where the
    setup script has not run since boot."""
    if shutil.which("munged") is None or not Path("/etc/munge/munge.key").exists():
        return
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "/run/munge"], check=False)
    subprocess.run(["runuser", "-u", "munge", "--", shutil.which("munged")], check=False)
    for _ in range(20):
        if _munge_ok():
            return
        time.sleep(0.5)


def unavailable() -> str | None:
    """Why a cluster cannot start here (for pytest.skip), or None."""
    missing = [name for name in _BINARIES if shutil.which(name) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)}): run .ci/setup.d/slurm.sh"
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd starts jobs as their user)"
    if not _munge_ok():
        _start_munge()
        if not _munge_ok():
            return "munged is not running (start it: .ci/setup.d/slurm.sh)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_lines(name: str) -> list[str]:
    """The node's hardware as slurmd sees it (`slurmd -C`), so that it registers as idle."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    cpus = int(re.search(r"CPUs=(\d+)", first).group(1))
    if cpus < MIN_CPUS:
        # A one-core machine: claim two CPUs, and tell slurmd to believe the config.
        return [
            "SlurmdParameters=config_overrides",
            f"NodeName={name} CPUs={MIN_CPUS} RealMemory=1000 NodeAddr=127.0.0.1 State=UNKNOWN",
        ]
    # The real CPU/socket layout, a modest memory (jobs here do not ask for memory).
    first = re.sub(r"^NodeName=\S+", f"NodeName={name}", first)
    first = re.sub(r"RealMemory=\d+", "RealMemory=1000", first)
    return [f"{first} NodeAddr=127.0.0.1 State=UNKNOWN"]


@dataclass
class SlurmCluster:
    """A running one-node cluster; `env` reaches it (SLURM_CONF)."""

    root: Path
    conf: Path
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 30) -> str:
        """Run a Slurm command against this cluster; its stdout."""
        done = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
        return done.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...)."""
        text = self.run("scontrol", "show", "job", "--oneliner", job_id)
        return dict(
            item.split("=", 1) for item in text.split() if "=" in item and not item.startswith("=")
        )

    def wait(self, job_id: str, timeout: float, *, poll: float = 1.0) -> dict[str, str]:
        """Wait until the job reaches a final state; its `job()` record. TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info.get("JobState") in FINAL_STATES:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {info.get('JobState')} after {timeout} s")
            time.sleep(poll)

    def log(self, daemon: str) -> str:
        """The end of slurmctld's or slurmd's log (for a failing test's message)."""
        path = self.root / "log" / f"{daemon}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """Cancel every job, then stop slurmd and slurmctld (and wait for them to go)."""
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", "--user", "root", timeout=10)
            time.sleep(1)
        for daemon in ("slurmd", "slurmctld"):
            pid = self.pids.get(daemon)
            if pid is None:
                continue
            with contextlib.suppress(Exception):
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(Exception):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _read_pid(path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear within {timeout} s")


def start_cluster(root: Path, *, requeue_delay_s: int = 5) -> SlurmCluster:
    """Write slurm.conf under `root`, start slurmctld and slurmd, wait for the node to be idle.

    `requeue_delay_s` is the job credential lifetime (AuthInfo cred_expire), which is also how
    long a requeued job waits before it may start again: 120 s by default, shortened so that a
    requeue test does not sit idle for two minutes.
    """
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=sweeptest",
                f"SlurmctldHost={node}(127.0.0.1)",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=cred_expire={requeue_delay_s}",
                f"StateSaveLocation={root}/state",
                f"SlurmdSpoolDir={root}/spool",
                f"SlurmctldPidFile={root}/slurmctld.pid",
                f"SlurmdPidFile={root}/slurmd.pid",
                f"SlurmctldLogFile={root}/log/slurmctld.log",
                f"SlurmdLogFile={root}/log/slurmd.log",
                # No systemd or cgroup control in a container: track processes through /proc
                # and do not bind tasks to cores.
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "JobRequeue=1",
                *_node_lines(node),
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root=root, conf=conf, env=env)
    try:
        # -i: ignore any saved state (a fresh cluster every time).
        subprocess.run(["slurmctld", "-i"], env=env, check=True, timeout=30)
        cluster.pids["slurmctld"] = _read_pid(root / "slurmctld.pid", 15)
        subprocess.run(["slurmd"], env=env, check=True, timeout=30)
        cluster.pids["slurmd"] = _read_pid(root / "slurmd.pid", 15)
        deadline = time.monotonic() + 30
        while True:
            state = cluster.run("sinfo", "--noheader", "--format=%t").strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"node still {state!r} after 30 s; slurmd log:\n{cluster.log('slurmd')}"
                )
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise
    return cluster
