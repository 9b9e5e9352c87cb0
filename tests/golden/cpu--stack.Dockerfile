# Rendered by flagrelease: the chip stack of cpu from dockerfiles/cpu.Dockerfile.j2; do not edit.
FROM flagrelease/debian-minbase:sid AS system
RUN printf 'Acquire::Check-Valid-Until "false";\n' > /etc/apt/apt.conf.d/99flagrelease-snapshot \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      ca-certificates \
      python3.13 python3.13-venv \
      llama.cpp-tools=1:0.7.0+dfsg-2 \
 && rm -rf /var/lib/apt/lists/*


FROM system AS flagos
# FlagScale 0.8.0 without its CUDA/torch dependency set: only what
# `flagscale serve` imports (pinned in files/flagscale-serve-deps.txt).
COPY flagscale-serve-deps.txt /tmp/flagscale-serve-deps.txt
RUN python3.13 -m venv /opt/flagscale \
 && /opt/flagscale/bin/python -c "import platform, sys; v = platform.python_version(); sys.exit(0 if v == '3.13' or v.startswith('3.13.') else 'python is ' + v + ', the pin says 3.13')"
RUN --mount=type=secret,id=ca_bundle --mount=type=secret,id=pip_index_url \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && if [ -s /run/secrets/pip_index_url ]; then export PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; fi \
 && export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && /opt/flagscale/bin/python -m pip install --no-deps flag-scale==0.8.0 \
 && /opt/flagscale/bin/python -m pip install -r /tmp/flagscale-serve-deps.txt \
 && rm /tmp/flagscale-serve-deps.txt \
 && fs=$(/opt/flagscale/bin/python -c 'import flag_scale, os; print(os.path.dirname(flag_scale.__file__))') \
 && mkdir -p "$fs/third_party/llama.cpp/build/bin" \
 && ln -s /usr/bin/llama-server "$fs/third_party/llama.cpp/build/bin/llama-server"
ENV PATH=/opt/flagscale/bin:$PATH


FROM flagos AS stack

# The serve supervisor (the entrypoint of every model image on this stack).
COPY flagrelease-serve.py /usr/local/bin/flagrelease-serve
ENV USE_FLAGGEMS=false

LABEL org.opencontainers.image.title="flagrelease-cpu-stack-tree_none-gems_none-scale_0.8.0-cx_none-python_3.13-torch_none-pcp_none-gpu_cpu001-arc_amd64-driver_none" \
      org.opencontainers.image.description="FlagOS chip stack for cpu: everything but the model" \
      org.opencontainers.image.vendor="FlagRelease" \
      org.opencontainers.image.base.name="flagrelease/debian-minbase:sid" \
      org.flagos.vendor="cpu" \
      org.flagos.chip="cpu" \
      org.flagos.chip-code="cpu001" \
      org.flagos.arch="amd64" \
      org.flagos.sdk="none" \
      org.flagos.sdk-version="none" \
      org.flagos.driver="none" \
      org.flagos.python="3.13" \
      org.flagos.torch="none" \
      org.flagos.torch-npu="none" \
      org.flagos.vllm="none" \
      org.flagos.vllm-plugin="none" \
      org.flagos.flaggems="none" \
      org.flagos.flagscale="0.8.0" \
      org.flagos.flagtree="none" \
      org.flagos.flagcx="none" \
      org.flagos.engine="llama_cpp" \
      org.flagos.pkg-llama-cpp-tools="1:0.7.0+dfsg-2"
WORKDIR /workspace
STOPSIGNAL SIGTERM
