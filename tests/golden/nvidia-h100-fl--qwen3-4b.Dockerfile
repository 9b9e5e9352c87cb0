# Rendered by flagrelease for qwen3-4b x nvidia-h100-fl from dockerfiles/nvidia.Dockerfile.j2; do not edit.
# The model image: FROM the chip stack of nvidia-h100-fl (the stack Dockerfile rendered beside
# this one), passed as --build-arg STACK_IMAGE=<the stack image>.
ARG STACK_IMAGE
FROM ${STACK_IMAGE}

# FlagScale serve config for qwen3-4b.
COPY serve/ /workspace/serve/
ENV FLAGRELEASE_SERVE_CONFIG=/workspace/serve/conf/serve.yaml \
    FLAGRELEASE_MODEL=qwen3-4b

LABEL org.opencontainers.image.title="flagrelease-nvidia-release-model_qwen3-4b-tree_none-gems_5.0.2-scale_none-cx_none-python_3.12-torch_2.11.0-pcp_cuda13.0.1-gpu_nvidia004-arc_amd64-driver_580.82.07" \
      org.opencontainers.image.description="FlagOS serve stack for qwen3-4b on nvidia-h100-fl" \
      org.flagos.served-model-name="Qwen3-4B-nvidia-flagos" \
      org.flagos.serve.port="9010" \
      org.flagos.weights.mount="/data/weights/Qwen3-4B" \
      org.flagos.model="qwen3-4b" \
      org.flagos.launcher="vllm"
EXPOSE 9010
ENTRYPOINT ["/opt/venv/bin/python", "/usr/local/bin/flagrelease-serve"]
