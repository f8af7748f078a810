using Distillery.Models;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// FastDropout is torch.nn.Dropout's arithmetic with another source of random numbers: these tests hold it to the
/// distribution (drop rate p, kept values scaled by exactly 1/(1−p), unbiased), to the gradient (the mask), to
/// reproducibility from torch's seed, and to independence from the thread count.
/// </summary>
public sealed class FastDropoutTests
{
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    public void DropsAtRatePAndScalesTheRestExactly(double p)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var x = rand(1000, 1001) + 0.5f;                                 // odd element count: the last pair is split
        var dropout = new FastDropout(p);
        dropout.train();
        var y = dropout.forward(x);
        var dropped = y.eq(0);
        double rate = dropped.to(ScalarType.Float64).mean().item<double>();
        // 1,001,000 Bernoulli(p) draws: the rate's standard deviation is at most 0.0005; 0.003 is 6 of them.
        Assert.InRange(rate, p - 0.003, p + 0.003);
        var kept = dropped.logical_not();
        var expected = x.masked_select(kept) * (float)(1 / (1 - p));
        Assert.Equal(0f, (y.masked_select(kept) - expected).abs().max().item<float>());
        Assert.InRange(y.to(ScalarType.Float64).mean().item<double>() / x.to(ScalarType.Float64).mean().item<double>(), 0.99, 1.01);

        // Chunks do not repeat one another (each element's draw depends on its own index): the mask's first and second
        // 65,536-element chunks differ.
        var flat = dropped.view(-1);
        Assert.False(flat.narrow(0, 0, 1 << 16).eq(flat.narrow(0, 1 << 16, 1 << 16)).all().item<bool>());
    }

    [Fact]
    public void IsTheIdentityInEvalModeAndAtZero()
    {
        using var scope = NewDisposeScope();
        var x = randn(7, 9);
        var dropout = new FastDropout(0.3);
        dropout.eval();
        Assert.True(Same(dropout.forward(x), x));
        Assert.True(Same(FastDropout.Apply(x, 0), x));
        Assert.Equal(0f, FastDropout.Apply(x, 1).abs().max().item<float>());
        Assert.Throws<ArgumentOutOfRangeException>(() => new FastDropout(1.5));
    }

    [Fact]
    public void GradientIsTheMask()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var x = randn(64, 33).requires_grad_(true);
        var y = FastDropout.Apply(x, 0.2);
        (y * 3).sum().backward();
        var mask = y.detach() / x.detach();                                // 1/(1−p) or 0 wherever x ≠ 0
        Assert.True((x.grad!.detach() - 3 * mask).abs().max().item<float>() < 1e-5f);
    }

    [Fact]
    public void TorchSeedDeterminesTheMaskWhateverTheThreadCount()
    {
        using var scope = NewDisposeScope();
        int threads = get_num_threads();
        try
        {
            manual_seed(42);
            var a = FastDropout.Mask([300, 1000], 0.1);
            var b = FastDropout.Mask([300, 1000], 0.1);                    // the next draw of the generator: another mask
            set_num_threads(1);
            manual_seed(42);
            var c = FastDropout.Mask([300, 1000], 0.1);
            Assert.True(Same(a, c), "the same seed gave another mask with one thread");
            Assert.False(Same(a, b), "two calls gave the same mask");
        }
        finally { set_num_threads(threads); }
    }

    /// <summary>
    /// The vector loops (AVX-512 or AVX2, whichever this CPU runs) draw exactly the documented scalar SplitMix64 stream:
    /// element i keeps iff its half of SplitMix64(seed + (i/2 + 1)·γ) is ≥ the threshold; ranges start at even offsets
    /// inside the mask and end anywhere, so the scalar tail after the vectors is covered too.
    /// </summary>
    [Theory]
    [InlineData(0L, 65536L)]
    [InlineData(65536L, 65536L * 2 + 7)]
    [InlineData(2L, 19L)]
    [InlineData(4L, 5L)]
    public unsafe void VectorisedMaskIsTheScalarSplitMix64Stream(long begin, long end)
    {
        const ulong seed = 0xDEADBEEF12345UL, gamma = 0x9E3779B97F4A7C15UL;
        const uint threshold = 429496730;                                  // p = 0.1
        var mask = new float[end + 3];
        Array.Fill(mask, -1f);
        fixed (float* pointer = mask) FastDropout.Fill((nint)pointer, begin, end, seed, threshold, 1.25f);
        for (long i = 0; i < mask.Length; i++)
        {
            if (i < begin || i >= end) { Assert.Equal(-1f, mask[i]); continue; }   // nothing written outside the range
            ulong z = seed + (ulong)(i / 2 + 1) * gamma;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            uint draw = i % 2 == 0 ? (uint)z : (uint)(z >> 32);
            Assert.True(mask[i] == (draw >= threshold ? 1.25f : 0f), $"element {i}: {mask[i]}");
        }
    }
}
