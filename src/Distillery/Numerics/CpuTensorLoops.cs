// Element loops over CPU tensors' memory in C#: where one fused pass beats several libtorch ops (FastDropout's mask,
// AdamW's update). Shared so both take a tensor's address and split their work the same way.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Distillery.Numerics;

internal static class CpuTensorLoops
{
    /// <summary>The address of a contiguous CPU tensor's first element (the tensor must outlive every use of it).</summary>
    public static unsafe nint Address(Tensor t)
    {
        using var flat = t.view(-1);
        using var first = flat.narrow(0, 0, 1);                          // a one-element view: its span starts where t does
        return (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>
    /// <paramref name="body"/>(begin, end) over [0, <paramref name="n"/>) in fixed chunks of <paramref name="chunk"/>
    /// elements (so results never depend on the thread count), on torch's threads; a single chunk runs on the caller.
    /// </summary>
    public static void ForChunks(long n, long chunk, Action<long, long> body)
    {
        long chunks = (n + chunk - 1) / chunk;
        if (chunks < 2) { if (n > 0) body(0, n); return; }
        Parallel.For(0L, chunks, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, get_num_threads()) },
            c => body(c * chunk, Math.Min(n, (c + 1) * chunk)));
    }
}
