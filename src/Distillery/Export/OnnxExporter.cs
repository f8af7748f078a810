// ONNX export of any Distillery model (uniform or physically pruned; masked-LM, sequence classification/regression or
// question-answering head), written with Google.Protobuf from our own subset of the ONNX schema (Export/onnx.proto).
//
// The graph mirrors Models/Bert.cs and Models/BertHeads.cs op for op, in eval mode (dropout is the identity):
//   embeddings  Gather(word) + Gather(token type) + Slice(position table, 0..T) → LayerNormalization (opset 17)
//   mask        (1 − float(attention_mask)) · float.MinValue → [B, 1, 1, T], added to the scores (transformers 4.30)
//   attention   one fused Q|K|V projection [H, 3·h·d] → split → heads → QKᵀ / √d + mask → Softmax → ·V → output dense
//   FFN         dense → activation (exact erf GELU as Div/Erf/Add/Mul/Mul, which ONNX Runtime fuses to its Gelu kernel;
//               tanh GELU, ReLU, SiLU as written) → dense; each block adds the residual, then LayerNormalization
//   heads       MLM: transform dense → activation → LayerNorm → Gemm with the word-embedding table (transB) + bias;
//               classification: pooler tanh(dense(h[CLS])) → classifier; QA: qa_outputs → Split → start/end logits;
//               sentence embedding: attention-masked mean (Σ m·h / max(Σ m, 1e-9)) or h[CLS], then x / max(‖x‖₂, 1e-12),
//               in standard ops (ReduceSum, Max, Sqrt, Div) in every graph kind, so the vector leaves the graph as
//               sentence-transformers computes it (output "sentence_embedding" [B, H]).
// Per-layer head counts, FFN widths and the head size come from the config. A layer pruned to 0 heads (or 0 FFN
// neurons) has empty weight matrices: its block outputs the bias alone (Dense's documented behaviour), so the graph
// adds the bias to the residual directly instead of carrying zero-sized tensors, which runtimes handle unevenly.
// Weights are written as fp32 initializers (raw_data, little-endian) whatever precision the model computes in (bf16
// compute keeps fp32 master weights; those are exported).
//
// Two graph kinds (OnnxExportOptions.Graph), the same function:
//   plain   the standard ai.onnx ops above, for any runtime. ONNX Runtime's own optimizer fuses little of it (measured
//           with 1.31 at ORT_ENABLE_ALL: GELU and FusedMatMul only; every layer keeps its Reshape/Transpose/Softmax and
//           two LayerNormalization + Add).
//   fused   (default) the graph ONNX Runtime's Python transformer optimizer (onnxruntime.transformers, fusion_*.py)
//           would produce, written directly with com.microsoft contrib ops (docs/ContribOperators.md):
//           EmbedLayerNormalization (word + position + token type + LayerNorm; int32 ids, positions 0..T−1),
//           Attention (fp32: Q|K|V projection, scores, mask, softmax, context in one CPU kernel with pre-packed weights)
//           or QAttention (int8: DynamicQuantizeLinear of the input, the int8 Q|K|V GEMM, then the same attention
//           kernel; 7-12% faster end to end at batch 1 and 10-11% at batch 32 than MultiHeadAttention after a
//           DynamicQuantizeMatMul and a Split, measured with bench/Distillery.Bench onnx-profile), the raw 0/1 mask as
//           int32 [B, T] with mask_filter_value = float.MinValue (the additive value of the plain graph and of the model),
//           SkipLayerNormalization (bias + residual + LayerNorm) closing each block, and BiasGelu / FastGelu for the
//           exact / tanh GELU. The int8 graph fuses attention (QAttention) and GELU only: its LayerNorms and
//           embeddings keep the plain graph's arithmetic, because a last-bit difference in a quantized matmul's input
//           can flip an activation's uint8 code, and the int8 graph must equal the scheme's simulation (QAT's forward;
//           with SkipLayerNormalization it drifted by 0.014 on a test model with 8-bit weights).
//           Runs only in ONNX Runtime (these ops are CPU kernels there since 1.x). A layer pruned to
//           0 heads or 0 FFN neurons has no product to fuse, so that block alone is written as in the plain graph;
//           per-layer head counts, FFN widths and head sizes other than H/heads export fused (qkv_hidden_sizes).
//
// int8 (OnnxExportOptions.Int8), dynamic post-training quantization; the arithmetic is in Int8Quantization:
//   * every encoder Linear (query|key|value fused, attention output, intermediate, output) and the pooler dense become
//     com.microsoft.DynamicQuantizeMatMul nodes: int8 weights, symmetric, one scale per output channel, zero point 0,
//     on the grid of OnnxExportOptions.Int8Scheme (7-bit |q| ≤ 64 by default, or 8-bit |q| ≤ 127);
//     the fp32 input is quantized per tensor to uint8 at run time (asymmetric, DynamicQuantizeLinear's formula) and the
//     bias is added in fp32. This is the node ONNX Runtime's own quantizer output (DynamicQuantizeLinear → MatMulInteger
//     → Cast → Mul → Add) is fused into at load time; writing it directly means the fast kernel (MLAS u8·s8 GEMM, VNNI
//     where the CPU has it, weights pre-packed once) is used without depending on the fusion pattern matching.
//   * uint8 activations × int8 weights: on CPUs without VNNI (AVX2, and AVX-512 without VNNI), MLAS's u8·s8 kernel
//     (vpmaddubsw) adds pairs of products into an int16 with saturation; AVX512-VNNI / AVX-VNNI (vpdpbusd) and AMX-INT8
//     do not saturate. The default 7-bit weights (ONNX Runtime's reduce_range) keep every pair ≤ 2·255·64 = 32640, so
//     the graph is exact, and equal to its simulation, on every x86-64 CPU; 8-bit weights are exact only with VNNI/AMX
//     and are an opt-in (Int8Quantization's header has the numbers). The scheme is written into the graph's metadata
//     (Int8SchemeKey), and OnnxModelInfo reads it back, so a graph says which arithmetic it was built for.
//   * attention score and probability matmuls, softmax, LayerNorms and activations stay fp32. The additive mask's
//     float.MinValue would ruin any static activation range; dynamic per-call ranges never see it because the mask is
//     added after the (fp32) score matmul.
//   * the task head's final projection stays fp32: classifier, qa_outputs, and the MLM transform and decoder (the
//     decoder multiplies by the fp32 word-embedding table, so an MLM int8 file carries that table twice: int8 rows for
//     the lookup, fp32 for the decoder).
//   * the word-embedding table is weight-only int8 (per row): the graph gathers int8 rows and their scales and multiplies,
//     so the whole table is never dequantized; position and token-type tables stay fp32.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Distillery.Export.Onnx;
using Distillery.Models;
using Distillery.Numerics;
using Google.Protobuf;
using TorchSharp;
using static TorchSharp.torch;
using DataType = Distillery.Export.Onnx.TensorProto.Types.DataType;

