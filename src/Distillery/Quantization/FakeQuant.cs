// Fake quantization for quantization-aware training (QAT): the forward pass sees values rounded to the int8 grid
// they will have in the exported graph, the backward pass treats the rounding as the identity (the straight-through
// estimator), so the fp32 master weights learn to sit well on that grid.
//   Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
//   CVPR 2018: simulated quantization in training, quantize-dequantize in the forward pass, STE in the backward pass.
//   Zafrir et al., "Q8BERT: Quantized 8Bit BERT", 2019: the same for BERT fine-tuning: fake-quant on every Linear's
//   weight and input, symmetric linear quantization, STE.
// Deviations, and why: the grids are not Q8BERT's (symmetric int8 for activations with an EMA of their range) but
// the ones the ONNX exporter uses (dynamic post-training quantization, as ONNX Runtime runs it): weights symmetric
// int8 per output channel, activations asymmetric uint8 per tensor with the range of the current tensor (no EMA, no
// learned range), so QAT trains for exactly the int8 graph that is shipped. Because the activation range is always
// the current tensor's, no value falls outside it and the STE has nothing to clip: its gradient is the identity.
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Quantization;

/// <summary>
/// Quantize-dequantize functions with a straight-through estimator: forward = q(x) (values on the int8 grid, as fp32),
/// backward = identity. Under <c>no_grad</c> (evaluation, export parity checks) they return q(x) without the STE graph.
/// </summary>
public static class FakeQuant
{
    /// <summary>Largest magnitude of a symmetric int8 weight: the grid is −127..127 (−128 unused, so it is symmetric).</summary>
    public const int WeightQMax = 127;
    /// <summary>Largest uint8 activation code: the grid is 0..255.</summary>
    public const int ActivationQMax = 255;

    /// <summary>
    /// Symmetric int8 fake quantization per output channel of a weight [out, in]: for each row r,
    /// scale_r = max|W_r| / 127, q = clamp(round(W / scale_r), −127, 127) (round half to even), result q · scale_r.
    /// A row of zeros (a pruned unit) gets scale 1 and stays zero. Gradient: the identity (STE).
    /// </summary>
    public static Tensor WeightPerChannel(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException($"a weight to quantize per output channel must be [out, in], got [{string.Join(", ", weight.shape)}]");
        if (weight.numel() == 0) return weight.alias();   // a layer pruned to nothing: no values to round
        using var scope = NewDisposeScope();
        Tensor quantized;
        using (no_grad())
        {
            var scale = WeightScales(weight).unsqueeze(1);                               // [out, 1]
            quantized = weight.div(scale).round_().clamp_(-WeightQMax, WeightQMax).mul_(scale);   // [out, in]
        }
        return StraightThrough(weight, quantized).MoveToOuterDisposeScope();
    }

    /// <summary>Per-row scales [out] of a weight [out, in]: max|W_r| / 127, or 1 for an all-zero row.</summary>
    public static Tensor WeightScales(Tensor weight)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var absMax = weight.detach().abs().amax([1]);                                   // [out]
        var scale = absMax / WeightQMax;
        return where(absMax.gt(0), scale, ones_like(scale)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Asymmetric uint8 fake quantization of a whole tensor with the range of this tensor, exactly as ONNX's
    /// <c>DynamicQuantizeLinear</c> computes it: the range is widened to include 0 (so 0 is exact),
    /// scale = (max(x, 0) − min(x, 0)) / 255, zero point = clamp(round(−min(x, 0) / scale), 0, 255),
    /// q = clamp(round(x / scale) + zero point, 0, 255) (round half to even), result (q − zero point) · scale.
    /// An all-zero tensor is returned as is. Gradient: the identity (STE).
    /// </summary>
    public static Tensor ActivationPerTensor(Tensor input)
    {
        if (input.numel() == 0) return input.alias();     // e.g. the context of a layer pruned to no heads
        using var scope = NewDisposeScope();
        Tensor quantized;
        using (no_grad())
        {
            var (scale, zeroPoint) = ActivationParameters(input);                       // scalars
            quantized = input.div(scale).round_().add_(zeroPoint).clamp_(0, ActivationQMax).sub_(zeroPoint).mul_(scale);
        }
        return StraightThrough(input, quantized).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The scale and zero point (as fp32 scalars) <c>DynamicQuantizeLinear</c> would choose for <paramref name="input"/>.
    /// The scale of an all-zero tensor is reported as 1 (any scale quantizes zeros exactly; this one avoids 0/0).
    /// </summary>
    public static (Tensor Scale, Tensor ZeroPoint) ActivationParameters(Tensor input)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = input.detach();
        var low = x.min().clamp_max(0);                                                 // min(x, 0)
        var high = x.max().clamp_min(0);                                                // max(x, 0)
        var range = high - low;
        var scale = where(range.gt(0), range / ActivationQMax, ones_like(range));
        var zeroPoint = low.neg().div(scale).round_().clamp_(0, ActivationQMax);
        return (scale.MoveToOuterDisposeScope(), zeroPoint.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// q + (x − x.detach()): exactly the value of <paramref name="quantized"/> (the added term is exactly 0, unlike the
    /// usual x + (q − x).detach(), whose sum can be off by an ulp), with the gradient of <paramref name="original"/>:
    /// the straight-through estimator. Without autograd it is simply q.
    /// </summary>
    public static Tensor StraightThrough(Tensor original, Tensor quantized)
    {
        if (!original.requires_grad || !is_grad_enabled()) return quantized.alias();
        return quantized.detach() + (original - original.detach());
    }
}
