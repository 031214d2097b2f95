#!/usr/bin/env bash
# Installs grpcurl (pinned) into "$RELAY_TOOLS_DIR/bin/grpcurl" (default RELAY_TOOLS_DIR:
# ~/.cache/relay-tools) from the Go module proxy; skips when that binary is already the pinned
# version. test/observability.test.ts uses it to check that grpcurl's `list` and `describe`
# work through the relay's reflection. First build ~45 s, then cached.
set -euo pipefail
GRPCURL_VERSION="v1.9.3"
RELAY_TOOLS_DIR="${RELAY_TOOLS_DIR:-$HOME/.cache/relay-tools}"
bin="$RELAY_TOOLS_DIR/bin/grpcurl"
installed="$([[ -x "$bin" ]] && go version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }' || true)"
if [[ "$installed" != "$GRPCURL_VERSION" ]]; then
  echo "install-grpcurl: building grpcurl $GRPCURL_VERSION into $RELAY_TOOLS_DIR/bin"
  mkdir -p "$RELAY_TOOLS_DIR/bin"
  GOBIN="$RELAY_TOOLS_DIR/bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
fi
echo "install-grpcurl: $bin ($GRPCURL_VERSION)"
