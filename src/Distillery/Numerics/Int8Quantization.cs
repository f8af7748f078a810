// The arithmetic of Distillery's int8 scheme, in TorchSharp: the exporter uses it to write int8 weights, and
// quantization-aware training uses the same functions to simulate, in fp32, exactly what the int8 graph computes.
// The scheme follows ONNX Runtime's dynamic quantization (onnxruntime.quantization.quantize_dynamic with per-channel
// signed weights): weights int8 symmetric per output channel, activations uint8 asymmetric per tensor at run time.
//
// Why 7-bit weights by default (Int8Scheme.Reduced7Bit, ONNX Runtime's reduce_range): ONNX Runtime's x86 int8 GEMM
// (MLAS, uint8 activations × int8 weights) runs on three kinds of instruction. AVX512-VNNI / AVX-VNNI (vpdpbusd) and
// AMX-INT8 add every u8·s8 product straight into int32: exact. AVX2, and AVX-512 without VNNI, use vpmaddubsw, which
// adds two adjacent u8·s8 products into an int16 WITH saturation before widening to int32: with 8-bit weights
// |q| ≤ 127 a pair can reach 2·255·127 = 64770 > 32767 and is clipped, so the graph silently computes something else
// than the scheme (measured on an AVX2-only EPYC: max |logit diff| 0.28 instead of < 0.15 on a trained classifier, and
// 0.65 between graph and simulation). With |q| ≤ 64 a pair is at most 2·255·64 = 32640 ≤ 32767: no saturation, the
// graph equals its simulation on every x86-64 CPU, at the same speed (the same kernels run). The cost is weight
// resolution: 129 levels per channel instead of 255. Full 8-bit weights (Int8Scheme.Full8Bit) stay available for
// machines that are known to have VNNI or AMX; they are recorded in the graph, and loading such a graph on a CPU
// without VNNI warns. Embedding rows are always 8-bit: their lookup is a Gather and a multiply, no integer GEMM.
// (U8U8, uint8 weights with zero point 128, would also be exact everywhere, through 16-bit vpmaddwd kernels that are
// slower on AVX2; 7-bit weights keep the fastest kernel on every CPU.)
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Distillery.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Numerics;

/// <summary>How many levels the int8 weights of quantized matmuls use, which decides on which CPUs the graph is exact.</summary>
public enum Int8Scheme
{
    /// <summary>
    /// 7-bit weights (default): symmetric, |q| ≤ 64, ONNX Runtime's <c>reduce_range</c>. Exact on every x86-64 CPU:
    /// a pair of u8·s8 products is at most 2·255·64 = 32640, inside the int16 that AVX2's vpmaddubsw saturates at.
    /// </summary>
    [JsonStringEnumMemberName("7bit")]
    Reduced7Bit,
    /// <summary>
    /// Full 8-bit weights: symmetric, |q| ≤ 127. Half the weight rounding error of 7-bit, but exact only on CPUs with
    /// AVX512-VNNI, AVX-VNNI or AMX-INT8; on AVX2 and AVX-512-without-VNNI CPUs ONNX Runtime's u8·s8 kernel saturates
    /// and the graph loses accuracy. Choose it only for deployment machines known to have VNNI.
    /// </summary>
    [JsonStringEnumMemberName("8bit")]
    Full8Bit,
}

