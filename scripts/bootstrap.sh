#!/usr/bin/env bash
# Install what `make run` and `make test` need and is missing: Debian packages and a virtualenv.
# Idempotent and quiet when everything is present, so it runs before every make target.
set -euo pipefail
cd "$(dirname "$0")/.."

# command-or-file -> Debian package that provides it
declare -A NEED=(
  [/usr/lib/softhsm/libsofthsm2.so]=softhsm2
  [/usr/bin/softhsm2-util]=softhsm2
  [/usr/bin/pkcs11-tool]=opensc
  [/usr/bin/p11-kit]=p11-kit
  [/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so]=p11-kit-modules
  [/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4]=libtcmalloc-minimal4
  [/usr/bin/openssl]=openssl
  [/usr/bin/promtool]=prometheus
  [/usr/bin/chromium]=chromium
  [/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc]=fonts-noto-cjk
  [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/python3]=python3
  [/usr/bin/espeak-ng]=espeak-ng
  [/usr/bin/node]=nodejs
  [/usr/bin/npm]=npm
)
# The runtime virtualenv the service users run (scripts/runtime.py) needs Debian's venv module.
if [[ $(id -u) -eq 0 ]] && ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  NEED[/python3-venv]=python3-venv
fi
# PostgreSQL server binaries live under a versioned folder; any version will do.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then NEED[/postgres]=postgresql; fi

missing=()
for path in "${!NEED[@]}"; do
  [[ -e "$path" ]] || missing+=("${NEED[$path]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
# Debian's postgresql package starts a system cluster; we never use it, and it must not
# hold port 5432 hostage for anyone else either, so leave it alone.

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
# pip's output only when it fails (it warns about this machine's package indexes on every run).
quiet_pip() {
  local log
  log=$(mktemp)
  if ! .venv/bin/pip "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "bootstrap: pip $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}
# The dependencies are the locked ones (requirements/test.txt: the runtime's and the test extra,
# every file by hash; `make lock` writes it), then the project itself without dependencies.
# Installed again whenever the lock or pyproject.toml changes.
stamp=.venv/.installed-$(cat pyproject.toml requirements/test.txt | sha256sum | cut -c1-16)
if [[ ! -e "$stamp" ]]; then
  echo "bootstrap: installing Python dependencies (requirements/test.txt)"
  quiet_pip install -q --require-hashes -r requirements/test.txt
  quiet_pip install -q --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# As root (CI, a server): the service users and the runtime they execute from /opt/hsm-ca/venv,
# reinstalled from this clone whenever its package sources change (see scripts/runtime.py).
if [[ $(id -u) -eq 0 ]]; then
  .venv/bin/python -c 'from config.identities import ensure_identities; ensure_identities()'
  /usr/bin/python3 scripts/runtime.py
fi

# The browser bundle (gateway/portal/static/portal.js, portal-legacy.js, operator.js) is committed,
# so a checkout runs without building it; build it only when a file of it is missing. Whether the
# committed one is what web/ builds is checked by `make check-bundle` (part of `make test`).
if [[ ! -s gateway/portal/static/portal.js || ! -s gateway/portal/static/portal-legacy.js
      || ! -s gateway/operator/static/operator.js ]]; then
  echo "bootstrap: building the browser bundle (web/)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && node build.mjs >/dev/null)
fi
# The browser tests inject axe-core (a devDependency in web/, never bundled) into every page.
if [[ ! -s web/node_modules/axe-core/axe.min.js ]]; then
  echo "bootstrap: installing web/ dev dependencies (axe-core for the browser tests)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
