# requirements.lock: the exact package versions (with hashes) that the README's install uses, for
# CPython 3.11 on Linux x86-64, resolved from pyproject.toml's ranges as they stood on LOCK_DATE.
# Refreshing it is an ordinary change: `make lock`, then `dvc repro` (every stage depends on the
# lock), and commit requirements.lock, dvc.lock, metrics/, plots/ and dvclive/ together
# (docs/development.md, The lock). Needs uv (`pip install uv`).
# `make lock KEEP_PINS=1 LOCK_DATE=<the lock's date>` adds a new dependency and keeps every version
# the lock already holds (the current lock is the constraint), so the committed results stay valid.
UV ?= uv
LOCK_DATE ?= $(shell date -u +%Y-%m-%d)
KEEP_PINS ?=
PINS := .requirements.pins.txt

.PHONY: lock
lock:
	$(if $(KEEP_PINS),sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' requirements.lock > $(PINS))
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--exclude-newer $(LOCK_DATE) --custom-compile-command "make lock LOCK_DATE=$(LOCK_DATE)$(if $(KEEP_PINS), KEEP_PINS=1)" \
		$(if $(KEEP_PINS),--constraint $(PINS)) --output-file requirements.lock
	$(if $(KEEP_PINS),sed -i '/^    #   -c $(PINS)$$/d' requirements.lock && rm -f $(PINS))
