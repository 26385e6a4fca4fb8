#!/usr/bin/env bash
# What the browser tests of the web console run on: Debian's Chromium
# (headless, /usr/bin/chromium) and Playwright's test runner from npm.
#
# Nothing comes from a CDN: Chromium and a font for legible screenshots are
# Debian's packages (installed with apt when missing), Playwright is the
# npm packages of tests/browser/package-lock.json, installed with `npm ci`
# into ~/.cache/sluice/browser (SLUICE_CACHE overrides the cache; npm's own
# download cache is kept there too) without Playwright's browser download
# (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: it drives the system Chromium).
# tests/browser/node_modules is a symlink to the cached node_modules, so the
# specs resolve @playwright/test. Idempotent: when Chromium is there and the
# cached lock equals the repository's, nothing touches the network.
#
# SLUICE_CHROMIUM names another Chromium binary (default: `chromium` on
# PATH). Needs Node.js 20 or newer (the machine's; Debian 12's is 18).
# Prints the Chromium and Playwright versions.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
dir="$cache/browser"
src="tests/browser"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# Debian's Chromium, and DejaVu so that text in screenshots is not tofu.
need=()
chromium="${SLUICE_CHROMIUM:-$(command -v chromium || true)}"
[ -n "$chromium" ] || need+=(chromium)
installed fonts-dejavu-core || need+=(fonts-dejavu-core)
if [ "${#need[@]}" -gt 0 ]; then
  echo "browser: installing ${need[*]} (Debian)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
  chromium="${SLUICE_CHROMIUM:-$(command -v chromium)}"
fi
if [ ! -x "$chromium" ]; then
  echo "browser: Chromium $chromium is not an executable (SLUICE_CHROMIUM?)" >&2
  exit 1
fi

# Playwright 1.65 needs Node.js 20+; npm ci would only warn on an older one.
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "browser: Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# The npm packages, reinstalled only when the lock changed. The stamp is a
# copy of the lock written after a complete `npm ci`, so an interrupted
# install is redone.
if ! cmp -s "$src/package-lock.json" "$dir/.installed-lock" || [ ! -d "$dir/node_modules" ]; then
  echo "browser: npm ci into $dir"
  mkdir -p "$dir"
  rm -f "$dir/.installed-lock"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
    --prefer-offline --cache "$cache/npm" --loglevel=error)
  cp "$src/package-lock.json" "$dir/.installed-lock"
fi

# tests/browser/node_modules -> the cached one (a real directory there, from
# an `npm install` by hand, is replaced: it is generated and ignored by git).
link="$src/node_modules"
if [ "$(readlink "$link" 2>/dev/null)" != "$dir/node_modules" ]; then
  if [ -e "$link" ] && [ ! -L "$link" ]; then rm -rf "$link"; fi
  ln -sfn "$dir/node_modules" "$link"
fi

echo "browser: $("$chromium" --version 2>/dev/null) ($chromium)"
# The installed package's own version (`playwright --version` would start
# Node.js, 0.7 s).
pw_version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$dir/node_modules/@playwright/test/package.json" | head -n1)"
echo "browser: Playwright $pw_version ($dir/node_modules)"
