using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Distillery.Models;

/// <summary>The activation of the feed-forward block (<c>hidden_act</c> in config.json).</summary>
public enum HiddenActivation
{
    /// <summary><c>"gelu"</c>: the exact erf GELU (what BERT uses; transformers maps "gelu" to it).</summary>
    Gelu,
    /// <summary><c>"gelu_new"</c> / <c>"gelu_pytorch_tanh"</c>: the tanh approximation.</summary>
    GeluTanh,
    /// <summary><c>"relu"</c>.</summary>
    Relu,
    /// <summary><c>"silu"</c> / <c>"swish"</c>.</summary>
    Silu,
}

/// <summary>What a sequence-level head predicts (<c>problem_type</c> in config.json).</summary>
public enum ProblemType
{
    /// <summary>Softmax over labels, cross-entropy loss.</summary>
    SingleLabelClassification,
    /// <summary>One real-valued output, MSE loss (STS-B).</summary>
    Regression,
}

/// <summary>
/// A BERT configuration, read from and written to Hugging Face's <c>config.json</c> (field names as transformers'
/// <c>BertConfig</c>). Unknown fields are kept and written back, so a config round-trips through Distillery.
/// <para>
/// Beyond transformers' fields, pruned and narrow models need shapes that vary per layer. They are stored under extra
/// keys that transformers ignores: <c>distillery_layer_heads</c> (heads per layer), <c>distillery_layer_intermediate_sizes</c>
/// (FFN width per layer) and <c>distillery_attention_head_size</c> (when it is not hidden/heads). Fewer heads in a layer are
/// also written as transformers' own <c>pruned_heads</c> (the last heads of each layer), so transformers loads a head-pruned
/// checkpoint unchanged. transformers has no per-layer FFN width: such a checkpoint loads only in Distillery.
/// </para>
/// </summary>
public sealed record BertConfig
{
    /// <summary>Rows of the word-embedding matrix; must equal the size of vocab.txt.</summary>
    public int VocabSize { get; init; } = 30522;
    /// <summary>Width of the residual stream, H.</summary>
    public int HiddenSize { get; init; } = 768;
    /// <summary>Number of encoder layers, L.</summary>
    public int NumHiddenLayers { get; init; } = 12;
    /// <summary>Heads of an unpruned layer; the head size is <see cref="HiddenSize"/> / this unless set explicitly.</summary>
    public int NumAttentionHeads { get; init; } = 12;
    /// <summary>FFN width of an unpruned layer (4H in BERT).</summary>
    public int IntermediateSize { get; init; } = 3072;
    /// <summary>FFN activation.</summary>
    public HiddenActivation HiddenAct { get; init; } = HiddenActivation.Gelu;
    /// <summary>Dropout after embeddings, attention output and FFN output.</summary>
    public double HiddenDropoutProb { get; init; } = 0.1;
    /// <summary>Dropout on attention probabilities.</summary>
    public double AttentionProbsDropoutProb { get; init; } = 0.1;
    /// <summary>Length of the learned absolute position table; the longest input the model accepts.</summary>
    public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary>Segment (token type) vocabulary; 2 in BERT.</summary>
    public int TypeVocabSize { get; init; } = 2;
    /// <summary>Std of the normal init of weights (BERT: 0.02).</summary>
    public double InitializerRange { get; init; } = 0.02;
    /// <summary>LayerNorm epsilon (BERT: 1e-12).</summary>
    public double LayerNormEps { get; init; } = 1e-12;
    /// <summary>Id of [PAD]; its word-embedding row is initialised to zero.</summary>
    public int PadTokenId { get; init; }
    /// <summary>Dropout before the classifier; null means <see cref="HiddenDropoutProb"/> (as transformers).</summary>
    public double? ClassifierDropout { get; init; }
    /// <summary>Label names in id order (<c>id2label</c>); its count is the classifier's output size.</summary>
    public IReadOnlyList<string> Labels { get; init; } = ["LABEL_0", "LABEL_1"];
    /// <summary>Classification or regression; null lets the label count decide (1 → regression), as transformers.</summary>
    public ProblemType? ProblemType { get; init; }
    /// <summary>transformers class names, e.g. <c>BertForMaskedLM</c>; the first picks the head when loading.</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];
    /// <summary>Storage dtype of the weights on disk: float32, float16 or bfloat16.</summary>
    public string TorchDtype { get; init; } = "float32";
    /// <summary>Heads per layer when they differ between layers (pruning); null means all <see cref="NumAttentionHeads"/>.</summary>
    public IReadOnlyList<int>? LayerHeads { get; init; }
    /// <summary>FFN width per layer when it differs between layers; null means all <see cref="IntermediateSize"/>.</summary>
    public IReadOnlyList<int>? LayerIntermediateSizes { get; init; }
    /// <summary>Head size d when it is not <see cref="HiddenSize"/> / <see cref="NumAttentionHeads"/>.</summary>
    public int? AttentionHeadSize { get; init; }
    /// <summary>
    /// Why this masked-LM model's head (<c>cls.*</c>) was never trained with its encoder; null when it was, or when nothing
    /// says otherwise (imported and pre-trained models). Task-agnostic distillation whose objective never reaches the head
    /// writes it (MiniLM distils self-attention relations only: the saved head is the teacher's copy or a fresh init, and
    /// does not fit the distilled encoder). Fill-mask refuses such a model unless asked, the run skips its held-out MLM
    /// evaluation, and methods that distil a teacher's masked-LM predictions refuse it as their teacher; fine-tuning and
    /// encoder-only methods ignore the head. Written as <c>distillery_mlm_head_untrained</c> (transformers ignores it)
    /// and only for masked-LM models: a task model has no such head.
    /// </summary>
    public string? MlmHeadUntrained { get; init; }
    /// <summary>Fields Distillery does not interpret, kept so that they are written back unchanged.</summary>
    public IReadOnlyDictionary<string, JsonNode?> Extra { get; init; } = new Dictionary<string, JsonNode?>();

