#!/usr/bin/env bash
# Measure the compile-time cost of `#[differentiable]` on one example or test target.
#
# Usage:
#   benches/macro_cost.sh [--example NAME | --test NAME] [--runs N]
#   (default: --example smoke --runs 5)
#
# Reports, for the target as written and for a copy with every `#[differentiable]`
# (and `#[no_grad]`) attribute removed:
#   - `expand_crate` time from `rustc -Z time-passes` (min and median over N runs),
#     and the `total` front-end time of a `--profile=check` build;
#   - the line count of `rustc -Z unpretty=expanded` output;
# and, per differentiable function (from the expanded output):
#   source lines, expanded lines (the function and its derivative module) and expanded
#   lines per source line.
#
# The stripped copy does not compile past name resolution (`grad!(f)` names items that
# only the attribute generates); that is fine, `expand_crate` is timed before that.
# Both variants are compiled from one scratch crate in a temporary directory, so the
# repository is never modified. Needs a stable toolchain (uses RUSTC_BOOTSTRAP=1),
# `rustfmt`, and the registry crates already in Cargo.lock (no network needed when
# they are cached). Set CARGO_TARGET_DIR to reuse a build directory
# (default: /work/target-bench). KEEP=1 keeps the scratch directory (printed) for inspection.
set -euo pipefail

kind=example
name=smoke
runs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --example) kind=example; name="$2"; shift 2 ;;
        --test) kind=test; name="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
export RUSTC_BOOTSTRAP=1
# Incremental compilation would replay type checking from its cache after `touch`.
export CARGO_INCREMENTAL=0
dir="${kind}s"          # examples / tests
src="$repo/$dir/$name.rs"
[ -f "$src" ] || { echo "no such file: $src" >&2; exit 2; }

work="$(mktemp -d /tmp/macro_cost.XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# --- scratch crate: the target as `orig`, the attribute-free copy as `stripped` -------
mkdir -p "$work/src" "$work/$dir"
echo "" > "$work/src/lib.rs"
{
    echo '[package]'
    echo 'name = "macro_cost_scratch"'
    echo 'version = "0.0.0"'
    echo 'edition = "2021"'
    echo 'publish = false'
    echo '[workspace]'
    echo '[dependencies]'
    echo "adjoint = { path = \"$repo\" }"
    # The repository's dev-dependencies (tests may use them), as plain dependencies.
    awk '/^\[dev-dependencies\]/{on=1; next} /^\[/{on=0} on && NF' "$repo/Cargo.toml"
} > "$work/Cargo.toml"
cp "$repo/Cargo.lock" "$work/Cargo.lock" 2>/dev/null || true
# Test targets may share modules (`mod common;`): copy the sub-directories too.
for d in "$repo/$dir"/*/; do
    [ -d "$d" ] && cp -r "$d" "$work/$dir/"
done
cp "$src" "$work/$dir/orig.rs"
sed -E -e '/^[[:space:]]*#\[differentiable(\(.*\))?\][[:space:]]*$/d' \
    -e 's/#\[differentiable(\([^]]*\))?\][[:space:]]*//g' \
    -e 's/#\[no_grad\][[:space:]]*//g' \
    "$src" > "$work/$dir/stripped.rs"

cd "$work"
flag="--$kind"
[ -n "${KEEP:-}" ] && echo "scratch crate: $work"
echo "target: $dir/$name.rs ($(wc -l < "$src") lines, $(grep -c '#\[differentiable' "$src") #[differentiable] items)"
echo "warming up (builds dependencies once) ..."
cargo check -q "$flag" orig 2>/dev/null || cargo check "$flag" orig

# time-passes line: "time:   0.173; rss: ...	expand_crate"
pass_time() { awk -v p="$2" '$NF == p { gsub(";", "", $2); print $2; exit }' "$1"; }
stats() { sort -g | awk '{ v[NR] = $1 } END { printf "min %.3f s  median %.3f s", v[1], v[int((NR + 1) / 2)] }'; }

