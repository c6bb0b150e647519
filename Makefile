# richhf_jax: `make demo` trains and evaluates a tiny RAHF on synthetic data;
# `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_out
DEMO_TRAIN ?= 8000
DEMO_DEV ?= 100
DEMO_TEST ?= 200
PYTEST_WORKERS ?= 2

.PHONY: venv demo test bench clean-demo

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m richhf_jax.data.synthetic --out_dir $(DEMO_DIR)/data \
	  --num_train $(DEMO_TRAIN) --num_dev $(DEMO_DEV) --num_test $(DEMO_TEST) \
	  --seed 0
	$(PY) -m richhf_jax.data.join --richhf_dir $(DEMO_DIR)/data/richhf18k \
	  --pickapic '$(DEMO_DIR)/data/pickapic/*.parquet' \
	  --out_dir $(DEMO_DIR)/joined
	$(PY) -m richhf_jax.train --gin_file=gin/runs/finetune_richhf.gin --gin_file=gin/demo.gin \
	  --gin.MODEL_DIR="'$(DEMO_DIR)/model'" \
	  --gin.DATA_DIR="'$(DEMO_DIR)/joined'" \
	  --gin.VOCAB_PATH="'$(DEMO_DIR)/data/vocab/spm.model'"
	$(PY) -m richhf_jax.eval --gin_file=gin/runs/eval.gin \
	  --gin_file=gin/demo.gin \
	  --gin.MODEL_DIR="'$(DEMO_DIR)/model'" \
	  --gin.DATA_DIR="'$(DEMO_DIR)/joined'" \
	  --gin.VOCAB_PATH="'$(DEMO_DIR)/data/vocab/spm.model'" \
	  --gin.EVAL_OUTPUT_DIR="'$(DEMO_DIR)'"
	@echo "demo done: $(DEMO_DIR)/report.md, $(DEMO_DIR)/metrics.json"

test: venv
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --durations=15 tests

# The CPU benchmark set (< 30 min on a quiet 2-core machine; one process per
# case); BENCH_ARGS adds run_all flags, e.g. BENCH_ARGS='--set quick'.
bench: venv
	$(PY) benchmarks/run_all.py --set cpu --out bench_results.jsonl $(BENCH_ARGS)

clean-demo:
	rm -rf $(DEMO_DIR)
