using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.IO;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Recipes;

/// <summary>The kinds of stage a recipe chains.</summary>
public enum StageKind
{
    /// <summary>A randomly initialised model (<see cref="InitOptions"/>).</summary>
    Init,
    /// <summary>
    /// Chosen layers of a model with its embeddings and head, no training (<see cref="ExtractOptions"/>; DistilBERT's
    /// start); its input is <c>model</c>.
    /// </summary>
    Extract,
    /// <summary>Masked-LM pre-training (<see cref="PretrainOptions"/>); its input is <c>init_from</c>.</summary>
    Pretrain,
    /// <summary>Fine-tuning (<see cref="FinetuneOptions"/>); its input is <c>model</c>.</summary>
    Finetune,
    /// <summary>
    /// Distillation (<see cref="DistillOptions"/>): any registered <c>method</c> (<see cref="DistillMethods"/>), on a task
    /// or with a <c>corpus</c>; a method that must be given a student takes the previous stage's output by default.
    /// </summary>
    Distill,
    /// <summary>Structured pruning with fine-tuning (<see cref="Pruning.PruneOptions"/>); its input is <c>model</c>.</summary>
    Prune,
    /// <summary>
    /// Fewer sentence-embedding dimensions, no training (<see cref="EmbeddingReductionOptions"/>: PCA saved as a Dense
    /// module); its input is <c>model</c>.
    /// </summary>
    Reduce,
    /// <summary>
    /// An ONNX export, checked against TorchSharp (<see cref="ExportStageOptions"/>); its input is <c>model</c>, its
    /// <c>out</c> a .onnx file. The next stage's default input stays the model folder, not the graph.
    /// </summary>
    Export,
}

/// <summary>A recipe's export stage: what <c>distillery export onnx</c> does, with the same check.</summary>
public sealed record ExportStageOptions
{
    /// <summary>The model folder to export (default: the previous stage's output).</summary>
    public required string Model { get; init; }
    /// <summary>The .onnx file to write; the tokenizer and config are put beside it.</summary>
    public required string Out { get; init; }
    /// <summary>int8 weights (dynamic quantization, the model's own int8 scheme: 7-bit unless QAT chose otherwise).</summary>
    public bool Int8 { get; init; }
    /// <summary>Graph form: fused (ONNX Runtime's contrib operators, the default) or plain (standard operators only).</summary>
    public string Graph { get; init; } = "fused";
    /// <summary>Export a bare encoder folder (no modules.json, e.g. the imported teacher) as a sentence-embedding graph.</summary>
    public bool SentenceEmbedding { get; init; }

    /// <summary>Checks the options; throws naming the bad one.</summary>
    public ExportStageOptions Validate()
    {
        if (!Out.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) throw new ArgumentException($"out \"{Out}\" must be a .onnx file");
        if (Export.OnnxExporter.TryParseGraph(Graph) is null) throw new ArgumentException($"graph \"{Graph}\" is not one of {Export.OnnxExporter.GraphNames}");
        return this;
    }

    /// <summary>Exports and checks; an fp32 graph that differs from TorchSharp is an error, as on the command line.</summary>
    public JsonObject Run()
    {
        RunOutput.PrepareFile(Out, overwrite: true, [Model]);
        var options = new Export.OnnxExportOptions
        {
            Int8 = Int8, Graph = Export.OnnxExporter.TryParseGraph(Graph)!.Value,
            Int8Scheme = Int8 ? Export.OnnxExportJob.DefaultScheme(Model) : Numerics.Int8Quantization.DefaultScheme,
        }.Validate();
        var result = Export.OnnxExportJob.Run(Model, Out, options, check: true, task: SentenceEmbedding ? BertTask.SentenceEmbedding : null);
        Export.OnnxExportJob.EnsureFp32Parity(result, options);
        return new JsonObject
        {
            ["command"] = "export",
            ["model"] = Model,
            ["path"] = result.Path,
            ["bytes"] = result.Bytes,
            ["int8"] = Int8,
            ["graph"] = Graph,
            ["check_max_abs_diff"] = result.Check?.MaxAbsDiff is double d && double.IsFinite(d) ? d : null,
            ["check_min_cosine"] = result.Check?.MinCosine is double c && double.IsFinite(c) ? c : null,
            ["warnings"] = new JsonArray(result.Warnings.Select(w => (JsonNode?)JsonValue.Create(w)).ToArray()),
        };
    }
}

