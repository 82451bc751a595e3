# spot-runtime images. The default target (runtime) is dist/ plus production node_modules, laid out
# exactly as `npm pack` + `npm ci --omit=dev` would lay them out in a scratch folder; the `bundle`
# target is the single self-contained dist/spot-run.mjs; the `snapshot` target is the same command
# started from a V8 startup snapshot, the fastest start (README, "Start-up snapshot").
#
# Steps run with `sh -c`, and distroless images have no shell: to run real steps, copy spot-run
# into a builder image that has sh and the build tools
#   COPY --from=registry.example.com/spot-runtime-bundle:0.1.0 /app/spot-run.mjs /usr/local/bin/spot-run
# or build this image on a base with a shell (deploy/build-pod.yaml runs this one):
#   --build-arg RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:debug-nonroot   (busybox sh)
#
# Node 24: Node 20 reached end of life on 2026-04-30 and Node 22 leaves maintenance on 2027-04-30;
# 24 is supported until 2028-04-30. The build stage runs the same Node line and Debian release as
# the runtime, so the build's smoke run is on the Node the image ships. 22 works too (CI tests it):
#   --build-arg NODE_IMAGE=node:22-bookworm-slim --build-arg RUNTIME_IMAGE=gcr.io/distroless/nodejs22-debian12:nonroot
# Pin both bases by digest in the registry's build pipeline; tags move.
ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Lockfile first: source edits do not invalidate the dependency layer. --ignore-scripts: the
# package's `prepare` is the build, which needs the sources copied below; it runs explicitly there.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib/ lib/
COPY scripts/ scripts/
# The build needs the dev dependencies (typescript, esbuild, tsx) and smoke-runs its outputs;
# then node_modules is reinstalled with only what runs in production (undici).
RUN npm run build && npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${RUNTIME_IMAGE} AS bundle
WORKDIR /app
COPY --from=build /src/dist/spot-run.mjs /src/dist/spot-run.mjs.map ./
USER nonroot
# No --enable-source-maps: it costs every pod ~25 ms at start to load the map, and expected
# failures print one line, not a stack. Add it to the args to debug one (the map is beside the file).
ENTRYPOINT ["/nodejs/bin/node", "/app/spot-run.mjs"]

# A snapshot blob loads only in the exact node binary that built it (any other refuses to start:
# "Failed to load the startup snapshot because it was built with Node.js version ..."), so the
# runtime image's own node builds it, in a throwaway stage on the same base. Exec-form RUN needs no
# shell. Root only to write /app in this stage; the blob is smoke-run before it is kept.
# --liftoff-only (V8's baseline WebAssembly compiler only, for undici's HTTP parser): on Node 24
# spot-run's own run-time request for it (preferLowMemoryWasm) only partly takes, and the
# optimising tier then costs a pod ~14 MiB and ~80 ms before it can exit (on 20 and 22 it takes,
# and the flag would only cost ~5 ms: leave it out of both lines there). Build and run must pass
# the same V8 flags (Node 20 refuses a blob built with others).
FROM ${RUNTIME_IMAGE} AS snapshot-blob
WORKDIR /app
COPY --from=build /src/dist/spot-run.cjs ./
USER root
RUN ["/nodejs/bin/node", "--liftoff-only", "--snapshot-blob", "/app/spot-run.blob", "--build-snapshot", "/app/spot-run.cjs"]
RUN ["/nodejs/bin/node", "--liftoff-only", "--snapshot-blob", "/app/spot-run.blob", "--", "--version"]

FROM ${RUNTIME_IMAGE} AS snapshot
WORKDIR /app
COPY --from=snapshot-blob /app/spot-run.blob ./
USER nonroot
# "--" ends node's own options: the pod's args after it reach spot-run (--help, --version and
# --tasks included), which node would otherwise take as its own.
ENTRYPOINT ["/nodejs/bin/node", "--liftoff-only", "--snapshot-blob", "/app/spot-run.blob", "--"]

# Last, so a plain `docker build .` produces it. Files stay root-owned: the app cannot modify itself.
FROM ${RUNTIME_IMAGE} AS runtime
WORKDIR /app
# package.json carries "type": "module", without which node would load dist/ as CommonJS.
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
USER nonroot
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/scripts/spot-run.js"]
