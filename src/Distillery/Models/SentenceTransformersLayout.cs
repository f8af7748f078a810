// sentence-transformers' model-folder layout (sentence_transformers/SentenceTransformer.py, save / _load_sbert_model),
// beside the Hugging Face files of the encoder:
//   modules.json                 [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
//                                 {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
//                                 {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]
//   sentence_bert_config.json    {"max_seq_length": 256, "do_lower_case": false}
//   1_Pooling/config.json        {"word_embedding_dimension": H, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, ...}
//   2_Normalize/                 (empty: the module has no state)
// A folder with modules.json is a sentence-embedding model; SentenceTransformer(folder) in Python loads what this writes.
// Reading accepts exactly that pipeline (Transformer, then Pooling with mean or cls, then optionally Normalize); any
// other module or pooling mode is one line naming the file, not a silently different embedding.
using System.Text.Json;
using System.Text.Json.Nodes;

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
    /// <see cref="InvalidDataException"/> naming the file.
    /// </summary>
    public static SentenceEmbeddingConfig Read(string dir, int hiddenSize)
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
        bool normalize = false;
        foreach (var (type, _) in types.Skip(2))
        {
            if (type != NormalizeType || normalize)
                throw new InvalidDataException($"{modulesPath}: module {type} is not supported (Distillery reads Transformer → Pooling → Normalize)");
            normalize = true;
        }
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
        try { return new SentenceEmbeddingConfig { Pooling = poolingMode, Normalize = normalize, MaxSeqLength = maxSeqLength }.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{sbertPath}: {e.Message}"); }
    }

    /// <summary>
    /// Writes the sentence-transformers files for a model of width <paramref name="hiddenSize"/> into <paramref name="dir"/>
    /// (the Hugging Face files are <see cref="BertCheckpoint.Save"/>'s). Each file is written atomically.
    /// </summary>
    public static void Write(string dir, SentenceEmbeddingConfig config, int hiddenSize)
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
        if (config.Normalize)
        {
            Directory.CreateDirectory(Path.Combine(dir, NormalizeDir));
            modules.Add(Module(2, NormalizeDir, NormalizeType));
        }
        WriteJson(Path.Combine(dir, ModulesFile), modules);
    }

    /// <summary>Bytes of the sentence-transformers files in <paramref name="dir"/> (0 when absent).</summary>
    public static long BytesOnDisk(string dir) =>
        new[] { ModulesFile, SentenceBertConfigFile, Path.Combine(PoolingDir, "config.json") }.Select(f => Path.Combine(dir, f)).Where(File.Exists).Sum(f => new FileInfo(f).Length);

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
