# Rendered by flagrelease: the chip stack of nvidia-h100-fl from dockerfiles/nvidia.Dockerfile.j2; do not edit.
FROM nvidia/cuda:13.0.1-cudnn-devel-ubuntu22.04 AS system
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
 && /opt/venv/bin/python -m pip install --no-deps flag-gems==5.0.2 \
 && /opt/venv/bin/python -m pip install --no-deps git+https://github.com/flagos-ai/vllm-plugin-FL.git@v0.1.0 \
 && { /opt/venv/bin/python -m pip show vllm-fl | grep -Eqx "Version: 0\.1\.0(\+[A-Za-z0-9.]+)?" \
   || { echo "vllm-fl in the image is not 0.1.0:"; /opt/venv/bin/python -m pip show vllm-fl; exit 1; }; }


FROM flagos AS stack
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && /opt/venv/bin/python -m pip install torch==2.11.0 vllm==0.23.0 \
 && { /opt/venv/bin/python -m pip show torch | grep -qx "Version: 2.11.0" \
   || { echo "torch in the image is not 2.11.0:"; /opt/venv/bin/python -m pip show torch; exit 1; }; }


# The serve supervisor (the entrypoint of every model image on this stack).
COPY flagrelease-serve.py /usr/local/bin/flagrelease-serve
ENV USE_FLAGGEMS=true
# FlagGems records the operators it serves here (FlagScale 0.8 writes this path itself;
# vllm-plugin-FL follows FLAGGEMS_ENABLE_OPLIST_PATH): the bench's proof that FlagGems ran.
ENV FLAGGEMS_ENABLE_OPLIST_PATH=/tmp/gems_oplist.log.txt

LABEL org.opencontainers.image.title="flagrelease-nvidia-stack-tree_none-gems_5.0.2-scale_none-cx_none-python_3.12-torch_2.11.0-pcp_cuda13.0.1-gpu_nvidia004-arc_amd64-driver_580.82.07" \
      org.opencontainers.image.description="FlagOS chip stack for nvidia-h100-fl: everything but the model" \
      org.opencontainers.image.vendor="FlagRelease" \
      org.opencontainers.image.base.name="nvidia/cuda:13.0.1-cudnn-devel-ubuntu22.04" \
      org.flagos.vendor="nvidia" \
      org.flagos.chip="nvidia-h100-fl" \
      org.flagos.chip-code="nvidia004" \
      org.flagos.arch="amd64" \
      org.flagos.sdk="cuda" \
      org.flagos.sdk-version="13.0.1" \
      org.flagos.driver="580.82.07" \
      org.flagos.python="3.12" \
      org.flagos.torch="2.11.0" \
      org.flagos.torch-npu="none" \
      org.flagos.vllm="0.23.0" \
      org.flagos.vllm-plugin="none" \
      org.flagos.flaggems="5.0.2" \
      org.flagos.flagscale="none" \
      org.flagos.flagtree="none" \
      org.flagos.flagcx="none" \
      org.flagos.engine="vllm" \
      org.flagos.vllm-fl="0.1.0"
WORKDIR /workspace
STOPSIGNAL SIGTERM
