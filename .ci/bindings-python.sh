#!/usr/bin/env bash
# The Python bindings (bindings/python): lint the extension and its Rust test peer (both are
# outside the root workspace, so the root fmt and clippy do not see them), install the
# extension the way the README says into a fresh venv, build the Rust processes that the
# cross-language tests drive, run pytest; then the same wheel on other CPython versions, and a
# short run of bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="$root/target"

python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
  python=python3
fi

for crate in bindings/python bindings/python/tests/rust-peer; do
  cargo fmt --manifest-path "$crate/Cargo.toml" --check
  cargo clippy --manifest-path "$crate/Cargo.toml" --locked --all-targets -- -D warnings
done

venv="$root/target/python-venv"
rm -rf "$venv"
"$python" -m venv "$venv"
# numpy only for the typed-bus test with a structured dtype (the package does not need it).
"$venv/bin/pip" install --quiet --disable-pip-version-check maturin pytest numpy
# The README's command: builds the wheel with maturin (abi3, Python >= 3.9) and installs it.
"$venv/bin/pip" install --quiet --disable-pip-version-check ./bindings/python

# The Rust peers of the cross-language tests: the inspector, and tests/rust-peer (typed buses).
cargo build -p shmbus-cli
cargo build --manifest-path bindings/python/tests/rust-peer/Cargo.toml --locked
export SHMBUS_CLI="$root/target/debug/shmbus" SHMBUS_RUST_PEER="$root/target/debug/rust-peer"
export SHMBUS_REQUIRE_RUST_PEERS=1
# From the tests' folder, so that `import shmbus` is the installed package.
cd bindings/python/tests
"$venv/bin/python" -m pytest -q -p no:cacheprovider .

# One abi3 wheel for every CPython >= 3.9: the same wheel's suite on the oldest and newest
# interpreters this machine has besides the default (pyenv's, where present).
cd "$root"
rm -rf "$root/target/python-wheels"
"$venv/bin/pip" wheel --quiet --disable-pip-version-check --no-deps ./bindings/python \
  -w "$root/target/python-wheels"
for v in 3.9 3.13; do
  other=""
  if command -v pyenv >/dev/null; then
    other=$(ls -d "$(pyenv root)"/versions/"$v".*/bin/"python$v" 2>/dev/null | tail -n 1 || true)
  fi
  [ -n "$other" ] || other=$(command -v "python$v" || true)
  if [ -z "$other" ] || ! "$other" -c 'import venv' 2>/dev/null; then
    echo "python$v not installed: the wheel is tested on $("$python" --version) only"
    continue
  fi
  rm -rf "$root/target/python-venv-$v"
  "$other" -m venv "$root/target/python-venv-$v"
  "$root/target/python-venv-$v/bin/pip" install --quiet --disable-pip-version-check pytest \
    "$root"/target/python-wheels/shmbus-*-abi3-*.whl
  (cd bindings/python/tests && "$root/target/python-venv-$v/bin/python" -m pytest -q -p no:cacheprovider .)
done
cd bindings/python/tests

# bench.py still runs (a few messages against the debug peer: its figures mean nothing here).
"$venv/bin/python" ../bench.py --n 2000 --trips 200 --rust "$SHMBUS_RUST_PEER" >/dev/null
