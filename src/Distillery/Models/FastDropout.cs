// Dropout whose keep-mask is drawn in parallel by a counter-based generator instead of libtorch's CPU bernoulli_.
//
// Why: libtorch draws dropout masks on the CPU from one mt19937 stream, serially, on one core. An L6-H384 fine-tuning
// step at batch 32 x 128 draws ~58M of them (attention probabilities [B, h, T, T] = 6.3M per layer, hidden states
// [B, T, H] = 1.6M twice per layer and after the embeddings), and Distillery.Bench's train-step measured 1.31 s of a
// 3.46 s step going to dropout (docs/results.md, issue 16). The arithmetic
// here is torch.nn.Dropout's (inverted dropout: y = x · m, m = 1/(1−p) with probability 1−p, else 0; ∂y/∂x = m through
// autograd), only the random numbers come from elsewhere: element i keeps iff its 32-bit draw u_i ≥ round(p · 2³²),
// where (u_2j, u_2j+1) are the two halves of SplitMix64(seed + (j+1) · γ) and the seed is one int64 drawn from torch's
// default generator per call, so `torch.manual_seed` (and the trainer's saved generator state on --resume) still
// determines every mask, and the result does not depend on the thread count (each element's draw depends only on its
// index). SplitMix64 is Steele, Lea & Flood's generator (OOPSLA 2014; the output function of java.util.SplittableRandom).
using System.Runtime.Intrinsics;
using Distillery.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>
/// Inverted dropout as <c>torch.nn.Dropout(p)</c> (identity in eval mode; in training, each element zeroed with
/// probability p and the others scaled by 1/(1−p)), with the keep-mask of CPU tensors drawn by
/// <see cref="Mask"/> in parallel. Other devices use libtorch's own dropout.
/// </summary>
public sealed class FastDropout : nn.Module<Tensor, Tensor>
{
    /// <summary>Elements per parallel work item: fixed, so the chunking never depends on the thread count.</summary>
    private const long ChunkElements = 1 << 16;
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>A dropout layer with drop probability <paramref name="p"/> in [0, 1].</summary>
    public FastDropout(double p) : base("Dropout")
    {
        if (p is < 0 or > 1 || double.IsNaN(p)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1]");
        Probability = p;
    }

    /// <summary>The probability of zeroing an element.</summary>
    public double Probability { get; }

    public override Tensor forward(Tensor input) => training ? Apply(input, Probability) : input;

    /// <summary>Dropout of <paramref name="input"/> with probability <paramref name="p"/> (training-mode behaviour).</summary>
    public static Tensor Apply(Tensor input, double p)
    {
        if (p == 0) return input;
        if (p >= 1) return input * 0;                                        // keeps the autograd graph, as torch does
        if (input.device_type != DeviceType.CPU || input.numel() == 0) return nn.functional.dropout(input, p, training: true);
        using var mask = Mask(input.shape, p);
        return input * (input.dtype == ScalarType.Float32 ? mask : mask.to(input.dtype));
    }

    /// <summary>
    /// The scaled keep-mask [<paramref name="shape"/>] float32: 1/(1−p) where kept, 0 where dropped; one int64 from
    /// torch's default generator seeds it.
    /// </summary>
    public static unsafe Tensor Mask(long[] shape, double p)
    {
        if (p is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "mask probability must be in (0, 1)");
        ulong seed = (ulong)randint(0, long.MaxValue, [1], dtype: ScalarType.Int64).item<long>();
        uint threshold = (uint)Math.Min(uint.MaxValue, Math.Round(p * 4294967296.0));
        float scale = (float)(1.0 / (1.0 - p));
        var mask = empty(shape, ScalarType.Float32);
        long n = mask.numel();
        if (n == 0) return mask;
        nint basePointer = CpuTensorLoops.Address(mask);
        CpuTensorLoops.ForChunks(n, ChunkElements, (begin, end) => Fill(basePointer, begin, end, seed, threshold, scale));
        return mask;
    }

    /// <summary>
    /// Writes elements [<paramref name="begin"/>, <paramref name="end"/>) of the mask; begin is even. The vector loops
    /// compute the same draws as the scalar one, 8 (or 4) SplitMix64 states at a time: the 64-bit state j holds the
    /// draws of elements 2j (low half) and 2j+1 (high half), so reading the states as uint32 lanes gives the draws in
    /// element order, and the counter advances by adding lanes·γ instead of multiplying (the scalar loop spends two 64-bit
    /// multiplies and a data-dependent branch per pair; with AVX2 alone .NET emulates the 64-bit lane multiply and the
    /// vector loop still wins). `Distillery.Bench mask-fill` times both loops (results.md, issue 16).
    /// </summary>
    internal static unsafe void Fill(nint basePointer, long begin, long end, ulong seed, uint threshold, float scale, bool vectorise = true)
    {
        float* mask = (float*)basePointer;
        long i = begin;
        if (vectorise && Vector512.IsHardwareAccelerated)               // vectorise: false times the scalar loop alone (Distillery.Bench mask-fill)
        {
            var z = Vector512.Create(seed) + (Vector512.Create((ulong)(begin / 2 + 1)) + Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7)) * Gamma;
            var step = Vector512.Create(unchecked(8 * Gamma));
            var limit = Vector512.Create(threshold);
            var kept = Vector512.Create(scale);
            for (; i + 16 <= end; i += 16, z += step)
            {
                var x = (z ^ Vector512.ShiftRightLogical(z, 30)) * 0xBF58476D1CE4E5B9UL;
                x = (x ^ Vector512.ShiftRightLogical(x, 27)) * 0x94D049BB133111EBUL;
                x ^= Vector512.ShiftRightLogical(x, 31);
                (Vector512.GreaterThanOrEqual(x.AsUInt32(), limit).AsSingle() & kept).Store(mask + i);   // 16 elements
            }
        }
        else if (vectorise && Vector256.IsHardwareAccelerated)
        {
            var z = Vector256.Create(seed) + (Vector256.Create((ulong)(begin / 2 + 1)) + Vector256.Create(0UL, 1, 2, 3)) * Gamma;
            var step = Vector256.Create(unchecked(4 * Gamma));
            var limit = Vector256.Create(threshold);
            var kept = Vector256.Create(scale);
            for (; i + 8 <= end; i += 8, z += step)
            {
                var x = (z ^ Vector256.ShiftRightLogical(z, 30)) * 0xBF58476D1CE4E5B9UL;
                x = (x ^ Vector256.ShiftRightLogical(x, 27)) * 0x94D049BB133111EBUL;
                x ^= Vector256.ShiftRightLogical(x, 31);
                (Vector256.GreaterThanOrEqual(x.AsUInt32(), limit).AsSingle() & kept).Store(mask + i);   // 8 elements
            }
        }
        for (; i < end; i += 2)
        {
            ulong z = seed + (ulong)(i / 2 + 1) * Gamma;                  // SplitMix64's state after i/2 + 1 steps
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            mask[i] = (uint)z >= threshold ? scale : 0f;
            if (i + 1 < end) mask[i + 1] = (uint)(z >> 32) >= threshold ? scale : 0f;
        }
    }
}
