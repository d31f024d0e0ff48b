#!/bin/sh
# kubeplay bundle installer for the deploy node (POSIX sh; no internet, no compiler needed).
#   1. checks it runs as root
#   2. checks who built the bundle when this node has an allowed_signers file (compose.allowed_signers in
#      config.yaml, KUBEPLAY_ALLOWED_SIGNERS, or /etc/kubeplay/allowed_signers): SHA256SUMS.sig must be an
#      SSH signature (namespace kubeplay-bundle) by a key it allows, or install.sh stops with exit 2. The
#      checker never comes from the bundle being checked: ssh-keygen (openssh-client), else the kubeplay of
#      an earlier install in KUBEPLAY_VENV; with neither it stops (exit 2). Without the file it says that
#      origin was not checked.
#   3. verifies every file of the bundle against SHA256SUMS (so, once 2 passed, against the signature)
#   4. finds a python3.x the bundle has wheels for; with none, installs the one deploy-node.txt names for
#      this OS from the bundle's own signed OS repo (and only from it), recording what it installed
#   5. creates a Python venv from the bundle's wheels/ (offline, every wheel pinned by sha256)
#   6. runs `kubeplay install "$@"` from that venv, with KUBEPLAY_BUNDLE pointing at this bundle
#
# Usage:  cp config-sample.yaml config.yaml; edit it; ./install.sh -c config.yaml
# Environment:
#   KUBEPLAY_VENV=/opt/kubeplay/venv   where the venv goes (kept outside the bundle: nginx serves the bundle)
#   KUBEPLAY_PYTHON=python3.11         the interpreter to use (default: the first python3.x with wheels here)
#   KUBEPLAY_ALLOWED_SIGNERS=FILE      who may sign bundles, when config.yaml names none (step 2)
#   KUBEPLAY_SKIP_VERIFY=1             skip step 3 (only for a re-run on a copy that already verified)
#   KUBEPLAY_COMMAND=install           the kubeplay command to run (e.g. deploy, status)
#   KUBEPLAY_LINK=/usr/local/bin/kubeplay  symlink to the venv's kubeplay (empty: none; never replaces others)
#   KUBEPLAY_STATE_DIR=/var/lib/kubeplay   where step 3 records the packages it installed (bootstrap/installed)
set -eu

die() {
    printf 'install.sh: error: %s\n' "$1" >&2
    if [ -n "${2:-}" ]; then printf 'install.sh: hint: %s\n' "$2" >&2; fi
    exit "${3:-1}"
}
say() { printf 'install.sh: %s\n' "$1" >&2; }

bundle=$(cd "$(dirname "$0")" && pwd -P)
venv=${KUBEPLAY_VENV:-/opt/kubeplay/venv}
state=${KUBEPLAY_STATE_DIR:-/var/lib/kubeplay}
command_name=${KUBEPLAY_COMMAND:-install}

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, certificates and services)" "sudo $0 $*"
[ -f "$bundle/SHA256SUMS" ] || die "$bundle/SHA256SUMS is missing: this is not a complete kubeplay bundle" \
    "copy the whole bundle directory again" 2
