#!/usr/bin/env bash
# A headless browser for the portal's tests: Chromium and its WebDriver from Debian's
# packages (never a browser download). Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "browser ok: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"
