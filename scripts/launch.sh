#!/usr/bin/env bash
# Runs a Qianjun program on N ranks of this machine through Open MPI's mpirun:
#   scripts/launch.sh N build/qj-train --config configs/default.json --set parallel.tp=2
# - as root, mpirun refuses to start without --allow-run-as-root;
# - ranks may outnumber cores (--oversubscribe), so ranks that wait for a message
#   yield their core instead of spinning (mpi_yield_when_idle), no rank is pinned
#   to a core (--bind-to none), and each rank gets cores/N OpenMP threads (at least 1).
# Extra mpirun flags can go in QJ_MPIRUN_FLAGS (e.g. a hostfile for several machines).
set -euo pipefail
if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/launch.sh RANKS PROGRAM [ARGS...]" >&2
  exit 2
fi
ranks=$1
shift
command -v mpirun >/dev/null || { echo "error: mpirun not found (bash scripts/setup.sh installs openmpi-bin)" >&2; exit 2; }
threads=$(( $(nproc) / ranks ))
(( threads >= 1 )) || threads=1
export OMPI_MCA_mpi_yield_when_idle=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
exec mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS \
  -x OMPI_MCA_mpi_yield_when_idle ${QJ_MPIRUN_FLAGS:-} -np "$ranks" "$@"