namespace Distillery.Export;

/// <summary>Which operators the exported graph is written with.</summary>
public enum OnnxGraphKind
{
    /// <summary>
    /// ONNX Runtime's transformer contrib operators (<c>com.microsoft</c> domain), the graph its Python transformer
    /// optimizer would produce: EmbedLayerNormalization, Attention (fp32) or QAttention (int8), SkipLayerNormalization,
    /// BiasGelu / FastGelu. Runs only in ONNX Runtime; the fastest graph there.
    /// </summary>
    [JsonStringEnumMemberName("fused")]
    Fused,
    /// <summary>Standard ai.onnx operators only (plus DynamicQuantizeMatMul in int8 graphs), for any ONNX runtime.</summary>
    [JsonStringEnumMemberName("plain")]
    Plain,
}

/// <summary>How <see cref="OnnxExporter.Export"/> writes a graph.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>
    /// <see cref="OnnxGraphKind.Fused"/> (default: ONNX Runtime's contrib operators, its fastest CPU graph) or
    /// <see cref="OnnxGraphKind.Plain"/> (standard operators, for other runtimes). Both compute the same function (fp32
    /// parity ≤ 1e-4 with the TorchSharp model), and int8 graphs of both kinds quantize the same matmuls the same way.
    /// Written into the graph's metadata (<see cref="OnnxExporter.GraphKey"/>).
    /// </summary>
    public OnnxGraphKind Graph { get; init; } = OnnxGraphKind.Fused;

    /// <summary>Lowest ai.onnx opset the exporter writes (LayerNormalization is an ONNX op from 17 on).</summary>
    public const int MinOpset = 17;
    /// <summary>Highest ai.onnx opset the exporter writes (every op used has the same semantics from 17 to 21).</summary>
    public const int MaxOpset = 21;

    /// <summary>
    /// Dynamic int8 quantization (default false: fp32). Encoder Linear layers (query, key, value, attention output,
    /// intermediate, output) and the pooler dense get int8 weights, symmetric per output channel (scale = max|row| / Q,
    /// round half to even, clamp to ±Q, zero point 0; Q = 64 for the default 7-bit <see cref="Int8Scheme"/>, 127 for
    /// 8-bit), and their inputs are quantized per tensor to uint8 at run time (scale = (max(0, max x) − min(0, min x)) /
    /// 255, zero point = round(−min / scale)); products accumulate in int32 and are rescaled to fp32 before the fp32 bias.
    /// The word-embedding table is int8 per row (weight-only, 8-bit). Attention matmuls, softmax, LayerNorms,
    /// activations, the classifier / qa_outputs and the MLM head stay fp32. <see cref="Int8Quantization"/> gives the
    /// exact formulas and their TorchSharp simulation.
    /// </summary>
    public bool Int8 { get; init; }

    /// <summary>
    /// The int8 weight grid (with <see cref="Int8"/>; ignored for fp32): <see cref="Numerics.Int8Scheme.Reduced7Bit"/>
    /// (default; scale = max|row| / 64, clamp to ±64), exact on every x86-64 CPU, or
    /// <see cref="Numerics.Int8Scheme.Full8Bit"/> (max|row| / 127, ±127), exact only on CPUs with VNNI or AMX-INT8.
    /// Written into the graph's metadata (<see cref="OnnxExporter.Int8SchemeKey"/>).
    /// </summary>
    public Int8Scheme Int8Scheme { get; init; } = Int8Quantization.DefaultScheme;

    /// <summary>The ai.onnx opset to declare, <see cref="MinOpset"/>..<see cref="MaxOpset"/> (default 17).</summary>
    public int Opset { get; init; } = 17;

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public OnnxExportOptions Validate()
    {
        if (Opset < MinOpset || Opset > MaxOpset)
            throw new ArgumentException($"Opset {Opset} is not supported: the exporter writes opsets {MinOpset} to {MaxOpset}");
        if (!Enum.IsDefined(Int8Scheme)) throw new ArgumentException($"Int8Scheme {(int)Int8Scheme} is not a scheme (known: {Int8Quantization.Names})");
        if (!Enum.IsDefined(Graph)) throw new ArgumentException($"Graph {(int)Graph} is not a graph kind (known: {OnnxExporter.GraphNames})");
        return this;
    }

    /// <summary>The ONNX IR version that goes with <see cref="Opset"/> (IR 8 for 17-18, 9 for 19-20, 10 for 21).</summary>
    internal long IrVersion => Opset switch { <= 18 => 8, <= 20 => 9, _ => 10 };
}

