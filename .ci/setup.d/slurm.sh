# A Slurm cluster's pieces and docker-compose, for tests/test_slurm.py and tests/test_launch.py.
# Sourced by .ci/run as root (set -euo pipefail is on). Idempotent and quiet: installs only what
# is missing, starts munge only if it is not answering. The tests write their own slurm.conf and
# start slurmctld/slurmd themselves (tests/slurm_cluster.py), so nothing else runs here.
_slurm_missing=()
command -v slurmctld >/dev/null || _slurm_missing+=(slurm-wlm)
command -v munged >/dev/null || _slurm_missing+=(munge)
command -v docker-compose >/dev/null || _slurm_missing+=(docker-compose)
if [ "${#_slurm_missing[@]}" -gt 0 ]; then
    apt-get update -q -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -q --no-install-recommends \
        "${_slurm_missing[@]}" >/dev/null
fi
unset _slurm_missing

# munge authenticates Slurm's daemons and commands to each other. No systemd here: start it
# by hand, as its own user, with the key the package created.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --force >/dev/null 2>&1 || mungekey -c -f
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    # A failure here must not stop the other tests: the Slurm tests then skip, saying why.
    runuser -u munge -- /usr/sbin/munged || echo "warning: munged did not start" >&2
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
fi
