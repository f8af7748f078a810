// The arithmetic of Distillery's int8 scheme, in TorchSharp: the exporter uses it to write int8 weights, and
// quantization-aware training uses the same functions to simulate, in fp32, exactly what the int8 graph computes.
// The scheme follows ONNX Runtime's dynamic quantization (onnxruntime.quantization.quantize_dynamic with per-channel
// signed weights): weights int8 symmetric per output channel, activations uint8 asymmetric per tensor at run time.
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Export;

/// <summary>
/// Distillery's int8 scheme (what <see cref="OnnxExportOptions.Int8"/> writes and what ONNX Runtime computes).
/// <para><b>Weights</b> (per output channel, symmetric, int8, zero point 0): for a weight W [out, in], each row c gets
/// s_c = max_i |W[c, i]| / 127 (s_c = 1 when the row is all zero), and q[c, i] = clamp(round(W[c, i] / s_c), −127, 127)
/// with round-half-to-even (the division in fp32). −128 is never used, so the range is symmetric.</para>
/// <para><b>Activations</b> (per tensor, asymmetric, uint8, computed at run time for every call, as ONNX's
/// DynamicQuantizeLinear): over the whole input tensor x of the layer, m = min(0, min x), M = max(0, max x),
/// a = (M − m) / 255 (a = 1 when M = m = 0), z = clamp(round(−m / a), 0, 255), and x_q = clamp(round(x / a) + z, 0, 255),
/// both roundings half-to-even. The range always includes 0, so 0 is exactly representable.</para>
/// <para><b>Product</b>: y[.., c] = a · s_c · Σ_i (x_q[.., i] − z) · q[c, i] + b_c, accumulated exactly in int32, with the
/// fp32 bias b added after rescaling. Its fp32 simulation is linear(dequant(x), dequant(W), b) with
/// dequant(x) = (x_q − z) · a and dequant(W) = q · s.</para>
/// <para><b>Embeddings</b> (weight-only): the word-embedding table E [V, H] is quantized per row exactly as a weight
/// (s_v = max_j |E[v, j]| / 127); a lookup returns q[id, :] · s_id in fp32. Position and token-type tables stay fp32.</para>
/// </summary>
public static class Int8Quantization
{
    /// <summary>Largest magnitude of a quantized weight (symmetric range −127..127).</summary>
    public const int WeightMax = 127;
    /// <summary>Largest quantized activation (range 0..255).</summary>
    public const int ActivationMax = 255;

    /// <summary>
    /// Quantizes each row of <paramref name="weight"/> [R, C] to int8: returns the int8 values [R, C] and the fp32 scales [R]
    /// (see the class summary for the formula).
    /// </summary>
    public static (Tensor Values, Tensor Scales) QuantizeRows(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException($"expected a [rows, columns] weight, got [{string.Join(", ", weight.shape)}]");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = weight.detach().to(ScalarType.Float32);
        var absMax = w.abs().amax([1]);                                               // [R]
        var scales = where(absMax > 0, absMax / (float)WeightMax, ones_like(absMax));  // [R]
        var values = (w / scales.unsqueeze(1)).round().clamp(-WeightMax, WeightMax).to(ScalarType.Int8);   // [R, C]
        return (values.MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// fp32 simulation of the per-row int8 weight: q · s, [R, C]. No gradient of its own; quantization-aware training
    /// adds the straight-through estimator around it (w + (FakeQuantizeRows(w) − w).detach()).
    /// </summary>
    public static Tensor FakeQuantizeRows(Tensor weight)
    {
        using var scope = NewDisposeScope();
        var (values, scales) = QuantizeRows(weight);
        return (values.to(ScalarType.Float32) * scales.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// fp32 simulation of run-time activation quantization over the whole tensor <paramref name="x"/> (any shape):
    /// (x_q − z) · a with a, z, x_q as in the class summary (ONNX DynamicQuantizeLinear followed by dequantization).
    /// </summary>
    public static Tensor FakeQuantizeActivations(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var xf = x.detach().to(ScalarType.Float32);
        float min = Math.Min(0f, xf.min().item<float>());
        float max = Math.Max(0f, xf.max().item<float>());
        float scale = max == min ? 1f : (max - min) / ActivationMax;
        float zeroPoint = Math.Clamp(MathF.Round(-min / scale, MidpointRounding.ToEven), 0, ActivationMax);   // fp32, as ONNX Runtime
        var quantized = ((xf / scale).round() + zeroPoint).clamp(0, ActivationMax);
        return ((quantized - zeroPoint) * scale).MoveToOuterDisposeScope();
    }
}
