// sentence-transformers' model-folder layout (sentence_transformers/SentenceTransformer.py, save / _load_sbert_model),
// beside the Hugging Face files of the encoder:
//   modules.json                 [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
//                                 {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
//                                 {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]
//   sentence_bert_config.json    {"max_seq_length": 256, "do_lower_case": false}
//   1_Pooling/config.json        {"word_embedding_dimension": H, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, ...}
//   2_Normalize/                 (empty: the module has no state)
// With a projection to fewer dimensions (distillery reduce), sentence-transformers' Dense module between Normalize
// modules: 2_Normalize, 3_Dense, 4_Normalize, where
//   3_Dense/config.json          {"in_features": H, "out_features": D, "bias": false, "activation_function": "torch.nn.modules.linear.Identity"}
//   3_Dense/model.safetensors    {"linear.weight": [D, H]}   (read by sentence-transformers 2.3 and later; earlier ones
//                                                             read only pytorch_model.bin, a pickle .NET does not write)
// A folder with modules.json is a sentence-embedding model; SentenceTransformer(folder) in Python loads what this writes.
// Reading accepts exactly that pipeline (Transformer, then Pooling with mean or cls, then optionally Normalize, a Dense
// without bias or activation, Normalize); any other module, pooling mode or Dense is one line naming the file, not a
// silently different embedding.
using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.IO;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>Reads and writes sentence-transformers' files (<c>modules.json</c>, <c>1_Pooling/config.json</c>, <c>sentence_bert_config.json</c>).</summary>
public static class SentenceTransformersLayout
{
    /// <summary>The module list; its presence marks a sentence-transformers folder.</summary>
    public const string ModulesFile = "modules.json";
    /// <summary>The Transformer module's settings (<c>max_seq_length</c>).</summary>
    public const string SentenceBertConfigFile = "sentence_bert_config.json";
    /// <summary>The pooling module's folder.</summary>
    public const string PoolingDir = "1_Pooling";
    /// <summary>The normalisation module's folder.</summary>
    public const string NormalizeDir = "2_Normalize";

    const string TransformerType = "sentence_transformers.models.Transformer";
    const string PoolingType = "sentence_transformers.models.Pooling";
    const string NormalizeType = "sentence_transformers.models.Normalize";
    const string DenseType = "sentence_transformers.models.Dense";
    const string IdentityActivation = "torch.nn.modules.linear.Identity";
    /// <summary>The Dense module's weight file and tensor name (nn.Linear's <c>weight</c>, [out_features, in_features]).</summary>
    const string DenseWeightsFile = "model.safetensors", DenseWeightKey = "linear.weight";

    /// <summary>Every pooling flag sentence-transformers writes (the first four since its first versions); only mean and cls are supported.</summary>
    static readonly string[] PoolingFlags =
    [
        "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken",
    ];

    /// <summary>Whether <paramref name="dir"/> holds a sentence-transformers model (has <c>modules.json</c>).</summary>
    public static bool IsPresent(string dir) => File.Exists(Path.Combine(dir, ModulesFile));

    /// <summary>
    /// The head settings of a sentence-transformers folder. <paramref name="hiddenSize"/> is the encoder's width, which the
    /// pooling's <c>word_embedding_dimension</c> must equal. Malformed or unsupported files throw
    /// <see cref="InvalidDataException"/> naming the file. A Dense module's weights are read and dropped
    /// (<see cref="ReadHead"/> returns them).
    /// </summary>
    public static SentenceEmbeddingConfig Read(string dir, int hiddenSize)
    {
        var (config, projection) = ReadHead(dir, hiddenSize);
        projection?.Dispose();
        return config;
    }

