# intent-worker, CPU image. For a GPU image build with
#   --build-arg TORCH_SPEC="torch==2.13.0" --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# and run with the NVIDIA container runtime (see README, "GPU").
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
RUN pip install --no-cache-dir "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY schemas ./schemas
RUN pip install --no-cache-dir -e .
USER nobody
EXPOSE 6066
ENTRYPOINT ["intent-worker"]
CMD ["run"]
