#!/usr/bin/env bash
# The test command: set up .venv, check the package is exactly what the notebooks export, run every notebook
# (library notebooks and tutorials in quick mode) with nbdev_test, and print a "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh || exit 1
source .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
unset PEFTLAB_FULL
if git rev-parse --git-dir >/dev/null 2>&1; then
  nbdev_export && nbdev_clean >/dev/null 2>&1
  if [ -n "$(git status --porcelain -- peftlab nbs)" ]; then
    echo "peftlab/ or nbs/ differ from what the notebooks export / nbdev_clean produces:"; git status --porcelain -- peftlab nbs
    echo "0 passed, 1 failed"; exit 1
  fi
fi
log=$(mktemp)
nbdev_test --n_workers "${NBDEV_WORKERS:-2}" --do_print --timing 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
total=$(grep -c "^Starting " "$log" || true)
failed=$(awk '/Tests Failed On The Following Notebooks/{f=1;next} f&&/\.ipynb/{n++} END{print n+0}' "$log")
echo "$((total - failed)) passed, $failed failed"
rm -f "$log"
exit $rc