/// <summary>Writes a <see cref="BertTaskModel"/> as an ONNX graph that ONNX Runtime runs.</summary>
public static class OnnxExporter
{
    /// <summary>Metadata key holding the head (<see cref="BertTask"/> name: MaskedLM, SequenceClassification, QuestionAnswering).</summary>
    public const string TaskKey = "distillery.task";
    /// <summary>Metadata key holding the model's config.json text.</summary>
    public const string ConfigKey = "distillery.config";
    /// <summary>Metadata key holding the weight format: "fp32" or "int8".</summary>
    public const string QuantizationKey = "distillery.quantization";
    /// <summary>
    /// Metadata key of int8 graphs holding the weight grid (<see cref="Int8Quantization.Name"/>: "7bit" or "8bit").
    /// int8 graphs written before the key existed used 8-bit weights.
    /// </summary>
    public const string Int8SchemeKey = "distillery.int8_weights";
    /// <summary>
    /// Metadata key holding the graph kind (<see cref="GraphName"/>: "fused" or "plain"). Graphs written before the key
    /// existed are plain.
    /// </summary>
    public const string GraphKey = "distillery.graph";

    /// <summary>The graph kind's name on the command line and in metadata: "fused" or "plain".</summary>
    public static string GraphName(OnnxGraphKind kind) => kind switch
    {
        OnnxGraphKind.Fused => "fused",
        OnnxGraphKind.Plain => "plain",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown graph kind"),
    };

    /// <summary>Every graph kind's <see cref="GraphName"/>, for messages.</summary>
    public static string GraphNames => string.Join(", ", Enum.GetValues<OnnxGraphKind>().Select(GraphName));

    /// <summary>Parses "fused" / "plain"; anything else is null.</summary>
    public static OnnxGraphKind? TryParseGraph(string? text) =>
        Enum.GetValues<OnnxGraphKind>().Cast<OnnxGraphKind?>().FirstOrDefault(k => GraphName(k!.Value) == text);

    /// <summary>Graph input names (int64 [batch, sequence]).</summary>
    public const string InputIds = "input_ids", AttentionMask = "attention_mask", TokenTypeIds = "token_type_ids";
    /// <summary>Graph output names: <c>logits</c> (MLM [B, T, V]; classification/regression [B, C]), or QA's two [B, T].</summary>
    public const string Logits = "logits", StartLogits = "start_logits", EndLogits = "end_logits";
    /// <summary>The sentence-embedding graph's output: pooled (and normalised) vectors [B, H].</summary>
    public const string SentenceEmbedding = "sentence_embedding";

    /// <summary>The graph outputs of a head, in order.</summary>
    public static IReadOnlyList<string> OutputsOf(BertTask task) => task switch
    {
        BertTask.QuestionAnswering => [StartLogits, EndLogits],
        BertTask.SentenceEmbedding => [SentenceEmbedding],
        _ => [Logits],
    };

    /// <summary>
    /// Exports <paramref name="model"/> to <paramref name="path"/>: inputs <c>input_ids</c>, <c>attention_mask</c>,
    /// <c>token_type_ids</c> (int64 [batch, sequence], dynamic axes "batch" and "sequence"); outputs <c>logits</c>
    /// (masked LM [batch, sequence, vocab], sequence classification/regression [batch, num_labels]) or
    /// <c>start_logits</c> and <c>end_logits</c> [batch, sequence] (question answering). Metadata: <see cref="TaskKey"/>,
    /// <see cref="ConfigKey"/>, <see cref="QuantizationKey"/>, and for int8 <see cref="Int8SchemeKey"/>. The file is written atomically: a failed export leaves no
    /// file behind (and an existing one unchanged).
    /// </summary>
    public static void Export(BertTaskModel model, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        options = (options ?? new OnnxExportOptions()).Validate();
        model.Config.Validate();
        var proto = Build(model, options);
        // Protobuf messages are limited to 2 GiB; the exporter keeps every weight inside the file (no external data).
        long bytes = proto.Graph.Initializer.Sum(t => (long)t.RawData.Length);
        if (bytes > int.MaxValue - (64L << 20))
            throw new ArgumentException($"the model's weights take {bytes / (1L << 20)} MiB, more than one ONNX file can hold (2 GiB protobuf limit)");
        AtomicFile.Write(path, stream => proto.WriteTo(stream));
    }

