#!/usr/bin/env bash
# Build the full table of benchmarks/search.py on a CUDA GPU, then replay it: one JSON line.
#
#   bash benchmarks/gpu_search_table.sh [TABLE]
#
# The table this made on an NVIDIA H100 (590 s of training, in two commands) ships in
# benchmarks/tables/; run this to remake it on other hardware or software.
#
# Fine-tunes every configuration of the grid once (nano/micro/mini x 4 learning rates x batch
# 16/32/64 = 36 configurations, 4 epochs each, SST-2 limited to 8000 train rows) with sweep's own
# training code, then replays 5 seeds of 50 trials per side. TABLE defaults to the path the replay
# looks in (~/.cache/sweep/benchmarks/search-sst2-limit8000-len64.json, or $SWEEP_CACHE_DIR's).
# The build stops starting new configurations after $BUDGET_SECONDS (default 420) so that one
# 10-minute command also has time to replay; if it stopped early, run the script again with the
# same TABLE: the build goes on where it stopped (a lent machine forgets its files once given back,
# so carry the table that came back, e.g. as .data/table.json, and pass that path as TABLE). With
# $OUT set (the lent-GPU tool), the table and the per-trial curves are copied there to come back.
#
# Data: $SWEEP_SEARCH_DATA, else the first of ../shared/data/sst2, shared/data/sst2, .data/sst2
# (a lent machine gets only the repository: copy the 3.8 MB folder into an ignored .data/ and
# carry it: `mkdir -p .data && cp -r ../shared/data/sst2 .data/ && echo /.data/ >> .git/info/exclude`).
#
# The build needs torch (CUDA), transformers, tokenizers, safetensors, pandas, pyarrow and
# scikit-learn; the replay also needs optuna and pydantic, which the lent GPU image lacks. Carry
# them as wheels in an ignored .whl/ (Python 3.12 there), e.g. from the repository root here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl optuna==5.0.0 colorlog==6.12.0 alembic==1.20.1 SQLAlchemy==2.1.9 greenlet==3.5.6 \
#     Mako==1.4.3 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5
# Without them the table is still built (and comes back through $OUT); replay it anywhere with
#   python benchmarks/search.py --table TABLE --seeds 5
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/sweep-site .whl/*.whl
    export PYTHONPATH=/tmp/sweep-site${PYTHONPATH:+:$PYTHONPATH}
fi
# sweep from this checkout, installed or not.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

DATA=${SWEEP_SEARCH_DATA:-}
if [[ -z $DATA ]]; then
    for candidate in ../shared/data/sst2 shared/data/sst2 .data/sst2; do
        if [[ -f $candidate/train.csv ]]; then DATA=$candidate; break; fi
    done
fi
if [[ -z $DATA ]]; then
    echo "error: no SST-2 folder found; set SWEEP_SEARCH_DATA (see the header of $0)" >&2
    exit 2
fi
CACHE=${SWEEP_CACHE_DIR:-$HOME/.cache/sweep}
TABLE=${1:-$CACHE/benchmarks/search-$(basename "$DATA")-limit8000-len64.json}

"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0), torch.__version__)' >&2
"$PY" benchmarks/search.py --build-table "$TABLE" --data "$DATA" --limit-train 8000 \
    --max-length 64 --budget-seconds "${BUDGET_SECONDS:-420}"
if [[ -n ${OUT:-} ]]; then cp "$TABLE" "$OUT/"; fi

if ! "$PY" -c 'import optuna, pydantic' 2>/dev/null; then
    echo "optuna/pydantic missing here: table at $TABLE; replay it with" \
        "python benchmarks/search.py --table TABLE --seeds 5" >&2
    exit 0
fi
curves=${OUT:-/tmp}/search-curves.json
"$PY" benchmarks/search.py --table "$TABLE" --seeds 5 --trials 50 --curves "$curves"