    /// <summary>Number of outputs of a sequence head.</summary>
    public int NumLabels => Labels.Count;
    /// <summary>Head size d (query/key/value width per head).</summary>
    public int HeadSize => AttentionHeadSize ?? HiddenSize / Math.Max(1, NumAttentionHeads);
    /// <summary>Heads in layer <paramref name="layer"/>.</summary>
    public int HeadsInLayer(int layer) => LayerHeads?[layer] ?? NumAttentionHeads;
    /// <summary>FFN width of layer <paramref name="layer"/>.</summary>
    public int IntermediateSizeOf(int layer) => LayerIntermediateSizes?[layer] ?? IntermediateSize;
    /// <summary>Whether the sequence head is a regression head.</summary>
    public bool IsRegression => ProblemType == Models.ProblemType.Regression || (ProblemType == null && NumLabels == 1);

    /// <summary>A uniform config of the given shape with BERT's defaults (heads = H/64, FFN = 4H unless given).</summary>
    public static BertConfig Create(int layers, int hidden, int? heads = null, int? intermediate = null, int vocabSize = 30522) => new()
    {
        NumHiddenLayers = layers,
        HiddenSize = hidden,
        NumAttentionHeads = heads ?? Math.Max(1, hidden / 64),
        IntermediateSize = intermediate ?? 4 * hidden,
        VocabSize = vocabSize,
    };

