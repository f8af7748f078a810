// Logit matching: Ba & Caruana, "Do Deep Nets Really Need to be Deep?" (NeurIPS 2014). The student regresses the
// teacher's logits with a mean squared error, L = w · mean((z_S − z_T)²), instead of matching softened distributions.
// Deviations: none that matter here; it exists to show that a method is its file plus one registration, and the
// registration here is the test's (DistillMethods.Register) where a library method has its line in DistillMethods.
using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.Models;
using Distillery.Recipes;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>Logit matching's options.</summary>
public sealed record LogitMatchingOptions : IDistillMethodOptions<LogitMatchingOptions>
{
    /// <summary>Weight w of the logit MSE.</summary>
    public double Weight { get; init; } = 1.0;

    /// <summary>Checks the fields; throws naming the bad one.</summary>
    public LogitMatchingOptions Validate() => Weight > 0 ? this : throw new ArgumentException($"weight must be positive (got {Weight})");
}

/// <summary>Logit matching on task batches, from a fine-tuned teacher into a given student.</summary>
public sealed class LogitMatching(Teacher teacher, BertTaskModel student, LogitMatchingOptions options) : IDistillationMethod<TaskBatch>
{
    /// <summary>The registry entry: on a task, into a given student; labels are not used, so transfer data is fine.</summary>
    public static readonly DistillMethod<LogitMatchingOptions> Method = new()
    {
        Name = "logit_matching",
        Summary = "logit matching (Ba & Caruana 2014): the student regresses the teacher's logits",
        OnTask = (o, inputs) => new LogitMatching(inputs.Teacher, inputs.BuildStudent(), o),
    };

    /// <inheritdoc/>
    public BertTaskModel Student => student;

    /// <inheritdoc/>
    public nn.Module Module => student;

    /// <inheritdoc/>
    public (Tensor Loss, long Tokens) Loss(TaskBatch batch)
    {
        var inputs = batch.ToInputs();
        var teacherLogits = teacher.Forward(inputs).Logits;   // [B, C], no graph
        var studentLogits = student.forward(inputs).Logits;   // [B, C]
        return (options.Weight * Losses.LogitMse(studentLogits, teacherLogits), batch.AttentionMask.Sum());
    }
}

/// <summary>The method registry: a method added by its file and one registration runs through recipes, configs and run files.</summary>
public sealed class RegistryTests
{
    static RegistryTests() => DistillMethods.Register(LogitMatching.Method);

    static JsonObject Trainer() => new() { ["batch_size"] = 8, ["learning_rate"] = 3e-3, ["epochs"] = 1, ["log_every"] = 4, ["checkpoint_every"] = 0 };

