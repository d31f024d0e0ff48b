#!/bin/sh
# kubeplay bundle installer for the deploy node (POSIX sh; no internet, no compiler needed).
#   1. checks it runs as root
#   2. verifies every file of the bundle against SHA256SUMS
#   3. creates a Python venv from the bundle's wheels/ (offline, every wheel pinned by sha256)
#   4. runs `kubeplay install "$@"` from that venv, with KUBEPLAY_BUNDLE pointing at this bundle
#
# Usage:  cp config-sample.yaml config.yaml; edit it; ./install.sh -c config.yaml
# Environment:
#   KUBEPLAY_VENV=/opt/kubeplay/venv   where the venv goes (kept outside the bundle: nginx serves the bundle)
#   KUBEPLAY_PYTHON=python3.11         the interpreter to use (default: the first python3.x with wheels here)
#   KUBEPLAY_SKIP_VERIFY=1             skip step 2 (only for a re-run on a copy that already verified)
#   KUBEPLAY_COMMAND=install           the kubeplay command to run (e.g. deploy, status)
#   KUBEPLAY_LINK=/usr/local/bin/kubeplay  symlink to the venv's kubeplay (empty: none; never replaces others)
set -eu

die() {
    printf 'install.sh: error: %s\n' "$1" >&2
    if [ -n "${2:-}" ]; then printf 'install.sh: hint: %s\n' "$2" >&2; fi
    exit "${3:-1}"
}
say() { printf 'install.sh: %s\n' "$1" >&2; }

bundle=$(cd "$(dirname "$0")" && pwd -P)
venv=${KUBEPLAY_VENV:-/opt/kubeplay/venv}
command_name=${KUBEPLAY_COMMAND:-install}

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, certificates and services)" "sudo $0 $*"
[ -f "$bundle/SHA256SUMS" ] || die "$bundle/SHA256SUMS is missing: this is not a complete kubeplay bundle" \
    "copy the whole bundle directory again" 2
[ -d "$bundle/wheels" ] || die "$bundle/wheels is missing: this is not a complete kubeplay bundle" \
    "copy the whole bundle directory again" 2

if [ "${KUBEPLAY_SKIP_VERIFY:-0}" != 1 ]; then
    command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found" "install coreutils"
    say "verifying every file against SHA256SUMS (this reads the whole bundle) ..."
    if ! (cd "$bundle" && sha256sum --quiet --strict -c SHA256SUMS >&2); then
        die "the bundle does not match SHA256SUMS (the files named above are changed or missing)" \
            "copy the bundle again from the build machine; do not install it as it is"
    fi
fi

machine=$(uname -m)
pick_python() {
    for candidate in ${KUBEPLAY_PYTHON:-python3 python3.13 python3.12 python3.11}; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        tag=$("$candidate" -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null) || continue
        if [ -f "$bundle/wheels/requirements-$tag-$machine.txt" ]; then
            python=$candidate
            requirements=$bundle/wheels/requirements-$tag-$machine.txt
            return 0
        fi
    done
    return 1
}
if ! pick_python; then
    have=$(cd "$bundle/wheels" && ls requirements-*.txt 2>/dev/null | sed 's/^requirements-//; s/\.txt$//' | tr '\n' ' ')
    die "no Python here matches the bundle's wheels for $machine (the bundle has: ${have:-none})" \
        "install a matching python3.x from the OS (it needs the venv module), or set KUBEPLAY_PYTHON" 2
fi

# The venv is rebuilt only when the pinned wheel set changed; a re-run after an interruption reuses it.
stamp=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/kubeplay" ] || [ "$(cat "$venv/.kubeplay-wheels" 2>/dev/null || true)" != "$stamp" ]; then
    say "creating $venv with $python from $(basename "$requirements") (offline) ..."
    # Ignore any pip configuration on this node: only the bundle's wheels may be installed.
    unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT PIP_TARGET PIP_PREFIX
    export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    mkdir -p "$(dirname "$venv")"
    # --without-pip: distros that split ensurepip out (Debian, Ubuntu) still get a venv; pip comes from wheels/.
    "$python" -m venv --clear --without-pip "$venv" || die "cannot create a venv at $venv with $python" \
        "the interpreter needs its venv module (python3-venv or python3.x-libs)"
    pip_wheel=$(ls "$bundle"/wheels/pip-*-py3-none-any.whl 2>/dev/null | head -n 1)
    [ -n "$pip_wheel" ] || die "wheels/ has no pip wheel" "rebuild the bundle" 2
    "$venv/bin/python" "$pip_wheel/pip" install --quiet --no-index --find-links "$bundle/wheels" \
        --require-hashes --only-binary=:all: -r "$requirements" ||
        die "installing kubeplay from $bundle/wheels failed (see above)" "rebuild the bundle for this node's Python"
    printf '%s\n' "$stamp" >"$venv/.kubeplay-wheels"
fi

# Offer `kubeplay` on PATH for the administrator, without replacing anything that is not ours.
link=${KUBEPLAY_LINK-/usr/local/bin/kubeplay}
if [ -n "$link" ] && [ -d "$(dirname "$link")" ]; then
    if [ ! -e "$link" ] || [ "$(readlink "$link" 2>/dev/null || true)" = "$venv/bin/kubeplay" ]; then
        ln -sfn "$venv/bin/kubeplay" "$link"
    fi
fi

export KUBEPLAY_BUNDLE="${KUBEPLAY_BUNDLE:-$bundle}"
exec "$venv/bin/kubeplay" "$command_name" "$@"
