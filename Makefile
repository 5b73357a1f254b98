# Two commands for a newcomer on a fresh Debian machine with Python 3.11 and git:
#   make demo   run the main job on its embedded default
#   make test   run the test suite against a real colcon build with ROS 2 Kilted
# Both bootstrap what they need: Debian packages, .venv, pip packages, ROS 2 wheels, the colcon build.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := libusb-1.0-0 libgl1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# ROS 2 environment for the build and the tests: the virtual environment is the ROS prefix.
ROS_ENV := export PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AMENT_PREFIX_PATH="$(CURDIR)/$(VENV)" CMAKE_PREFIX_PATH="$(CURDIR)/$(VENV)"; \
	export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST RMW_IMPLEMENTATION=rmw_fastrtps_cpp;

.PHONY: help setup build test demo clean

help:
	@echo "make demo   run the main job (simulate, replay, report) on its embedded default"
	@echo "make test   set everything up and run the test suite"

$(VENV)/.debian:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.python: requirements/base.txt requirements/dev.txt setup.py | $(VENV)/.debian
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is needed (ROS 2 Kilted wheels are cp311); found " + sys.version.split()[0] + " at $(PYTHON). Set PYTHON=/path/to/python3.11.")'
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -r requirements/base.txt -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.ros: requirements/ros.txt tools/relocate_ros_wheels.py $(VENV)/.python
	$(PY) -m pip install -q -r requirements/ros.txt
	$(PY) tools/relocate_ros_wheels.py $(VENV) > $(VENV)/.numpy-include
	touch $@

setup: $(VENV)/.ros

build: setup
	@mkdir -p log; $(ROS_ENV) colcon --log-base log build --symlink-install --base-paths . interfaces --event-handlers console_cohesion- summary- \
		--cmake-args -DPython3_EXECUTABLE="$(CURDIR)/$(PY)" -DPython3_NumPy_INCLUDE_DIR="$$(cat $(VENV)/.numpy-include)" -DBUILD_TESTING=OFF \
		> log/colcon-build.txt 2>&1 || { cat log/colcon-build.txt; exit 1; }
	@echo "colcon build: ok (log/colcon-build.txt)"

test: build
	@$(ROS_ENV) set +u; source install/setup.bash; set -u; SEG_PERCEPTION_REQUIRE_ROS=1 $(PY) -m pytest test

demo: $(VENV)/.python
	@$(PY) -m seg_perception demo --out out/demo

clean:
	rm -rf build install log
