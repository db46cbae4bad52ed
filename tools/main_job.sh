#!/usr/bin/env bash
# The main job: set up .venv and execute every tutorial headless at full size on the bundled real model
# (all-MiniLM-L6-v2, offline). Executed notebooks and HTML pages go to _out/tutorials/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
source .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export PEFTLAB_FULL=1
python tools/run_tutorials.py --out _out/tutorials "$@"