    /// <summary>
    /// The head settings and, when the pipeline has a Dense module, its weight [D, H] (the caller's to dispose). Errors
    /// as <see cref="Read"/>.
    /// </summary>
    public static (SentenceEmbeddingConfig Config, Tensor? Projection) ReadHead(string dir, int hiddenSize)
    {
        string modulesPath = Path.Combine(dir, ModulesFile);
        if (ParseFile(modulesPath) is not JsonArray modules || modules.Count == 0)
            throw new InvalidDataException($"{modulesPath}: not a non-empty JSON array of modules");
        var types = new List<(string Type, string Path)>();
        foreach (var module in modules)
        {
            if (module is not JsonObject o || Text(o, "type") is not string type)
                throw new InvalidDataException($"{modulesPath}: every module needs a \"type\" string");
            types.Add((type, Text(o, "path") ?? ""));
        }
        if (types[0].Type != TransformerType || types[0].Path != "")
            throw new InvalidDataException($"{modulesPath}: the first module must be {TransformerType} at path \"\" (found {types[0].Type})");
        var pooling = types.Skip(1).FirstOrDefault();
        if (types.Count < 2 || pooling.Type != PoolingType)
            throw new InvalidDataException($"{modulesPath}: the second module must be {PoolingType}");
        // After the pooling: [Normalize] [Dense [Normalize]], nothing else.
        var rest = types.Skip(2).ToList();
        int dense = rest.FindIndex(m => m.Type == DenseType);
        var before = dense < 0 ? rest : rest.Take(dense).ToList();
        var after = dense < 0 ? [] : rest.Skip(dense + 1).ToList();
        foreach (var (type, _) in rest)
            if (type != NormalizeType && type != DenseType)
                throw new InvalidDataException($"{modulesPath}: module {type} is not supported (Distillery reads Transformer → Pooling → [Normalize] → [Dense → Normalize])");
        if (before.Count > 1 || after.Count > 1 || after.Any(m => m.Type != NormalizeType) || (dense < 0 && rest.Count > 1))
            throw new InvalidDataException($"{modulesPath}: modules {string.Join(" → ", types.Skip(2).Select(m => m.Type.Split('.')[^1]))} after the pooling are not supported (Distillery reads Transformer → Pooling → [Normalize] → [Dense → Normalize])");
        if (!SafeRelative(pooling.Path)) throw new InvalidDataException($"{modulesPath}: pooling path \"{pooling.Path}\" must be a folder inside the model folder");

        string poolingPath = Path.Combine(dir, pooling.Path, "config.json");
        if (ParseFile(poolingPath) is not JsonObject poolingConfig) throw new InvalidDataException($"{poolingPath}: not a JSON object");
        if (Number(poolingConfig, "word_embedding_dimension", poolingPath) is int dimension && dimension != hiddenSize)
            throw new InvalidDataException($"{poolingPath}: word_embedding_dimension {dimension} differs from the encoder's hidden_size {hiddenSize}");
        var on = PoolingFlags.Where(flag => Flag(poolingConfig, flag, poolingPath)).ToList();
        if (poolingConfig["pooling_mode"] is JsonNode mode && on.Count == 0)   // newer versions may write only the mode's name
            on.Add(mode.GetValueKind() == JsonValueKind.String ? "pooling_mode_" + mode.GetValue<string>() switch { "mean" => "mean_tokens", "cls" => "cls_token", var other => other } : "?");
        SentencePooling poolingMode = on switch
        {
            ["pooling_mode_mean_tokens"] => SentencePooling.Mean,
            ["pooling_mode_cls_token"] => SentencePooling.Cls,
            _ => throw new InvalidDataException($"{poolingPath}: pooling {(on.Count == 0 ? "(none)" : string.Join(" + ", on))} is not supported (mean or cls, one of them)"),
        };

        int maxSeqLength = new SentenceEmbeddingConfig().MaxSeqLength;
        string sbertPath = Path.Combine(dir, SentenceBertConfigFile);
        if (File.Exists(sbertPath))
        {
            if (ParseFile(sbertPath) is not JsonObject sbert) throw new InvalidDataException($"{sbertPath}: not a JSON object");
            if (Number(sbert, "max_seq_length", sbertPath) is int length) maxSeqLength = length;
        }
        SentenceEmbeddingConfig config;
        try
        {
            config = new SentenceEmbeddingConfig
            {
                Pooling = poolingMode, MaxSeqLength = maxSeqLength,
                Normalize = dense < 0 ? before.Count == 1 : after.Count == 1,
                NormalizeBeforeProjection = dense >= 0 && before.Count == 1,
            }.Validate();
        }
        catch (ArgumentException e) { throw new InvalidDataException($"{sbertPath}: {e.Message}"); }
        if (dense < 0) return (config, null);
        if (!SafeRelative(rest[dense].Path)) throw new InvalidDataException($"{modulesPath}: dense path \"{rest[dense].Path}\" must be a folder inside the model folder");
        return (config, ReadDense(Path.Combine(dir, rest[dense].Path), hiddenSize));
    }

