// Fake quantization for quantization-aware training (QAT): the forward pass sees values rounded to the int8 grid
// they will have in the exported graph, the backward pass treats the rounding as the identity (the straight-through
// estimator), so the fp32 master weights learn to sit well on that grid.
//   Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
//   CVPR 2018: simulated quantization in training, quantize-dequantize in the forward pass, STE in the backward pass.
//   Zafrir et al., "Q8BERT: Quantized 8Bit BERT", 2019: the same for BERT fine-tuning: fake-quant on every Linear's
//   weight and input, symmetric linear quantization, STE.
// Deviations, and why: the grids are not Q8BERT's (symmetric int8 for activations with an EMA of their range) but
// the ones the ONNX exporter uses (dynamic post-training quantization, as ONNX Runtime runs it): weights symmetric
// per output channel on the grid of the export's Int8Scheme (7-bit |q| ≤ 64 by default, exact on every x86-64 CPU;
// or 8-bit |q| ≤ 127), activations asymmetric uint8 per tensor with the range of the current tensor (no EMA, no
// learned range), so QAT trains for exactly the int8 graph that is shipped. Because the activation range is always
// the current tensor's, no value falls outside it and the STE has nothing to clip: its gradient is the identity.
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Numerics;

/// <summary>
/// Quantize-dequantize functions with a straight-through estimator: forward = q(x) (values on the int8 grid, as fp32),
/// backward = identity. The values come from <see cref="Int8Quantization"/>, the functions the exporter quantizes with,
/// so the simulation cannot drift from the graph. Under <c>no_grad</c> (evaluation, parity checks) they return q(x)
/// without the STE graph.
/// </summary>
public static class FakeQuant
{
    /// <summary>
    /// Symmetric int8 fake quantization per output channel of a weight [out, in] on <paramref name="scheme"/>'s grid:
    /// with Q = <see cref="Int8Quantization.WeightMax"/>(scheme) (64 for 7-bit, 127 for 8-bit), for each row r
    /// scale_r = max|W_r| / Q (1 for an all-zero row), q = clamp(round(W / scale_r), −Q, Q) with round half to even,
    /// result q · scale_r (<see cref="Int8Quantization.FakeQuantizeRows"/>). Gradient: the identity (STE).
    /// </summary>
    public static Tensor WeightPerChannel(Tensor weight, Int8Scheme scheme) => RowsPerChannel(weight, Int8Quantization.WeightMax(scheme));

    private static Tensor RowsPerChannel(Tensor weight, int max)
    {
        if (weight.dim() != 2) throw new ArgumentException($"a weight to quantize per output channel must be [out, in], got [{string.Join(", ", weight.shape)}]");
        if (weight.numel() == 0) return weight.alias();   // a layer pruned to nothing: no values to round
        using var scope = NewDisposeScope();
        var quantized = Int8Quantization.FakeQuantizeRows(weight, max);                  // [out, in], no graph
        return StraightThrough(weight, quantized).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Asymmetric uint8 fake quantization of a whole tensor with the range of this tensor, as ONNX's
    /// <c>DynamicQuantizeLinear</c> computes it at run time: the range is widened to include 0 (so 0 is exact),
    /// scale = (max(x, 0) − min(x, 0)) / 255, zero point = clamp(round(−min(x, 0) / scale), 0, 255),
    /// q = clamp(round(x / scale) + zero point, 0, 255) with round half to even, result (q − zero point) · scale
    /// (<see cref="Int8Quantization.FakeQuantizeActivations"/>). Gradient: the identity (STE).
    /// </summary>
    public static Tensor ActivationPerTensor(Tensor input)
    {
        if (input.numel() == 0) return input.alias();     // e.g. the context of a layer pruned to no heads
        using var scope = NewDisposeScope();
        var quantized = Int8Quantization.FakeQuantizeActivations(input);                 // same shape, no graph
        return StraightThrough(input, quantized).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Weight-only int8 fake quantization of looked-up embedding rows [.., H]: each vector is a whole row of the table,
    /// so quantizing it with its own max|·| / 127 (<see cref="Int8Quantization.EmbeddingMax"/>, every scheme: a lookup
    /// runs no integer GEMM, so 8 bits are exact everywhere) is exactly the per-row quantization the exporter applies to
    /// the table (and costs B·T rows instead of V). Gradient: the identity (STE), to the rows looked up.
    /// </summary>
    public static Tensor EmbeddingRows(Tensor rows)
    {
        if (rows.numel() == 0) return rows.alias();
        using var scope = NewDisposeScope();
        var flat = rows.reshape(-1, rows.shape[^1]);                                     // [N, H]
        return RowsPerChannel(flat, Int8Quantization.EmbeddingMax).reshape(rows.shape).MoveToOuterDisposeScope();
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
