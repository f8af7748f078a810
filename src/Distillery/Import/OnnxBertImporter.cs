// Imports a BERT encoder exported to ONNX (torch.onnx.export of transformers' BertModel or BertFor*, any opset from
// 11, any naming of the Linear weights) as a Hugging Face model folder: config.json, model.safetensors, vocab.txt and
// tokenizer_config.json, the layout Distillery and transformers load.
//
// What PyTorch's exporter writes, and how each part is recovered:
//   * Named initializers for every parameter it did not touch: embeddings, LayerNorms, biases (for example
//     "encoder.layer.0.attention.self.query.bias"), the pooler's Gemm weight.
//   * A Linear y = x Wᵀ + b becomes MatMul(x, Wᵀ) -> Add(b, ·) with Wᵀ [in, out] constant-folded into an anonymous
//     initializer ("onnx::MatMul_927" or "927"). The Add carrying the named bias names the Linear: the weight is
//     "<bias name without .bias>.weight" = transpose(MatMul's initializer). A MatMul reading Transpose(named weight)
//     (exports without constant folding) takes the named [out, in] weight as it is; a Gemm takes its B input, transposed
//     unless transB = 1.
//   * The config is read off the graph, never assumed: layers (the encoder.layer.N indices), hidden size, vocabulary,
//     positions and token types (the embedding tables), FFN widths (the intermediate weights), heads and head size (the
//     two constants at the end of the shape of the Reshape that splits the query into heads: [B, T, heads, head size]),
//     LayerNorm epsilon (the LayerNormalization attribute, or the constant added to the variance before Sqrt in the
//     decomposed form), the FFN activation (Erf: exact GELU; Tanh: tanh GELU; Relu; Sigmoid: SiLU).
// Anything else that multiplies by a constant weight and cannot be named this way is an error naming the node: a
// partial import would be a different model.
using System.Text.Json.Nodes;
using Distillery.Export.Onnx;
using Distillery.IO;
using Distillery.Models;
using Distillery.Text;
using static TorchSharp.torch;
using DataType = Distillery.Export.Onnx.TensorProto.Types.DataType;

namespace Distillery.Import;

/// <summary>A dense fp32 tensor read from a graph: row-major values and shape.</summary>
public sealed record ImportedTensor(float[] Data, long[] Shape);

/// <summary>An imported encoder: its config (inferred from the graph), its tensors by transformers' BertModel names
/// (<c>embeddings.*</c>, <c>encoder.layer.N.*</c>, <c>pooler.*</c>), and what was left out.</summary>
public sealed record ImportedBert(BertConfig Config, IReadOnlyDictionary<string, ImportedTensor> Tensors, IReadOnlyList<string> Notes)
{
    /// <summary>Parameters (position_ids and other buffers excluded).</summary>
    public long Parameters => Tensors.Values.Sum(t => (long)t.Data.Length);
}

