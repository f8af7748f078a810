using Distillery.IO;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>What a load matched, and what it did not.</summary>
/// <param name="Initialized">Parameters the file lacked, left freshly initialised (task heads, pooler), as transformers warns.</param>
/// <param name="Unexpected">Tensors in the file the model has no place for (another head's weights), ignored.</param>
/// <param name="NonFinite">Loaded tensors holding NaN or infinite values (a diverged run's weights): they load, with a warning; training refuses them.</param>
public sealed record LoadReport(IReadOnlyList<string> Initialized, IReadOnlyList<string> Unexpected, IReadOnlyList<string>? NonFinite = null)
{
    /// <summary>One line per kind of mismatch, for printing as warnings.</summary>
    public IEnumerable<string> Warnings()
    {
        if (Initialized.Count > 0) yield return $"newly initialised (not in the checkpoint): {Summarize(Initialized)}";
        if (Unexpected.Count > 0) yield return $"ignored (not used by this head): {Summarize(Unexpected)}";
        if (NonFinite is { Count: > 0 }) yield return $"non-finite weights (NaN or inf; its outputs will be NaN): {Summarize(NonFinite)}";
    }

    static string Summarize(IReadOnlyList<string> keys) =>
        keys.Count <= 8 ? string.Join(", ", keys) : $"{string.Join(", ", keys.Take(8))} and {keys.Count - 8} more";
}

