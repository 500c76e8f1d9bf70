# The Customer Pulse worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY stream ./stream
COPY agents ./agents
RUN pip install --no-cache-dir .
ENV PULSE_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
CMD ["pulse", "worker"]
