# One-command entry points for a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sepgw-installed

.PHONY: install test demo bench typecheck clean fuzz

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	# Regenerate Twisted's plugin cache so that twistd lists sepgw and sepgw-pev.
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	bash tools/test-system-deps.sh
	$(PY) tools/conformance.py --check
	$(PY) tools/config_reference.py --check
	$(VENV)/bin/mypy sepgw plugins
	$(PY) -m twisted.trial -j2 tests

demo: $(STAMP)
	$(PY) -m sepgw.demo

# Every benchmark runs; those that exited non-zero (a setup failure, or for some a missed
# target, which each prints) are listed at the end and make the exit status 1.
bench: $(STAMP)
	@failed=""; for b in benchmarks/[!_]*.py; do echo "== $$b"; \
	  $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "== exited non-zero:$$failed"; exit 1; fi

# A long fuzz run of the EVSE's HTTP server (tests/test_fuzz.py); figures printed at the end.
FUZZ_CASES ?= 100000
fuzz: $(STAMP)
	SEPGW_FUZZ_CASES=$(FUZZ_CASES) $(PY) -m twisted.trial tests.test_fuzz

typecheck: $(STAMP)
	$(VENV)/bin/mypy sepgw plugins

clean:
	rm -rf $(VENV) _trial_temp* run build *.egg-info