/// <summary>
/// Model folders in the Hugging Face layout: <c>config.json</c>, <c>model.safetensors</c>, <c>vocab.txt</c> and
/// <c>tokenizer_config.json</c>. What Distillery writes, transformers' <c>BertFor*.from_pretrained</c> loads unchanged
/// (same keys, same config fields; the tied MLM decoder is left out, as transformers itself saves it).
/// </summary>
public static class BertCheckpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string VocabFile = "vocab.txt";

    /// <summary>Keys that are in some checkpoints but are not parameters (transformers stopped saving position_ids in 4.31).</summary>
    static readonly HashSet<string> IgnoredKeys = ["bert.embeddings.position_ids"];

    /// <summary>Bytes a model needs on disk: config, weights and vocabulary (run logs and checkpoints not counted).</summary>
    public static long BytesOnDisk(string dir) =>
        new[] { ConfigFile, WeightsFile, VocabFile }.Select(f => Path.Combine(dir, f)).Where(File.Exists).Sum(f => new FileInfo(f).Length)
        + SentenceTransformersLayout.BytesOnDisk(dir);

    /// <summary>Reads and validates <c>dir/config.json</c>.</summary>
    public static BertConfig ReadConfig(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: model folder not found");
        string path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{dir}: {ConfigFile} missing (not a model folder)", path);
        return BertConfig.Load(path);
    }

    /// <summary>The head a folder's config names (its first known architecture), or masked LM when it names none.</summary>
    public static BertTask TaskOf(BertConfig config) =>
        config.Architectures.Select(BertTasks.FromArchitecture).FirstOrDefault(t => t != null) ?? BertTask.MaskedLM;

    /// <summary>
    /// The head of the model in <paramref name="dir"/>: a sentence embedding when the folder is a sentence-transformers
    /// model (<see cref="SentenceTransformersLayout.IsPresent"/>), else the one its config names (<see cref="TaskOf(BertConfig)"/>).
    /// </summary>
    public static BertTask TaskOf(string dir, BertConfig config) =>
        SentenceTransformersLayout.IsPresent(dir) ? BertTask.SentenceEmbedding : TaskOf(config);

    /// <summary>
    /// Loads a model folder. <paramref name="task"/> overrides the head named in config.json (fine-tuning an MLM checkpoint
    /// for classification, say: the new head is initialised and reported). <paramref name="adjustConfig"/> may change
    /// head-related fields (labels) before the model is built. Every tensor's name and shape is checked; the encoder must
    /// be complete. Problems throw <see cref="InvalidDataException"/> with one line naming the file and the tensor.
    /// </summary>
    public static (BertTaskModel Model, LoadReport Report) Load(string dir, BertTask? task = null,
        Func<BertConfig, BertConfig>? adjustConfig = null, bool strict = false)
    {
        var config = ReadConfig(dir);
        if (adjustConfig != null) config = adjustConfig(config).Validate(Path.Combine(dir, ConfigFile));
        string weights = Path.Combine(dir, WeightsFile);
        if (!File.Exists(weights)) throw new FileNotFoundException($"{dir}: {WeightsFile} missing", weights);
        var model = BertTaskModel.Create(config, task ?? TaskOf(dir, config));
        Dictionary<string, Tensor> tensors = Safetensors.Load(weights);
        try
        {
            var report = LoadStateDict(model, tensors, weights, strict);
            // A folder without sentence-transformers' files gets mean pooling + normalisation, as SentenceTransformer(folder)
            // builds for a plain transformers model (and as all-MiniLM-L6-v2 is configured).
            if (model is BertForSentenceEmbedding embedding && SentenceTransformersLayout.IsPresent(dir))
            {
                var (head, projection) = SentenceTransformersLayout.ReadHead(dir, config.HiddenSize);
                using (projection)
                {
                    embedding.SentenceConfig = head;
                    embedding.Projection = projection;
                }
            }
            return (model, report);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Copies <paramref name="tensors"/> into <paramref name="model"/>'s parameters by name, converting dtype.
    /// A checkpoint of a bare <c>BertModel</c> (keys without the <c>bert.</c> prefix) is accepted, as transformers does.
    /// Missing encoder tensors and shape mismatches are errors; missing head/pooler tensors keep their fresh init and
    /// tensors of other heads are ignored, both reported (or errors when <paramref name="strict"/>).
    /// </summary>
    public static LoadReport LoadStateDict(BertTaskModel model, IReadOnlyDictionary<string, Tensor> tensors, string where, bool strict = false)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        bool bare = !tensors.Keys.Any(k => k.StartsWith("bert.", StringComparison.Ordinal)) && tensors.Keys.Any(k => k.StartsWith("embeddings.", StringComparison.Ordinal));
        var byName = tensors.ToDictionary(kv => bare && !kv.Key.StartsWith("cls.", StringComparison.Ordinal) ? "bert." + kv.Key : kv.Key, kv => kv.Value);

        var initialized = new List<string>();
        var missingEncoder = new List<string>();
        foreach (var name in parameters.Keys.Where(n => !byName.ContainsKey(n)))
        {
            bool headOrPooler = !name.StartsWith("bert.", StringComparison.Ordinal) || name.StartsWith("bert.pooler.", StringComparison.Ordinal);
            (headOrPooler && !strict ? initialized : missingEncoder).Add(name);
        }
        if (missingEncoder.Count > 0)
            throw new InvalidDataException($"{where}: missing {missingEncoder.Count} tensor(s) the model needs: {string.Join(", ", missingEncoder.Take(6))}{(missingEncoder.Count > 6 ? ", ..." : "")}");
        var unexpected = byName.Keys.Where(k => !parameters.ContainsKey(k) && !IgnoredKeys.Contains(k) && !model.TiedKeys.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (strict && unexpected.Count > 0)
            throw new InvalidDataException($"{where}: unexpected tensor(s): {string.Join(", ", unexpected.Take(6))}{(unexpected.Count > 6 ? ", ..." : "")}");

        // Check every shape and dtype before copying anything, so a bad file leaves the model untouched.
        foreach (var (name, parameter) in parameters)
        {
            if (!byName.TryGetValue(name, out var source)) continue;
            if (!source.shape.SequenceEqual(parameter.shape))
                throw new InvalidDataException($"{where}: {name} has shape [{string.Join(", ", source.shape)}] in the file but [{string.Join(", ", parameter.shape)}] in the config");
            if (!source.is_floating_point())
                throw new InvalidDataException($"{where}: {name} is stored as {source.dtype}, not a floating-point type");
        }
        var nonFinite = new List<string>();
        using (no_grad())
        {
            foreach (var (name, parameter) in parameters)
                if (byName.TryGetValue(name, out var source))
                {
                    parameter.copy_(source);
                    using var finite = parameter.isfinite().all();
                    if (!finite.item<bool>()) nonFinite.Add(name);
                }
        }
        return new LoadReport(initialized, unexpected, nonFinite);
    }

    /// <summary>
    /// The tensors Distillery writes for a model: every parameter by its transformers name, in <paramref name="dtype"/>.
    /// A sentence-embedding model is a bare <c>BertModel</c> to transformers (what sentence-transformers saves), so its
    /// keys lose the <c>bert.</c> prefix.
    /// </summary>
    public static Dictionary<string, Tensor> StateDict(BertTaskModel model, ScalarType dtype = ScalarType.Float32)
    {
        var result = new Dictionary<string, Tensor>();
        bool bare = model.Task == BertTask.SentenceEmbedding;
        foreach (var (name, parameter) in model.named_parameters())
            result[bare && name.StartsWith("bert.", StringComparison.Ordinal) ? name["bert.".Length..] : name] = parameter.detach().to(dtype).contiguous();
        return result;
    }

    /// <summary>
    /// Writes a model folder (creating it if needed; other files in it, such as a run's logs, are left alone).
    /// <c>config.json</c> marks a finished folder: it is removed first and written last, and every file is written
    /// atomically, so an interrupted save never leaves a folder that loads. <paramref name="dtype"/> is the storage type
    /// (float32, float16 or bfloat16), recorded as <c>torch_dtype</c>. A sentence-embedding model is written in
    /// sentence-transformers' layout as well (<see cref="SentenceTransformersLayout"/>), loadable by
    /// <c>SentenceTransformer(dir)</c> in Python. <paramref name="adjustConfig"/> may change what config.json says about
    /// the weights (not their shapes): whether the masked-LM head was trained (<see cref="BertConfig.MlmHeadUntrained"/>),
    /// which only a masked-LM model keeps.
    /// </summary>
    public static void Save(BertTaskModel model, string dir, BertTextTokenizer? tokenizer, string dtype = "float32", Func<BertConfig, BertConfig>? adjustConfig = null)
    {
        ScalarType storage = dtype switch
        {
            "float32" => ScalarType.Float32,
            "float16" => ScalarType.Float16,
            "bfloat16" => ScalarType.BFloat16,
            _ => throw new ArgumentException($"dtype \"{dtype}\" is not one of float32, float16, bfloat16"),
        };
        if (tokenizer != null && tokenizer.VocabSize != model.Config.VocabSize)
            throw new ArgumentException($"tokenizer has {tokenizer.VocabSize} tokens but the model's vocab_size is {model.Config.VocabSize}");
        var config = model.Config with { Architectures = [BertTasks.ArchitectureName(model.Task)], TorchDtype = dtype };
        if (adjustConfig != null) config = adjustConfig(config);
        // A task model (fine-tuned from an MLM model whose head was untrained) carries no MLM head to describe.
        if (model.Task != BertTask.MaskedLM) config = config with { MlmHeadUntrained = null };
        Directory.CreateDirectory(dir);
        File.Delete(Path.Combine(dir, ConfigFile));
        using (var scope = NewDisposeScope())
            Safetensors.Save(Path.Combine(dir, WeightsFile), StateDict(model, storage), new Dictionary<string, string> { ["format"] = "pt" });
        tokenizer?.SaveTo(dir);
        if (model is BertForSentenceEmbedding embedding) SentenceTransformersLayout.Write(dir, embedding.SentenceConfig, model.Config.HiddenSize, embedding.Projection);
        config.Save(Path.Combine(dir, ConfigFile));
    }

    /// <summary>
    /// The tokenizer saved with a model (<c>vocab.txt</c>, <c>tokenizer_config.json</c>), checked against the model's
    /// vocabulary size.
    /// </summary>
    public static BertTextTokenizer LoadTokenizer(string dir, BertConfig config)
    {
        string vocab = Path.Combine(dir, VocabFile);
        if (!File.Exists(vocab)) throw new FileNotFoundException($"{dir}: {VocabFile} missing (the tokenizer is saved with the model)", vocab);
        var tokenizer = BertTextTokenizer.FromDirectory(dir);
        if (tokenizer.VocabSize != config.VocabSize)
            throw new InvalidDataException($"{vocab}: {tokenizer.VocabSize} tokens, but config.json says vocab_size {config.VocabSize}");
        return tokenizer;
    }
}