/// <summary>
/// Distillery's int8 scheme (what <see cref="Export.OnnxExportOptions.Int8"/> writes and what ONNX Runtime computes).
/// <para><b>Weights</b> (per output channel, symmetric, int8, zero point 0): for a weight W [out, in] and the scheme's
/// largest code Q (<see cref="WeightMax"/>: 64 for <see cref="Int8Scheme.Reduced7Bit"/>, 127 for
/// <see cref="Int8Scheme.Full8Bit"/>), each row c gets s_c = max_i |W[c, i]| / Q (s_c = 1 when the row is all zero),
/// and q[c, i] = clamp(round(W[c, i] / s_c), −Q, Q) with round-half-to-even (the division in fp32). The range is
/// symmetric (−128 is never used).</para>
/// <para><b>Activations</b> (per tensor, asymmetric, uint8, computed at run time for every call, as ONNX's
/// DynamicQuantizeLinear): over the whole input tensor x of the layer, m = min(0, min x), M = max(0, max x),
/// a = (M − m) / 255 (a = 1 when M = m = 0), z = clamp(round(−m / a), 0, 255), and x_q = clamp(round(x / a) + z, 0, 255),
/// both roundings half-to-even. The range always includes 0, so 0 is exactly representable.</para>
/// <para><b>Product</b>: y[.., c] = a · s_c · Σ_i (x_q[.., i] − z) · q[c, i] + b_c, accumulated exactly in int32, with the
/// fp32 bias b added after rescaling. Its fp32 simulation is linear(dequant(x), dequant(W), b) with
/// dequant(x) = (x_q − z) · a and dequant(W) = q · s. ONNX Runtime computes the int32 sum exactly on every x86-64 CPU
/// for 7-bit weights, and only on VNNI/AMX CPUs for 8-bit ones (see the file header).</para>
/// <para><b>Which layers</b>: in every encoder layer the query, key, value, attention-output, intermediate and output
/// dense layers, and the pooler dense. Query, key and value read the same tensor, so they share one activation
/// quantization (the graph runs them as one fused [H, 3·h·d] product; per-channel weight scales make that identical
/// to three separate ones). Everything else stays fp32: attention score and probability matmuls, softmax, LayerNorms,
/// activations, the classifier, qa_outputs and the whole MLM head. The activation range is taken over the whole input
/// tensor of a call, so in a padded batch it covers every row, padding included (ONNX Runtime's dynamic quantization
/// does the same).</para>
/// <para><b>Embeddings</b> (weight-only, 8-bit whatever the scheme): the word-embedding table E [V, H] is quantized per
/// row as a weight with Q = <see cref="EmbeddingMax"/> (s_v = max_j |E[v, j]| / 127); a lookup returns q[id, :] · s_id in
/// fp32. Position and token-type tables stay fp32.</para>
/// </summary>
public static class Int8Quantization
{
    /// <summary>Largest magnitude of a quantized word-embedding row value (symmetric range −127..127, every scheme).</summary>
    public const int EmbeddingMax = 127;
    /// <summary>Largest quantized activation (range 0..255).</summary>
    public const int ActivationMax = 255;
    /// <summary>The scheme exports and QAT use unless told otherwise: portable 7-bit weights.</summary>
    public const Int8Scheme DefaultScheme = Int8Scheme.Reduced7Bit;
    /// <summary>Key that marks a QAT checkpoint's config.json (<c>"distillery_qat": true</c>).</summary>
    public const string QatMarkerConfigKey = "distillery_qat";
    /// <summary>
    /// Key added to a QAT checkpoint's config.json naming the scheme it was trained for ("7bit" or "8bit"), so an
    /// export of that checkpoint can use (or warn about not using) the same scheme.
    /// </summary>
    public const string QatSchemeConfigKey = "distillery_qat_int8_weights";

    /// <summary>Largest magnitude of a quantized matmul weight under <paramref name="scheme"/>: 64 (7-bit) or 127 (8-bit).</summary>
    public static int WeightMax(Int8Scheme scheme) => scheme switch
    {
        Int8Scheme.Reduced7Bit => 64,
        Int8Scheme.Full8Bit => 127,
        _ => throw new ArgumentOutOfRangeException(nameof(scheme), scheme, "unknown int8 scheme"),
    };

    /// <summary>The scheme's name on the command line, in JSON and in graph metadata: "7bit" or "8bit".</summary>
    public static string Name(Int8Scheme scheme) => scheme switch
    {
        Int8Scheme.Reduced7Bit => "7bit",
        Int8Scheme.Full8Bit => "8bit",
        _ => throw new ArgumentOutOfRangeException(nameof(scheme), scheme, "unknown int8 scheme"),
    };

    /// <summary>Every scheme's <see cref="Name"/>, for messages.</summary>
    public static string Names => string.Join(", ", Enum.GetValues<Int8Scheme>().Select(Name));

    /// <summary>Parses "7bit" / "8bit"; anything else is null.</summary>
    public static Int8Scheme? TryParse(string? text) =>
        Enum.GetValues<Int8Scheme>().Cast<Int8Scheme?>().FirstOrDefault(s => Name(s!.Value) == text);

    /// <summary>Parses "7bit" / "8bit"; anything else is one line naming <paramref name="what"/> and the valid names.</summary>
    public static Int8Scheme Parse(string text, string what) =>
        TryParse(text) ?? throw new ArgumentException($"{what}: unknown int8 weight scheme \"{text}\" (known: {Names})");

