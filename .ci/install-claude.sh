#!/usr/bin/env bash
# Install the pinned Claude Code CLI (@anthropic-ai/claude-code) into .ci/cache/claude/.
#
# - The version comes from .ci/claude-version (one line, e.g. 2.1.332).
# - Idempotent: if the installed binary already reports that version, nothing is downloaded.
# - Installed WITH lifecycle scripts and optional dependencies: the package's postinstall copies
#   the native binary out of the platform-specific optional dependency; --ignore-scripts or
#   --omit=optional would leave a stub.
# - Works as root (npm >= 7 runs lifecycle scripts as the owner of the install directory).
#
# On success the absolute path of the `claude` binary is the only thing printed on stdout
# (progress goes to stderr), so callers can do: CLAUDE_BIN="$(.ci/install-claude.sh)".
# Exit codes: 0 ok, 2 npm/node missing, 3 registry unreachable, 4 install failed or wrong version.
#
# Environment overrides: PARHELIA_CLAUDE_CACHE (install prefix), NPM_TIMEOUT_S (default 900).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="$(tr -d '[:space:]' < "$here/claude-version")"
pkg="@anthropic-ai/claude-code"
prefix="${PARHELIA_CLAUDE_CACHE:-$root/.ci/cache/claude}"
bin="$prefix/node_modules/.bin/claude"
npm_timeout="${NPM_TIMEOUT_S:-900}"

log() { printf 'install-claude: %s\n' "$*" >&2; }
die() { local code="$1"; shift; log "ERROR: $*"; exit "$code"; }

[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die 4 "bad version in $here/claude-version: '$version'"

installed_version() {
  # Prints the version reported by the installed binary, or nothing.
  [[ -x "$bin" ]] || return 0
  timeout 30 "$bin" --version 2>/dev/null | awk 'NR==1 {print $1}' || true
}

current="$(installed_version)"
if [[ "$current" == "$version" ]]; then
  log "claude $version already installed"
  printf '%s\n' "$bin"
  exit 0
fi
[[ -n "$current" ]] && log "found claude '$current' in $prefix, replacing it with $version"

command -v npm >/dev/null 2>&1 || die 2 "npm not found on PATH (install Node.js >= 20 and npm)"
command -v node >/dev/null 2>&1 || die 2 "node not found on PATH"

log "checking that the npm registry serves $pkg@$version"
if ! served="$(timeout 60 npm view "$pkg@$version" version --fetch-retries=1 \
      --fetch-timeout=30000 2>/dev/null)" || [[ "$(tr -d '[:space:]' <<<"$served")" != "$version" ]]; then
  die 3 "cannot reach the npm registry ($(npm config get registry 2>/dev/null || echo '?')) or it does not serve $pkg@$version"
fi

mkdir -p "$prefix"
log "installing $pkg@$version into $prefix (downloads the native binary, ~200 MB)"
# A private package.json keeps npm from walking up into any other project.
[[ -f "$prefix/package.json" ]] || printf '{"name":"parhelia-ci-claude","private":true}\n' > "$prefix/package.json"
if ! timeout "$npm_timeout" npm install --prefix "$prefix" --save-exact --no-audit --no-fund \
      --no-update-notifier --loglevel=warn "$pkg@$version" >&2; then
  die 4 "npm install of $pkg@$version failed (see npm output above)"
fi

current="$(installed_version)"
pkgdir="$prefix/node_modules/$pkg"
if [[ "$current" != "$version" && -f "$pkgdir/install.cjs" ]]; then
  # npm versions that gate lifecycle scripts (allowScripts) may have skipped the postinstall,
  # leaving the placeholder stub: run it explicitly (it copies the native binary into place).
  log "binary reports '${current:-nothing}', running the package's postinstall explicitly"
  (cd "$pkgdir" && timeout 300 node install.cjs >&2) || true
  current="$(installed_version)"
fi
if [[ "$current" != "$version" ]]; then
  die 4 "after install '$bin --version' reports '${current:-nothing}', expected $version (was the postinstall skipped?)"
fi
log "installed claude $version"
printf '%s\n' "$bin"
