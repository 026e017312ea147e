#!/usr/bin/env bash
# Install the pinned MCP Inspector (@modelcontextprotocol/inspector) into .ci/cache/inspector/.
#
# - The version comes from .ci/inspector-version (one line, e.g. 2.12.0).
# - Idempotent: if the installed launcher already reports that version, nothing is downloaded.
# - Only its command-line mode is used (`inspector --cli CMD ARGS --method ...`), by
#   tests/integration/cli/test_mcp_server.py; install scripts are skipped (they only build the web UI).
# - npm may warn that the package wants a newer Node.js than the machine's: the CLI mode
#   is checked to run on it after the install (`--version`).
#
# On success the absolute path of the `inspector` launcher is the only thing printed on
# stdout (progress goes to stderr), so callers can do: INSPECTOR="$(.ci/install-inspector.sh)".
# Exit codes: 0 ok, 2 npm/node missing, 3 registry unreachable, 4 install failed or wrong version.
#
# Environment overrides: PARHELIA_INSPECTOR_CACHE (install prefix), NPM_TIMEOUT_S (default 600).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
version="$(tr -d '[:space:]' < "$here/inspector-version")"
pkg="@modelcontextprotocol/inspector"
prefix="${PARHELIA_INSPECTOR_CACHE:-$root/.ci/cache/inspector}"
bin="$prefix/node_modules/.bin/inspector"
npm_timeout="${NPM_TIMEOUT_S:-600}"
# The launcher writes nothing to HOME for --version, but keep it out of the real home anyway.
scratch_home="$(mktemp -d)"
trap 'rm -rf "$scratch_home"' EXIT

log() { printf 'install-inspector: %s\n' "$*" >&2; }
die() { local code="$1"; shift; log "ERROR: $*"; exit "$code"; }

[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die 4 "bad version in $here/inspector-version: '$version'"

installed_version() {
  # Prints the version reported by the installed launcher, or nothing.
  [[ -x "$bin" ]] || return 0
  HOME="$scratch_home" timeout 60 "$bin" --version 2>/dev/null | awk 'NR==1 {print $1}' || true
}

current="$(installed_version)"
if [[ "$current" == "$version" ]]; then
  log "MCP Inspector $version already installed"
  printf '%s\n' "$bin"
  exit 0
fi
[[ -n "$current" ]] && log "found MCP Inspector '$current' in $prefix, replacing it with $version"

command -v npm >/dev/null 2>&1 || die 2 "npm not found on PATH (install Node.js and npm)"
command -v node >/dev/null 2>&1 || die 2 "node not found on PATH"

log "checking that the npm registry serves $pkg@$version"
if ! served="$(timeout 60 npm view "$pkg@$version" version --fetch-retries=1 \
      --fetch-timeout=30000 2>/dev/null)" || [[ "$(tr -d '[:space:]' <<<"$served")" != "$version" ]]; then
  die 3 "cannot reach the npm registry ($(npm config get registry 2>/dev/null || echo '?')) or it does not serve $pkg@$version"
fi

mkdir -p "$prefix"
log "installing $pkg@$version into $prefix"
# A private package.json keeps npm from walking up into any other project.
[[ -f "$prefix/package.json" ]] || printf '{"name":"parhelia-ci-inspector","private":true}\n' > "$prefix/package.json"
if ! HOME="$scratch_home" timeout "$npm_timeout" npm install --prefix "$prefix" --save-exact \
      --no-audit --no-fund --no-update-notifier --ignore-scripts --loglevel=error \
      --cache "$prefix/.npm-cache" "$pkg@$version" >&2; then
  die 4 "npm install of $pkg@$version failed (see npm output above)"
fi

current="$(installed_version)"
if [[ "$current" != "$version" ]]; then
  die 4 "after install '$bin --version' reports '${current:-nothing}', expected $version (node $(node --version) may be too old for it)"
fi
log "installed MCP Inspector $version"
printf '%s\n' "$bin"
