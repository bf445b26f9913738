# One image for the four services; APP picks which one runs (ingest, preprocess, inference, results).
FROM node:24-bookworm-slim AS build
WORKDIR /thorax
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.base.json tsconfig.json .swcrc ./
COPY scripts/build.mjs scripts/build.mjs
COPY apps apps
COPY libs libs
RUN node scripts/build.mjs && npm prune --omit=dev

FROM node:24-bookworm-slim
WORKDIR /thorax
ENV NODE_ENV=production
COPY --from=build /thorax/node_modules node_modules
COPY --from=build /thorax/dist dist
COPY package.json ./
COPY proto proto
COPY models models
ARG APP=ingest
ENV APP=${APP} MODEL_DIR=/thorax/models/thorax-tiny-cnn
USER node
CMD ["sh", "-c", "exec node --enable-source-maps --disable-warning=TimeoutNegativeWarning dist/apps/${APP}/src/main.js"]
