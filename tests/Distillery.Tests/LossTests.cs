using Distillery.Distillation;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>Distillation losses against values worked out by hand.</summary>
public sealed class LossTests
{
    static double Value(Tensor t) => t.item<float>();

    [Fact]
    public void SoftTargetKlMatchesHandComputedValuesWithTemperatureSquared()
    {
        using var scope = NewDisposeScope();
        var student = tensor(new float[] { 0, 0 }).reshape(1, 2);                     // p_S = [0.5, 0.5]
        var teacher = tensor(new float[] { MathF.Log(3), 0 }).reshape(1, 2);          // p_T = [0.75, 0.25]
        // KL = 0.75·ln(0.75/0.5) + 0.25·ln(0.25/0.5) = 0.304099 − 0.173287 = 0.130812
        Assert.Equal(0.130812, Value(Losses.SoftTargetKl(student, teacher, 1)), 5);
        // T = 2: p_T = softmax([ln3/2, 0]) = [0.633975, 0.366025]; KL = 0.633975·ln(1.267949) + 0.366025·ln(0.732051)
        //      = 0.150506 − 0.114165 = 0.036341; × T² = 0.145363
        Assert.Equal(0.145363, Value(Losses.SoftTargetKl(student, teacher, 2)), 5);
        // batchmean: two identical rows give the same value as one.
        Assert.Equal(0.130812, Value(Losses.SoftTargetKl(cat([student, student]), cat([teacher, teacher]), 1)), 5);
        Assert.Equal(0.0, Value(Losses.SoftTargetKl(teacher, teacher, 3)), 5);   // fp32 rounding: ~5e-7
        Assert.Throws<ArgumentOutOfRangeException>(() => Losses.SoftTargetKl(student, teacher, 0));
    }

    [Fact]
    public void LogitAndHiddenMseIgnorePadding()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(2.5, Value(Losses.LogitMse(tensor(new float[] { 1, 2 }), tensor(new float[] { 0, 4 }))), 6);   // (1 + 4) / 2
        var student = tensor(new float[] { 1, 1, 0, 0, 9, 9 }).reshape(1, 3, 2);
        var teacher = tensor(new float[] { 0, 1, 0, 2, 0, 0 }).reshape(1, 3, 2);
        var mask = tensor(new long[] { 1, 1, 0 }).reshape(1, 3);                       // third token is padding
        // (1 + 0 + 0 + 4) / (2 tokens · 2 dims) = 1.25; the padded token's 81 + 81 does not count.
        Assert.Equal(1.25, Value(Losses.HiddenMse(student, teacher, mask)), 6);
        Assert.Throws<ArgumentException>(() => Losses.HiddenMse(student, zeros(1, 3, 4), mask));
    }

    [Fact]
    public void CosineLossIsOneMinusCosineOverRealTokens()
    {
        using var scope = NewDisposeScope();
        var student = tensor(new float[] { 1, 0, 1, 1, 5, 5 }).reshape(1, 3, 2);
        var teacher = tensor(new float[] { 0, 1, 2, 2, -5, -5 }).reshape(1, 3, 2);
        var mask = tensor(new long[] { 1, 1, 0 }).reshape(1, 3);
        // token 1: orthogonal → 1; token 2: parallel → 0; token 3 (padding, opposite) ignored: mean 0.5
        Assert.Equal(0.5, Value(Losses.HiddenCosine(student, teacher, mask)), 6);
        Assert.Equal((1.0 + 0.0 + 2.0) / 3, Value(Losses.HiddenCosine(student, teacher, null)), 5);
    }

    [Fact]
    public void AttentionKlMasksBothAxesAndIsZeroForEqualMaps()
    {
        using var scope = NewDisposeScope();
        var mask = tensor(new long[] { 1, 1, 0 }).reshape(1, 3);
        // Rows over 3 keys; the third key is padding, so both models give it zero mass (as the additive mask does).
        var teacher = tensor(new float[] { 0.75f, 0.25f, 0, 0.5f, 0.5f, 0, 0.2f, 0.3f, 0.5f }).reshape(1, 1, 3, 3);
        var student = tensor(new float[] { 0.5f, 0.5f, 0, 0.5f, 0.5f, 0, 0.9f, 0.1f, 0 }).reshape(1, 1, 3, 3);
        // row 1: KL = 0.130812; row 2: 0; row 3 is a padded query: ignored. Mean over 2 real rows = 0.065406
        Assert.Equal(0.065406, Value(Losses.AttentionKl(student, teacher, mask)), 5);
        var same = Losses.AttentionKl(teacher, teacher, mask);
        Assert.False(double.IsNaN(Value(same)));
        Assert.Equal(0.0, Value(same), 6);
    }

    [Fact]
    public void AttentionMseCountsOnlyRealPairs()
    {
        using var scope = NewDisposeScope();
        var mask = tensor(new long[] { 1, 0 }).reshape(1, 2);
        var student = tensor(new float[] { 1, 7, 7, 7 }).reshape(1, 1, 2, 2);
        var teacher = tensor(new float[] { 3, 0, 0, 0 }).reshape(1, 1, 2, 2);
        Assert.Equal(4.0, Value(Losses.AttentionMse(student, teacher, mask)), 6);   // only (query 0, key 0): (1 − 3)²
    }
}
