# The README's commands. `make demo` and `make test` each set up everything they need.
PY := .venv/bin/python

.PHONY: setup demo test bench serve consume kafka-up kafka-down migrate

setup:
	bash scripts/bootstrap.sh

demo: setup
	$(PY) -m scripts.demo

test: setup
	bash scripts/system_packages.sh
	$(PY) -m pytest -q -p no:cacheprovider --durations=12

bench: setup
	$(PY) bench/ingest.py
	$(PY) bench/rest_ingest.py

migrate: setup
	createdb -h 127.0.0.1 -U postgres tokenledger 2>/dev/null || true
	$(PY) manage.py migrate

kafka-up: setup
	$(PY) -m scripts.local_kafka start

kafka-down:
	$(PY) -m scripts.local_kafka stop

serve: migrate kafka-up
	.venv/bin/gunicorn -c config/gunicorn.py config.wsgi -w 2 -b 127.0.0.1:8000

consume: migrate kafka-up
	$(PY) manage.py consume_usage