    /// <summary>Checks every field; throws <see cref="InvalidDataException"/> naming the field and the problem.</summary>
    public BertConfig Validate(string where = "config")
    {
        void Require(bool ok, string message) { if (!ok) throw new InvalidDataException($"{where}: {message}"); }
        Require(VocabSize > 0, $"vocab_size must be positive (got {VocabSize})");
        Require(HiddenSize > 0, $"hidden_size must be positive (got {HiddenSize})");
        Require(NumHiddenLayers >= 0, $"num_hidden_layers must not be negative (got {NumHiddenLayers})");
        Require(NumAttentionHeads > 0, $"num_attention_heads must be positive (got {NumAttentionHeads})");
        Require(AttentionHeadSize != null || HiddenSize % NumAttentionHeads == 0,
            $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}");
        Require(AttentionHeadSize is null or > 0, $"distillery_attention_head_size must be positive (got {AttentionHeadSize})");
        Require(IntermediateSize >= 0, $"intermediate_size must not be negative (got {IntermediateSize})");
        Require(MaxPositionEmbeddings > 0, $"max_position_embeddings must be positive (got {MaxPositionEmbeddings})");
        Require(TypeVocabSize > 0, $"type_vocab_size must be positive (got {TypeVocabSize})");
        Require(LayerNormEps > 0, $"layer_norm_eps must be positive (got {LayerNormEps})");
        Require(InitializerRange >= 0, $"initializer_range must not be negative (got {InitializerRange})");
        Require(HiddenDropoutProb is >= 0 and < 1, $"hidden_dropout_prob must be in [0, 1) (got {HiddenDropoutProb})");
        Require(AttentionProbsDropoutProb is >= 0 and < 1, $"attention_probs_dropout_prob must be in [0, 1) (got {AttentionProbsDropoutProb})");
        Require(ClassifierDropout is null or (>= 0 and < 1), $"classifier_dropout must be in [0, 1) (got {ClassifierDropout})");
        Require(PadTokenId >= 0 && PadTokenId < VocabSize, $"pad_token_id {PadTokenId} is outside the vocabulary of {VocabSize}");
        Require(NumLabels >= 1, "id2label must name at least one label");
        Require(ProblemType != Models.ProblemType.Regression || NumLabels == 1, $"problem_type regression needs exactly one label (got {NumLabels})");
        Require(TorchDtype is "float32" or "float16" or "bfloat16", $"torch_dtype \"{TorchDtype}\" is not one of float32, float16, bfloat16");
        if (LayerHeads != null)
        {
            Require(LayerHeads.Count == NumHiddenLayers, $"distillery_layer_heads has {LayerHeads.Count} entries for {NumHiddenLayers} layers");
            for (int i = 0; i < LayerHeads.Count; i++)
                Require(LayerHeads[i] >= 0 && LayerHeads[i] <= NumAttentionHeads,
                    $"distillery_layer_heads[{i}] = {LayerHeads[i]} is outside 0..{NumAttentionHeads}");
        }
        if (LayerIntermediateSizes != null)
        {
            Require(LayerIntermediateSizes.Count == NumHiddenLayers,
                $"distillery_layer_intermediate_sizes has {LayerIntermediateSizes.Count} entries for {NumHiddenLayers} layers");
            for (int i = 0; i < LayerIntermediateSizes.Count; i++)
                Require(LayerIntermediateSizes[i] >= 0, $"distillery_layer_intermediate_sizes[{i}] = {LayerIntermediateSizes[i]} is negative");
        }
        return this;
    }

    // ---------------------------------------------------------------- config.json

    static readonly HashSet<string> KnownKeys =
    [
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
        "initializer_range", "layer_norm_eps", "pad_token_id", "classifier_dropout", "id2label", "label2id", "num_labels",
        "problem_type", "architectures", "torch_dtype", "pruned_heads", "model_type", "position_embedding_type",
        "distillery_layer_heads", "distillery_layer_intermediate_sizes", "distillery_attention_head_size",
        "distillery_mlm_head_untrained",
    ];

