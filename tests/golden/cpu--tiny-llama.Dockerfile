# Rendered by flagrelease for tiny-llama x cpu from dockerfiles/cpu.Dockerfile.j2; do not edit.
# The model image: FROM the chip stack of cpu (the stack Dockerfile rendered beside
# this one), passed as --build-arg STACK_IMAGE=<the stack image>.
ARG STACK_IMAGE
FROM ${STACK_IMAGE}

# FlagScale serve config for tiny-llama.
COPY serve/ /workspace/serve/
ENV FLAGRELEASE_SERVE_CONFIG=/workspace/serve/conf/serve.yaml \
    FLAGRELEASE_MODEL=tiny-llama

LABEL org.opencontainers.image.title="flagrelease-cpu-release-model_tiny-llama-tree_none-gems_none-scale_0.8.0-cx_none-python_3.13-torch_none-pcp_none-gpu_cpu001-arc_amd64-driver_none" \
      org.opencontainers.image.description="FlagOS serve stack for tiny-llama on cpu" \
      org.flagos.served-model-name="tiny-llama-flagos" \
      org.flagos.serve.port="9010" \
      org.flagos.weights.mount="/data/weights/tiny-llama" \
      org.flagos.model="tiny-llama"
EXPOSE 9010
ENTRYPOINT ["/opt/flagscale/bin/python", "/usr/local/bin/flagrelease-serve"]
