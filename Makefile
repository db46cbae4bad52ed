# Convenience aliases for the two README commands.
.PHONY: run test bench
run: ; bash tools/main_job.sh
test: ; bash tools/test.sh
bench: ; bash tools/setup_env.sh && .venv/bin/python bench/bench_lora.py
