# One command for the main job (`make run`) and one for the tests (`make test`).
# Both create .venv with the pinned dependencies first; running them again is safe
# and reinstalls only when requirements.lock or setup.py changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.genpipe-installed

.PHONY: setup run test benchmark benchmark-generative benchmark-faces benchmark-style benchmark-serving lock clean-runs

setup: $(STAMP)

$(STAMP): requirements.lock overrides.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --override overrides.txt -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m pip --version >/dev/null
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/genpipe run denoise --summary runs/denoise-summary.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

benchmark: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py

benchmark-generative: $(STAMP)
	$(BIN)/python benchmarks/generative_steps.py

benchmark-faces: $(STAMP)
	$(BIN)/python benchmarks/face_centering.py
	$(BIN)/python benchmarks/generative_steps.py --families dcgan64

benchmark-style: $(STAMP)
	$(BIN)/python benchmarks/style_transfer.py

benchmark-serving: $(STAMP)
	$(BIN)/python benchmarks/serving_latency.py

lock:
	$(BIN)/uv pip compile requirements.in --override overrides.txt --python-version 3.11 -o requirements.lock

clean-runs:
	rm -rf runs

# The container image compiled pipelines name (`genpipe compile PIPELINE --image $(IMAGE)`); see pipelines/Dockerfile.
# For Artifact Registry: make push-image IMAGE=REGION-docker.pkg.dev/PROJECT/REPO/genpipe:TAG
# `make image-gpu` builds the GPU variant (TensorFlow's CUDA wheels added) as $(GPU_IMAGE), for a Trainer on Vertex AI
# Training with --accelerator-type NVIDIA_*.
IMAGE ?= genpipe:latest
GPU_IMAGE ?= $(IMAGE)-gpu

.PHONY: image push-image image-gpu push-image-gpu

image:
	docker build -f pipelines/Dockerfile -t $(IMAGE) .

push-image: image
	docker push $(IMAGE)

image-gpu:
	docker build -f pipelines/Dockerfile --target gpu -t $(GPU_IMAGE) .

push-image-gpu: image-gpu
	docker push $(GPU_IMAGE)
