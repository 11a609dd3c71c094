# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench browser clean

demo: $(VENV)/.installed
	$(BIN)/mailer demo

test: $(VENV)/.installed browser
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/message_build.py
	$(BIN)/python bench/send_rate.py
	$(BIN)/python bench/ledger_off_loop.py
	$(BIN)/python bench/queue_depth.py
	$(BIN)/python bench/import_scale.py
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/bounce_quality.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgresql]'
	touch $@

# The rendering tests drive Debian's Chromium; install it when we can (root with apt), else they skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the rendering tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium (package manager busy or offline): browser tests will be skipped"; \
	  else echo "chromium not installed and no root/apt: rendering tests will be skipped"; fi; }

clean:
	rm -rf $(VENV) var *.egg-info
