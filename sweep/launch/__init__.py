"""Launch sweep workers on a cluster: Slurm batch scripts and Kubernetes manifests.

The renderers are pure functions from parameters to text, so `sweep launch` can print a script
for review, write it to a file, or (Slurm) submit it; the tests check their output with the real
tools (shellcheck, a one-node Slurm cluster, kubernetes-validate). `gpu_slot` is the small helper
that gives each `docker compose --scale` replica a GPU of its own.
"""

from sweep.launch.k8s import K8sJob, k8s_job, render_k8s_manifest
from sweep.launch.slurm import (
    SlurmJob,
    SubmitError,
    render_slurm_script,
    slurm_job,
    submit_slurm_script,
)

__all__ = [
    "K8sJob",
    "SlurmJob",
    "SubmitError",
    "k8s_job",
    "render_k8s_manifest",
    "render_slurm_script",
    "slurm_job",
    "submit_slurm_script",
]
