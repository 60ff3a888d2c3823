# Shortcuts for dev.py, which needs only Python 3.11 (make is optional).
PYTHON ?= python3.11

.PHONY: demo test bench install
demo:
	$(PYTHON) dev.py demo
test:
	$(PYTHON) dev.py test
bench:
	$(PYTHON) dev.py bench
install:
	$(PYTHON) dev.py install