    [Fact]
    public void ARegisteredMethodRunsFromARecipeAndItsRunConfigReadsBack()
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        Directory.CreateDirectory(tmp["glue/SST-2"]);
        var random = new Random(3);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? (random.Next(2) == 0 ? "good" : "very") : (random.Next(2) == 0 ? "bad" : "not"))) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(tmp["glue/SST-2/train.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 32).Select(i => Row(i % 2 == 0))]);
        File.WriteAllLines(tmp["glue/SST-2/dev.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 8).Select(i => Row(i % 2 == 0))]);
        var recipe = new JsonObject
        {
            ["stages"] = new JsonArray(
                new JsonObject { ["stage"] = "init", ["layers"] = 2, ["hidden"] = 32, ["heads"] = 2, ["max_positions"] = 64, ["vocab_path"] = tmp["vocab.txt"], ["out"] = tmp["init"] },
                new JsonObject { ["stage"] = "finetune", ["task"] = "sst2", ["data"] = tmp["glue"], ["out"] = tmp["teacher"], ["trainer"] = Trainer() },
                new JsonObject
                {
                    ["stage"] = "distill", ["method"] = "logit_matching", ["teacher"] = tmp["teacher"], ["task"] = "sst2", ["data"] = tmp["glue"], ["out"] = tmp["student"],
                    ["student"] = new JsonObject { ["kind"] = "teacher_layers", ["teacher_layers"] = new JsonArray(1) },
                    ["logit_matching"] = new JsonObject { ["weight"] = 2.0 }, ["trainer"] = Trainer(),
                }),
        };
        File.WriteAllText(tmp["recipe.json"], recipe.ToJsonString());
        var results = Recipe.Load(tmp["recipe.json"]).Run();
        Assert.Equal("distill", results[2]!["command"]!.GetValue<string>());
        Assert.Equal(1, BertConfig.Load(tmp["student/config.json"]).NumHiddenLayers);

        // The run config names the method and holds its options under its key, and only those.
        var saved = JsonNode.Parse(File.ReadAllText(tmp["student/run_config.json"]))!["options"]!.AsObject();
        Assert.Equal("logit_matching", saved["method"]!.GetValue<string>());
        Assert.Equal(2.0, saved["logit_matching"]!["weight"]!.GetValue<double>());
        foreach (var other in DistillMethods.All.Where(m => m != LogitMatching.Method)) Assert.False(saved.ContainsKey(other.Key), other.Key);
        var read = StrictJson.Deserialize<DistillOptions>(saved, "options");
        Assert.Equal(new LogitMatchingOptions { Weight = 2 }, read.Method);
        Assert.Equal(TaskName.Sst2, read.Task!.Name);

        // Its options are as strict as any: a typo names the nearest key.
        saved["logit_matching"] = new JsonObject { ["wieght"] = 1 };
        Assert.Contains("did you mean weight", Assert.Throws<InvalidDataException>(() => StrictJson.Deserialize<DistillOptions>(saved, "options")).Message);
    }

    [Fact]
    public void TheRegistryRefusesClashesAndChecksBeforeAnythingLoads()
    {
        Assert.Contains("clashes", Assert.Throws<ArgumentException>(() => DistillMethods.Register(new DistillMethod<LogitMatchingOptions>
        {
            Name = "kd", Summary = "a second kd", OnTask = (o, inputs) => new LogitMatching(inputs.Teacher, inputs.BuildStudent(), o),
        })).Message);
        Assert.Contains("known: kd, distilbert, minilm, theseus, homodistil", Assert.Throws<ArgumentException>(() => DistillMethods.Find("magic")).Message);
        var task = new TaskSpec { Name = TaskName.Sst2, Data = "glue" };
        var options = new DistillOptions { Method = new LogitMatchingOptions(), Teacher = "t", Task = task, Out = "o" };
        // What a method declares is what Check enforces, for a registered method as for the built-in ones.
        Assert.Contains("logit_matching needs a student", Assert.Throws<ArgumentException>(() => LogitMatching.Method.Check(options, null, resume: false)).Message);
        var withStudent = options with { Student = StudentInit.FirstLayers(1) };
        Assert.Equal(BertTask.SequenceClassification, LogitMatching.Method.Check(withStudent, null, resume: false).Head);
        Assert.Contains("not on a corpus", Assert.Throws<ArgumentException>(() =>
            LogitMatching.Method.Check(withStudent with { Task = null, Corpus = new CorpusSpec { Files = ["c.txt"] } }, null, resume: false)).Message);
        Assert.Contains("weight must be positive", Assert.Throws<ArgumentException>(() =>
            LogitMatching.Method.Check(withStudent with { Method = new LogitMatchingOptions { Weight = 0 } }, null, resume: false)).Message);
        // A method whose state a checkpoint cannot hold says so before anything loads; HomoDistil's masks are checkpointed.
        var noResume = new DistillMethod<LogitMatchingOptions>
        {
            Name = "no_resume", Summary = "kd without checkpointable state", CannotResume = "its state is not checkpointed",
            OnTask = (o, inputs) => new LogitMatching(inputs.Teacher, inputs.BuildStudent(), o),
        };
        Assert.Contains("no_resume cannot resume: its state is not checkpointed", Assert.Throws<ArgumentException>(() => noResume.Check(withStudent, null, resume: true)).Message);
        Assert.True(HomoDistil.Method.CanResume);
        HomoDistil.Method.Check(new DistillOptions { Method = new HomoDistilOptions { Target = "L1-H16" }, Teacher = "t", Task = task, Out = "o" }, null, resume: true);
    }

    [Fact]
    public void RunConfigsWrittenBeforeTheRegistryStillLoad()
    {
        // Task distillation wrote every method's options (defaults) beside the chosen one's; only the chosen one's count.
        var kd = JsonNode.Parse("""
            { "method": "kd", "teacher": "t", "student": { "kind": "teacher_layers", "teacher_layers": [0] },
              "theseus": { "successor_layers": 6, "scheduler": "linear", "k": 0.0006, "b": 0.3, "init": "first_layers" },
              "homodistil": { "target": null, "score": "sensitivity", "prune_every": 10 },
              "task": "sst2", "data": "glue", "out": "o", "max_length": null, "doc_stride": 128, "split_articles": 0,
              "max_train_examples": 100, "transfer_data": null, "kd": { "temperature": 3, "alpha": 0.5 }, "trainer": { "max_steps": 5 } }
            """)!;
        var task = StrictJson.Deserialize<DistillOptions>(kd, "options");
        Assert.Equal(new KdOptions { Temperature = 3, Alpha = 0.5 }, task.Method);
        Assert.Equal(100, task.Task!.MaxTrainExamples);
        Assert.Equal(5, task.Trainer!.MaxSteps);
        Assert.Null(task.Corpus);
        // Corpus distillation was a record of its own, its method written in snake case ("distil_bert"): the same keys,
        // read as the corpus the run distils on.
        var distilbert = JsonNode.Parse("""
            { "method": "distil_bert", "teacher": "t", "student": null, "corpus": ["c.txt"], "out": "o", "seq_length": 64,
              "masking": { "probability": 0.15 }, "eval_sequences": 16, "invalid_utf8": "latin1", "cache_dir": null,
              "distil_bert": { "temperature": 2, "alpha_ce": 5, "alpha_mlm": 2, "alpha_cos": 0 }, "mini_lm": { "relations": "v1" },
              "homodistil": { "target": null }, "trainer": { "max_steps": 5 } }
            """)!.AsObject();
        var corpus = StrictJson.Deserialize<DistillOptions>(distilbert, "options");
        Assert.Equal(new DistilBertOptions { AlphaCos = 0 }, corpus.Method);
        Assert.Equal(["c.txt"], corpus.Corpus!.Files);
        Assert.Equal(Data.InvalidUtf8.Latin1, corpus.Corpus.InvalidUtf8);
        Assert.Null(corpus.Task);

        // A fine-tuning run_config.json of today (with its computed "is_squad") reads as FinetuneOptions.
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root!.FullName, "Distillery.slnx"))) root = root.Parent;
        var finetune = JsonNode.Parse(File.ReadAllText(Path.Combine(root.FullName, "docs/records/real-teacher/sst2.run_config.json")))!["options"]!;
        var options = StrictJson.Deserialize<FinetuneOptions>(finetune, "options");
        Assert.Equal(TaskName.Sst2, options.Task.Name);
        // Written again, the keys stay flat (the task spec is inline), as before.
        var written = JsonSerializer.SerializeToNode(options, RunFiles.Json)!.AsObject();
        Assert.Equal("sst2", written["task"]!.GetValue<string>());
        Assert.True(written.ContainsKey("data") && written.ContainsKey("doc_stride") && !written.ContainsKey("is_squad"), written.ToJsonString());
    }
}
