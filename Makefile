# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` runs the suite in this many lanes (pytest-xdist workers). Each test
# module stays on one lane (--dist loadfile: a module's mesh is brought up once);
# tests/lanes.py gives each lane its own bridges and address ranges. Much of an
# end-to-end test's time is spent waiting on processes, so lanes overlap even on
# two cores: once measured, two lanes took 588 s and three 491 s. The suite has
# grown since and now keeps both cores busy: a fourth lane took as long as three
# (684 s and 686 s, vmstat 0 % idle), so three it stays. TEST_LANES=0 runs
# serially.
TEST_LANES ?= 3

.PHONY: setup system-deps bench-deps test unit integration lint fmt typecheck bench bench-quick demo clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# System packages the mesh runtime uses (network namespaces, traffic capture, podman
# for Kubernetes workloads' containers, with runc for hosts whose cgroups crun refuses,
# etcd for the etcd config store and the `--addons etcd` addon).
# Installed only when running as root; otherwise tests that need them skip with a reason.
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	  command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	  command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	  command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v podman >/dev/null 2>&1 || missing="$$missing podman"; \
	  command -v runc >/dev/null 2>&1 || missing="$$missing runc"; \
	  command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	  command -v etcdctl >/dev/null 2>&1 || missing="$$missing etcd-client"; \
	  [ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing="$$missing fonts-noto-color-emoji"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	fi

# Load generators: hey for the data-plane benchmark, wrk (paced, microsecond latencies)
# for the telemetry A/B.
bench-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  command -v hey >/dev/null 2>&1 || missing="$$missing hey"; \
	  command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	fi

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Lint first: a style or type error fails the run before the long part starts.
# bench-deps too: the benchmarks' own tests run the real load generators.
test: setup bench-deps lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_LANES) --dist loadfile $(PYTEST_ARGS)

unit: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

integration: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests/integration $(PYTEST_ARGS)

bench: setup bench-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: setup bench-deps
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.run --quick $(BENCH_ARGS)

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pilotfish demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
