# genlab: the two commands a new machine needs are `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup demo test test-slow lint bench clean

setup:
	@bash scripts/setup.sh

## Train the default char-level GPT on tinyshakespeare (5 minutes on 2 CPU cores) and print samples.
demo: setup
	$(BIN)/genlab data prepare tinyshakespeare
	$(BIN)/genlab train gpt/shakespeare-char --overwrite --out runs/demo
	@echo
	@echo "sample again with: $(BIN)/genlab sample runs/demo --prompt 'ROMEO:' --num-samples 3"

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

## Lint, import contracts, then the test suite (slow tests excluded).
test: lint
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/train_gpt.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
