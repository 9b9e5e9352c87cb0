# Rendered by flagrelease for qwen3-4b x nvidia-h100 from dockerfiles/nvidia.Dockerfile.j2; do not edit.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04 AS system
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -y \
 && apt-get install -y --no-install-recommends ca-certificates software-properties-common gpg-agent git \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update -y \
 && apt-get install -y --no-install-recommends python3.12 python3.12-dev python3.12-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3.12 -m venv /opt/venv \
 && /opt/venv/bin/python -c "import platform, sys; v = platform.python_version(); sys.exit(0 if v == '3.12' or v.startswith('3.12.') else 'python is ' + v + ', the pin says 3.12')"
ENV PATH=/opt/venv/bin:$PATH


FROM system AS flagos
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && /opt/venv/bin/python -m pip install --no-deps flag-scale==0.8.0 \
 && /opt/venv/bin/python -m pip install hydra-core==1.3.8 click==8.5.1


FROM flagos AS release
# Every pin of the cell, as build arguments (also written as labels below).
ARG FLAGRELEASE_MODEL=qwen3-4b
ARG FLAGRELEASE_VENDOR=nvidia
ARG FLAGRELEASE_CHIP=nvidia-h100
ARG FLAGRELEASE_CHIP_CODE=nvidia004
ARG FLAGRELEASE_ARCH=amd64
ARG FLAGRELEASE_SDK=cuda
ARG FLAGRELEASE_SDK_VERSION=12.8.1
ARG FLAGRELEASE_DRIVER=570.124.06
ARG FLAGRELEASE_PYTHON=3.12
ARG FLAGRELEASE_TORCH=2.7.1
ARG FLAGRELEASE_TORCH_NPU=none
ARG FLAGRELEASE_VLLM=0.10.0
ARG FLAGRELEASE_VLLM_PLUGIN=none
ARG FLAGRELEASE_FLAGGEMS=none
ARG FLAGRELEASE_FLAGSCALE=0.8.0
ARG FLAGRELEASE_FLAGTREE=none
ARG FLAGRELEASE_FLAGCX=none
ARG FLAGRELEASE_ENGINE=vllm

RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && /opt/venv/bin/python -m pip install torch==2.7.1 vllm==0.10.0 \
 && { /opt/venv/bin/python -m pip show torch | grep -qx "Version: 2.7.1" \
   || { echo "torch in the image is not 2.7.1:"; /opt/venv/bin/python -m pip show torch; exit 1; }; }


# Serve stack: FlagScale config for qwen3-4b and the foreground supervisor.
COPY serve/ /workspace/serve/
COPY flagrelease-serve.py /usr/local/bin/flagrelease-serve
ENV FLAGRELEASE_SERVE_CONFIG=/workspace/serve/conf/serve.yaml \
    FLAGRELEASE_MODEL=qwen3-4b \
    USE_FLAGGEMS=false

LABEL org.opencontainers.image.title="flagrelease-nvidia-release-model_qwen3-4b-tree_none-gems_none-scale_0.8.0-cx_none-python_3.12-torch_2.7.1-pcp_cuda12.8.1-gpu_nvidia004-arc_amd64-driver_570.124.06" \
      org.opencontainers.image.description="FlagOS serve stack for qwen3-4b on nvidia-h100" \
      org.opencontainers.image.vendor="FlagRelease" \
      org.opencontainers.image.base.name="nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04" \
      org.flagos.served-model-name="Qwen3-4B-nvidia-flagos" \
      org.flagos.serve.port="9010" \
      org.flagos.weights.mount="/data/weights/Qwen3-4B" \
      org.flagos.model="qwen3-4b" \
      org.flagos.vendor="nvidia" \
      org.flagos.chip="nvidia-h100" \
      org.flagos.chip-code="nvidia004" \
      org.flagos.arch="amd64" \
      org.flagos.sdk="cuda" \
      org.flagos.sdk-version="12.8.1" \
      org.flagos.driver="570.124.06" \
      org.flagos.python="3.12" \
      org.flagos.torch="2.7.1" \
      org.flagos.torch-npu="none" \
      org.flagos.vllm="0.10.0" \
      org.flagos.vllm-plugin="none" \
      org.flagos.flaggems="none" \
      org.flagos.flagscale="0.8.0" \
      org.flagos.flagtree="none" \
      org.flagos.flagcx="none" \
      org.flagos.engine="vllm"
WORKDIR /workspace
EXPOSE 9010
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/python", "/usr/local/bin/flagrelease-serve"]
