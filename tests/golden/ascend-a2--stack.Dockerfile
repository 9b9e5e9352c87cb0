# Rendered by flagrelease: the chip stack of ascend-a2 from dockerfiles/ascend.Dockerfile.j2; do not edit.
FROM quay.io/ascend/cann:8.2.rc1.alpha002-910b-ubuntu22.04-py3.11 AS system
ARG SOC_VERSION=ascend910b1
ENV SOC_VERSION=${SOC_VERSION} \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update -y \
 && apt-get install -y --no-install-recommends git gcc g++ cmake libnuma-dev wget ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c "import platform, sys; v = platform.python_version(); sys.exit(0 if v == '3.11.11' or v.startswith('3.11.11.') else 'python is ' + v + ', the pin says 3.11.11')"


FROM system AS flagos
# FlagOS components: pure Python, installable without the CANN toolkit.
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && python3 -m pip install --no-deps flag-scale==0.8.0 \
 && python3 -m pip install --no-deps git+https://github.com/FlagOpen/FlagGems.git@v2.2 \
 && { python3 -m pip show flag-gems | grep -qx "Version: 2.2" \
   || { echo "flag-gems in the image is not 2.2:"; python3 -m pip show flag-gems; exit 1; }; } \
 && python3 -m pip install hydra-core==1.3.8 click==8.5.1


FROM flagos AS stack
# The vendor stack. vllm-ascend compiles its kernels against the base image's CANN
# toolkit, so this stage needs the real CANN base (or a mirror of it).
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && python3 -m pip install torch==2.6.0 torch_npu==2.6.0rc1 \
 && VLLM_TARGET_DEVICE=empty python3 -m pip install vllm==0.9.1 \
 && python3 -m pip uninstall -y triton \
 && . /usr/local/Ascend/ascend-toolkit/set_env.sh \
 && . /usr/local/Ascend/nnal/atb/set_env.sh \
 && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/Ascend/ascend-toolkit/latest/$(uname -m)-linux/devlib \
 && python3 -m pip install vllm-ascend==0.9.1 \
 && { python3 -m pip show torch_npu | grep -qx "Version: 2.6.0rc1" \
   || { echo "torch_npu in the image is not 2.6.0rc1:"; python3 -m pip show torch_npu; exit 1; }; }


# The serve supervisor (the entrypoint of every model image on this stack).
COPY flagrelease-serve.py /usr/local/bin/flagrelease-serve
ENV USE_FLAGGEMS=true
# FlagGems records the operators it serves here (FlagScale 0.8 writes this path itself;
# vllm-plugin-FL follows FLAGGEMS_ENABLE_OPLIST_PATH): the bench's proof that FlagGems ran.
ENV FLAGGEMS_ENABLE_OPLIST_PATH=/tmp/gems_oplist.log.txt
ENV VLLM_USE_V1=1

LABEL org.opencontainers.image.title="flagrelease-ascend-stack-tree_none-gems_2.2-scale_0.8.0-cx_none-python_3.11.11-torch_npu2.6.0rc1-pcp_cann8.2rc1.alpha002-gpu_ascend001.a2-arc_arm64-driver_25.2.0" \
      org.opencontainers.image.description="FlagOS chip stack for ascend-a2: everything but the model" \
      org.opencontainers.image.vendor="FlagRelease" \
      org.opencontainers.image.base.name="quay.io/ascend/cann:8.2.rc1.alpha002-910b-ubuntu22.04-py3.11" \
      org.flagos.vendor="ascend" \
      org.flagos.chip="ascend-a2" \
      org.flagos.chip-code="ascend001" \
      org.flagos.arch="arm64" \
      org.flagos.sdk="cann" \
      org.flagos.sdk-version="8.2.rc1.alpha002" \
      org.flagos.driver="25.2.0" \
      org.flagos.python="3.11.11" \
      org.flagos.torch="2.6.0" \
      org.flagos.torch-npu="2.6.0rc1" \
      org.flagos.vllm="0.9.1" \
      org.flagos.vllm-plugin="0.9.1" \
      org.flagos.flaggems="2.2" \
      org.flagos.flagscale="0.8.0" \
      org.flagos.flagtree="none" \
      org.flagos.flagcx="none" \
      org.flagos.engine="vllm"
WORKDIR /workspace
STOPSIGNAL SIGTERM