/// <summary>One validated stage: what it is, its typed options, and how to run it.</summary>
public sealed record RecipeStage(int Index, StageKind Kind, string Out, object Options, Func<RunEvents, JsonObject?> Run)
{
    /// <summary>"stages[i] (kind)", for messages.</summary>
    public string Label => $"stages[{Index}] ({Kind.ToString().ToLowerInvariant()})";

    /// <summary>Whether the stage leaves a metrics.json in its folder (not init and extract, which train nothing, nor export, whose out is a file).</summary>
    public bool WritesMetrics => Kind is not (StageKind.Init or StageKind.Extract or StageKind.Export);

    /// <summary>
    /// Whether the stage's output is complete: an export's graph exists (written atomically, so a present file is a whole
    /// one); a folder has config.json (written last), and metrics.json where the stage writes one.
    /// </summary>
    public bool IsDone => Kind == StageKind.Export ? File.Exists(Out)
        : File.Exists(Path.Combine(Out, BertCheckpoint.ConfigFile)) && (!WritesMetrics || File.Exists(MetricsFile));

    string MetricsFile => Path.Combine(Out, "metrics.json");

    /// <summary>The metrics a complete stage left (null where it writes none).</summary>
    public JsonObject? ReadMetrics() => WritesMetrics ? RunFiles.Read<JsonObject>(MetricsFile) : null;
}

/// <summary>
/// A recipe: a JSON file of stages run in order by <c>distillery run</c>, each stage's output folder being the next
/// stage's input unless the next stage names its own. Example (Well-Read Students' Pre-trained Distillation):
/// <code>
/// { "name": "pd-sst2", "stages": [
///   { "stage": "init", "arch": "L2-H256", "out": "runs/pd/init" },
///   { "stage": "pretrain", "corpus": ["../shared/data/corpus"], "out": "runs/pd/pretrained" },
///   { "stage": "distill", "method": "kd", "teacher": "runs/teacher/sst2", "task": "sst2", "data": "../shared/data/glue",
///     "transfer_data": ["../shared/data/corpus/movie_reviews"], "kd": { "alpha": 1 }, "out": "runs/pd/distilled" },
///   { "stage": "finetune", "task": "sst2", "data": "../shared/data/glue", "out": "runs/pd/final" } ] }
/// </code>
/// Every stage's options are the library's records (snake_case keys, as written to run_config.json). The whole recipe is
/// checked before the first stage runs: unknown stages or methods, missing fields, layer indices out of range,
/// teacher/student vocabularies that differ, and shapes a method cannot handle are one line naming the stage.
/// </summary>
public sealed class Recipe
{
    /// <summary>The recipe's name.</summary>
    public string Name { get; }
    /// <summary>The stages, validated and chained.</summary>
    public IReadOnlyList<RecipeStage> Stages { get; }

    private Recipe(string name, IReadOnlyList<RecipeStage> stages)
    {
        Name = name;
        Stages = stages;
    }

    /// <summary>Reads and validates a recipe file.</summary>
    public static Recipe Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: recipe not found", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { MaxDepth = 32 }); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (root is not JsonObject obj || obj["stages"] is not JsonArray stages || stages.Count == 0)
            throw new InvalidDataException($"{path}: expected an object with a non-empty \"stages\" list");
        string name = obj["name"]?.GetValueKind() == JsonValueKind.String ? obj["name"]!.GetValue<string>() : Path.GetFileNameWithoutExtension(path);

