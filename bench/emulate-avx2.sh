#!/usr/bin/env bash
# Runs Distillery as on an AVX2-only x86-64 CPU, on any x86-64 machine: QEMU's user-mode emulation of an AMD EPYC-Milan
# (Zen 3: AVX2 and FMA; no AVX-512, no VNNI, no bf16), the CPU issue 12 was filed on. CPUID answers as that CPU, so ONNX
# Runtime's MLAS and libtorch dispatch to their AVX2 kernels (MLAS's u8s8 int8 GEMM: vpmaddubsw, int16 saturation) and
# QEMU executes them instruction by instruction; Distillery's CpuFeatures reads the same CPUID. What it is good for:
# the exactness and accuracy of int8 graphs on such a CPU (the arithmetic is the CPU's, emulated). What it is not good
# for: any timing (emulation is 10-100x slower, and not the same way for every kernel).
#
#   bench/emulate-avx2.sh --tests 'FullyQualifiedName~OnnxExportTests'   # dotnet test; the test host is emulated
#   bench/emulate-avx2.sh /tmp/distillery-abc1234/Distillery.Cli quantize --model M --mode dynamic --out x.onnx --check ...
#   bench/emulate-avx2.sh /tmp/cpuid-probe                                 # any x86-64 ELF program
#
# The program must be an ELF executable (the published CLI's Distillery.Cli, not the ./distillery wrapper script): QEMU
# emulates one process, and programs it starts run natively. --tests builds nothing: run `dotnet build tests/Distillery.Tests`
# first. Needs qemu-user 7.2 or later (AVX2 in TCG): apt-get install qemu-user. EMULATED_CPU picks another QEMU CPU
# model (qemu-x86_64 -cpu help), e.g. Haswell-v4 or Skylake-Client-v4.
# Known flake: QEMU 7.2's user mode sometimes stops a .NET process at start-up with "uncaught target signal 11" (within
# ~10 s, before any output); the same command run again gets through (seen 3 times in 5 starts on 2026-12-03).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CPU="${EMULATED_CPU:-EPYC-Milan}"
command -v qemu-x86_64 >/dev/null || { echo "emulate-avx2.sh: qemu-x86_64 not found (apt-get install qemu-user)" >&2; exit 1; }
[[ $# -ge 1 ]] || { sed -n '2,18p' "$0" >&2; exit 2; }
# The .NET runtime maps its JIT's code pages twice (write, execute); QEMU's user mode does not emulate that double
# mapping, so it is turned off for the emulated process.
export DOTNET_EnableWriteXorExecute=0

if [[ "$1" == --tests ]]; then
  # vstest starts the test host with RunConfiguration.DotNetHostPath as its `dotnet`; this script, called with
  # EMULATE_AVX2_AS_DOTNET=1, is that host. The outer `dotnet test` (discovery, reporting) runs natively.
  filter="${2:?emulate-avx2.sh --tests FILTER}"
  cd "$root"
  EMULATE_AVX2_AS_DOTNET=1 exec dotnet test tests/Distillery.Tests --no-build --filter "$filter" --logger 'console;verbosity=detailed' \
    -- RunConfiguration.DotNetHostPath="$root/bench/emulate-avx2.sh"
fi
if [[ "${EMULATE_AVX2_AS_DOTNET:-}" == 1 ]]; then
  set -- "$(readlink -f "$(command -v dotnet)")" "$@"
fi
program="$(command -v "$1")" || { echo "emulate-avx2.sh: $1: no such program" >&2; exit 1; }
head -c 4 "$program" | grep -q $'\x7fELF' || { echo "emulate-avx2.sh: $1 is not an ELF executable (QEMU runs one process; pass the published Distillery.Cli, not a script)" >&2; exit 1; }
# QEMU warns once per CPUID feature of the model that its TCG lacks (pcid, rdseed, sha-ni, ...): none is used here.
exec qemu-x86_64 -cpu "$CPU" "$program" "${@:2}" 2> >(grep -v "TCG doesn't support requested feature" >&2)
