# The thorax image: one image for the four services and the topic provisioner. The first argument
# picks what runs: ingest (default), preprocess, inference, results, topics; `healthcheck` probes it.
#
#   Docker:  docker build -t thorax .            (bases from Docker Hub and gcr.io, defaults below)
#   here:    bash scripts/image.sh build         (bases assembled from Debian packages, no registry)
#
# Layout: /opt/thorax/{bin/thorax.js,dist,node_modules,proto,models,deploy/kafka/topics.conf}, read
# only, owned by root. The process runs as UID:GID 10001:10001 and writes only to the volumes
# /var/lib/thorax (results' embedded store, object store, model cache) and /tmp, so the root
# filesystem can be mounted read-only.
#
# BUILD_BASE must provide Node.js 24 at /usr/local/bin/node, npm and a shell. BASE needs no shell,
# only glibc, libgcc_s, libstdc++ (onnxruntime-node and sharp's libvips link them), CA certificates
# and tzdata: Google's distroless "cc" image, or scripts/image.sh's base built with mmdebstrap.
ARG BUILD_BASE=docker.io/library/node:24-bookworm-slim
ARG BASE=gcr.io/distroless/cc-debian12:latest

FROM ${BUILD_BASE} AS build
# Behind a TLS-inspecting proxy, npm must trust the proxy's CA: pass a CA bundle file (mounted or
# copied into the build) as CA_FILE. Build-stage only; nothing of it reaches the runtime image.
ARG CA_FILE
ENV NODE_EXTRA_CA_CERTS=${CA_FILE} npm_config_cafile=${CA_FILE}
WORKDIR /src
# .npmrc keeps ignore-scripts=true: onnxruntime-node's postinstall would fetch CUDA libraries from
# NuGet; its CPU binaries are in the npm package, and sharp's come as prebuilt @img/* packages.
# Production dependencies only; the compiler (swc, the version the lock file pins) goes beside them.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && swc="$(node -p 'require("./package-lock.json").packages["node_modules/@swc/core"].version')" \
 && npm install --prefix /opt/build-tools --no-save --no-package-lock --no-audit --no-fund "@swc/core@$swc"
COPY tsconfig.base.json tsconfig.json .swcrc ./
COPY scripts/build.mjs scripts/build.mjs
COPY apps apps
COPY libs libs
COPY tools tools
# Compile, drop onnxruntime's binaries for other platforms, and prepare the writable state
# directory (copied with its owner into the runtime stage).
RUN ln -s /opt/build-tools/node_modules/@swc node_modules/@swc \
 && node scripts/build.mjs \
 && rm node_modules/@swc \
 && ort=node_modules/onnxruntime-node/bin/napi-v6 \
 && find "$ort" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} + \
 && find "$ort/linux" -mindepth 1 -maxdepth 1 ! -name "$(node -p 'process.arch')" -exec rm -rf {} + \
 && rm -rf node_modules/.cache \
 && mkdir -p /state/results /state/objects /state/models \
 && chmod -R 0750 /state

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG INPUTS_DIGEST=unknown
LABEL org.opencontainers.image.title="thorax" \
      org.opencontainers.image.description="Cluster serving for chest X-ray AI over Kafka: ingest, preprocess, inference, results and the topic provisioner" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Thorax" \
      org.opencontainers.image.documentation="README.md#containers" \
      io.thorax.image.inputs-digest="${INPUTS_DIGEST}"
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/thorax
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist/apps dist/apps
COPY --from=build /src/dist/libs dist/libs
COPY package.json ./
COPY proto proto
COPY models models
COPY deploy/kafka/topics.conf deploy/kafka/topics.conf
COPY deploy/images/thorax.js bin/thorax.js
COPY deploy/images/pipeline.js bin/pipeline.js
COPY --from=build --chown=10001:10001 /state /var/lib/thorax
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps --disable-warning=TimeoutNegativeWarning" \
    MODEL_DIR=/opt/thorax/models/thorax-tiny-cnn \
    RESULTS_DATA_DIR=/var/lib/thorax/results \
    OBJECT_STORE_URL=file:///var/lib/thorax/objects \
    TOPICS_CONF=/opt/thorax/deploy/kafka/topics.conf \
    TZ=UTC
USER 10001:10001
VOLUME ["/var/lib/thorax", "/tmp"]
# results 8080 (REST, FHIR) and 50051 (gRPC); ingest 8081 (REST, STOW-RS), 50052 (gRPC) and 11112
# (DIMSE); preprocess 8082; inference 8083.
EXPOSE 8080 8081 8082 8083 50051 50052 11112
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/usr/local/bin/node", "/opt/thorax/bin/thorax.js", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/node", "/opt/thorax/bin/thorax.js"]
CMD ["ingest"]