/// <summary>Maps a PyTorch-exported BERT ONNX graph back to transformers' parameter names.</summary>
public static class OnnxBertImporter
{
    /// <summary>Parses an ONNX file's bytes (defensively: a damaged file is one line naming it).</summary>
    public static ModelProto Parse(byte[] bytes, string where)
    {
        try
        {
            var model = ModelProto.Parser.ParseFrom(bytes);
            if (model.Graph == null || model.Graph.Node.Count == 0) throw new InvalidDataException($"{where}: not an ONNX model (no graph nodes)");
            return model;
        }
        catch (Google.Protobuf.InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"{where}: not a readable ONNX file ({e.Message})");
        }
    }

    /// <summary>Maps <paramref name="model"/>'s graph to a BERT encoder; see the file header for how.</summary>
    public static ImportedBert Import(ModelProto model, string where, int padTokenId = 0)
    {
        var graph = new GraphIndex(model.Graph, where);
        var notes = new List<string>();
        var named = new Dictionary<string, ImportedTensor>(StringComparer.Ordinal);

        // 1. Linears: name each from its bias (anonymous MatMul weights), or from its named weight (behind a Transpose,
        //    or a Gemm's B), stored [out, in] as transformers does.
        foreach (var node in model.Graph.Node)
        {
            switch (node.OpType)
            {
                case "MatMul":
                    MapMatMul(graph, node, named);
                    break;
                case "Gemm":
                    MapGemm(graph, node, named);
                    break;
            }
        }

        // 2. The other named float initializers (embeddings, LayerNorms, biases) as they are. A named weight that a
        //    MatMul/Gemm/Transpose reads was mapped (and oriented) in step 1.
        foreach (var init in model.Graph.Initializer)
        {
            if (init.DataType != (int)DataType.Float || !IsParameterName(init.Name) || named.ContainsKey(Canonical(init.Name))) continue;
            bool feedsProduct = graph.Consumers(init.Name).Any(n => n.OpType == "Transpose" || (n.OpType is "MatMul" or "Gemm" && n.Input.Count > 1 && n.Input[1] == init.Name));
            if (feedsProduct)
                throw new InvalidDataException($"{where}: the weight {init.Name} feeds a product Distillery could not map to a Linear layer");
            named[Canonical(init.Name)] = graph.Float(init.Name);
        }

        // 3. Keep the encoder and pooler; report other heads' tensors (classifier, qa_outputs, cls.*) as left out.
        var tensors = new Dictionary<string, ImportedTensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in named)
        {
            if (name.StartsWith("embeddings.", StringComparison.Ordinal) || name.StartsWith("encoder.", StringComparison.Ordinal) || name.StartsWith("pooler.", StringComparison.Ordinal))
            {
                if (name != "embeddings.position_ids") tensors[name] = tensor;
            }
            else notes.Add($"left out {name} [{string.Join(", ", tensor.Shape)}] (not part of the encoder)");
        }
        var config = InferConfig(graph, tensors, where, padTokenId);
        CheckComplete(config, tensors, where);
        if (!tensors.ContainsKey("pooler.dense.weight")) notes.Add("the graph has no pooler: a task head will initialise it");
        return new ImportedBert(config, tensors, notes);
    }

    /// <summary>
    /// Writes <paramref name="imported"/> as a model folder at <paramref name="outDir"/> with the vocabulary at
    /// <paramref name="vocabPath"/> (any line endings; written with \n). The folder is assembled in a temporary sibling
    /// and renamed into place, so it either appears complete or not at all. <paramref name="extraFiles"/> (name → JSON)
    /// are written into it too (the import record).
    /// </summary>
    public static void Save(ImportedBert imported, string vocabPath, string outDir, IReadOnlyDictionary<string, JsonNode>? extraFiles = null)
    {
        string full = Path.GetFullPath(outDir);
        if (Directory.Exists(full) || File.Exists(full)) throw new IOException($"{outDir} already exists; choose another --out or remove it");
        string temp = full.TrimEnd(Path.DirectorySeparatorChar) + $".partial-{Environment.ProcessId}";
        if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        Directory.CreateDirectory(temp);
        try
        {
            // The vocabulary: normalised to \n line endings (the NuGet copy has \r\n), one token per line.
            var tokens = File.ReadAllText(vocabPath).Replace("\r\n", "\n").TrimEnd('\n').Split('\n');
            if (tokens.Length != imported.Config.VocabSize)
                throw new InvalidDataException($"{vocabPath}: {tokens.Length} tokens, but the graph's word-embedding table has {imported.Config.VocabSize} rows");
            string vocabOut = Path.Combine(temp, BertCheckpoint.VocabFile);
            File.WriteAllText(vocabOut, string.Join("\n", tokens) + "\n");
            var tokenizer = BertTextTokenizer.FromVocab(vocabOut);
            tokenizer.SaveTo(temp);

            using (var scope = NewDisposeScope())
            {
                var state = imported.Tensors.ToDictionary(kv => kv.Key, kv => tensor(kv.Value.Data, kv.Value.Shape));
                Safetensors.Save(Path.Combine(temp, BertCheckpoint.WeightsFile), state, new Dictionary<string, string> { ["format"] = "pt" });
            }
            foreach (var (name, json) in extraFiles ?? new Dictionary<string, JsonNode>())
                AtomicFile.WriteAllText(Path.Combine(temp, name), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
            imported.Config.Save(Path.Combine(temp, BertCheckpoint.ConfigFile));   // config.json last: marks the folder finished
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            Directory.Move(temp, full);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    // ---- mapping ---------------------------------------------------------------------------------------------------

    static bool IsParameterName(string name) =>
        name.EndsWith(".weight", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal) || name.EndsWith("position_ids", StringComparison.Ordinal);

    /// <summary>transformers' BertModel name: BertFor* exports prefix the encoder with "bert.".</summary>
    static string Canonical(string name) => name.StartsWith("bert.", StringComparison.Ordinal) ? name["bert.".Length..] : name;

    static void MapMatMul(GraphIndex graph, NodeProto node, Dictionary<string, ImportedTensor> named)
    {
        if (node.Input.Count != 2) return;
        string b = node.Input[1];
        if (graph.IsConstantFloatMatrix(b))
        {
            // MatMul(x, Wᵀ [in, out]) -> Add(bias): the bias names the Linear.
            var weightT = graph.Float(b);
            string? bias = graph.Consumers(node.Output[0]).Where(c => c.OpType == "Add")
                .SelectMany(c => c.Input).FirstOrDefault(i => i != node.Output[0] && graph.IsInitializer(i) && i.EndsWith(".bias", StringComparison.Ordinal));
            if (bias == null)
            {
                if (IsParameterName(b)) return;   // a named weight used directly (handled in step 1 by its own name)
                throw new InvalidDataException($"{graph.Where}: node {Describe(node)} multiplies by the unnamed constant {b} [{string.Join(", ", weightT.Shape)}], and no Add of a named bias follows it, so its parameter name cannot be recovered");
            }
            var biasTensor = graph.Float(bias);
            if (biasTensor.Shape.Length != 1 || biasTensor.Shape[0] != weightT.Shape[1])
                throw new InvalidDataException($"{graph.Where}: node {Describe(node)}: bias {bias} has {biasTensor.Shape[^1]} values but the weight {b} has {weightT.Shape[1]} outputs");
            Put(named, Canonical(bias[..^".bias".Length] + ".weight"), Transpose(weightT), node, graph);
        }
        else if (graph.Producer(b) is { OpType: "Transpose" } transpose && transpose.Input.Count == 1 && graph.IsConstantFloatMatrix(transpose.Input[0]))
        {
            // MatMul(x, Transpose(W [out, in])): the weight kept its name.
            string w = transpose.Input[0];
            var perm = transpose.Attribute.FirstOrDefault(a => a.Name == "perm")?.Ints;
            if (perm != null && !(perm.Count == 2 && perm[0] == 1 && perm[1] == 0))
                throw new InvalidDataException($"{graph.Where}: node {Describe(transpose)} transposes the weight {w} with perm [{string.Join(", ", perm)}], not [1, 0]");
            if (!IsParameterName(w))
                throw new InvalidDataException($"{graph.Where}: node {Describe(node)} multiplies by the transposed unnamed constant {w}; its parameter name cannot be recovered");
            Put(named, Canonical(w), graph.Float(w), node, graph);
        }
    }

    static void MapGemm(GraphIndex graph, NodeProto node, Dictionary<string, ImportedTensor> named)
    {
        if (node.Input.Count < 2 || !graph.IsConstantFloatMatrix(node.Input[1])) return;
        float alpha = node.Attribute.FirstOrDefault(a => a.Name == "alpha")?.F ?? 1f;
        float beta = node.Attribute.FirstOrDefault(a => a.Name == "beta")?.F ?? 1f;
        long transA = node.Attribute.FirstOrDefault(a => a.Name == "transA")?.I ?? 0;
        long transB = node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I ?? 0;
        if (alpha != 1f || beta != 1f || transA != 0)
            throw new InvalidDataException($"{graph.Where}: node {Describe(node)}: Gemm with alpha {alpha}, beta {beta}, transA {transA} is not a Linear layer");
        string b = node.Input[1];
        var weight = transB == 1 ? graph.Float(b) : Transpose(graph.Float(b));   // [out, in]
        string? name = IsParameterName(b) ? b
            : node.Input.Count > 2 && node.Input[2].EndsWith(".bias", StringComparison.Ordinal) ? node.Input[2][..^".bias".Length] + ".weight"
            : null;
        if (name == null)
            throw new InvalidDataException($"{graph.Where}: node {Describe(node)}: neither its weight {b} nor its bias is named, so its parameter name cannot be recovered");
        Put(named, Canonical(name), weight, node, graph);
    }

    static void Put(Dictionary<string, ImportedTensor> named, string name, ImportedTensor weight, NodeProto node, GraphIndex graph)
    {
        if (named.TryGetValue(name, out var existing) && !(existing.Shape.SequenceEqual(weight.Shape) && existing.Data.AsSpan().SequenceEqual(weight.Data)))
            throw new InvalidDataException($"{graph.Where}: node {Describe(node)} maps to {name}, which another node already gave different values");
        named[name] = weight;
    }

    static ImportedTensor Transpose(ImportedTensor t)
    {
        if (t.Shape.Length != 2) throw new InvalidDataException($"expected a matrix, got [{string.Join(", ", t.Shape)}]");
        int rows = (int)t.Shape[0], cols = (int)t.Shape[1];
        var data = new float[t.Data.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                data[c * rows + r] = t.Data[r * cols + c];
        return new ImportedTensor(data, [cols, rows]);
    }

    static string Describe(NodeProto node) => $"{(string.IsNullOrEmpty(node.Name) ? "(unnamed)" : node.Name)} ({node.OpType})";

    // ---- config inference ------------------------------------------------------------------------------------------

    static BertConfig InferConfig(GraphIndex graph, Dictionary<string, ImportedTensor> tensors, string where, int padTokenId)
    {
        ImportedTensor Need(string name) => tensors.TryGetValue(name, out var t) ? t
            : throw new InvalidDataException($"{where}: no tensor maps to {name}; this graph is not a BERT encoder Distillery can import");
        var words = Need("embeddings.word_embeddings.weight");
        var positions = Need("embeddings.position_embeddings.weight");
        var types = Need("embeddings.token_type_embeddings.weight");
        if (words.Shape.Length != 2 || positions.Shape.Length != 2 || types.Shape.Length != 2)
            throw new InvalidDataException($"{where}: the embedding tables are not matrices");
        int hidden = (int)words.Shape[1];

        var layerIndices = tensors.Keys.Where(k => k.StartsWith("encoder.layer.", StringComparison.Ordinal))
            .Select(k => k["encoder.layer.".Length..].Split('.')[0])
            .Select(s => int.TryParse(s, out int i) ? i : throw new InvalidDataException($"{where}: tensor encoder.layer.{s}... has no layer number"))
            .Distinct().Order().ToList();
        if (layerIndices.Count == 0) throw new InvalidDataException($"{where}: no encoder layers found");
        if (layerIndices[^1] != layerIndices.Count - 1)
            throw new InvalidDataException($"{where}: encoder layers are not numbered 0..{layerIndices.Count - 1} (found {string.Join(", ", layerIndices)})");
        int layers = layerIndices.Count;

        var widths = Enumerable.Range(0, layers).Select(l => (int)Need($"encoder.layer.{l}.intermediate.dense.weight").Shape[0]).ToList();
        var allHeadSizes = Enumerable.Range(0, layers).Select(l => (int)Need($"encoder.layer.{l}.attention.self.query.weight").Shape[0]).ToList();
        if (allHeadSizes.Distinct().Count() != 1) throw new InvalidDataException($"{where}: layers have different attention widths ({string.Join(", ", allHeadSizes)}); per-layer heads are not importable");

        var (heads, headSize) = HeadsOf(graph, where);
        if (heads * headSize != allHeadSizes[0])
            throw new InvalidDataException($"{where}: the query splits into {heads} heads of {headSize}, but its weight has {allHeadSizes[0]} outputs");
        double eps = LayerNormEpsilon(graph, where);
        var activation = ActivationOf(graph, where);

        return new BertConfig
        {
            VocabSize = (int)words.Shape[0],
            HiddenSize = hidden,
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            AttentionHeadSize = heads * headSize == hidden ? null : headSize,
            IntermediateSize = widths[0],
            LayerIntermediateSizes = widths.Distinct().Count() == 1 ? null : widths,
            HiddenAct = activation,
            MaxPositionEmbeddings = (int)positions.Shape[0],
            TypeVocabSize = (int)types.Shape[0],
            LayerNormEps = eps,
            PadTokenId = padTokenId,
            Architectures = ["BertModel"],
        }.Validate(where);
    }

    static void CheckComplete(BertConfig config, Dictionary<string, ImportedTensor> tensors, string where)
    {
        var expected = new List<(string Name, long[] Shape)>
        {
            ("embeddings.LayerNorm.weight", [config.HiddenSize]), ("embeddings.LayerNorm.bias", [config.HiddenSize]),
        };
        int inner = config.HeadSize * config.NumAttentionHeads;
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            string p = $"encoder.layer.{l}.";
            int f = config.IntermediateSizeOf(l);
            foreach (var qkv in new[] { "query", "key", "value" })
            {
                expected.Add(($"{p}attention.self.{qkv}.weight", [inner, config.HiddenSize]));
                expected.Add(($"{p}attention.self.{qkv}.bias", [inner]));
            }
            expected.AddRange([
                ($"{p}attention.output.dense.weight", [config.HiddenSize, inner]), ($"{p}attention.output.dense.bias", [config.HiddenSize]),
                ($"{p}attention.output.LayerNorm.weight", [config.HiddenSize]), ($"{p}attention.output.LayerNorm.bias", [config.HiddenSize]),
                ($"{p}intermediate.dense.weight", [f, config.HiddenSize]), ($"{p}intermediate.dense.bias", [f]),
                ($"{p}output.dense.weight", [config.HiddenSize, f]), ($"{p}output.dense.bias", [config.HiddenSize]),
                ($"{p}output.LayerNorm.weight", [config.HiddenSize]), ($"{p}output.LayerNorm.bias", [config.HiddenSize]),
            ]);
        }
        if (tensors.ContainsKey("pooler.dense.weight") || tensors.ContainsKey("pooler.dense.bias"))
            expected.AddRange([("pooler.dense.weight", [config.HiddenSize, config.HiddenSize]), ("pooler.dense.bias", [config.HiddenSize])]);
        foreach (var (name, shape) in expected)
        {
            if (!tensors.TryGetValue(name, out var t))
                throw new InvalidDataException($"{where}: no tensor maps to {name}");
            if (!t.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{where}: {name} is [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]");
        }
        var unknown = tensors.Keys.Except(expected.Select(e => e.Name)).Except(["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight"]).ToList();
        if (unknown.Count > 0)
            throw new InvalidDataException($"{where}: tensor(s) a BERT encoder does not have: {string.Join(", ", unknown.Take(4))}");
    }

    /// <summary>
    /// Heads and head size: the Reshape that splits the first layer's query projection into heads has the shape
    /// [B, T, heads, head size]; its last two entries are constants (a Concat of the dynamic batch and length with two
    /// constants, or one constant vector such as [0, 0, 12, 32]).
    /// </summary>
    static (int Heads, int HeadSize) HeadsOf(GraphIndex graph, string where)
    {
        var queryAdd = graph.ConsumersOfInitializer("encoder.layer.0.attention.self.query.bias", "bert.encoder.layer.0.attention.self.query.bias")
            .FirstOrDefault(n => n.OpType == "Add")
            ?? throw new InvalidDataException($"{where}: no Add node adds the first layer's query bias; cannot find the attention heads");
        var reshape = graph.Downstream(queryAdd.Output[0], n => n.OpType == "Reshape", maxDepth: 3)
            ?? throw new InvalidDataException($"{where}: node {Describe(queryAdd)}: no Reshape splits the query into heads after it");
        if (reshape.Input.Count < 2) throw new InvalidDataException($"{where}: node {Describe(reshape)} has no shape input");
        var shape = graph.ShapeEntries(reshape.Input[1]);
        if (shape == null || shape.Count != 4 || shape[2] is not long heads || shape[3] is not long headSize || heads <= 0 || headSize <= 0)
            throw new InvalidDataException($"{where}: node {Describe(reshape)}: its shape is not [batch, length, heads, head size] with constant heads and head size");
        return ((int)heads, (int)headSize);
    }

    /// <summary>
    /// The embeddings' LayerNorm epsilon: the attribute of a LayerNormalization node, or, in the decomposed form
    /// ((x − mean) / Sqrt(Add(ReduceMean((x − mean)²), eps)) · γ + β), the constant of the Add before Sqrt.
    /// </summary>
    static double LayerNormEpsilon(GraphIndex graph, string where)
    {
        var consumer = graph.ConsumersOfInitializer("embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.weight").FirstOrDefault()
            ?? throw new InvalidDataException($"{where}: nothing reads embeddings.LayerNorm.weight; cannot find the LayerNorm epsilon");
        if (consumer.OpType == "LayerNormalization")
            return Decimal(consumer.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f);
        if (consumer.OpType == "Mul")
        {
            var div = consumer.Input.Select(graph.Producer).FirstOrDefault(n => n?.OpType == "Div");
            var sqrt = div == null ? null : graph.Producer(div.Input[1]);
            var add = sqrt?.OpType == "Sqrt" ? graph.Producer(sqrt.Input[0]) : null;
            if (add?.OpType == "Add")
                foreach (var input in add.Input)
                    if (graph.ScalarFloat(input) is float eps) return Decimal(eps);
        }
        throw new InvalidDataException($"{where}: node {Describe(consumer)}: not a LayerNorm pattern Distillery knows (LayerNormalization, or Div by Sqrt(variance + eps))");
    }

    /// <summary>A float32 constant as the decimal it was written from (1e-12f, not 9.99999996e-13): its shortest round-trip form.</summary>
    static double Decimal(float value) => double.Parse(value.ToString(System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The FFN activation: the ops between the first intermediate bias Add and the output dense's MatMul.</summary>
    static HiddenActivation ActivationOf(GraphIndex graph, string where)
    {
        var biasAdd = graph.ConsumersOfInitializer("encoder.layer.0.intermediate.dense.bias", "bert.encoder.layer.0.intermediate.dense.bias")
            .FirstOrDefault(n => n.OpType == "Add")
            ?? throw new InvalidDataException($"{where}: no Add node adds the first layer's intermediate bias; cannot find the activation");
        var ops = graph.OpsUntil(biasAdd.Output[0], n => n.OpType is "MatMul" or "Gemm", maxDepth: 12);
        if (ops.Contains("Erf")) return HiddenActivation.Gelu;
        if (ops.Contains("Gelu")) return HiddenActivation.Gelu;         // ai.onnx Gelu (opset 20) / com.microsoft Gelu: exact
        if (ops.Contains("Tanh") || ops.Contains("FastGelu")) return HiddenActivation.GeluTanh;
        if (ops.Contains("Relu")) return HiddenActivation.Relu;
        if (ops.Contains("Sigmoid")) return HiddenActivation.Silu;
        throw new InvalidDataException($"{where}: node {Describe(biasAdd)}: the activation after it ({string.Join(", ", ops)}) is not GELU, tanh GELU, ReLU or SiLU");
    }

    /// <summary>Lookups over one graph: initializers, Constant nodes, producers and consumers.</summary>
    sealed class GraphIndex
    {
        readonly Dictionary<string, TensorProto> initializers = new(StringComparer.Ordinal);
        readonly Dictionary<string, NodeProto> producers = new(StringComparer.Ordinal);
        readonly Dictionary<string, List<NodeProto>> consumers = new(StringComparer.Ordinal);

        public string Where { get; }

        public GraphIndex(GraphProto graph, string where)
        {
            Where = where;
            foreach (var init in graph.Initializer) initializers[init.Name] = init;
            foreach (var node in graph.Node)
            {
                foreach (var output in node.Output) producers[output] = node;
                foreach (var input in node.Input)
                {
                    if (!consumers.TryGetValue(input, out var list)) consumers[input] = list = [];
                    list.Add(node);
                }
            }
        }

        public bool IsInitializer(string name) => initializers.ContainsKey(name);

        public NodeProto? Producer(string name) => producers.GetValueOrDefault(name);

        public IReadOnlyList<NodeProto> Consumers(string name) => consumers.TryGetValue(name, out var list) ? list : [];

        public IEnumerable<NodeProto> ConsumersOfInitializer(params string[] names) => names.SelectMany(Consumers);

        /// <summary>A constant (initializer or Constant node) of rank 2 and type float.</summary>
        public bool IsConstantFloatMatrix(string name) => Constant(name) is { } t && t.DataType == (int)DataType.Float && t.Dims.Count == 2;

        TensorProto? Constant(string name)
        {
            if (initializers.TryGetValue(name, out var init)) return init;
            if (producers.TryGetValue(name, out var node) && node.OpType == "Constant")
                return node.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
            return null;
        }

        /// <summary>A float constant's values; errors name the tensor.</summary>
        public ImportedTensor Float(string name)
        {
            var t = Constant(name) ?? throw new InvalidDataException($"{Where}: {name} is not a constant");
            if (t.DataType != (int)DataType.Float) throw new InvalidDataException($"{Where}: {name} is stored as {(DataType)t.DataType}, not float");
            var shape = t.Dims.ToArray();
            if (shape.Any(d => d < 0)) throw new InvalidDataException($"{Where}: {name} has a negative dimension");
            long count = 1;
            foreach (long d in shape) count = checked(count * d);
            if (count > int.MaxValue / 4) throw new InvalidDataException($"{Where}: {name} is too large ({count} values)");
            float[] data;
            if (t.RawData.Length > 0)
            {
                if (t.RawData.Length != count * 4) throw new InvalidDataException($"{Where}: {name} has {t.RawData.Length} bytes of data for {count} floats");
                data = new float[count];
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).CopyTo(data);
                if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
            }
            else
            {
                if (t.FloatData.Count != count) throw new InvalidDataException($"{Where}: {name} has {t.FloatData.Count} values for shape [{string.Join(", ", shape)}]");
                data = t.FloatData.ToArray();
            }
            return new ImportedTensor(data, shape);
        }

        /// <summary>A scalar (or one-element) float constant, or null.</summary>
        public float? ScalarFloat(string name)
        {
            var t = Constant(name);
            if (t == null || t.DataType != (int)DataType.Float || t.Dims.Aggregate(1L, (a, b) => a * b) != 1) return null;
            return t.RawData.Length == 4 ? BitConverter.ToSingle(t.RawData.Span) : t.FloatData.Count == 1 ? t.FloatData[0] : null;
        }

        /// <summary>Integer constant values (int64 or int32), or null.</summary>
        long[]? Ints(string name)
        {
            var t = Constant(name);
            if (t == null) return null;
            if (t.DataType == (int)DataType.Int64)
                return t.RawData.Length > 0 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(t.RawData.Span).ToArray() : t.Int64Data.ToArray();
            if (t.DataType == (int)DataType.Int32)
                return t.RawData.Length > 0 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(t.RawData.Span).ToArray().Select(i => (long)i).ToArray() : t.Int32Data.Select(i => (long)i).ToArray();
            return null;
        }

        /// <summary>
        /// The entries of a shape tensor: constants where known, null where computed at run time. Handles a constant
        /// vector and a Concat of constants and computed pieces (each piece one entry unless constant).
        /// </summary>
        public List<long?>? ShapeEntries(string name)
        {
            if (Ints(name) is { } constant) return constant.Select(v => (long?)v).ToList();
            if (Producer(name) is { OpType: "Concat" } concat)
            {
                var entries = new List<long?>();
                foreach (var input in concat.Input)
                {
                    if (Ints(input) is { } values) entries.AddRange(values.Select(v => (long?)v));
                    else entries.Add(null);   // a dynamic piece (Unsqueeze of a Gather of Shape): one entry
                }
                return entries;
            }
            return null;
        }

        /// <summary>The first node (breadth first, up to <paramref name="maxDepth"/> hops) after <paramref name="output"/> that matches.</summary>
        public NodeProto? Downstream(string output, Func<NodeProto, bool> match, int maxDepth)
        {
            var frontier = new List<string> { output };
            for (int depth = 0; depth < maxDepth && frontier.Count > 0; depth++)
            {
                var next = new List<string>();
                foreach (var node in frontier.SelectMany(Consumers))
                {
                    if (match(node)) return node;
                    next.AddRange(node.Output);
                }
                frontier = next;
            }
            return null;
        }

        /// <summary>Op types of the nodes after <paramref name="output"/> until (not including) nodes that match <paramref name="stop"/>.</summary>
        public HashSet<string> OpsUntil(string output, Func<NodeProto, bool> stop, int maxDepth)
        {
            var ops = new HashSet<string>(StringComparer.Ordinal);
            var frontier = new List<string> { output };
            var seen = new HashSet<NodeProto>();
            for (int depth = 0; depth < maxDepth && frontier.Count > 0; depth++)
            {
                var next = new List<string>();
                foreach (var node in frontier.SelectMany(Consumers))
                {
                    if (stop(node) || !seen.Add(node)) continue;
                    ops.Add(node.OpType);
                    next.AddRange(node.Output);
                }
                frontier = next;
            }
            return ops;
        }
    }
}