        var result = new List<RecipeStage>();
        string? previousOut = null;
        // What earlier stages will produce (full path → encoder config where it is known), so later stages can be
        // checked against models that do not exist yet.
        var produced = new Dictionary<string, BertConfig?>();
        for (int i = 0; i < stages.Count; i++)
        {
            string where = $"{path}: stages[{i}]";
            if (stages[i] is not JsonObject stage) throw new InvalidDataException($"{where}: not an object");
            stage = stage.DeepClone().AsObject();
            string kindName = stage["stage"]?.GetValueKind() == JsonValueKind.String ? stage["stage"]!.GetValue<string>() : throw new InvalidDataException($"{where}: missing \"stage\"");
            stage.Remove("stage");
            if (!Enum.TryParse<StageKind>(kindName, ignoreCase: true, out var kind) || int.TryParse(kindName, out _))
                throw new InvalidDataException($"{where}: unknown stage \"{kindName}\" (known: init, extract, pretrain, finetune, distill, prune, reduce, export)");
            where = $"{path}: stages[{i}] ({kindName})";
            try
            {
                var (built, config) = Build(i, kind, stage, previousOut, produced, where);
                if (!produced.TryAdd(Path.GetFullPath(built.Out), config)) throw new InvalidDataException($"{where}: out \"{built.Out}\" is also an earlier stage's output");
                result.Add(built);
                if (kind != StageKind.Export) previousOut = built.Out;   // a graph is not a model folder to train on
            }
            catch (JsonException e) { throw new InvalidDataException($"{where}: {e.Message.Split('\n')[0]}"); }
            catch (Exception e) when (e is ArgumentException or FormatException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException && !e.Message.StartsWith(path, StringComparison.Ordinal))
            {
                throw new InvalidDataException($"{where}: {e.Message.Split('\n')[0]}");
            }
        }
        return new Recipe(name, result);
    }

    /// <summary>The stage's options as the library's record; strict: a key that is not an option is an error naming the nearest one.</summary>
    static T Typed<T>(JsonObject options) => StrictJson.Deserialize<T>(options, "the stage");

    static void Default(JsonObject options, string key, string? previousOut, string where)
    {
        if (options[key] != null) return;
        options[key] = previousOut ?? throw new InvalidDataException($"{where}: needs \"{key}\" (it is the first stage, so there is no previous output to take)");
    }

    /// <summary>The config of a model folder: produced by an earlier stage (null when not known in advance) or on disk.</summary>
    static BertConfig? ConfigOf(string dir, Dictionary<string, BertConfig?> produced) =>
        produced.TryGetValue(Path.GetFullPath(dir), out var config) ? config : BertCheckpoint.ReadConfig(dir);

    static int VocabFile(string? vocab) =>
        File.ReadLines(vocab ?? SharedData.Resolve("tokenizers", "bert-base-uncased", "vocab.txt")).Count();

    /// <summary>Builds one typed stage; returns it and the config of its output where known (for later checks).</summary>
    static (RecipeStage Stage, BertConfig? Output) Build(int index, StageKind kind, JsonObject options, string? previousOut, Dictionary<string, BertConfig?> produced, string where)
    {
        switch (kind)
        {
            case StageKind.Init:
            {
                options["vocab_path"] ??= SharedData.Resolve("tokenizers", "bert-base-uncased", "vocab.txt");
                var o = Typed<InitOptions>(options).Validate();
                return (new RecipeStage(index, kind, o.Out, o, _ => { ModelInit.Run(o, overwrite: true); return null; }), ModelInit.ConfigFor(o, VocabFile(o.VocabPath)));
            }
            case StageKind.Extract:
            {
                Default(options, "model", previousOut, where);
                var o = Typed<ExtractOptions>(options).Validate();
                var source = ConfigOf(o.Model, produced);
                return (new RecipeStage(index, kind, o.Out, o, _ => { LayerExtraction.Run(o, overwrite: true); return null; }),
                    source == null ? null : o.ConfigFor(source));
            }
            case StageKind.Pretrain:
            {
                if (options["init_from"] == null && options["arch"] == null && previousOut != null) options["init_from"] = previousOut;
                var o = Typed<PretrainOptions>(options).Validate();
                var config = o.InitFrom != null ? ConfigOf(o.InitFrom, produced) : BertArch.Parse(o.Arch, VocabFile(o.VocabPath)) with { MaxPositionEmbeddings = o.MaxPositions };
                return (new RecipeStage(index, kind, o.Out, o, events => Pretraining.Run(o, events: events, overwrite: true)), config);
            }
            case StageKind.Finetune:
            {
                Default(options, "model", previousOut, where);
                var o = Typed<FinetuneOptions>(options);
                o.Trainer.Validate();
                o.Task.Validate();
                return (new RecipeStage(index, kind, o.Out, o, events => FineTuning.Run(o, events: events, overwrite: true)), ConfigOf(o.Model, produced));
            }
            case StageKind.Prune:
            {
                Default(options, "model", previousOut, where);
                var o = Typed<Pruning.PruneOptions>(options);
                o.Trainer.Validate();
                o.Task.Validate();
                if (ConfigOf(o.Model, produced) is BertConfig model) o.Resolve(model, o.Task.Head);
                return (new RecipeStage(index, kind, o.Out, o, events => Pruning.Pruner.Run(o, events: events, overwrite: true)), null);
            }
            case StageKind.Reduce:
            {
                Default(options, "model", previousOut, where);
                var o = Typed<EmbeddingReductionOptions>(options).Validate();
                return (new RecipeStage(index, kind, o.Out, o, events => EmbeddingReduction.Run(o, events, overwrite: true)), ConfigOf(o.Model, produced));
            }
            case StageKind.Export:
            {
                Default(options, "model", previousOut, where);
                var o = Typed<ExportStageOptions>(options).Validate();
                return (new RecipeStage(index, kind, o.Out, o, _ => o.Run()), null);
            }
            default:
            {
                string teacher = options["teacher"]?.GetValue<string>() ?? throw new InvalidDataException($"{where}: needs \"teacher\" (a model folder)");
                var name = options["method"]?.GetValueKind() == JsonValueKind.String ? options["method"]!.GetValue<string>() : DistillMethods.Default.Name;
                var method = DistillMethods.Find(name);
                // A method that must be given a student starts from the previous stage's output (a pre-trained student).
                if (options["student"] == null && !method.BuildsOwnStudent && method.DefaultStudent == null)
                    options["student"] = new JsonObject
                    {
                        ["kind"] = "checkpoint",
                        ["checkpoint"] = previousOut ?? throw new InvalidDataException($"{where}: needs \"student\" (there is no previous stage to start from)"),
                    };
                var o = Typed<DistillOptions>(options);
                o.ResolvedTrainer.Validate();
                var teacherConfig = ConfigOf(teacher, produced);
                method.Check(o, teacherConfig, resume: false);
                CheckStudent(o.Student, teacherConfig, produced);
                return (new RecipeStage(index, kind, o.Out, o, events => Distiller.Run(o, events: events, overwrite: true)), null);
            }
        }
    }

    /// <summary>Checks what can be checked of a student against its teacher (when its config is known) before anything runs.</summary>
    static void CheckStudent(StudentInit? init, BertConfig? teacher, Dictionary<string, BertConfig?> produced)
    {
        if (init == null || teacher == null) return;
        switch (init.Kind)
        {
            case StudentInitKind.TeacherLayers:
                if (init.TeacherLayers != null) StudentInit.CheckLayers(init.TeacherLayers, teacher.NumHiddenLayers);
                break;
            case StudentInitKind.Random:
                BertArch.Parse(init.Arch ?? throw new ArgumentException("a random student needs \"arch\""));
                break;
            case StudentInitKind.Checkpoint:
                var student = ConfigOf(init.Checkpoint ?? throw new ArgumentException("a checkpoint student needs \"checkpoint\""), produced);
                if (student != null && student.VocabSize != teacher.VocabSize)
                    throw new ArgumentException($"teacher and student vocabularies differ ({teacher.VocabSize} vs {student.VocabSize} tokens)");
                break;
        }
    }

    /// <summary>
    /// Runs every stage in order; returns each stage's metrics (null for init and extract, and for an export found done). A stage whose output folder is already
    /// complete (config.json, and metrics.json for training stages) is skipped unless <paramref name="force"/>, so
    /// recipes that share a stage (a pre-trained student) and interrupted recipes pick up where they stood.
    /// </summary>
    public IReadOnlyList<JsonObject?> Run(RunEvents? events = null, Action<RecipeStage, bool>? starting = null, bool force = false)
    {
        var results = new List<JsonObject?>();
        foreach (var stage in Stages)
        {
            bool done = !force && stage.IsDone;
            starting?.Invoke(stage, done);
            results.Add(done ? stage.ReadMetrics() : stage.Run(events ?? new RunEvents()));
        }
        return results;
    }
}