measure() { # $1 = orig|stripped
    : > "$work/expand.$1"
    : > "$work/total.$1"
    : > "$work/typeck.$1"
    : > "$work/borrowck.$1"
    for _ in $(seq "$runs"); do
        touch "$dir/$1.rs"
        cargo rustc -q "$flag" "$1" --profile=check -- -Z time-passes > "$work/tp.$1" 2>&1 || true
        pass_time "$work/tp.$1" expand_crate >> "$work/expand.$1"
        pass_time "$work/tp.$1" total >> "$work/total.$1"
        pass_time "$work/tp.$1" type_check_crate >> "$work/typeck.$1"
        pass_time "$work/tp.$1" MIR_borrow_checking >> "$work/borrowck.$1"
    done
    touch "$dir/$1.rs"
    cargo rustc -q "$flag" "$1" --profile=check -- -Z unpretty=expanded > "$work/expanded.$1.rs" 2>/dev/null || true
}

measure orig
measure stripped

lines_orig=$(wc -l < "$work/expanded.orig.rs")
lines_stripped=$(wc -l < "$work/expanded.stripped.rs")
src_lines=$(wc -l < "$src")
echo
echo "== whole target ($runs runs each) =="
printf '%-34s %s\n' "expand_crate, with attribute:" "$(stats < "$work/expand.orig")"
printf '%-34s %s\n' "expand_crate, attribute removed:" "$(stats < "$work/expand.stripped")"
printf '%-34s %s\n' "total check time, with attribute:" "$(stats < "$work/total.orig")"
printf '%-34s %s\n' "  of which type_check_crate:" "$(stats < "$work/typeck.orig")"
printf '%-34s %s\n' "  of which MIR_borrow_checking:" "$(stats < "$work/borrowck.orig")"
printf '%-34s %s\n' "expanded lines, with attribute:" "$lines_orig"
printf '%-34s %s\n' "expanded lines, attribute removed:" "$lines_stripped"
awk -v a="$lines_orig" -v b="$lines_stripped" -v s="$src_lines" 'BEGIN {
    printf "%-34s %d source lines -> %.1f expanded lines per source line (%.1f net of the stripped copy)\n",
        "ratio:", s, a / s, (a - b) / s }'

# --- per function: from the expanded output ---------------------------------------------
# A differentiable `fn NAME` expands to the function itself and a `mod NAME { … }` holding
# its derivatives and companions; both are counted (lines as `-Z unpretty` prints them).
echo
echo "== per #[differentiable] function (expanded as -Z unpretty prints it, largest first) =="
printf '%-24s %8s %10s %10s\n' function src_lines expanded per_line
grep -A3 '#\[differentiable' "$src" | grep -oE 'fn[[:space:]]+[A-Za-z_][A-Za-z0-9_]*' | awk '{ print $2 }' | sort -u |
while read -r fn; do
    # Lines from a header to its matching closing brace, summed over the function and module.
    block_lines() { # $1 = file, $2 = header regex
        awk -v re="$2" '
            !on && $0 ~ re { on = 1 }
            on { n++; o = gsub(/\{/, "{"); c = gsub(/\}/, "}"); d += o - c; if (o) seen = 1
                 if (seen && d == 0) { total += n; n = 0; on = 0; seen = 0 } }
            END { print total + 0 }' "$1"
    }
    sl=$(block_lines "$src" "fn[[:space:]]+$fn[[:space:]]*[(<]")
    e1=$(block_lines "$work/expanded.orig.rs" "^[[:space:]]*(pub )?fn[[:space:]]+$fn[[:space:]]*[(<]")
    e2=$(block_lines "$work/expanded.orig.rs" "^[[:space:]]*(pub )?mod[[:space:]]+$fn[[:space:]]*\\{")
    exp=$((e1 + e2))
    awk -v fn="$fn" -v s="$sl" -v e="$exp" 'BEGIN {
        printf "%-24s %8d %10d %10s\n", fn, s, e, (s > 0 ? sprintf("%.0f", e / s) : "-") }'
done | sort -k3 -n -r
