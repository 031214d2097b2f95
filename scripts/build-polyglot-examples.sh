#!/usr/bin/env bash
# Builds the Go and Python relay peers in examples/ from proto/ with buf and local plugins:
#   - Go: protoc-gen-go and protoc-gen-connect-go (`go install`, pinned) into $RELAY_TOOLS_DIR/bin;
#     the peer binary is built to examples/go/relay-go-peer.
#   - Python: grpcio-tools, grpcio and cryptography (pinned in examples/python/requirements.txt)
#     in the venv $RELAY_TOOLS_DIR/python.
# Then regenerates examples/go/gen and examples/python/gen (buf.gen.go.yaml, buf.gen.python.yaml).
# Tools are reused when already at the pinned versions, so CI can cache $RELAY_TOOLS_DIR
# (default ~/.cache/relay-tools). Needs Go, Python 3 with venv, and the Go module proxy and PyPI.
#
# test/polyglot.test.ts runs this, then runs both peers against a real relay. To run a peer by hand:
#   bash scripts/build-polyglot-examples.sh
#   examples/go/relay-go-peer -relay https://127.0.0.1:8443 -ca .data/relay-cert.pem -lookup someone@example.com
#   ~/.cache/relay-tools/python/bin/python examples/python/relay_peer.py --ca .data/relay-cert.pem --lookup someone@example.com
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
RELAY_TOOLS_DIR="${RELAY_TOOLS_DIR:-$HOME/.cache/relay-tools}"
bin_dir="$RELAY_TOOLS_DIR/bin"
venv="$RELAY_TOOLS_DIR/python"
PROTOBUF_GO_VERSION="v1.36.12"
CONNECT_GO_VERSION="v1.21.1"
start=$SECONDS

# --- Go plugins --------------------------------------------------------------------------------
mkdir -p "$bin_dir"
go_tool_version() { # prints the module version a Go binary was built from, or nothing
  [[ -x "$1" ]] && go version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }' || true
}
if [[ "$(go_tool_version "$bin_dir/protoc-gen-go")" != "$PROTOBUF_GO_VERSION" ]]; then
  echo "build-polyglot-examples: installing protoc-gen-go $PROTOBUF_GO_VERSION"
  GOBIN="$bin_dir" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOBUF_GO_VERSION"
fi
if [[ "$(go_tool_version "$bin_dir/protoc-gen-connect-go")" != "$CONNECT_GO_VERSION" ]]; then
  echo "build-polyglot-examples: installing protoc-gen-connect-go $CONNECT_GO_VERSION"
  GOBIN="$bin_dir" go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@$CONNECT_GO_VERSION"
fi

# --- Python venv -------------------------------------------------------------------------------
requirements="examples/python/requirements.txt"
stamp="$venv/.relay-requirements"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$stamp"; then
  echo "build-polyglot-examples: installing $requirements into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# --- generate and build ------------------------------------------------------------------------
PATH="$bin_dir:$PATH" npx --no-install buf generate --template buf.gen.go.yaml
PATH="$venv/bin:$PATH" npx --no-install buf generate --template buf.gen.python.yaml
(cd examples/go && go build -o relay-go-peer .)
"$venv/bin/python" -c 'import sys; sys.path.insert(0, "examples/python/gen"); import relay.v1.relay_pb2_grpc'

echo "build-polyglot-examples: ready in $((SECONDS - start)) s (go: examples/go/relay-go-peer, python: $venv/bin/python)"