    /// <summary>
    /// One line when a graph of <paramref name="scheme"/> is not computed exactly by ONNX Runtime on
    /// <paramref name="cpu"/> (8-bit weights without VNNI or AMX-INT8); null when it is.
    /// </summary>
    public static string? PortabilityWarning(Int8Scheme scheme, CpuFeatures cpu) =>
        scheme == Int8Scheme.Full8Bit && !cpu.HasInt8DotProduct
            ? "8-bit int8 weights on a CPU without VNNI/AMX-INT8: ONNX Runtime's u8·s8 kernel saturates int16 pair sums here, " +
              "so the graph is less accurate than its simulation; use the default 7-bit weights (--int8-weights 7bit) to be exact on every x86-64 CPU"
            : null;

    /// <summary>
    /// The scheme a QAT checkpoint was trained for, from its config.json's extra keys: <see cref="QatSchemeConfigKey"/>,
    /// or 8-bit for a checkpoint marked <see cref="QatMarkerConfigKey"/> before the scheme was recorded; null for a
    /// model that was not trained with QAT.
    /// </summary>
    public static Int8Scheme? TrainedFor(IReadOnlyDictionary<string, JsonNode?> configExtra)
    {
        if (configExtra.TryGetValue(QatSchemeConfigKey, out var node) && node is JsonValue value && value.TryGetValue<string>(out var text) && TryParse(text) is { } scheme)
            return scheme;
        return configExtra.TryGetValue(QatMarkerConfigKey, out var marker) && marker is JsonValue m && m.TryGetValue<bool>(out bool qat) && qat
            ? Int8Scheme.Full8Bit
            : null;
    }

    /// <summary>
    /// Quantizes each row of <paramref name="weight"/> [R, C] symmetrically to the codes −<paramref name="max"/>..<paramref name="max"/>
    /// (<see cref="WeightMax"/> for matmul weights, <see cref="EmbeddingMax"/> for embedding rows): returns the int8
    /// values [R, C] and the fp32 scales [R] (see the class summary for the formula).
    /// </summary>
    public static (Tensor Values, Tensor Scales) QuantizeRows(Tensor weight, int max)
    {
        if (weight.dim() != 2) throw new ArgumentException($"expected a [rows, columns] weight, got [{string.Join(", ", weight.shape)}]");
        if (max is < 1 or > 127) throw new ArgumentOutOfRangeException(nameof(max), max, "int8 codes reach at most 127");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var w = weight.detach().to(ScalarType.Float32);
        var absMax = w.abs().amax([1]);                                               // [R]
        var scales = where(absMax > 0, absMax / (float)max, ones_like(absMax));       // [R]
        var values = (w / scales.unsqueeze(1)).round().clamp(-max, max).to(ScalarType.Int8);   // [R, C]
        return (values.MoveToOuterDisposeScope(), scales.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// fp32 simulation of the per-row int8 weight with codes up to <paramref name="max"/>: q · s, [R, C]. No gradient of
    /// its own; quantization-aware training adds the straight-through estimator around it.
    /// </summary>
    public static Tensor FakeQuantizeRows(Tensor weight, int max)
    {
        using var scope = NewDisposeScope();
        var (values, scales) = QuantizeRows(weight, max);
        return (values.to(ScalarType.Float32) * scales.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Run-time activation quantization over the whole tensor <paramref name="x"/> (any shape), as ONNX's
    /// DynamicQuantizeLinear: the codes x_q (0..255, as fp32, same shape), the scale a and the zero point z of the class
    /// summary.
    /// </summary>
    public static (Tensor Codes, float Scale, float ZeroPoint) QuantizeActivations(Tensor x)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var xf = x.detach().to(ScalarType.Float32);
        float min = Math.Min(0f, xf.min().item<float>());
        float max = Math.Max(0f, xf.max().item<float>());
        float scale = max == min ? 1f : (max - min) / ActivationMax;
        float zeroPoint = Math.Clamp(MathF.Round(-min / scale, MidpointRounding.ToEven), 0, ActivationMax);   // fp32, as ONNX Runtime
        var codes = ((xf / scale).round() + zeroPoint).clamp(0, ActivationMax);
        return (codes.MoveToOuterDisposeScope(), scale, zeroPoint);
    }

    /// <summary>
    /// fp32 simulation of run-time activation quantization over the whole tensor <paramref name="x"/> (any shape):
    /// (x_q − z) · a with a, z, x_q as in <see cref="QuantizeActivations"/> (DynamicQuantizeLinear followed by
    /// dequantization). No gradient of its own; quantization-aware training wraps it in a straight-through estimator.
    /// </summary>
    public static Tensor FakeQuantizeActivations(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (codes, scale, zeroPoint) = QuantizeActivations(x);
        return ((codes - zeroPoint) * scale).MoveToOuterDisposeScope();
    }
}