    /// <summary>A Dense module's weight [D, H]: no bias, identity activation, finite float weights of that shape.</summary>
    static Tensor ReadDense(string denseDir, int hiddenSize)
    {
        string configPath = Path.Combine(denseDir, "config.json");
        if (ParseFile(configPath) is not JsonObject config) throw new InvalidDataException($"{configPath}: not a JSON object");
        int inFeatures = Number(config, "in_features", configPath) ?? throw new InvalidDataException($"{configPath}: \"in_features\" missing");
        int outFeatures = Number(config, "out_features", configPath) ?? throw new InvalidDataException($"{configPath}: \"out_features\" missing");
        if (inFeatures != hiddenSize) throw new InvalidDataException($"{configPath}: in_features {inFeatures} differs from the pooled vector's {hiddenSize}");
        if (outFeatures < 1) throw new InvalidDataException($"{configPath}: out_features {outFeatures} must be at least 1");
        if (Flag(config, "bias", configPath))
            throw new InvalidDataException($"{configPath}: a Dense module with a bias is not supported (Distillery reads bias false, identity activation)");
        if (Text(config, "activation_function") is string activation && activation != IdentityActivation)
            throw new InvalidDataException($"{configPath}: activation {activation} is not supported (Distillery reads {IdentityActivation})");
        string weightsPath = Path.Combine(denseDir, DenseWeightsFile);
        if (!File.Exists(weightsPath))
            throw new InvalidDataException(File.Exists(Path.Combine(denseDir, "pytorch_model.bin"))
                ? $"{denseDir}: only pytorch_model.bin (a PyTorch pickle, not read here); save the model with sentence-transformers 2.3 or later to get model.safetensors"
                : $"{weightsPath}: missing (the Dense module's weights)");
        Dictionary<string, Tensor> tensors;
        try { tensors = Safetensors.Load(weightsPath); }
        catch (SafetensorsFormatException e) { throw new InvalidDataException(e.Message); }
        try
        {
            if (!tensors.TryGetValue(DenseWeightKey, out var weight) || tensors.Count != 1)
                throw new InvalidDataException($"{weightsPath}: expected the one tensor {DenseWeightKey} (found {string.Join(", ", tensors.Keys.Take(4))})");
            if (!weight.is_floating_point() || !weight.shape.SequenceEqual(new long[] { outFeatures, inFeatures }))
                throw new InvalidDataException($"{weightsPath}: {DenseWeightKey} is {weight.dtype} [{string.Join(", ", weight.shape)}], not float [{outFeatures}, {inFeatures}]");
            var result = weight.to(ScalarType.Float32).contiguous().clone();
            using var finite = result.isfinite().all();
            if (!finite.item<bool>()) { result.Dispose(); throw new InvalidDataException($"{weightsPath}: {DenseWeightKey} has non-finite values"); }
            result.DetachFromDisposeScope();
            return result;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Writes the sentence-transformers files for a model of width <paramref name="hiddenSize"/> into <paramref name="dir"/>
    /// (the Hugging Face files are <see cref="BertCheckpoint.Save"/>'s), with a Dense module holding
    /// <paramref name="projection"/> [D, H] when given. Each file is written atomically.
    /// </summary>
    public static void Write(string dir, SentenceEmbeddingConfig config, int hiddenSize, Tensor? projection = null)
    {
        config.Validate();
        Directory.CreateDirectory(Path.Combine(dir, PoolingDir));
        // The keys all-MiniLM-L6-v2's own file has, which every sentence-transformers version accepts (newer ones add
        // weightedmean / lasttoken / include_prompt with defaults, older ones refuse keys they do not know).
        var pooling = new JsonObject { ["word_embedding_dimension"] = hiddenSize };
        foreach (var flag in PoolingFlags.Take(4))
            pooling[flag] = flag == (config.Pooling == SentencePooling.Mean ? "pooling_mode_mean_tokens" : "pooling_mode_cls_token");
        WriteJson(Path.Combine(dir, PoolingDir, "config.json"), pooling);
        WriteJson(Path.Combine(dir, SentenceBertConfigFile), new JsonObject { ["max_seq_length"] = config.MaxSeqLength, ["do_lower_case"] = false });
        var modules = new JsonArray(
            Module(0, "", TransformerType),
            Module(1, PoolingDir, PoolingType));
        void Add(string type, string name)
        {
            // sentence-transformers names each module's folder <index>_<class name>.
            string path = $"{modules.Count}_{name}";
            Directory.CreateDirectory(Path.Combine(dir, path));
            modules.Add(Module(modules.Count, path, type));
        }
        if (projection is not null)
        {
            if (projection.dim() != 2 || projection.shape[1] != hiddenSize)
                throw new ArgumentException($"a projection must be [D, {hiddenSize}] (got [{string.Join(", ", projection.shape)}])");
            if (config.NormalizeBeforeProjection) Add(NormalizeType, "Normalize");
            Add(DenseType, "Dense");
            string denseDir = Path.Combine(dir, $"{modules.Count - 1}_Dense");
            WriteJson(Path.Combine(denseDir, "config.json"), new JsonObject
            {
                ["in_features"] = hiddenSize, ["out_features"] = projection.shape[0], ["bias"] = false, ["activation_function"] = IdentityActivation,
            });
            using (var scope = NewDisposeScope())
                Safetensors.Save(Path.Combine(denseDir, DenseWeightsFile), new Dictionary<string, Tensor> { [DenseWeightKey] = projection.detach().to(ScalarType.Float32).contiguous() },
                    new Dictionary<string, string> { ["format"] = "pt" });
        }
        if (config.Normalize) Add(NormalizeType, "Normalize");
        WriteJson(Path.Combine(dir, ModulesFile), modules);
    }

    /// <summary>Bytes of the sentence-transformers files in <paramref name="dir"/> (0 when absent).</summary>
    public static long BytesOnDisk(string dir) => Files(dir).Sum(f => new FileInfo(Path.Combine(dir, f)).Length);

    /// <summary>
    /// The sentence-transformers files of <paramref name="dir"/> that exist, relative to it, in a fixed order:
    /// modules.json, sentence_bert_config.json, then the files inside the module folders modules.json names
    /// (1_Pooling/config.json, a Dense module's config and weights) in ordinal order. What the folder's size, inspect
    /// and the teacher-output cache's key (these files change the vectors) read.
    /// </summary>
    public static IReadOnlyList<string> Files(string dir) =>
        new[] { ModulesFile, SentenceBertConfigFile }.Where(f => File.Exists(Path.Combine(dir, f))).Concat(ModuleFiles(dir)).ToList();

    /// <summary>The files inside the module folders modules.json names, ordinal order; none without a readable modules.json.</summary>
    static IReadOnlyList<string> ModuleFiles(string dir)
    {
        var files = new List<string>();
        try
        {
            if (File.Exists(Path.Combine(dir, ModulesFile)) && ParseFile(Path.Combine(dir, ModulesFile)) is JsonArray modules)
                foreach (var module in modules.OfType<JsonObject>())
                    if (Text(module, "path") is string path && SafeRelative(path) && Directory.Exists(Path.Combine(dir, path)))
                        files.AddRange(Directory.GetFiles(Path.Combine(dir, path)).Select(f => Path.GetRelativePath(dir, f)));
        }
        catch (InvalidDataException) { }
        return files.Distinct().Order(StringComparer.Ordinal).ToList();
    }

    static JsonObject Module(int index, string path, string type) =>
        new() { ["idx"] = index, ["name"] = index.ToString(System.Globalization.CultureInfo.InvariantCulture), ["path"] = path, ["type"] = type };

    static void WriteJson(string path, JsonNode node) =>
        AtomicFile.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    static JsonNode? ParseFile(string path)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path}: missing (a sentence-transformers folder needs it)");
        var info = new FileInfo(path);
        if (info.Length > 1 << 20) throw new InvalidDataException($"{path}: {info.Length:N0} bytes, too large for a module config");
        try { return JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
    }

    static string? Text(JsonObject o, string key) =>
        o[key] is JsonNode n && n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : null;

    static bool Flag(JsonObject o, string key, string path) => o[key] switch
    {
        null => false,
        JsonNode n when n.GetValueKind() is JsonValueKind.True or JsonValueKind.False => n.GetValue<bool>(),
        _ => throw new InvalidDataException($"{path}: \"{key}\" is not true or false"),
    };

    static int? Number(JsonObject o, string key, string path) => o[key] switch
    {
        null => null,
        JsonNode n when n.GetValueKind() == JsonValueKind.Number && n.AsValue().TryGetValue(out int value) => value,
        _ => throw new InvalidDataException($"{path}: \"{key}\" is not an integer"),
    };

    static bool SafeRelative(string path) =>
        path.Length > 0 && !Path.IsPathRooted(path) && !path.Split('/', '\\').Any(part => part is ".." or "");
}
