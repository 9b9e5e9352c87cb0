# Rendered by flagrelease for qwen3-4b x metax-c550 from dockerfiles/metax.Dockerfile.j2; do not edit.
# The model image: FROM the chip stack of metax-c550 (the stack Dockerfile rendered beside
# this one), passed as --build-arg STACK_IMAGE=<the stack image>.
ARG STACK_IMAGE
FROM ${STACK_IMAGE}

# FlagScale serve config for qwen3-4b.
COPY serve/ /workspace/serve/
ENV FLAGRELEASE_SERVE_CONFIG=/workspace/serve/conf/serve.yaml \
    FLAGRELEASE_MODEL=qwen3-4b

LABEL org.opencontainers.image.title="flagrelease-metax-release-model_qwen3-4b-tree_none-gems_2.2-scale_0.8.0-cx_none-python_3.10-torch_2.6.0-pcp_maca3.0.0.8-gpu_metax001-arc_amd64-driver_3.0.11" \
      org.opencontainers.image.description="FlagOS serve stack for qwen3-4b on metax-c550" \
      org.flagos.served-model-name="Qwen3-4B-metax-flagos" \
      org.flagos.serve.port="9010" \
      org.flagos.weights.mount="/data/weights/Qwen3-4B" \
      org.flagos.model="qwen3-4b"
EXPOSE 9010
ENTRYPOINT ["python3", "/usr/local/bin/flagrelease-serve"]
