#!/bin/sh
# Installs what a fresh Debian 12 machine lacks for kubeplay's suite and demo: OS packages, then the venv.
# Idempotent: packages already present are not reinstalled; the venv is rebuilt only when pyproject.toml changes.
set -eu
cd "$(dirname "$0")/.."

PKGS="docker-registry skopeo mmdebstrap systemd-container nginx-light createrepo-c rpm dnf chrony pigz
iproute2 openssh-client gnupg gpgv zstd curl ca-certificates debian-archive-keyring arch-test python3-venv
python3-solv dpkg-dev sshpass"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: missing OS packages:$missing; run as root (or: sudo apt-get install$missing)" >&2
    exit 2
  fi
  echo "setup-host: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps package installs from starting nginx/chrony/registry services on this machine.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
stamp=.venv/.kubeplay-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup-host: creating .venv" >&2
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
