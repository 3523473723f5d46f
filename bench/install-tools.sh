#!/usr/bin/env bash
# Install the programs the benchmark drives when any is missing (apt-get, as root), the way
# .ci/run installs the test suite's packages.
set -euo pipefail

packages=(
  iperf3 wrk socat openssh-server openssh-client
  stunnel4 nginx-light          # the C baselines of bench/peers.py: TLS tunnel, HTTP proxy
  redis-server redis-tools      # throwaway redis origin; redis-benchmark through each path
  postgresql postgresql-client  # initdb/pg_ctl for a throwaway cluster; pgbench through paths
)
missing=()
for program in iperf3 wrk socat ssh ssh-keygen stunnel4 redis-server redis-benchmark pgbench; do
  command -v "$program" >/dev/null || missing+=("$program")
done
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null || missing+=(sshd)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
# Debian keeps initdb off PATH, under /usr/lib/postgresql/<version>/bin.
initdbs=(/usr/lib/postgresql/*/bin/initdb)
[ -x "${initdbs[0]}" ] || command -v initdb >/dev/null || missing+=(initdb)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "bench: installing ${packages[*]} (missing: ${missing[*]})" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
else
  echo "bench: not root, cannot install ${missing[*]}: apt-get install ${packages[*]}" >&2
  exit 1
fi
