#!/usr/bin/env bash
# Install what the SLURM tests (tests/slurm_cluster.py) need: the Debian
# packages slurm-wlm (slurmctld, slurmd and the client commands) and munge.
#
# Idempotent: does nothing when slurmctld is already installed.  Must run as
# root (or with sudo available).  Exits non-zero when the installation fails.
set -euo pipefail

have_all() {
    command -v slurmctld >/dev/null 2>&1 &&
        command -v slurmd >/dev/null 2>&1 &&
        command -v sbatch >/dev/null 2>&1 &&
        command -v munged >/dev/null 2>&1
}

# slurmctld and munged live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if command -v slurmctld >/dev/null 2>&1; then
    echo "install_slurm: slurmctld already present ($(slurmctld -V)); nothing to do"
else
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install_slurm: need root (or sudo) to install packages" >&2
        exit 1
    fi
    echo "install_slurm: installing slurm-wlm and munge"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends slurm-wlm munge
fi

if ! have_all; then
    echo "install_slurm: slurmctld, slurmd, sbatch or munged still missing" >&2
    exit 1
fi
echo "install_slurm: $(slurmctld -V), $(munged -V 2>&1 | head -n 1)"
