# requirements.lock: the exact package versions (with hashes) that the README's install uses, for
# CPython 3.11 on Linux x86-64, resolved from pyproject.toml's ranges as they stood on LOCK_DATE.
# Refreshing it is an ordinary change: `make lock`, then `dvc repro` (every stage depends on the
# lock), and commit requirements.lock, dvc.lock, metrics/, plots/ and dvclive/ together
# (docs/development.md, The lock). Needs uv (`pip install uv`).
UV ?= uv
LOCK_DATE ?= $(shell date -u +%Y-%m-%d)

.PHONY: lock
lock:
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--exclude-newer $(LOCK_DATE) --custom-compile-command "make lock LOCK_DATE=$(LOCK_DATE)" \
		--output-file requirements.lock
