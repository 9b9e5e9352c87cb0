# Rendered by flagrelease: the chip stack of metax-c550 from dockerfiles/metax.Dockerfile.j2; do not edit.
FROM cr.metax-tech.com/public-ai-release/maca/vllm:maca.ai3.0.0.8-torch2.6-py310-ubuntu22.04-amd64 AS system
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -y \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c "import platform, sys; v = platform.python_version(); sys.exit(0 if v == '3.10' or v.startswith('3.10.') else 'python is ' + v + ', the pin says 3.10')"


FROM system AS flagos
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
RUN { python3 -m pip show torch | grep -qx "Version: 2.6.0" \
   || { echo "torch in the image is not 2.6.0:"; python3 -m pip show torch; exit 1; }; } \
 && { python3 -m pip show vllm | grep -qx "Version: 0.8.5" \
   || { echo "vllm in the image is not 0.8.5:"; python3 -m pip show vllm; exit 1; }; }


# The serve supervisor (the entrypoint of every model image on this stack).
COPY flagrelease-serve.py /usr/local/bin/flagrelease-serve
ENV USE_FLAGGEMS=true
# FlagGems records the operators it serves here (FlagScale 0.8 writes this path itself;
# vllm-plugin-FL follows FLAGGEMS_ENABLE_OPLIST_PATH): the bench's proof that FlagGems ran.
ENV FLAGGEMS_ENABLE_OPLIST_PATH=/tmp/gems_oplist.log.txt

LABEL org.opencontainers.image.title="flagrelease-metax-stack-tree_none-gems_2.2-scale_0.8.0-cx_none-python_3.10-torch_2.6.0-pcp_maca3.0.0.8-gpu_metax001-arc_amd64-driver_3.0.11" \
      org.opencontainers.image.description="FlagOS chip stack for metax-c550: everything but the model" \
      org.opencontainers.image.vendor="FlagRelease" \
      org.opencontainers.image.base.name="cr.metax-tech.com/public-ai-release/maca/vllm:maca.ai3.0.0.8-torch2.6-py310-ubuntu22.04-amd64" \
      org.flagos.vendor="metax" \
      org.flagos.chip="metax-c550" \
      org.flagos.chip-code="metax001" \
      org.flagos.arch="amd64" \
      org.flagos.sdk="maca" \
      org.flagos.sdk-version="3.0.0.8" \
      org.flagos.driver="3.0.11" \
      org.flagos.python="3.10" \
      org.flagos.torch="2.6.0" \
      org.flagos.torch-npu="none" \
      org.flagos.vllm="0.8.5" \
      org.flagos.vllm-plugin="none" \
      org.flagos.flaggems="2.2" \
      org.flagos.flagscale="0.8.0" \
      org.flagos.flagtree="none" \
      org.flagos.flagcx="none" \
      org.flagos.engine="vllm"
WORKDIR /workspace
STOPSIGNAL SIGTERM