    /// <summary>Reads and validates a config.json; every problem is one line naming the file and the field.</summary>
    public static BertConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: config file not found", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { MaxDepth = 32 }); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (root is not JsonObject obj) throw new InvalidDataException($"{path}: expected a JSON object");
        return FromJson(obj, path);
    }

    /// <summary>Builds a config from a parsed config.json object; <paramref name="where"/> names it in errors.</summary>
    public static BertConfig FromJson(JsonObject obj, string where)
    {
        string? modelType = GetString(obj, "model_type", where);
        if (modelType != null && modelType != "bert")
            throw new InvalidDataException($"{where}: model_type \"{modelType}\" is not supported (only \"bert\")");
        string? positions = GetString(obj, "position_embedding_type", where);
        if (positions != null && positions != "absolute")
            throw new InvalidDataException($"{where}: position_embedding_type \"{positions}\" is not supported (only \"absolute\")");

        int layers = GetInt(obj, "num_hidden_layers", where) ?? throw Missing("num_hidden_layers");
        int heads = GetInt(obj, "num_attention_heads", where) ?? throw Missing("num_attention_heads");
        var labels = ReadLabels(obj, where);
        var layerHeads = GetIntArray(obj, "distillery_layer_heads", where);
        // transformers' own pruned_heads: {"layer": [head, ...]}. Distillery stores kept heads in order, so the count is what matters.
        if (layerHeads == null && obj["pruned_heads"] is JsonObject pruned && pruned.Count > 0)
        {
            var counts = Enumerable.Repeat(heads, layers).ToArray();
            foreach (var (key, value) in pruned)
            {
                if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out int layer) || layer >= layers)
                    throw new InvalidDataException($"{where}: pruned_heads names layer \"{key}\", which does not exist");
                if (value is not JsonArray list) throw new InvalidDataException($"{where}: pruned_heads[\"{key}\"] is not a list");
                counts[layer] = heads - list.Count;
            }
            layerHeads = counts;
        }

        var extra = new Dictionary<string, JsonNode?>();
        foreach (var (key, value) in obj)
            if (!KnownKeys.Contains(key)) extra[key] = value?.DeepClone();

        string act = GetString(obj, "hidden_act", where) ?? "gelu";
        var config = new BertConfig
        {
            VocabSize = GetInt(obj, "vocab_size", where) ?? throw Missing("vocab_size"),
            HiddenSize = GetInt(obj, "hidden_size", where) ?? throw Missing("hidden_size"),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            IntermediateSize = GetInt(obj, "intermediate_size", where) ?? throw Missing("intermediate_size"),
            HiddenAct = act switch
            {
                "gelu" => HiddenActivation.Gelu,
                "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => HiddenActivation.GeluTanh,
                "relu" => HiddenActivation.Relu,
                "silu" or "swish" => HiddenActivation.Silu,
                _ => throw new InvalidDataException($"{where}: hidden_act \"{act}\" is not supported (gelu, gelu_new, relu, silu)"),
            },
            HiddenDropoutProb = GetDouble(obj, "hidden_dropout_prob", where) ?? 0.1,
            AttentionProbsDropoutProb = GetDouble(obj, "attention_probs_dropout_prob", where) ?? 0.1,
            MaxPositionEmbeddings = GetInt(obj, "max_position_embeddings", where) ?? throw Missing("max_position_embeddings"),
            TypeVocabSize = GetInt(obj, "type_vocab_size", where) ?? 2,
            InitializerRange = GetDouble(obj, "initializer_range", where) ?? 0.02,
            LayerNormEps = GetDouble(obj, "layer_norm_eps", where) ?? 1e-12,
            PadTokenId = GetInt(obj, "pad_token_id", where) ?? 0,
            ClassifierDropout = GetDouble(obj, "classifier_dropout", where),
            Labels = labels,
            ProblemType = GetString(obj, "problem_type", where) switch
            {
                null => null,
                "single_label_classification" => Models.ProblemType.SingleLabelClassification,
                "regression" => Models.ProblemType.Regression,
                string other => throw new InvalidDataException($"{where}: problem_type \"{other}\" is not supported (single_label_classification, regression)"),
            },
            Architectures = obj["architectures"] is JsonArray archs
                ? archs.Select(a => a?.GetValueKind() == JsonValueKind.String ? a.GetValue<string>() : throw new InvalidDataException($"{where}: architectures must be a list of strings")).ToArray()
                : [],
            TorchDtype = GetString(obj, "torch_dtype", where) ?? "float32",
            LayerHeads = layerHeads,
            LayerIntermediateSizes = GetIntArray(obj, "distillery_layer_intermediate_sizes", where),
            AttentionHeadSize = GetInt(obj, "distillery_attention_head_size", where),
            MlmHeadUntrained = GetString(obj, "distillery_mlm_head_untrained", where),
            Extra = extra,
        };
        return config.Validate(where);

        InvalidDataException Missing(string field) => new($"{where}: missing field {field}");
    }

    static IReadOnlyList<string> ReadLabels(JsonObject obj, string where)
    {
        if (obj["id2label"] is JsonObject id2label && id2label.Count > 0)
        {
            var names = new string[id2label.Count];
            foreach (var (key, value) in id2label)
            {
                if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id >= names.Length)
                    throw new InvalidDataException($"{where}: id2label key \"{key}\" is not an id in 0..{names.Length - 1}");
                names[id] = value?.GetValueKind() == JsonValueKind.String ? value.GetValue<string>()
                    : throw new InvalidDataException($"{where}: id2label[\"{key}\"] is not a string");
            }
            return names;
        }
        int n = GetInt(obj, "num_labels", where) ?? 2;
        if (n < 1) throw new InvalidDataException($"{where}: num_labels must be at least 1 (got {n})");
        return Enumerable.Range(0, n).Select(i => $"LABEL_{i}").ToArray();
    }

    static string? GetString(JsonObject obj, string key, string where) => obj[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => throw new InvalidDataException($"{where}: {key} must be a string"),
    };

    static double? GetDouble(JsonObject obj, string key, string where) => obj[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => Number(v),
        _ => throw new InvalidDataException($"{where}: {key} must be a number"),
    };

    /// <summary>A JSON number as double, whether it was parsed from text or created in memory as an int.</summary>
    static double Number(JsonValue v) => double.Parse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture);

    static int? GetInt(JsonObject obj, string key, string where)
    {
        double? d = GetDouble(obj, key, where);
        if (d == null) return null;
        if (d != Math.Floor(d.Value) || d < int.MinValue || d > int.MaxValue) throw new InvalidDataException($"{where}: {key} must be an integer (got {d})");
        return (int)d.Value;
    }

    static int[]? GetIntArray(JsonObject obj, string key, string where)
    {
        if (obj[key] is null) return null;
        if (obj[key] is not JsonArray array) throw new InvalidDataException($"{where}: {key} must be a list of integers");
        return array.Select((n, i) => n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && Number(v) == Math.Floor(Number(v)) && Math.Abs(Number(v)) <= int.MaxValue
            ? (int)Number(v)
            : throw new InvalidDataException($"{where}: {key}[{i}] must be an integer")).ToArray();
    }

    /// <summary>The FFN width every layer has when per-layer widths are set and all equal (and positive), else null.</summary>
    public int? UniformIntermediateSize =>
        LayerIntermediateSizes is { Count: > 0 } widths && widths.All(w => w == widths[0]) && widths[0] > 0 ? widths[0] : null;

    /// <summary>
    /// Why transformers' BERT cannot represent this model (null when it can): per-layer FFN widths that differ (transformers
    /// has one intermediate_size), or a head size other than hidden_size / num_attention_heads (hidden-dimension pruning
    /// that kept the head size; transformers derives the head size from the hidden size). Head pruning is representable
    /// (pruned_heads).
    /// </summary>
    public string? TransformersIncompatibility()
    {
        var reasons = new List<string>();
        if (LayerIntermediateSizes != null && UniformIntermediateSize == null && LayerIntermediateSizes.Any(f => f != LayerIntermediateSizes[0]))
            reasons.Add($"its layers have different FFN widths ({string.Join(", ", LayerIntermediateSizes)}) and transformers has one intermediate_size");
        if (AttentionHeadSize is int headSize && headSize * NumAttentionHeads != HiddenSize)
            reasons.Add($"its head size {headSize} x {NumAttentionHeads} heads is not its hidden size {HiddenSize} (transformers derives the head size as hidden / heads)");
        return reasons.Count == 0 ? null : "this model loads only in Distillery because " + string.Join("; and ", reasons);
    }

    /// <summary>The config as transformers writes it (plus Distillery's extra keys where the shape is not uniform).</summary>
    public JsonObject ToJson()
    {
        var obj = new JsonObject
        {
            ["architectures"] = new JsonArray(Architectures.Select(a => (JsonNode?)JsonValue.Create(a)).ToArray()),
            ["attention_probs_dropout_prob"] = AttentionProbsDropoutProb,
            ["classifier_dropout"] = ClassifierDropout,
            ["hidden_act"] = HiddenAct switch
            {
                HiddenActivation.Gelu => "gelu",
                HiddenActivation.GeluTanh => "gelu_new",
                HiddenActivation.Relu => "relu",
                _ => "silu",
            },
            ["hidden_dropout_prob"] = HiddenDropoutProb,
            ["hidden_size"] = HiddenSize,
            ["id2label"] = new JsonObject(Labels.Select((l, i) => KeyValuePair.Create(i.ToString(CultureInfo.InvariantCulture), (JsonNode?)JsonValue.Create(l)))),
            ["initializer_range"] = InitializerRange,
            // One FFN width shared by every layer (FFN-pruned uniformly) is written where transformers reads it.
            ["intermediate_size"] = UniformIntermediateSize ?? IntermediateSize,
            ["label2id"] = new JsonObject(Labels.Select((l, i) => KeyValuePair.Create(l, (JsonNode?)JsonValue.Create(i))).DistinctBy(p => p.Key)),
            ["layer_norm_eps"] = LayerNormEps,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["model_type"] = "bert",
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["pad_token_id"] = PadTokenId,
            ["position_embedding_type"] = "absolute",
            ["torch_dtype"] = TorchDtype,
            ["type_vocab_size"] = TypeVocabSize,
            ["vocab_size"] = VocabSize,
        };
        if (ProblemType != null)
            obj["problem_type"] = ProblemType == Models.ProblemType.Regression ? "regression" : "single_label_classification";
        if (LayerHeads != null && LayerHeads.Any(h => h != NumAttentionHeads))
        {
            obj["distillery_layer_heads"] = new JsonArray(LayerHeads.Select(h => (JsonNode?)JsonValue.Create(h)).ToArray());
            // transformers prunes these heads on construction, before loading weights: the kept heads are the first ones.
            var pruned = new JsonObject();
            for (int i = 0; i < LayerHeads.Count; i++)
                if (LayerHeads[i] < NumAttentionHeads)
                    pruned[i.ToString(CultureInfo.InvariantCulture)] = new JsonArray(Enumerable.Range(LayerHeads[i], NumAttentionHeads - LayerHeads[i]).Select(h => (JsonNode?)JsonValue.Create(h)).ToArray());
            obj["pruned_heads"] = pruned;
        }
        if (LayerIntermediateSizes != null && UniformIntermediateSize == null && LayerIntermediateSizes.Any(f => f != IntermediateSize))
            obj["distillery_layer_intermediate_sizes"] = new JsonArray(LayerIntermediateSizes.Select(f => (JsonNode?)JsonValue.Create(f)).ToArray());
        if (AttentionHeadSize != null) obj["distillery_attention_head_size"] = AttentionHeadSize;
        if (MlmHeadUntrained != null) obj["distillery_mlm_head_untrained"] = MlmHeadUntrained;
        foreach (var (key, value) in Extra) obj[key] = value?.DeepClone();
        return obj;
    }

    /// <summary>Writes config.json (indented, as transformers does).</summary>
    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