# A delta bundle (delta.json) carries only the wheels this deploy node does not already have: the others
# are in the served set, in the version directories of the bundles installed before (two bundles' wheels
# may share a file name, not their bytes). delta.json lists every wheel of the full bundle with its
# sha256; each one missing here is taken from a served version whose copy has exactly that digest.
wheel_dirs=$bundle/wheels
if [ -f "$bundle/delta.json" ]; then
    ls "$state"/served/versions/*/wheels >/dev/null 2>&1 ||
        die "$bundle is a delta bundle, and this node serves no earlier bundle ($state/served/versions/*/wheels is missing)" \
            "install the full bundle of the version this delta was built against first, or the full new bundle" 2
    command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found" "install coreutils"
    wheel_dirs=$(mktemp -d "${TMPDIR:-/tmp}/kubeplay-wheels.XXXXXX") || die "cannot make a temporary directory"
    trap 'rm -rf "$wheel_dirs"' EXIT
    # "wheels/<file>": {"sha256": "<hex>", ...} entries of delta.json's content list
    tr -d '\n' <"$bundle/delta.json" | grep -o '"wheels/[^"]*": *{ *"sha256": *"[0-9a-f]*"' |
        sed 's/^"wheels\/\([^"]*\)": *{ *"sha256": *"\([0-9a-f]*\)"$/\2 \1/' >"$wheel_dirs/.listed"
    [ -s "$wheel_dirs/.listed" ] || die "$bundle/delta.json lists no wheels" "rebuild the delta" 2
    while read -r digest name; do
        found=
        for candidate in "$bundle/wheels/$name" "$state"/served/versions/*/wheels/"$name"; do
            [ -f "$candidate" ] || continue
            if [ "$(sha256sum <"$candidate" | cut -d' ' -f1)" = "$digest" ]; then
                found=$candidate
                break
            fi
        done
        [ -n "$found" ] || die "wheel $name ($digest) is neither in this delta nor served here" \
            "install the full bundle instead" 2
        ln "$found" "$wheel_dirs/$name" 2>/dev/null || cp "$found" "$wheel_dirs/$name"
    done <"$wheel_dirs/.listed"
    rm -f "$wheel_dirs/.listed"
else
    [ -d "$bundle/wheels" ] || die "$bundle/wheels is missing: this is not a complete kubeplay bundle" \
        "copy the whole bundle directory again" 2
fi
# The first of wheel_dirs holding file $1, or nothing.
find_wheel_file() {
    for dir in $wheel_dirs; do
        for found in "$dir"/$1; do
            [ -f "$found" ] && { printf '%s\n' "$found"; return 0; }
        done
    done
    return 1
}

# compose.allowed_signers of the config.yaml the arguments name (-c/--config, as kubeplay install reads them).
config_file=${KUBEPLAY_CONFIG:-config.yaml}
previous=
for arg in "$@"; do
    case $previous in -c | --config) config_file=$arg ;; esac
    case $arg in --config=*) config_file=${arg#--config=} ;; esac
    previous=$arg
done
configured_signers() {
    [ -f "$config_file" ] || return 0
    value=$(awk '/^[^[:space:]#]/ { section = $1 }
        section == "compose:" && $1 == "allowed_signers:" { print $2; exit }' "$config_file" | sed "s/^[\"']//; s/[\"']\$//")
    case $value in
    "" | "~" | null) ;;
    /*) printf '%s\n' "$value" ;;
    *) printf '%s/%s\n' "$(cd "$(dirname "$config_file")" && pwd -P)" "$value" ;;
    esac
}
signers=$(configured_signers)
signers_from="compose.allowed_signers in $config_file"
if [ -z "$signers" ] && [ -n "${KUBEPLAY_ALLOWED_SIGNERS:-}" ]; then
    signers=$KUBEPLAY_ALLOWED_SIGNERS signers_from=KUBEPLAY_ALLOWED_SIGNERS
elif [ -z "$signers" ] && [ -f /etc/kubeplay/allowed_signers ]; then
    signers=/etc/kubeplay/allowed_signers signers_from=default
fi
namespace=kubeplay-bundle
signature=$bundle/SHA256SUMS.sig

# Step 2 with ssh-keygen: find the principal of the signing key, then verify for it (namespaces= is honoured).
check_with_ssh_keygen() {
    if ! principals=$(ssh-keygen -Y find-principals -f "$signers" -n "$namespace" -s "$signature" 2>/dev/null); then
        if found=$(ssh-keygen -Y check-novalidate -n "$namespace" -s "$signature" <"$bundle/SHA256SUMS" 2>&1); then
            die "the bundle is signed by ${found##* with }, which $signers does not allow" \
                "add the builder's public key to $signers only if you trust who holds it" 2
        fi
        die "bad signature, by a key $signers does not list: $(printf '%s' "$found" | tail -n 1)" \
            "copy the bundle again from the build machine; do not install it as it is" 2
    fi
    principal=$(printf '%s\n' "$principals" | head -n 1 | cut -d, -f1)
    if ! result=$(ssh-keygen -Y verify -f "$signers" -I "$principal" -n "$namespace" -s "$signature" \
        <"$bundle/SHA256SUMS" 2>&1); then
        die "bad signature by $principal: $(printf '%s' "$result" | tail -n 1)" \
            "copy the bundle again from the build machine; do not install it as it is" 2
    fi
    say "signed: $(printf '%s' "$result" | tail -n 1), allowed by $signers"
}

if [ -n "$signers" ]; then
    [ -f "$signers" ] || die "$signers ($signers_from) does not exist" "create it (see README, Trust), or name another file" 2
    [ -f "$signature" ] || die "the bundle is not signed (no SHA256SUMS.sig), and $signers requires a signature" \
        "sign it on the build machine: kubeplay sign BUNDLE --key KEY" 2
    if command -v ssh-keygen >/dev/null 2>&1; then
        check_with_ssh_keygen
    elif [ -x "$venv/bin/kubeplay" ]; then
        # kubeplay from an earlier install: code already on this node, not code from the bundle being checked
        "$venv/bin/kubeplay" verify "$bundle" --allowed-signers "$signers" --signature-only || exit 2
    else
        die "cannot check SHA256SUMS.sig: no ssh-keygen on this node, and kubeplay's own checker would come from the bundle it is to check" \
            "install openssh-client (Debian/Ubuntu) or openssh (EL) from the OS media, then run install.sh again" 2
    fi
else
    say "origin not checked: no allowed_signers file (compose.allowed_signers in config.yaml, KUBEPLAY_ALLOWED_SIGNERS or /etc/kubeplay/allowed_signers); SHA256SUMS shows the bundle is intact, not who built it"
fi

# The words kubeplay.settings.parse_bool accepts, in any case.
case $(printf '%s' "${KUBEPLAY_SKIP_VERIFY:-0}" | tr '[:upper:]' '[:lower:]') in
    1 | true | yes | on) skip_verify=1 ;;
    0 | false | no | off) skip_verify=0 ;;
    *) die "KUBEPLAY_SKIP_VERIFY='$KUBEPLAY_SKIP_VERIFY': expected 1/0, true/false, yes/no or on/off" "" 2 ;;
esac
if [ "$skip_verify" != 1 ]; then
    command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found" "install coreutils"
    say "verifying every file against SHA256SUMS (this reads the whole bundle) ..."
    if ! (cd "$bundle" && sha256sum --quiet --strict -c SHA256SUMS >&2); then
        die "the bundle does not match SHA256SUMS (the files named above are changed or missing)" \
            "copy the bundle again from the build machine; do not install it as it is"
    fi
    # kubeplay install need not hash the same files again (it still compares the digests, and hashes
    # whatever is not listed in exactly this SHA256SUMS)
    KUBEPLAY_VERIFIED_SUMS=$(sha256sum <"$bundle/SHA256SUMS" | cut -d' ' -f1)
    export KUBEPLAY_VERIFIED_SUMS
fi

machine=$(uname -m)
pick_python() {
    for candidate in ${KUBEPLAY_PYTHON:-python3 python3.13 python3.12 python3.11}; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        tag=$("$candidate" -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null) || continue
        if found=$(find_wheel_file "requirements-$tag-$machine.txt"); then
            python=$candidate
            requirements=$found
            return 0
        fi
    done
    return 1
}

# /etc/os-release field $1, without quotes.
os_field() {
    for file in /etc/os-release /usr/lib/os-release; do
        if [ -r "$file" ]; then
            sed -n "s/^$1=//p" "$file" | head -n 1 | sed "s/^[\"']//; s/[\"']\$//"
            return 0
        fi
    done
}

# "distro release, ..." of deploy-node.txt: every OS the bundle has a repo for ($1 = all), or the deploy-node ones.
table_oses() {
    awk -v want="$1" '!/^#/ && NF >= 8 && (want == "all" || $5 != "-") {
        printf "%s%s %s", sep, $1, $2; sep = ", " }' "$bundle/deploy-node.txt"
}

installed_packages() {
    if [ "$1" = apt ]; then
        dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\n' | awk '$1 == "ii" { print $2 }' | sort
    else
        rpm -qa --qf '%{NAME}\n' | grep -v '^gpg-pubkey$' | sort
    fi
}

# No usable Python: install the one the bundle carries for this OS, from the bundle's repo alone.
bootstrap_python() {
    os_id=$(os_field ID | tr 'A-Z' 'a-z')
    os_version=$(os_field VERSION_ID)
    os_codename=$(os_field VERSION_CODENAME)
    os_name=$(os_field PRETTY_NAME)
    os_name="${os_name:-${os_id:-an unknown OS}} ($os_id ${os_version:-$os_codename})"
    line=$(awk -v id="$os_id" -v ver="$os_version" -v major="${os_version%%.*}" -v code="$os_codename" '
        !/^#/ && NF >= 8 && $1 == id && ($2 == ver || ($4 == "rpm" && $2 == major) || ($3 != "-" && $3 == code)) {
            print; exit }' "$bundle/deploy-node.txt")
    if [ -z "$line" ]; then
        die "this node runs $os_name; the bundle has no OS repo for it (it has: $(table_oses all))" \
            "run install.sh on a deploy node with one of those, or add this OS under os: in bundle.yaml and rebuild" 2
    fi
    # shellcheck disable=SC2086  # the fields of one line of deploy-node.txt, none with blanks
    set -- $line
    distro=$1 release=$2 codename=$3 family=$4 pyver=$5 arches=$6 repo=$bundle/$7
    shift 7
    packages=$*
    if [ "$pyver" = - ]; then
        die "$os_name can be a cluster node but not the deploy node of this bundle (it carries no Python for it that kubespray's Ansible runs on)" \
            "deploy-node OSes of this bundle: $(table_oses deploy)" 2
    fi
    case $machine in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$machine ;; esac
    case ",$arches," in
    *",$arch,"*) ;;
    *) die "the bundle's $distro $release repo has no $arch packages (it has: $arches)" "rebuild with $arch" 2 ;;
    esac
    case "$bundle$state" in
    *[[:space:]]*) die "the bundle or state path contains blanks: $bundle, $state" "move the bundle to a plain path" 2 ;;
    esac
    key=$bundle/repos/kubeplay-archive-keyring.gpg
    [ -f "$key" ] && [ -d "$repo" ] || die "$repo or $key is missing" "copy the whole bundle directory again" 2

    if [ "$family" = apt ]; then
        command -v apt-get >/dev/null 2>&1 || die "apt-get not found on this $os_name" "" 2
    else
        command -v dnf >/dev/null 2>&1 || die "dnf not found on this $os_name" "" 2
        pkgkeys=
        for pkgkey in "$repo"/RPM-GPG-KEY*; do
            [ ! -f "$pkgkey" ] || pkgkeys="$pkgkeys file://$pkgkey"
        done
        [ -n "$pkgkeys" ] || die "the bundle's $distro $release repo has no package signing key (RPM-GPG-KEY-*): the signatures of $packages cannot be checked" \
            "rebuild the bundle with os[].keyring naming $distro's RPM-GPG-KEY file, or install Python $pyver yourself" 2
    fi

    say "no Python here matches the bundle's wheels; installing Python $pyver ($packages) from the bundle's $distro $release repo ..."
    boot=$state/bootstrap
    [ -d "$state" ] || created=$state
    mkdir -p "$boot"
    chmod 755 "$boot"
    cp "$key" "$boot/kubeplay-archive-keyring.gpg"
    chmod 644 "$boot/kubeplay-archive-keyring.gpg"
    record=$boot/installed
    before=$boot/before
    installed_packages "$family" >"$before" || die "cannot list the installed packages" ""
    write_record() {
        {
            printf '# packages install.sh installed from the bundle to run kubeplay; kubeplay uninstall reads this\n'
            printf 'family %s\n' "$family"
            [ -z "${created:-}" ] || printf 'created %s\n' "$created"
            for p in "$@"; do printf 'package %s\n' "$p"; done
        } >"$record.part" && mv "$record.part" "$record"
    }
    # Recorded before installing (what is asked for and not here yet), completed after (all that came with it).
    # shellcheck disable=SC2086
    write_record $(printf '%s\n' $packages | sort | comm -23 - "$before")
    failed=
    if [ "$family" = apt ]; then
        sources=$boot/kubeplay-bootstrap.sources
        printf 'Types: deb\nURIs: file:%s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
            "$repo" "$codename" "$boot/kubeplay-archive-keyring.gpg" >"$sources"
        # Only this source: none of the node's own (maybe unreachable) sources, and their lists are kept.
        set -- -q -o "Dir::Etc::SourceList=$sources" -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0
        if ! DEBIAN_FRONTEND=noninteractive apt-get "$@" update >&2; then
            failed="apt-get update from the bundle's $distro $release repo failed (see above)"
        # shellcheck disable=SC2086
        elif ! DEBIAN_FRONTEND=noninteractive apt-get "$@" install -y --no-install-recommends $packages >&2; then
            failed="installing $packages from the bundle's repo failed (see above)"
        fi
    else
        mkdir -p "$boot/yum.repos.d"
        # repomd.xml is checked against the bundle key, every package against the distro's key.
        printf '[kubeplay-bootstrap]\nname=kubeplay bundle %s %s\nbaseurl=file://%s/$basearch\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=%s\n' \
            "$distro" "$release" "$repo" "file://$boot/kubeplay-archive-keyring.gpg$pkgkeys" \
            >"$boot/yum.repos.d/kubeplay-bootstrap.repo"
        # shellcheck disable=SC2086
        if ! dnf -y -q --setopt=reposdir="$boot/yum.repos.d" --disablerepo='*' --enablerepo=kubeplay-bootstrap \
            --releasever="$release" --setopt=install_weak_deps=False --setopt=gpgcheck=1 --setopt=localpkg_gpgcheck=1 \
            install $packages >&2; then
            failed="installing $packages from the bundle's repo failed (see above)"
        fi
    fi
    new=$(installed_packages "$family" | comm -13 "$before" -)
    rm -f "$before"
    # shellcheck disable=SC2086
    write_record $new
    [ -z "$failed" ] || die "$failed" "run kubeplay verify on the bundle; a package signature problem means the bundle is not what was built" 1
    say "installed from the bundle: $(echo $new) (kubeplay uninstall --purge-packages removes exactly these)"
}

if ! pick_python; then
    have=$(for dir in $wheel_dirs; do (cd "$dir" 2>/dev/null && ls requirements-*.txt 2>/dev/null); done |
        sed 's/^requirements-//; s/\.txt$//' | sort -u | tr '\n' ' ')
    # A bundle without os: targets has no OS repo to bring Python from.
    [ -f "$bundle/deploy-node.txt" ] ||
        die "no Python here matches the bundle's wheels for $machine (the bundle has: ${have:-none})" \
            "install a matching python3.x from the OS (it needs the venv module), or set KUBEPLAY_PYTHON" 2
    bootstrap_python
    pick_python || die "Python $pyver from the bundle is not among ${KUBEPLAY_PYTHON:-the interpreters install.sh looks for}, or does not match the wheels for $machine (${have:-none})" \
        "${KUBEPLAY_PYTHON:+unset KUBEPLAY_PYTHON, or }rebuild the bundle" 1
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
    pip_wheel=$(find_wheel_file 'pip-*-py3-none-any.whl') || die "wheels/ has no pip wheel" "rebuild the bundle" 2
    links=
    for dir in $wheel_dirs; do
        [ -d "$dir" ] && links="$links --find-links $dir"
    done
    # shellcheck disable=SC2086  # $links is a list of options
    "$venv/bin/python" "$pip_wheel/pip" install --quiet --no-index $links \
        --require-hashes --only-binary=:all: -r "$requirements" ||
        die "installing kubeplay from $wheel_dirs failed (see above)" "rebuild the bundle for this node's Python"
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
[ "$wheel_dirs" = "$bundle/wheels" ] || rm -rf "$wheel_dirs"
exec "$venv/bin/kubeplay" "$command_name" "$@"
