#!/usr/bin/env bash
# The library's docs built as docs.rs builds them (Cargo.toml, [package.metadata.docs.rs]): every
# feature on, `--cfg docsrs`, nightly rustdoc. Fails on a rustdoc warning (a broken intra-doc
# link) and if the feature-gated API is missing from the pages or not marked with its feature.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${DOCS_TARGET_DIR:-target/docsrs}"
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc -p shmbus --all-features --no-deps
page="$CARGO_TARGET_DIR/doc/shmbus/bus/struct.Subscriber.html"
grep -q 'recv_async' "$page" || { echo "docs: Subscriber::recv_async is missing from $page" >&2; exit 1; }
grep -q 'feature <code>tokio</code>' "$page" \
  || { echo "docs: recv_async is not marked as needing the tokio feature in $page" >&2; exit 1; }
echo "docs: recv_async documented and marked with its feature"
