# StreamLedger. The two commands a newcomer needs:
#   make demo   set everything up, start Kafka + PostgreSQL, run the main job end to end
#   make test   set everything up, run the checks and the whole test suite (what CI runs)

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
STREAMLEDGER := $(VENV)/bin/streamledger

.PHONY: setup demo test check lint typecheck imports unit infra-up infra-down infra-status infra-reset topics-apply bench format chaos chaos-ha

setup:
	@bash scripts/setup.sh

demo: setup
	$(STREAMLEDGER) demo

# The core's unit and property tests run twice: compiled (mypyc, with the whole suite) and as the
# Python sources; test_native_core compares the two's bytes on one workload (decision 0048). The
# compiled Avro writers and readers' property tests against fastavro run both ways too (0092).
CORE_TESTS := tests/unit/test_native_core.py tests/unit/test_ledger_properties.py \
	tests/unit/test_ledger_rules.py tests/unit/test_ledger_state.py tests/unit/test_ledger_time.py \
	tests/unit/test_transactions.py tests/unit/test_generated_checks.py \
	tests/unit/test_partition_ledger.py tests/unit/test_monitors.py \
	tests/unit/test_avro_writers.py tests/unit/test_avro_readers.py tests/unit/test_codec.py \
	tests/unit/test_avro_command_readers.py \
	tests/unit/test_projection_event_reader.py tests/unit/test_projection_batch.py \
	tests/unit/test_projection_write_path.py \
	tests/unit/test_reconciliation_matching.py tests/unit/test_reconciliation_order.py \
	tests/unit/test_reconciliation_movements.py tests/unit/test_reconciliation_event_movements.py \
	tests/unit/test_reconciliation_line_reading.py \
	tests/unit/test_reconciliation_result_encoding.py \
	tests/unit/test_reconciliation_line_identity.py tests/unit/test_restore_fold.py

# The rerun as Python (decision 0113): each property on a quarter of its examples (the profile in
# tests/conftest.py), and without the tests of test_native_core that do the same in both runs
# (they start their own child processes in each mode, or read the build's files).
CORE_TESTS_SAME_IN_BOTH_RUNS := \
	tests/unit/test_native_core.py::test_compiled_and_pure_python_produce_identical_bytes \
	tests/unit/test_native_core.py::test_a_bad_switch_value_fails_the_import_and_names_it \
	tests/unit/test_native_core.py::test_an_edited_source_makes_the_build_stale \
	tests/unit/test_native_core.py::test_the_compiled_codec_is_served_and_checked_as_the_core_is

test: setup check
	$(VENV_PYTHON) -m pytest
	STREAMLEDGER_PURE_PYTHON=1 $(VENV_PYTHON) -m pytest --hypothesis-profile=pure-python-rerun \
		$(CORE_TESTS) $(addprefix --deselect ,$(CORE_TESTS_SAME_IN_BOTH_RUNS))

check: setup lint typecheck imports

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

# The layer map (README "Layout") as import-linter contracts in pyproject.toml.
imports:
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: setup
	$(VENV_PYTHON) -m pytest tests/unit

infra-up: setup
	$(STREAMLEDGER) infra up

infra-down:
	$(STREAMLEDGER) infra down

infra-status:
	$(STREAMLEDGER) infra status

infra-reset:
	$(STREAMLEDGER) infra reset

topics-apply: setup
	$(STREAMLEDGER) topics apply

bench: setup
	$(VENV_PYTHON) -m bench

# Not in CI: CHAOS_ROUNDS seeded rounds of CHAOS_COMMANDS commands under kill -9s, broker and
# PostgreSQL restarts, misrouted and back-dated records, on its own stack (.streamledger-chaos,
# ports 33xxx; tests/chaos/rounds.py). More flags: CHAOS_ARGS="--seed 7 --faults kill,broker --verbose".
CHAOS_ROUNDS ?= 20
CHAOS_COMMANDS ?= 100000
CHAOS_ARGS ?=
chaos: setup
	$(VENV_PYTHON) -m tests.chaos.rounds --rounds $(CHAOS_ROUNDS) --commands $(CHAOS_COMMANDS) $(CHAOS_ARGS)

# Not in CI: three Kafka nodes (RF 3, min ISR 2) and a PostgreSQL hot standby on their own stack
# (.streamledger-ha, ports 26xxx; tests/chaos/ha.py). Under a steady load through `streamledger
# run`: kill -9 the active controller's node, then the node leading the most partitions, then the
# PostgreSQL primary (and promote the standby); nothing lost or duplicated, chains gapless, verify
# clean, and each fault's unavailability window printed. More: CHAOS_HA_ARGS="--rate 400 --keep-stack".
CHAOS_HA_COMMANDS ?= 40000
CHAOS_HA_ARGS ?=
chaos-ha: setup
	$(VENV_PYTHON) -m tests.chaos.ha --commands $(CHAOS_HA_COMMANDS) $(CHAOS_HA_ARGS)
