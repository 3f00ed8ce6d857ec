# A stand-in for the prom/prometheus image, for machines that cannot pull one (make
# test-deploy): Debian's Prometheus on the same base as the pgcue image. compose.yaml
# passes its flags (config file, storage path, listen address) explicitly.
ARG BASE=pgcue-base:bookworm
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
