#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install a build of nxc to a temporary prefix and use it from outside the
# tree, as a user would: a program built with pkg-config and one built with
# find_package(nxc), both run; the installed tools run with no library path
# set, before and after the prefix is moved elsewhere. Fails on any broken
# piece. Run by ctest (the `install` test) with:
#   test_install.sh --build DIR --source DIR --cmake CMAKE --cc CC --version V
#                   --libdir D --bindir D --includedir D --docdir D
#                   --lib shared|static [--tools] [--flags "FLAGS"]
# FLAGS (the sanitizer flags of an ASan build) go to every compile and link.
set -euo pipefail

build="" source="" cmake=cmake cc=cc version="" libdir="" bindir="" includedir="" docdir=""
lib=shared tools=0 flags=""
while (($#)); do
  case "$1" in
    --build) build=$2; shift ;;
    --source) source=$2; shift ;;
    --cmake) cmake=$2; shift ;;
    --cc) cc=$2; shift ;;
    --version) version=$2; shift ;;
    --libdir) libdir=$2; shift ;;
    --bindir) bindir=$2; shift ;;
    --includedir) includedir=$2; shift ;;
    --docdir) docdir=$2; shift ;;
    --lib) lib=$2; shift ;;
    --tools) tools=1 ;;
    --flags) flags=$2; shift ;;
    *) echo "test_install: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
for v in build source version libdir bindir includedir docdir; do
  [ -n "${!v}" ] || { echo "test_install: --$v missing" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)

tmp=$(mktemp -d /tmp/nxc-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
step() { echo "== $*"; }
# Run a command with no library search path from the environment.
bare() { env -u LD_LIBRARY_PATH -u LD_PRELOAD "$@"; }
# Whether program $1 loads libnxc from directory $2 (shared builds).
loads_nxc_from() {
  local so
  so=$(bare ldd "$1" | awk '$1 ~ /^libnxc\.so/ {print $3}')
  [ -n "$so" ] && [ "$(dirname "$(realpath "$so")")" = "$(realpath "$2")" ]
}

step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; echo "FAIL: install" >&2; exit 1; }

step "installed files"
expect=(
  "$includedir/nxc/nxc.h" "$includedir/nxc/nxc_version.h"
  "$libdir/pkgconfig/nxc.pc"
  "$libdir/cmake/nxc/nxcConfig.cmake" "$libdir/cmake/nxc/nxcConfigVersion.cmake"
  "$libdir/cmake/nxc/nxcTargets.cmake"
  "$docdir/README.md" "$docdir/LICENSE" "$docdir/docs/metadata.md"
)
if [ "$lib" = shared ]; then expect+=("$libdir/libnxc.so"); else expect+=("$libdir/libnxc.a"); fi
((tools)) && expect+=("$bindir/nxc-bench" "$bindir/nxc-info")
for f in "${expect[@]}"; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
grep -q "NXC_VERSION_STRING \"$version\"" "$prefix/$includedir/nxc/nxc_version.h" ||
  fail "nxc_version.h does not say $version"

step "no build or source paths in the installed headers, .pc and CMake files"
for p in "$source" "$build"; do
  if grep -rlF "$p" "$prefix/$includedir" "$prefix/$libdir/pkgconfig" "$prefix/$libdir/cmake"; then
    fail "the files above name $p"
  fi
done

step "pkg-config"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pcargs=(--cflags --libs)
[ "$lib" = static ] && pcargs+=(--static)
if ! pkg-config --exists --print-errors nxc; then
  fail "pkg-config does not find nxc"
elif [ "$(pkg-config --modversion nxc)" != "$version" ]; then
  fail "pkg-config says nxc $(pkg-config --modversion nxc), not $version"
else
  pc=$(pkg-config "${pcargs[@]}" nxc)
  echo "pkg-config ${pcargs[*]} nxc: $pc"
  # shellcheck disable=SC2086 # word splitting of flags is intended
  if $cc -std=c11 -Wall -Wextra -Wpedantic -Werror $flags -o "$tmp/consumer-pc" \
    "$here/consumer/consumer.c" $pc -Wl,-rpath,"$prefix/$libdir"; then
    bare "$tmp/consumer-pc" || fail "the pkg-config consumer failed"
    if [ "$lib" = shared ] && ! loads_nxc_from "$tmp/consumer-pc" "$prefix/$libdir"; then
      fail "the pkg-config consumer does not load libnxc from $prefix"
    fi
  else
    fail "the pkg-config consumer does not build"
  fi
fi

step "find_package(nxc)"
if "$cmake" -S "$here/consumer" -B "$tmp/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  -DNXC_EXPECTED_VERSION="$version" -DNXC_EXPECTED_PREFIX="$prefix" \
  -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON >"$tmp/consumer-cmake.log" 2>&1 &&
  "$cmake" --build "$tmp/consumer-build" >>"$tmp/consumer-cmake.log" 2>&1; then
  bare "$tmp/consumer-build/consumer" || fail "the find_package consumer failed"
else
  cat "$tmp/consumer-cmake.log" >&2
  fail "the find_package consumer does not configure or build"
fi

# The tools find libnxc through their $ORIGIN-relative RUNPATH, wherever the
# prefix is.
run_tools() {
  local at=$1 t
  for t in nxc-bench nxc-info; do
    # shellcheck disable=SC2016 # a literal $ORIGIN
    if ! readelf -d "$at/$bindir/$t" | grep -E 'R(UN)?PATH' | grep -qF '$ORIGIN'; then
      fail "$t has no \$ORIGIN-relative RUNPATH"
    fi
  done
  if [ "$lib" = shared ] && ! loads_nxc_from "$at/$bindir/nxc-bench" "$at/$libdir"; then
    fail "nxc-bench in $at does not load libnxc from $at"
  fi
  bare "$at/$bindir/nxc-bench" --help >"$tmp/bench-help.log" 2>&1 ||
    { cat "$tmp/bench-help.log" >&2; fail "nxc-bench --help (in $at) failed"; }
  bare "$at/$bindir/nxc-info" >"$tmp/info.log" 2>&1 ||
    { cat "$tmp/info.log" >&2; fail "nxc-info (in $at) failed"; }
  grep -qF "$version" "$tmp/info.log" || fail "nxc-info (in $at) does not name version $version"
}
if ((tools)); then
  step "installed tools"
  run_tools "$prefix"
fi

step "prefix moved"
mv "$prefix" "$tmp/moved"
PKG_CONFIG_PATH=$tmp/moved/$libdir/pkgconfig pkg-config --cflags nxc | grep -qF -- "-I$tmp/moved/" ||
  fail "nxc.pc does not follow the moved prefix"
((tools)) && run_tools "$tmp/moved"

if ((failures)); then
  echo "test_install: $failures failures" >&2
  exit 1
fi
echo "test_install: passed"
