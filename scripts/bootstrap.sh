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
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -e "$stamp" ]]; then
  echo "bootstrap: installing Python dependencies"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v -e 'is ignored' -e 'Editable' -e '^ *!!' -e '****' -e 'Please be careful' -e 'name as your package' -e 'with strategy' -e '^ *$' || true
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# As root (CI, a server): the service users and the runtime they execute from /opt/hsm-ca/venv,
# reinstalled from this clone whenever its package sources change (see scripts/runtime.py).
if [[ $(id -u) -eq 0 ]]; then
  .venv/bin/python -c 'from config.identities import ensure_identities; ensure_identities()'
  /usr/bin/python3 scripts/runtime.py
fi

# The portal's browser bundle (gateway/portal/static/portal.js) is committed; rebuild it only when
# its inputs (web/src, web/package-lock.json, web/build.mjs) no longer match web/bundle.sha256,
# or when it is missing. Needs Node >= 18 and npm then; `npm ci` installs the locked versions.
want=$(cd web && LC_ALL=C cat package-lock.json build.mjs src/*.js | sha256sum | cut -d' ' -f1)
have=$(cat web/bundle.sha256 2>/dev/null || true)
if [[ "$want" != "$have" || ! -s gateway/portal/static/portal.js || ! -s gateway/portal/static/portal-legacy.js
      || ! -s gateway/operator/static/operator.js ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: web/ changed but npm is missing; install nodejs + npm to rebuild portal.js" >&2
    exit 1
  fi
  echo "bootstrap: building the portal bundle (web/)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && node build.mjs >/dev/null)
fi
# The browser tests inject axe-core (a devDependency in web/, never bundled) into every page.
if [[ ! -s web/node_modules/axe-core/axe.min.js ]]; then
  echo "bootstrap: installing web/ dev dependencies (axe-core for the browser tests)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
