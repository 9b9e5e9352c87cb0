# Rendered by flagrelease: the chip stack of ascend-a3-fl from dockerfiles/ascend.Dockerfile.j2; do not edit.
FROM quay.io/ascend/cann:9.1.0-a3-ubuntu22.04-py3.12 AS system
ARG SOC_VERSION=ascend910_9391
ENV SOC_VERSION=${SOC_VERSION} \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update -y \
 && apt-get install -y --no-install-recommends git gcc g++ cmake libnuma-dev wget ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c "import platform, sys; v = platform.python_version(); sys.exit(0 if v == '3.12' or v.startswith('3.12.') else 'python is ' + v + ', the pin says 3.12')"


FROM system AS flagos
# FlagOS components: pure Python, installable without the CANN toolkit.
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && python3 -m pip install --no-deps flag-gems==5.0.2 \
 && python3 -m pip install --no-deps git+https://github.com/flagos-ai/vllm-plugin-FL.git@v0.1.0 \
 && { python3 -m pip show vllm-fl | grep -Eqx "Version: 0\.1\.0(\+[A-Za-z0-9.]+)?" \
   || { echo "vllm-fl in the image is not 0.1.0:"; python3 -m pip show vllm-fl; exit 1; }; }


FROM flagos AS stack
# The vendor stack. vllm-ascend compiles its kernels against the base image's CANN
# toolkit, so this stage needs the real CANN base (or a mirror of it).
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && python3 -m pip install torch==2.10.0 torch_npu==2.10.0.post4 \
 && VLLM_TARGET_DEVICE=empty python3 -m pip install vllm==0.23.0 \
 && python3 -m pip uninstall -y triton \
 && . /usr/local/Ascend/ascend-toolkit/set_env.sh \
 && . /usr/local/Ascend/nnal/atb/set_env.sh \
 && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/Ascend/ascend-toolkit/latest/$(uname -m)-linux/devlib \
 && python3 -m pip install vllm-ascend==0.23.0 \
 && { python3 -m pip show torch_npu | grep -qx "Version: 2.10.0.post4" \
   || { echo "torch_npu in the image is not 2.10.0.post4:"; python3 -m pip show torch_npu; exit 1; }; }


# The serve supervisor (the entrypoint of every model image on this stack).
COPY flagrelease-serve.py /usr/local/bin/flagrelease-serve
ENV USE_FLAGGEMS=true
# FlagGems records the operators it serves here (FlagScale 0.8 writes this path itself;
# vllm-plugin-FL follows FLAGGEMS_ENABLE_OPLIST_PATH): the bench's proof that FlagGems ran.
ENV FLAGGEMS_ENABLE_OPLIST_PATH=/tmp/gems_oplist.log.txt
ENV VLLM_USE_V1=1

LABEL org.opencontainers.image.title="flagrelease-ascend-stack-tree_none-gems_5.0.2-scale_none-cx_none-python_3.12-torch_npu2.10.0.post4-pcp_cann9.1.0-gpu_ascend001-arc_arm64-driver_none" \
      org.opencontainers.image.description="FlagOS chip stack for ascend-a3-fl: everything but the model" \
      org.opencontainers.image.vendor="FlagRelease" \
      org.opencontainers.image.base.name="quay.io/ascend/cann:9.1.0-a3-ubuntu22.04-py3.12" \
      org.flagos.vendor="ascend" \
      org.flagos.chip="ascend-a3-fl" \
      org.flagos.chip-code="ascend001" \
      org.flagos.arch="arm64" \
      org.flagos.sdk="cann" \
      org.flagos.sdk-version="9.1.0" \
      org.flagos.driver="none" \
      org.flagos.python="3.12" \
      org.flagos.torch="2.10.0" \
      org.flagos.torch-npu="2.10.0.post4" \
      org.flagos.vllm="0.23.0" \
      org.flagos.vllm-plugin="0.23.0" \
      org.flagos.flaggems="5.0.2" \
      org.flagos.flagscale="none" \
      org.flagos.flagtree="none" \
      org.flagos.flagcx="none" \
      org.flagos.engine="vllm" \
      org.flagos.vllm-fl="0.1.0"
WORKDIR /workspace
STOPSIGNAL SIGTERM
