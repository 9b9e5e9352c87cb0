# Rendered by flagrelease for qwen3-4b x ascend-a3-fl from dockerfiles/ascend.Dockerfile.j2; do not edit.
# The model image: FROM the chip stack of ascend-a3-fl (the stack Dockerfile rendered beside
# this one), passed as --build-arg STACK_IMAGE=<the stack image>.
ARG STACK_IMAGE
FROM ${STACK_IMAGE}

# FlagScale serve config for qwen3-4b.
COPY serve/ /workspace/serve/
ENV FLAGRELEASE_SERVE_CONFIG=/workspace/serve/conf/serve.yaml \
    FLAGRELEASE_MODEL=qwen3-4b

LABEL org.opencontainers.image.title="flagrelease-ascend-release-model_qwen3-4b-tree_none-gems_5.0.2-scale_none-cx_none-python_3.12-torch_npu2.10.0.post4-pcp_cann9.1.0-gpu_ascend001-arc_arm64-driver_none" \
      org.opencontainers.image.description="FlagOS serve stack for qwen3-4b on ascend-a3-fl" \
      org.flagos.served-model-name="Qwen3-4B-ascend-flagos" \
      org.flagos.serve.port="9010" \
      org.flagos.weights.mount="/data/weights/Qwen3-4B" \
      org.flagos.model="qwen3-4b" \
      org.flagos.launcher="vllm"
EXPOSE 9010
ENTRYPOINT ["python3", "/usr/local/bin/flagrelease-serve"]