    /// <summary>The whole ModelProto (graph, opsets, metadata) for <paramref name="model"/>.</summary>
    internal static ModelProto Build(BertTaskModel model, OnnxExportOptions options)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var writer = new GraphWriter(model, options.Int8, Int8Quantization.WeightMax(options.Int8Scheme), options.Graph == OnnxGraphKind.Fused);
        writer.Write();
        var g = writer.Builder;
        var proto = new ModelProto
        {
            IrVersion = options.IrVersion,
            ProducerName = "distillery",
            ProducerVersion = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = g.Graph,
            DocString = $"{BertTasks.ArchitectureName(model.Task)} exported by Distillery " +
                (options.Int8 ? $"(int8 dynamic quantization, {Int8Quantization.Name(options.Int8Scheme)} weights" : "(fp32") +
                (options.Graph == OnnxGraphKind.Fused ? ", ONNX Runtime contrib operators)" : ", standard operators)"),
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = options.Opset });
        if (g.UsesMicrosoftDomain) proto.OpsetImport.Add(new OperatorSetIdProto { Domain = OnnxGraphBuilder.MicrosoftDomain, Version = 1 });
        var config = model.Config with { Architectures = [BertTasks.ArchitectureName(model.Task)] };
        proto.MetadataProps.Add(new StringStringEntryProto { Key = TaskKey, Value = model.Task.ToString() });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = ConfigKey, Value = config.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = QuantizationKey, Value = options.Int8 ? "int8" : "fp32" });
        if (options.Int8) proto.MetadataProps.Add(new StringStringEntryProto { Key = Int8SchemeKey, Value = Int8Quantization.Name(options.Int8Scheme) });
        proto.MetadataProps.Add(new StringStringEntryProto { Key = GraphKey, Value = GraphName(options.Graph) });
        return proto;
    }

    /// <summary>Walks the model and emits its graph.</summary>
    /// <param name="model">The model to write.</param>
    /// <param name="int8">Quantize the encoder and pooler Linears and the word-embedding table.</param>
    /// <param name="weightMax">Largest int8 code of a matmul weight (<see cref="Int8Quantization.WeightMax"/> of the scheme).</param>
    /// <param name="fused">Write ONNX Runtime's contrib operators (<see cref="OnnxGraphKind.Fused"/>) where they apply.</param>
    private sealed class GraphWriter(BertTaskModel model, bool int8, int weightMax, bool fused)
    {
        public OnnxGraphBuilder Builder { get; } = new();
        private OnnxGraphBuilder G => Builder;
        private BertConfig Config => model.Config;
        private readonly Dictionary<string, Tensor> parameters = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

        private Tensor Param(string name) => parameters.TryGetValue(name, out var p) ? p
            : throw new InvalidOperationException($"model has no parameter {name} (is it a Distillery BERT?)");

        private static float[] Floats(Tensor t) => t.detach().cpu().to(ScalarType.Float32).contiguous().data<float>().ToArray();
        private static sbyte[] Bytes(Tensor t) => t.detach().cpu().contiguous().data<sbyte>().ToArray();

        private readonly Dictionary<string, string> written = new(StringComparer.Ordinal);

        /// <summary>An fp32 initializer, written once per name (the tied MLM decoder reuses the embedding table).</summary>
        private string Weight(string name, Tensor t)
        {
            if (!written.TryGetValue(name, out var initializer)) written[name] = initializer = G.Initializer(name, Floats(t), t.shape);
            return initializer;
        }

        public void Write()
        {
            string ids = G.Input(InputIds, DataType.Int64, "batch", "sequence");
            string mask = G.Input(AttentionMask, DataType.Int64, "batch", "sequence");
            string types = G.Input(TokenTypeIds, DataType.Int64, "batch", "sequence");

            var hidden = fused ? FusedEmbeddings(ids, types) : Embeddings(ids, types);              // [B, T, H]
            string additive;
            if (fused)
                // The attention ops take the raw 0/1 mask as int32 [B, T] ("mask_index" of Attention and QAttention;
                // ContribOperators.md) and add mask_filter_value where it is 0.
                additive = G.Node("Cast", [mask], "mask_int32", OnnxGraphBuilder.Int("to", (long)DataType.Int32));
            else
            {
                // Additive mask [B, 1, 1, T]: 0 on real keys, float.MinValue on padding (BertModel.AdditiveMask).
                var maskFloat = G.Node("Cast", [mask], "mask_float", OnnxGraphBuilder.Int("to", (long)DataType.Float));
                var inverted = G.Node("Sub", [G.Scalar(1f), maskFloat], "mask_inverted");
                var scaled = G.Node("Mul", [inverted, G.Scalar(float.MinValue)], "mask_scaled");
                additive = G.Node("Unsqueeze", [scaled, G.Int64s(1, 2)], "additive_mask");
            }

            var layers = model.Bert.Encoder.Layers;
            for (int i = 0; i < layers.Count; i++) hidden = fused ? FusedLayer(i, layers[i], hidden, additive) : Layer(i, layers[i], hidden, additive);

            switch (model.Task)
            {
                case BertTask.MaskedLM: MaskedLmHead(ids, hidden); break;
                case BertTask.SequenceClassification: ClassificationHead(hidden); break;
                case BertTask.QuestionAnswering: QuestionAnsweringHead(hidden); break;
                case BertTask.SentenceEmbedding: SentenceEmbeddingHead(mask, hidden, (BertForSentenceEmbedding)model); break;
                default: throw new NotSupportedException($"no ONNX export for task {model.Task}");
            }
        }

        private string Embeddings(string ids, string types)
        {
            const string p = "bert.embeddings.";
            var table = Param(p + "word_embeddings.weight");                                     // [V, H]
            string words = int8 ? Int8WordRows(ids) : G.Node("Gather", [Weight(p + "word_embeddings.weight", table), ids], "word_embeddings");

            var typeTable = Weight(p + "token_type_embeddings.weight", Param(p + "token_type_embeddings.weight"));
            var typeEmb = G.Node("Gather", [typeTable, types], "token_type_embeddings");         // [B, T, H]
            // Positions 0..T-1: the first T rows of the table, broadcast over the batch. More than max_position_embeddings
            // tokens leave fewer rows than T and the Add fails, as the TorchSharp model refuses such input.
            var posTable = Weight(p + "position_embeddings.weight", Param(p + "position_embeddings.weight"));
            var length = G.Node("Shape", [ids], "sequence_length", OnnxGraphBuilder.Int("start", 1), OnnxGraphBuilder.Int("end", 2));   // [1]
            var positions = G.Node("Slice", [posTable, G.Int64s(0), length, G.Int64s(0)], "position_embeddings");               // [T, H]
            var sum = G.Node("Add", [words, typeEmb], "embeddings_sum");
            sum = G.Node("Add", [sum, positions], "embeddings_sum");
            return LayerNorm(sum, p + "LayerNorm", "embeddings");
        }

        /// <summary>int8 word-embedding lookup: the int8 rows [B, T, H] and their scales [B, T, 1] are gathered, then multiplied.</summary>
        private string Int8WordRows(string ids)
        {
            const string p = "bert.embeddings.";
            var (values, scales) = Int8Quantization.QuantizeRows(Param(p + "word_embeddings.weight"), Int8Quantization.EmbeddingMax);   // [V, H] int8, [V]
            var q = G.Initializer(p + "word_embeddings.weight_int8", Bytes(values), values.shape);
            var s = G.Initializer(p + "word_embeddings.row_scale", Floats(scales), scales.shape[0], 1);   // [V, 1]
            var rows = G.Node("Gather", [q, ids], "word_rows_int8");                             // [B, T, H] int8
            var rowScales = G.Node("Gather", [s, ids], "word_row_scales");                       // [B, T, 1]
            var rowsFloat = G.Node("Cast", [rows], "word_rows", OnnxGraphBuilder.Int("to", (long)DataType.Float));
            return G.Node("Mul", [rowsFloat, rowScales], "word_embeddings");
        }

        /// <summary>
        /// Embeddings in the fused graph. fp32: one com.microsoft.EmbedLayerNormalization (int32 ids and segment ids;
        /// positions 0..T−1, the op's default without position_ids; its mask_index output, the count of 1s per row, is
        /// not used: Attention takes the raw mask). int8: the word table is int8 rows, which EmbedLayerNormalization
        /// cannot read, and the int8 graph keeps the plain graph's arithmetic wherever it feeds a quantized matmul (see
        /// <see cref="FusedLayer"/>), so the embeddings are the plain graph's.
        /// </summary>
        private string FusedEmbeddings(string ids, string types)
        {
            const string p = "bert.embeddings.";
            var typeTable = Weight(p + "token_type_embeddings.weight", Param(p + "token_type_embeddings.weight"));   // [2, H]
            var posTable = Weight(p + "position_embeddings.weight", Param(p + "position_embeddings.weight"));       // [P, H]
            var gamma = Weight(p + "LayerNorm.weight", Param(p + "LayerNorm.weight"));
            var beta = Weight(p + "LayerNorm.bias", Param(p + "LayerNorm.bias"));
            var epsilon = OnnxGraphBuilder.Float("epsilon", (float)Config.LayerNormEps);
            if (int8) return Embeddings(ids, types);
            var ids32 = G.Node("Cast", [ids], "input_ids_int32", OnnxGraphBuilder.Int("to", (long)DataType.Int32));
            var types32 = G.Node("Cast", [types], "token_type_ids_int32", OnnxGraphBuilder.Int("to", (long)DataType.Int32));
            var table = Weight(p + "word_embeddings.weight", Param(p + "word_embeddings.weight"));
            return G.MicrosoftNodeMulti("EmbedLayerNormalization", [ids32, types32, table, posTable, typeTable, gamma, beta],
                ["embeddings", "embeddings_mask_index"], epsilon)[0];
        }

        /// <summary>LayerNorm(x + skip + bias) as one com.microsoft.SkipLayerNormalization (bias optional).</summary>
        private string SkipLayerNorm(string x, string skip, string? bias, string prefix, string hint)
        {
            string[] inputs = [x, skip, Weight(prefix + ".weight", Param(prefix + ".weight")), Weight(prefix + ".bias", Param(prefix + ".bias"))];
            if (bias != null) inputs = [.. inputs, bias];
            return G.MicrosoftNode("SkipLayerNormalization", inputs, hint, OnnxGraphBuilder.Float("epsilon", (float)Config.LayerNormEps));
        }

        private string LayerNorm(string x, string prefix, string hint) =>
            G.Node("LayerNormalization",
                [x, Weight(prefix + ".weight", Param(prefix + ".weight")), Weight(prefix + ".bias", Param(prefix + ".bias"))],
                hint, OnnxGraphBuilder.Int("axis", -1), OnnxGraphBuilder.Float("epsilon", (float)Config.LayerNormEps));

        /// <summary>
        /// W [out, in] as the int8 initializer "NAME.weight_int8_t" [in, out] (symmetric, |q| ≤ the scheme's bound) and its
        /// per-output-column scales "NAME.weight_scale" [out]: input 1 and its scale for DynamicQuantizeMatMul and QAttention.
        /// </summary>
        private (string Weight, string Scale) QuantizedWeight(Tensor weight, string name)
        {
            var (values, scales) = Int8Quantization.QuantizeRows(weight, weightMax);         // [out, in] int8, [out]
            return (G.Initializer(name + ".weight_int8_t", Bytes(values.t().contiguous()), values.shape[1], values.shape[0]),   // [in, out]
                G.Initializer(name + ".weight_scale", Floats(scales), scales.shape[0]));
        }

        /// <summary>y = x Wᵀ + b for W [out, in] (out, in &gt; 0): fp32 MatMul + Add, or int8 DynamicQuantizeMatMul.</summary>
        private string Linear(string x, Tensor weight, Tensor? bias, string name, bool quantize)
        {
            if (quantize)
            {
                var (b, s) = QuantizedWeight(weight, name);
                var inputs = bias is null ? new[] { x, b, s } : new[] { x, b, s, "", Weight(name + ".bias", bias) };   // "" = no zero point (0)
                return G.MicrosoftNode("DynamicQuantizeMatMul", inputs, name);
            }
            var wt = Weight(name + ".weight_t", weight.t().contiguous());                         // [in, out]
            var product = G.Node("MatMul", [x, wt], name + "_matmul");
            return bias is null ? product : G.Node("Add", [product, Weight(name + ".bias", bias)], name);
        }

        private string Dense(string x, string prefix, bool quantize) =>
            Linear(x, Param(prefix + ".weight"), parameters.GetValueOrDefault(prefix + ".bias"), prefix, quantize);

        private string Activation(string x, string hint) => Config.HiddenAct switch
        {
            // x · Φ(x) = x · 0.5 · (1 + erf(x / √2)), in the order ONNX Runtime's Gelu fusion recognises.
            HiddenActivation.Gelu => G.Node("Mul", [
                G.Node("Mul", [x, G.Node("Add", [G.Node("Erf", [G.Node("Div", [x, G.Scalar(MathF.Sqrt(2f))], hint + "_div")], hint + "_erf"), G.Scalar(1f)], hint + "_add")], hint + "_mul"),
                G.Scalar(0.5f)], hint),
            // 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), as torch's gelu(approximate="tanh").
            HiddenActivation.GeluTanh => GeluTanh(x, hint),
            HiddenActivation.Relu => G.Node("Relu", [x], hint),
            _ => G.Node("Mul", [x, G.Node("Sigmoid", [x], hint + "_sigmoid")], hint),
        };

        private string GeluTanh(string x, string hint)
        {
            var cube = G.Node("Mul", [G.Node("Mul", [x, x], hint + "_sq"), x], hint + "_cube");
            var inner = G.Node("Add", [x, G.Node("Mul", [cube, G.Scalar(0.044715f)], hint + "_c")], hint + "_inner");
            var t = G.Node("Tanh", [G.Node("Mul", [inner, G.Scalar(MathF.Sqrt(2f / MathF.PI))], hint + "_scaled")], hint + "_tanh");
            var half = G.Node("Mul", [x, G.Scalar(0.5f)], hint + "_half");
            return G.Node("Mul", [half, G.Node("Add", [t, G.Scalar(1f)], hint + "_one_plus")], hint);
        }

        private string Layer(int index, BertLayer layer, string hidden, string additive)
        {
            string p = $"bert.encoder.layer.{index}.";
            int heads = layer.NumHeads, d = layer.Attention.Self.HeadSize, width = layer.FfnWidth;

            // Attention block: LayerNorm(dense(context) + hidden); with no heads the block's output is its bias alone.
            string attentionOut;
            if (heads == 0) attentionOut = G.Node("Add", [hidden, Weight(p + "attention.output.dense.bias", Param(p + "attention.output.dense.bias"))], p + "attention_out");
            else
            {
                // One projection for Q, K and V ([3·h·d, H] rows stacked), then split: one activation quantization, one GEMM.
                var qkvWeight = cat([Param(p + "attention.self.query.weight"), Param(p + "attention.self.key.weight"), Param(p + "attention.self.value.weight")], 0);
                var qkvBias = cat([Param(p + "attention.self.query.bias"), Param(p + "attention.self.key.bias"), Param(p + "attention.self.value.bias")], 0);
                var qkv = Linear(hidden, qkvWeight, qkvBias, p + "attention.self.qkv", int8);                 // [B, T, 3·h·d]
                long hd = (long)heads * d;
                var parts = G.NodeMulti("Split", [qkv, G.Int64s(hd, hd, hd)], [p + "q", p + "k", p + "v"], OnnxGraphBuilder.Int("axis", -1));
                var headShape = G.Int64s(0, 0, heads, d);                                                     // [B, T, h, d]
                var q = G.Node("Transpose", [G.Node("Reshape", [parts[0], headShape], p + "q_heads")], p + "q_t", OnnxGraphBuilder.Ints("perm", 0, 2, 1, 3));   // [B, h, T, d]
                var kT = G.Node("Transpose", [G.Node("Reshape", [parts[1], headShape], p + "k_heads")], p + "k_t", OnnxGraphBuilder.Ints("perm", 0, 2, 3, 1)); // [B, h, d, T]
                var v = G.Node("Transpose", [G.Node("Reshape", [parts[2], headShape], p + "v_heads")], p + "v_t", OnnxGraphBuilder.Ints("perm", 0, 2, 1, 3));   // [B, h, T, d]
                var scores = G.Node("Div", [G.Node("MatMul", [q, kT], p + "qk"), G.Scalar(MathF.Sqrt(d))], p + "scores");   // [B, h, T, T]
                var probs = G.Node("Softmax", [G.Node("Add", [scores, additive], p + "masked_scores")], p + "probs", OnnxGraphBuilder.Int("axis", -1));
                var context = G.Node("MatMul", [probs, v], p + "context_heads");                             // [B, h, T, d]
                context = G.Node("Transpose", [context], p + "context_t", OnnxGraphBuilder.Ints("perm", 0, 2, 1, 3));   // [B, T, h, d]
                context = G.Node("Reshape", [context, G.Int64s(0, 0, hd)], p + "context");                    // [B, T, h·d]
                var projected = Dense(context, p + "attention.output.dense", int8);
                attentionOut = G.Node("Add", [projected, hidden], p + "attention_out");
            }
            var attended = LayerNorm(attentionOut, p + "attention.output.LayerNorm", p + "attention_ln");

            // FFN block: LayerNorm(dense(act(dense(x))) + x); with no neurons the block's output is its bias alone.
            string ffnOut;
            if (width == 0) ffnOut = G.Node("Add", [attended, Weight(p + "output.dense.bias", Param(p + "output.dense.bias"))], p + "ffn_out");
            else
            {
                var inner = Activation(Dense(attended, p + "intermediate.dense", int8), p + "intermediate");  // [B, T, F]
                ffnOut = G.Node("Add", [Dense(inner, p + "output.dense", int8), attended], p + "ffn_out");
            }
            return LayerNorm(ffnOut, p + "output.LayerNorm", p + "output");
        }

        /// <summary>
        /// One encoder layer with ONNX Runtime's contrib operators (shapes as <see cref="Layer"/>; h heads of size d):
        /// <list type="bullet">
        /// <item>fp32 attention: com.microsoft.Attention(x [B, T, H], W_qkv [H, 3·h·d], b_qkv [3·h·d], mask int32 [B, T])
        /// → context [B, T, h·d]. qkv_hidden_sizes is given so a head size other than H/h (pruned, narrow) is read from
        /// the attribute rather than inferred; mask_filter_value is float.MinValue, the additive value the model uses.</item>
        /// <item>int8 attention: com.microsoft.QAttention(DynamicQuantizeLinear(x) [B, T, H] uint8 with its scale and zero
        /// point, W_qkv [H, 3·h·d] int8 with one scale per output column, b_qkv, mask int32 [B, T]) → context [B, T, h·d].
        /// Its Q|K|V GEMM is the plain int8 graph's DynamicQuantizeMatMul arithmetic (uint8 input quantized per tensor by
        /// DynamicQuantizeLinear's formula, symmetric per-column weights, int32 accumulation, scales and bias in fp32)
        /// and its attention is the fp32 Attention kernel's; ONNX Runtime's CPU kernel derives the head size from
        /// 3·h·d / 3 / num_heads, which holds for every BERT layer here (Q, K and V have the same width).</item>
        /// <item>fp32: each residual block ends in com.microsoft.SkipLayerNormalization(dense(x) without bias, residual,
        /// γ, β, bias): the bias add, the residual add and the LayerNorm in one pass. int8 keeps the plain graph's Add +
        /// LayerNormalization (<see cref="DenseSkipLayerNorm"/> says why).</item>
        /// <item>FFN, fp32: dense without bias → com.microsoft.BiasGelu (exact erf GELU) or FastGelu (tanh GELU), which
        /// add the bias. int8, erf GELU: DynamicQuantizeMatMul with its bias → com.microsoft.Gelu (what ONNX Runtime
        /// makes of the plain graph's Erf chain). ReLU, SiLU (and int8 tanh GELU) are written as in the plain graph.</item>
        /// </list>
        /// A layer pruned to 0 heads or 0 neurons has no product to fuse: that block is Add + LayerNormalization, as plain.
        /// </summary>
        private string FusedLayer(int index, BertLayer layer, string hidden, string mask)
        {
            string p = $"bert.encoder.layer.{index}.";
            int heads = layer.NumHeads, d = layer.Attention.Self.HeadSize, width = layer.FfnWidth;

            string attended;
            if (heads == 0)
                attended = LayerNorm(G.Node("Add", [hidden, Weight(p + "attention.output.dense.bias", Param(p + "attention.output.dense.bias"))], p + "attention_out"),
                    p + "attention.output.LayerNorm", p + "attention_ln");
            else
            {
                long hd = (long)heads * d;
                var qkvWeight = cat([Param(p + "attention.self.query.weight"), Param(p + "attention.self.key.weight"), Param(p + "attention.self.value.weight")], 0);   // [3·h·d, H]
                var qkvBias = cat([Param(p + "attention.self.query.bias"), Param(p + "attention.self.key.bias"), Param(p + "attention.self.value.bias")], 0);         // [3·h·d]
                var maskFilter = OnnxGraphBuilder.Float("mask_filter_value", float.MinValue);
                string context;
                if (int8)
                {
                    var (w, s) = QuantizedWeight(qkvWeight, p + "attention.self.qkv");                                         // [H, 3·h·d] int8, [3·h·d]
                    var b = Weight(p + "attention.self.qkv.bias", qkvBias);
                    var q = G.NodeMulti("DynamicQuantizeLinear", [hidden], [p + "qkv_input_u8", p + "qkv_input_scale", p + "qkv_input_zero_point"]);
                    context = G.MicrosoftNode("QAttention", [q[0], w, b, q[1], s, mask, q[2]], p + "context",
                        OnnxGraphBuilder.Int("num_heads", heads), maskFilter);
                }
                else
                {
                    var w = Weight(p + "attention.self.qkv.weight_t", qkvWeight.t().contiguous());                            // [H, 3·h·d]
                    var b = Weight(p + "attention.self.qkv.bias", qkvBias);
                    context = G.MicrosoftNode("Attention", [hidden, w, b, mask], p + "context",
                        OnnxGraphBuilder.Int("num_heads", heads), OnnxGraphBuilder.Ints("qkv_hidden_sizes", hd, hd, hd), maskFilter);
                }
                attended = DenseSkipLayerNorm(context, hidden, p + "attention.output.dense", p + "attention.output.LayerNorm", p + "attention_ln");
            }

            if (width == 0)
                return LayerNorm(G.Node("Add", [attended, Weight(p + "output.dense.bias", Param(p + "output.dense.bias"))], p + "ffn_out"), p + "output.LayerNorm", p + "output");
            string inner;
            var intermediateBias = Param(p + "intermediate.dense.bias");
            if (int8 && Config.HiddenAct == HiddenActivation.Gelu)
                // The bias is added inside DynamicQuantizeMatMul, as in the plain graph (whose Erf chain ONNX Runtime fuses to this Gelu).
                inner = G.MicrosoftNode("Gelu", [Dense(attended, p + "intermediate.dense", quantize: true)], p + "intermediate");
            else if (!int8 && Config.HiddenAct is HiddenActivation.Gelu or HiddenActivation.GeluTanh)
            {
                var product = Linear(attended, Param(p + "intermediate.dense.weight"), null, p + "intermediate.dense", int8);            // [B, T, F]
                inner = G.MicrosoftNode(Config.HiddenAct == HiddenActivation.Gelu ? "BiasGelu" : "FastGelu",
                    [product, Weight(p + "intermediate.dense.bias", intermediateBias)], p + "intermediate");
            }
            else inner = Activation(Dense(attended, p + "intermediate.dense", int8), p + "intermediate");
            return DenseSkipLayerNorm(inner, attended, p + "output.dense", p + "output.LayerNorm", p + "output");
        }

        /// <summary>
        /// LayerNorm(dense(x) + residual) in the fused graph. fp32: MatMul without bias, then SkipLayerNormalization adds
        /// bias and residual and normalises in one pass. int8: the bias stays inside DynamicQuantizeMatMul and the block is
        /// Add + LayerNormalization, the plain graph's arithmetic, because the LayerNorm output is the next quantized
        /// matmul's input: a last-bit difference there can move an activation across a rounding boundary of its uint8
        /// grid, and the int8 graph must equal the scheme's simulation (what QAT trains), not only approximate it.
        /// </summary>
        private string DenseSkipLayerNorm(string x, string residual, string dense, string norm, string hint)
        {
            if (int8) return LayerNorm(G.Node("Add", [Dense(x, dense, quantize: true), residual], hint + "_sum"), norm, hint);
            var product = Linear(x, Param(dense + ".weight"), null, dense, quantize: false);                                         // [B, T, H]
            return SkipLayerNorm(product, residual, Weight(dense + ".bias", Param(dense + ".bias")), norm, hint);
        }

        private void MaskedLmHead(string ids, string hidden)
        {
            const string p = "cls.predictions.";
            var transformed = LayerNorm(Activation(Dense(hidden, p + "transform.dense", quantize: false), "mlm_transform_act"), p + "transform.LayerNorm", "mlm_transform");
            // Decoder tied to the word embeddings [V, H]: Gemm(transB) on [B·T, H] avoids storing a transposed copy.
            var flat = G.Node("Reshape", [transformed, G.Int64s(-1, Config.HiddenSize)], "mlm_flat");   // [B·T, H]
            var table = Weight("bert.embeddings.word_embeddings.weight", Param("bert.embeddings.word_embeddings.weight"));
            var logits = G.Node("Gemm", [flat, table, Weight(p + "bias", Param(p + "bias"))], "mlm_logits_flat", OnnxGraphBuilder.Int("transB", 1));   // [B·T, V]
            var shape = G.Node("Concat", [G.Node("Shape", [ids], "batch_sequence"), G.Int64s(Config.VocabSize)], "logits_shape", OnnxGraphBuilder.Int("axis", 0));
            G.Node("Reshape", [logits, shape], Logits);                                                     // [B, T, V]
            G.Output(Logits, DataType.Float, "batch", "sequence", Config.VocabSize);
        }

        private void ClassificationHead(string hidden)
        {
            var cls = G.Node("Gather", [hidden, G.Int64Scalar(0)], "cls_hidden", OnnxGraphBuilder.Int("axis", 1));   // [B, H]
            var pooled = G.Node("Tanh", [Dense(cls, "bert.pooler.dense", int8)], "pooler_output");
            var logits = Dense(pooled, "classifier", quantize: false);                                       // [B, C]
            G.Node("Identity", [logits], Logits);
            G.Output(Logits, DataType.Float, "batch", Config.NumLabels);
        }

        /// <summary>
        /// Pooling and normalisation of <see cref="BertForSentenceEmbedding.Embed"/>: mean over real tokens
        /// (ReduceSum of h·m over T / max(ReduceSum of m, 1e-9)) or h[CLS], then x / max(√Σx², 1e-12). fp32 in int8
        /// graphs too; a projection (Dense, [D, H]) is one fp32 MatMul by Pᵀ [H, D] between the two normalisations.
        /// </summary>
        private void SentenceEmbeddingHead(string mask, string hidden, BertForSentenceEmbedding model)
        {
            var config = model.SentenceConfig;
            string pooled;
            if (config.Pooling == SentencePooling.Cls)
                pooled = G.Node("Gather", [hidden, G.Int64Scalar(0)], "cls_hidden", OnnxGraphBuilder.Int("axis", 1));                   // [B, H]
            else
            {
                var weights = G.Node("Unsqueeze", [G.Node("Cast", [mask], "pool_mask", OnnxGraphBuilder.Int("to", (long)DataType.Float)), G.Int64s(-1)], "pool_mask_3d");   // [B, T, 1]
                var sum = G.Node("ReduceSum", [G.Node("Mul", [hidden, weights], "pool_masked"), G.Int64s(1)], "pool_sum", OnnxGraphBuilder.Int("keepdims", 0));   // [B, H]
                var count = G.Node("ReduceSum", [weights, G.Int64s(1)], "pool_count", OnnxGraphBuilder.Int("keepdims", 0));                              // [B, 1]
                pooled = G.Node("Div", [sum, G.Node("Max", [count, G.Scalar(BertForSentenceEmbedding.MinTokenCount)], "pool_count_floor")], "pool_mean");
            }
            if (model.Projection is { } projection)
            {
                if (config.NormalizeBeforeProjection) pooled = L2Normalize(pooled, "pooled");
                using var transposed = projection.detach().to(ScalarType.Float32).t().contiguous();             // [H, D]
                var weight = G.Initializer("sentence_projection", transposed.data<float>().ToArray(), transposed.shape);
                pooled = G.Node("MatMul", [pooled, weight], "embedding_projected");                                 // [B, D]
            }
            if (config.Normalize) pooled = L2Normalize(pooled, "embedding");
            G.Node("Identity", [pooled], SentenceEmbedding);
            G.Output(SentenceEmbedding, DataType.Float, "batch", model.EmbeddingDimension);
        }

        /// <summary>x / max(√Σx², 1e-12) along the last axis, as <see cref="BertForSentenceEmbedding.L2Normalize"/>.</summary>
        private string L2Normalize(string x, string hint)
        {
            var squares = G.Node("ReduceSum", [G.Node("Mul", [x, x], hint + "_sq"), G.Int64s(-1)], hint + "_sq_sum", OnnxGraphBuilder.Int("keepdims", 1));   // [B, 1]
            var norm = G.Node("Max", [G.Node("Sqrt", [squares], hint + "_norm_raw"), G.Scalar(BertForSentenceEmbedding.MinNorm)], hint + "_norm");
            return G.Node("Div", [x, norm], hint + "_normalized");
        }

        private void QuestionAnsweringHead(string hidden)
        {
            var logits = Dense(hidden, "qa_outputs", quantize: false);                                       // [B, T, 2]
            var parts = G.NodeMulti("Split", [logits, G.Int64s(1, 1)], ["start_split", "end_split"], OnnxGraphBuilder.Int("axis", -1));
            G.Node("Squeeze", [parts[0], G.Int64s(-1)], StartLogits);
            G.Node("Squeeze", [parts[1], G.Int64s(-1)], EndLogits);
            G.Output(StartLogits, DataType.Float, "batch", "sequence");
            G.Output(EndLogits, DataType.Float, "batch", "sequence");
        }
    }
}
