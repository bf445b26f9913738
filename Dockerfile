# The thorax image: one image for the four services and the topic provisioner. The first argument
# picks what runs: ingest (default), preprocess, inference, results, topics; `healthcheck` probes it.
#
#   Docker:  docker build -t thorax .            (bases from Docker Hub and gcr.io, defaults below)
#   here:    bash scripts/image.sh build         (bases assembled from Debian packages, no registry)
#
# Layout: /opt/thorax/{bin/thorax.js,dist,node_modules,lib/confluent-kafka,proto,models,
# deploy/kafka/topics.conf}, read only, owned by root. The process runs as UID:GID 10001:10001 and
# writes only to the volumes /var/lib/thorax (results' embedded store, object store, model cache)
# and /tmp, so the root filesystem can be mounted read-only.
#
# BUILD_BASE must provide Node.js 24 at /usr/local/bin/node with its headers under
# /usr/local/include/node, npm, a shell and apt (Debian bookworm). BASE needs no shell, only glibc,
# libgcc_s, libstdc++ (onnxruntime-node and sharp's libvips link them), CA certificates and tzdata,
# with its Debian packages recorded under /var/lib/dpkg: Google's distroless "cc" image, or
# scripts/image.sh's base built with mmdebstrap.
#
# Both Kafka clients are in the image (KAFKA_CLIENT picks one, librdkafka by default):
# @confluentinc/kafka-javascript (librdkafka) is built in its own stage with scripts/rdkafka.sh
# (its version is named there) against Debian's libraries, and the Debian packages of the shared
# libraries it loads that BASE lacks are unpacked into the image with their dpkg records.
ARG BUILD_BASE=docker.io/library/node:24-bookworm-slim
ARG BASE=gcr.io/distroless/cc-debian12:latest

# Only read by the rdkafka stage: which Debian packages BASE already holds.
FROM ${BASE} AS runtime-base

FROM ${BUILD_BASE} AS rdkafka
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG CA_FILE
ENV NODE_EXTRA_CA_CERTS=${CA_FILE} npm_config_cafile=${CA_FILE}
WORKDIR /src
COPY scripts/rdkafka.sh scripts/with-node.sh scripts/
COPY --from=runtime-base /var/lib/dpkg /opt/base-dpkg
# Build (apt-get installs the compiler and the -dev packages), then keep what loads at run time:
# lib/, the addon and librdkafka's two shared libraries (stripped), the package's dependencies.
# /opt/rdkafka-root then gets the packages owning every library `ldd` resolves for the addon that
# BASE does not record: their files (/lib folded into /usr/lib, both on the loader's default
# path), copyright notices and a /var/lib/dpkg/status.d record each, as the base images keep them.
RUN CKJS_DIR=/opt/thorax/lib/confluent-kafka bash scripts/rdkafka.sh install \
 && pkg=/opt/thorax/lib/confluent-kafka/node_modules/@confluentinc/kafka-javascript \
 && find "$pkg/build" -mindepth 1 -maxdepth 1 ! -name Release ! -name deps -exec rm -rf {} + \
 && find "$pkg/build/Release" -mindepth 1 ! -name confluent-kafka-javascript.node -exec rm -rf {} + \
 && find "$pkg/build/deps" -mindepth 1 ! -name 'librdkafka.so.1' ! -name 'librdkafka++.so.1' -exec rm -rf {} + \
 && rm -rf "$pkg/deps" "$pkg/src" "$pkg/util" "$pkg/scripts" "$pkg"/*.md "$pkg/cpplint.py" \
 && strip --strip-unneeded "$pkg"/build/deps/*.so.1 "$pkg/build/Release/confluent-kafka-javascript.node" \
 && rm -f /opt/thorax/lib/confluent-kafka/package-lock.json \
 && ldd "$pkg/build/Release/confluent-kafka-javascript.node" >/tmp/ldd \
 && if grep -F "not found" /tmp/ldd; then exit 1; fi \
 && awk '$2 == "=>" && $3 ~ /^\// { print $3 }' /tmp/ldd >/tmp/libs \
 && mkdir -p /opt/rdkafka-root/var/lib/dpkg/status.d /tmp/debs && cd /tmp/debs \
 && for lib in $(grep -v "^$pkg/" /tmp/libs); do \
      for f in "$lib" "$(readlink -f "$lib")"; do \
        for p in "$f" "/usr$f" "${f#/usr}"; do dpkg -S "$p" 2>/dev/null && break 2; done; \
      done | head -1 | cut -d: -f1 | grep . || { echo "no Debian package owns $lib" >&2; exit 1; }; \
    done | sort -u >/tmp/packages \
 && for p in $(cat /tmp/packages); do \
      if grep -qsx "Package: $p" /opt/base-dpkg/status /opt/base-dpkg/status.d/*; then continue; fi; \
      apt-get download -q "$p=$(dpkg-query -W -f '${Version}' "$p")" >&2 && deb="$(ls "$p"_*.deb)" \
      && dpkg-deb -x "$deb" /opt/rdkafka-root \
      && { echo "Package: $p"; echo "Status: install ok installed"; \
           dpkg-deb -f "$deb" Priority Section Installed-Size Maintainer Architecture Source Version Depends; } \
         >"/opt/rdkafka-root/var/lib/dpkg/status.d/$p" \
      && echo "$p" || exit 1; \
    done >/opt/rdkafka-root/var/lib/dpkg/status.d/.thorax-librdkafka \
 && cd /opt/rdkafka-root \
 && if [ -d lib ]; then cp -a lib/. usr/lib/ && rm -rf lib; fi \
 && rm -rf usr/share/doc/*/changelog* usr/share/doc/*/NEWS* usr/share/doc/*/README* usr/share/man usr/share/info \
      usr/share/lintian usr/share/locale usr/share/bug \
 && echo "runtime packages added for librdkafka: $(cat var/lib/dpkg/status.d/.thorax-librdkafka | tr '\n' ' ')" \
 && rm var/lib/dpkg/status.d/.thorax-librdkafka

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
COPY --from=rdkafka /opt/rdkafka-root/ /
WORKDIR /opt/thorax
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist/apps dist/apps
COPY --from=build /src/dist/libs dist/libs
COPY --from=rdkafka /opt/thorax/lib/confluent-kafka lib/confluent-kafka
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
    KAFKA_LIBRDKAFKA_DIR=/opt/thorax/lib/confluent-kafka \
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
