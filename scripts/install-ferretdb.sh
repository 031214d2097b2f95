#!/usr/bin/env bash
# Installs FerretDB (the MongoDB wire-protocol server the integration tests run against) into
# "$RELAY_TOOLS_DIR/bin/ferretdb" (default RELAY_TOOLS_DIR: $HOME/.cache/relay-tools).
# Skips the build when that binary already reports the pinned version, so CI can cache the dir.
#
# Why not plain `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`:
# the resulting binary panics at start-up on every invocation ("Invalid build/version/version.txt
# file content. Please run `bin/task gen-version`"). FerretDB embeds build/version/version.txt,
# which its release tooling generates and the module zip does not contain, and `go install
# pkg@version` makes github.com/FerretDB/FerretDB the main module, which turns the missing file
# into a panic. So this script fetches the same module source from the Go module proxy
# (`go mod download`), copies it to a scratch dir, writes version.txt, and builds cmd/ferretdb
# from there. Same source, same go.sum, a binary that runs and reports `version: v1.24.2`.
set -euo pipefail

FERRETDB_VERSION="v1.24.2"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"

RELAY_TOOLS_DIR="${RELAY_TOOLS_DIR:-$HOME/.cache/relay-tools}"
bin_dir="$RELAY_TOOLS_DIR/bin"
bin="$bin_dir/ferretdb"

installed_version() {
  # Prints e.g. "v1.24.2", or nothing if the binary is missing or broken.
  [[ -x "$bin" ]] || return 0
  "$bin" --version 2>/dev/null | awk '$1 == "version:" { print $2 }' || true
}

if [[ "$(installed_version)" == "$FERRETDB_VERSION" ]]; then
  echo "install-ferretdb: $bin is already $FERRETDB_VERSION (cached), skipping build"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "install-ferretdb: 'go' is not on PATH; FerretDB $FERRETDB_VERSION is built from source with Go >= 1.24" >&2
  exit 1
fi

echo "install-ferretdb: building FerretDB $FERRETDB_VERSION into $bin_dir (first run takes ~1.5 min)"
start=$SECONDS

# 1. Module source, verified against the checksum database like `go install` would.
src="$(go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" | awk -F'"' '$2 == "Dir" { print $4 }')"
if [[ -z "$src" || ! -f "$src/go.mod" ]]; then
  echo "install-ferretdb: go mod download did not report a source dir for $FERRETDB_MODULE@$FERRETDB_VERSION" >&2
  exit 1
fi

# 2. Writable copy with the version file FerretDB's release tooling would generate.
work="$(mktemp -d "${TMPDIR:-/tmp}/ferretdb-build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -R "$src/." "$work/"
chmod -R u+w "$work"
printf '%s\n' "$FERRETDB_VERSION" > "$work/build/version/version.txt"

# 3. Build (the module's own go.mod/go.sum; no VCS stamping in a scratch copy).
mkdir -p "$bin_dir"
(
  cd "$work"
  GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false -mod=readonly" \
    go build -trimpath -o "$bin_dir/ferretdb.tmp" ./cmd/ferretdb
)
mv -f "$bin_dir/ferretdb.tmp" "$bin"

got="$(installed_version)"
if [[ "$got" != "$FERRETDB_VERSION" ]]; then
  echo "install-ferretdb: built $bin but '--version' reports '${got:-nothing}', expected $FERRETDB_VERSION" >&2
  exit 1
fi
echo "install-ferretdb: installed $bin ($got) in $((SECONDS - start)) s"
