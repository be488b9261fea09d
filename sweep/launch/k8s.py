"""`sweep launch k8s`: a Kubernetes Indexed Job that runs `--workers` sweep workers.

Design:
- An Indexed Job with `parallelism` = `completions` = workers: pod i runs one `sweep worker`, and
  the Job is complete when every worker has exited 0, i.e. the study has its budget of trials.
  No Service: the workers talk only to the database.
- Each pod asks for `nvidia.com/gpu` (the NVIDIA device plugin gives it its own GPU(s)).
- The storage URL comes from a Secret (`secretKeyRef`) into `$SWEEP_STORAGE`; it is never
  written into the manifest.
- Preemption: a worker that gets TERM checkpoints its running trial, marks it for retry and exits
  0. Kubernetes would then count the pod as *succeeded* and not replace it, so a small shell
  wrapper turns "stopped by TERM" into exit code 143; the pod failure policy ignores that code and
  the DisruptionTarget condition (preemption, eviction, node drain), so the pod is started again
  without using up its retries. Exit code 2 (a mistake in the study file or the storage URL)
  fails the Job at once: retrying cannot fix it.
- Checkpoints and kept models live on a PersistentVolumeClaim every pod mounts (ReadWriteMany),
  since a retried trial may resume on another node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweep import __version__
from sweep.errors import ConfigError, ExitCode
from sweep.launch._common import looks_like_file, require_absolute, require_at_least, slug

# A DNS subdomain (RFC 1123): the form of Secret, PVC and other object names.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_IMAGE = re.compile(r"^[^\s]+$")

# Exit code of a worker stopped by TERM (128 + 15), as the wrapper reports it.
TERM_EXIT_CODE = 143
# A user's mistake (bad study file, bad storage URL): no retry can help, the Job fails at once.
# An infrastructure failure (ExitCode.INFRASTRUCTURE: the database stayed away, a full disk) is
# left to the default: the pod is started again, up to BACKOFF_LIMIT_PER_INDEX times.
USER_ERROR_EXIT_CODE = int(ExitCode.USER_ERROR)
# Retries per worker for crashes (not for preemption, which the failure policy ignores).
BACKOFF_LIMIT_PER_INDEX = 3
# The worker needs up to 30 s after TERM; Kubernetes' default grace period is exactly 30 s.
TERMINATION_GRACE_S = 60

# `sweep worker` exits 0 after a TERM; report 143 instead so that the Job replaces the pod.
_WRAPPER = """\
# sweep worker exits 0 after a TERM (its trial is checkpointed and queued for retry). Exit 143
# instead, so that the Job starts this worker again (the pod failure policy ignores 143).
stopped=0
trap 'stopped=1; kill -TERM "$pid" 2>/dev/null' TERM
sweep worker "$@" &
pid=$!
wait "$pid"; status=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done
if [ "$stopped" = 1 ]; then exit 143; fi
exit "$status"
"""


@dataclass(frozen=True)
class K8sOptions:
    """The options of `sweep launch k8s`, defined once: the CLI fills one, `k8s_job` checks it
    (see the command's help for what each means)."""

    storage_secret: str = "sweep-storage"
    secret_key: str = "url"
    workers: int = 1
    gpus_per_worker: int = 1
    image: str = "sweep:latest"
    checkpoint_claim: str = "sweep-checkpoints"
    checkpoint_dir: str = "/sweep/checkpoints"
    artifacts_dir: str = "/sweep/artifacts"
    trials: int | None = None
    job_name: str | None = None


@dataclass(frozen=True)
class K8sJob:
    """Everything the manifest needs, already checked (see `k8s_job`)."""

    study: str  # a study file's path inside the image, or a study name in the storage
    study_name: str
    options: K8sOptions

    @property
    def name(self) -> str:
        """The Job's name: `--job-name`, else `sweep-<study>` (short enough for pod names)."""
        return self.options.job_name or f"sweep-{slug(self.study_name, max_len=40)}"


def k8s_job(study: str, options: K8sOptions) -> K8sJob:
    """Check the options of `sweep launch k8s`; every mistake is one ConfigError.

    STUDY is passed to the workers as given: a path inside the image (relative to its working
    directory) or a study name in the storage. When the file also exists here it is loaded, so
    a mistake in it shows now rather than in every pod's log.
    """
    _check_options(options)
    if not study.strip() or "\n" in study:
        raise ConfigError(f"STUDY must be a study file or a study name, got {study!r}")
    name = study
    if looks_like_file(study):
        path = Path(study)
        if path.is_file():
            from sweep.config import load_study

            name = load_study(path).name
        else:
            name = path.stem  # only in the image: its `name:` is not known here
    return K8sJob(study=study, study_name=name, options=options)


def _check_options(o: K8sOptions) -> None:
    require_at_least("--workers", o.workers, 1)
    require_at_least("--gpus-per-worker", o.gpus_per_worker, 0)
    require_at_least("--trials", o.trials, 1)
    for option, value in (
        ("--storage-secret", o.storage_secret),
        ("--checkpoint-claim", o.checkpoint_claim),
    ):
        if not _DNS_SUBDOMAIN.match(value):
            raise ConfigError(
                f"{option} must be a Kubernetes object name (lowercase letters, digits, '-', "
                f"'.'), got {value!r}"
            )
    if not _SECRET_KEY.match(o.secret_key):
        raise ConfigError(
            f"--secret-key must be letters, digits, '-', '_' or '.', got {o.secret_key!r}"
        )
    if not _IMAGE.match(o.image):
        raise ConfigError(f"--image must be an image reference without spaces, got {o.image!r}")
    require_absolute("--checkpoint-dir", o.checkpoint_dir)
    require_absolute("--artifacts-dir", o.artifacts_dir)
    if o.checkpoint_dir.rstrip("/") == o.artifacts_dir.rstrip("/"):
        raise ConfigError("--checkpoint-dir and --artifacts-dir must differ")
    job_name = o.job_name
    if job_name is not None and (len(job_name) > 52 or slug(job_name, max_len=52) != job_name):
        raise ConfigError(
            f"--job-name must be at most 52 lowercase letters, digits and '-', got {job_name!r}"
        )


def manifest_object(job: K8sJob) -> dict[str, Any]:
    """The Job as a plain mapping (what `render_k8s_manifest` writes as YAML)."""
    labels = {
        "app.kubernetes.io/name": "sweep",
        "app.kubernetes.io/component": "worker",
        "sweep/study": slug(job.study_name, max_len=63),
    }
    args = [
        job.study,
        "--checkpoint-dir",
        job.options.checkpoint_dir,
        "--artifacts-dir",
        job.options.artifacts_dir,
    ]
    if job.options.trials is not None:
        args += ["--trials", str(job.options.trials)]
    container: dict[str, Any] = {
        "name": "worker",
        "image": job.options.image,
        "imagePullPolicy": "IfNotPresent",
        # $0 names the script in messages; "$@" is args.
        "command": ["/bin/sh", "-c", _WRAPPER, "sweep-worker"],
        "args": args,
        "env": [
            {
                "name": "SWEEP_STORAGE",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": job.options.storage_secret,
                        "key": job.options.secret_key,
                    }
                },
            },
        ],
        "volumeMounts": [
            {"name": "shared", "mountPath": job.options.checkpoint_dir, "subPath": "checkpoints"},
            {"name": "shared", "mountPath": job.options.artifacts_dir, "subPath": "artifacts"},
        ],
    }
    if job.options.gpus_per_worker > 0:
        gpus = {"nvidia.com/gpu": job.options.gpus_per_worker}
        # Extended resources are requested through limits (requests must equal them).
        container["resources"] = {"limits": dict(gpus), "requests": dict(gpus)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": job.options.workers,
            "parallelism": job.options.workers,
            "backoffLimitPerIndex": BACKOFF_LIMIT_PER_INDEX,
            # A retried worker starts only once the old pod is gone (never two on one GPU slot).
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        # Preempted, evicted, node drained: start it again, uncounted.
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {
                        # Stopped by TERM after checkpointing (see the wrapper): the same.
                        "action": "Ignore",
                        "onExitCodes": {
                            "containerName": "worker",
                            "operator": "In",
                            "values": [TERM_EXIT_CODE],
                        },
                    },
                    {
                        # A mistake in the study file or the storage URL: no retry can help.
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "worker",
                            "operator": "In",
                            "values": [USER_ERROR_EXIT_CODE],
                        },
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Required by a pod failure policy: the Job, not the kubelet, retries.
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "shared",
                            "persistentVolumeClaim": {"claimName": job.options.checkpoint_claim},
                        }
                    ],
                },
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the wrapper script) as readable `|` blocks, and repeated
    mappings (the labels) in full rather than as YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def render_k8s_manifest(job: K8sJob) -> str:
    """The manifest for `job`: a comment saying how to use it, then the Job as YAML."""
    gpus = (
        f"{job.options.gpus_per_worker} GPU{'s' if job.options.gpus_per_worker > 1 else ''} each"
        if job.options.gpus_per_worker
        else "CPU only"
    )
    header = [
        f"# Sweep workers for study {job.study_name!r}: {job.options.workers} pods, {gpus}.",
        f"# Written by `sweep launch k8s` (sweep {__version__}). Before `kubectl apply -f` it:",
        f"#   kubectl create secret generic {job.options.storage_secret} "
        f"--from-literal={job.options.secret_key}='postgresql+psycopg://USER:PASSWORD@HOST:5432/DB'",
        f"#   a ReadWriteMany PersistentVolumeClaim named {job.options.checkpoint_claim} "
        "(checkpoints, kept models)",
        f"# Follow it: kubectl get job {job.name}; kubectl logs -f job/{job.name}",
    ]
    body = yaml.dump(manifest_object(job), Dumper=_Dumper, sort_keys=False, width=100)
    return "\n".join(header) + "\n" + body
