using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Distillery.Models;
using Distillery.Recipes;
using Distillery.Text;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// Issue 14's cases, each as a user would hit it, on tiny models (hidden 32, 2 layers): an input or a finished output
/// is never overwritten, nothing half-written looks finished, damaged JSON and bad option values are one line, strict
/// config keys, safe resume, and NaN models are not reported as trained. Plus a bounded seeded safetensors header fuzz.
/// </summary>
public sealed class ReliabilityTests
{
    static BertTextTokenizer Tokenizer(TestData.TempDir tmp)
    {
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        return BertTextTokenizer.FromVocab(tmp["vocab.txt"]);
    }

    static BertConfig TinyConfig(int vocab) => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: vocab) with { MaxPositionEmbeddings = 64 };

    /// <summary>A tiny masked-LM model folder and a separable SST-2 in <paramref name="tmp"/>.</summary>
    internal static (string Model, string Glue) Setup(TestData.TempDir tmp, bool nan = false)
    {
        var tokenizer = Tokenizer(tmp);
        torch.manual_seed(1);
        using (var model = BertTaskModel.Create(TinyConfig(tokenizer.VocabSize), BertTask.MaskedLM))
        {
            if (nan) using (no_grad()) foreach (var p in model.parameters()) p.fill_(double.NaN);
            BertCheckpoint.Save(model, tmp["base"], tokenizer);
        }
        Directory.CreateDirectory(tmp["glue/SST-2"]);
        var random = new Random(2);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? (random.Next(2) == 0 ? "good" : "very") : (random.Next(2) == 0 ? "bad" : "not"))) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(tmp["glue/SST-2/train.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 64).Select(i => Row(i % 2 == 0))]);
        File.WriteAllLines(tmp["glue/SST-2/dev.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 16).Select(i => Row(i % 2 == 0))]);
        return (tmp["base"], tmp["glue"]);
    }

    static FinetuneOptions Finetune(string model, string glue, string output, int steps = 4, int checkpointEvery = 0) => new()
    {
        Task = new() { Name = Training.TaskName.Sst2, Data = glue }, Model = model, Out = output,
        Trainer = new TrainerOptions { BatchSize = 8, LearningRate = 1e-3, MaxSteps = steps, LogEvery = 1, CheckpointEvery = checkpointEvery, Precision = ComputePrecision.Float32 },
    };

    /// <summary>Events that stop the run (as a kill would) once it reaches <paramref name="step"/>.</summary>
    static RunEvents KillAt(int step) => new() { StageProgress = (done, _) => { if (done == step) throw new OperationCanceledException("killed"); } };

    static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));

    [Fact]
    public void AnOutputThatIsAnInputIsRefusedAndTheInputSurvives()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        string weights = Hash(Path.Combine(model, BertCheckpoint.WeightsFile));
        Assert.Contains("is the input", Assert.Throws<ArgumentException>(() => FineTuning.Run(Finetune(model, glue, model))).Message);
        Assert.Contains("is inside the input", Assert.Throws<ArgumentException>(() => FineTuning.Run(Finetune(model, glue, Path.Combine(model, "sub")))).Message);
        Assert.Contains("contains the input", Assert.Throws<ArgumentException>(() => FineTuning.Run(Finetune(model, glue, tmp.Dir))).Message);
        var distill = new Distillation.DistillOptions
        {
            Method = new Distillation.KdOptions(), Teacher = model, Student = Distillation.StudentInit.FirstLayers(1), Task = new() { Name = Training.TaskName.Sst2, Data = glue }, Out = model,
        };
        Assert.Throws<ArgumentException>(() => Distillation.Distiller.Run(distill, overwrite: true));
        Assert.Throws<ArgumentException>(() => Pretraining.Run(new PretrainOptions { Corpus = [tmp["vocab.txt"]], InitFrom = model, Out = model }, overwrite: true));
        Assert.Equal(weights, Hash(Path.Combine(model, BertCheckpoint.WeightsFile)));
        Assert.True(File.Exists(Path.Combine(model, BertCheckpoint.ConfigFile)));
        Assert.False(File.Exists(Path.Combine(model, "run_config.json")));
    }

    [Fact]
    public void AFinishedOutputIsRefusedUnlessOverwriteAndARunIntoAFolderUnmarksItFirst()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        FineTuning.Run(Finetune(model, glue, tmp["ft"], steps: 2));
        string weights = Hash(tmp["ft/model.safetensors"]);
        var again = Assert.Throws<IOException>(() => FineTuning.Run(Finetune(model, glue, tmp["ft"], steps: 2)));
        Assert.Contains("already holds a finished model", again.Message);
        Assert.Equal(weights, Hash(tmp["ft/model.safetensors"]));

        // --overwrite into the finished folder, killed at step 2: nothing there may look finished any more.
        Assert.Throws<OperationCanceledException>(() => FineTuning.Run(Finetune(model, glue, tmp["ft"], steps: 6), events: KillAt(2), overwrite: true));
        Assert.False(File.Exists(tmp["ft/config.json"]), "a half-written run still has config.json");
        Assert.False(File.Exists(tmp["ft/metrics.json"]), "a half-written run still has metrics.json");
        // A fresh run over the unfinished folder is allowed (nothing finished to lose), and finishes.
        FineTuning.Run(Finetune(model, glue, tmp["ft"], steps: 2));
        Assert.True(File.Exists(tmp["ft/config.json"]) && File.Exists(tmp["ft/metrics.json"]));
        // The record names the build that wrote it ("0.1.0+<40-hex commit>", stamped at build time).
        string version = JsonNode.Parse(File.ReadAllText(tmp["ft/metrics.json"]))!["version"]!.GetValue<string>();
        Assert.Matches("^[0-9]+\\.[0-9]+\\.[0-9]+\\+[0-9a-f]{40}$", version);
        // --resume of a finished run: nothing to resume, and the model stays.
        Assert.Contains("no checkpoint", Assert.Throws<InvalidOperationException>(() => FineTuning.Run(Finetune(model, glue, tmp["ft"], steps: 2), resume: true)).Message);
        Assert.True(File.Exists(tmp["ft/config.json"]));
    }

    [Fact]
    public void ResumeComparesPathsByWhereTheyLead()
    {
        // The same corpus through another working copy's "..": resumable; another corpus: refused, naming the key.
        using var tmp = new TestData.TempDir();
        File.WriteAllText(tmp["run_config.json"], """{"corpus": ["/work/run-a/../shared/data/corpus", "runs/x.txt"], "task": "sst2"}""");
        RunFiles.CheckResumable(tmp.Dir, new Dictionary<string, object> { ["corpus"] = new[] { "/work/run-b/../shared/data/corpus", "runs/./x.txt" }, ["task"] = "sst2" });
        var other = Assert.Throws<InvalidOperationException>(() => RunFiles.CheckResumable(tmp.Dir,
            new Dictionary<string, object> { ["corpus"] = new[] { "/work/run-b/../shared/data/other", "runs/x.txt" }, ["task"] = "sst2" }));
        Assert.Contains("corpus[0] differs", other.Message);
        Assert.Throws<InvalidOperationException>(() => RunFiles.CheckResumable(tmp.Dir,
            new Dictionary<string, object> { ["corpus"] = new[] { "/work/run-a/../shared/data/corpus", "runs/x.txt" }, ["task"] = "mrpc" }));
    }

    [Fact]
    public void ResumeRefusesOtherDataAndSurvivesDamagedLogsAndTheRenameWindow()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        var options = Finetune(model, glue, tmp["ft"], steps: 6, checkpointEvery: 2) with { Task = new() { Name = TaskName.Sst2, Data = glue, MaxTrainExamples = 48 } };
        Assert.Throws<OperationCanceledException>(() => FineTuning.Run(options, events: KillAt(3)));
        Assert.Contains("unfinished run's checkpoint", Assert.Throws<IOException>(() => FineTuning.Run(options)).Message);
        var other = Assert.Throws<InvalidOperationException>(() => FineTuning.Run(options with { Task = options.Task with { MaxTrainExamples = 32 } }, resume: true));
        Assert.Contains("max_train_examples differs", other.Message);

        // A kill mid-write cuts the last metrics.jsonl line; a kill between the checkpoint's two renames leaves only checkpoint.old-*.
        File.AppendAllText(tmp["ft/metrics.jsonl"], "{\"step\": 4, \"lo");
        Directory.Move(tmp["ft/checkpoint"], tmp["ft/checkpoint.old-0123"]);
        double cpuBeforeKill = JsonNode.Parse(File.ReadAllText(tmp["ft/checkpoint.old-0123/state.json"]))!["cpu_seconds"]!.GetValue<double>();
        var metrics = FineTuning.Run(options, resume: true);
        Assert.Equal(6, metrics["steps"]!.GetValue<int>());
        // CPU time counts the interrupted part too (carried in the checkpoint), and is never more than the threads could spend.
        double cpu = metrics["cpu_seconds"]!.GetValue<double>(), wall = metrics["wall_seconds"]!.GetValue<double>();
        // (metrics round to the millisecond; a tiny run's whole CPU time can be a few of them)
        Assert.True(cpuBeforeKill > 0 && cpu >= Math.Round(cpuBeforeKill, 3) && cpu <= (wall + 1) * Environment.ProcessorCount, $"cpu_seconds {cpu} (checkpoint {cpuBeforeKill}), wall_seconds {wall}");
        var steps = File.ReadLines(tmp["ft/metrics.jsonl"]).Select(l => JsonNode.Parse(l)!).Where(n => n["loss"] != null).Select(n => n["step"]!.GetValue<int>());
        Assert.Equal(Enumerable.Range(1, 6), steps);
    }

    [Fact]
    public void DamagedCheckpointStateIsOneLineNamingTheFile()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        var options = Finetune(model, glue, tmp["ft"], steps: 6, checkpointEvery: 2);
        Assert.Throws<OperationCanceledException>(() => FineTuning.Run(options, events: KillAt(3)));
        string state = tmp["ft/checkpoint/state.json"];
        File.WriteAllText(state, File.ReadAllText(state)[..40]);
        var e = Assert.Throws<InvalidDataException>(() => FineTuning.Run(options, resume: true));
        Assert.Contains("state.json", e.Message);
    }

    [Fact]
    public void NaNModelsAreNotReportedAsTrained()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp, nan: true);
        var (loaded, report) = BertCheckpoint.Load(model);
        loaded.Dispose();
        Assert.Contains(report.Warnings(), w => w.Contains("non-finite weights") && w.Contains("bert.embeddings"));
        var options = Finetune(model, glue, tmp["ft"]) with { Trainer = Finetune(model, glue, tmp["ft"]).Trainer with { OnNonFiniteLoss = NonFiniteLoss.Skip } };
        var e = Assert.Throws<InvalidDataException>(() => FineTuning.Run(options));
        Assert.Contains("NaN or infinite", e.Message);
        Assert.False(File.Exists(tmp["ft/config.json"]));
    }

    /// <summary>A loss that is always NaN (finite weights), to reach the skip-every-step path.</summary>
    sealed class AlwaysNaN(BertTaskModel model) : ITrainingObjective<TaskBatch>
    {
        public nn.Module Module => model;
        public (Tensor Loss, long Tokens) Loss(TaskBatch batch) => (TaskObjective.Compute(model, batch) * double.NaN, 1);
    }

    [Fact]
    public void ARunThatSkippedEveryStepFails()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = Tokenizer(tmp);
        using var model = BertTaskModel.Create(TinyConfig(tokenizer.VocabSize), BertTask.SequenceClassification);
        var examples = Enumerable.Range(0, 16).Select(i => new EncodedExample([2, 5 + i % 3, 3], [0, 0, 0], i % 2, float.NaN)).ToList();
        var trainer = new Trainer<TaskBatch>(new AlwaysNaN(model), new TaskBatchSource(examples, 4, 1, 0),
            new TrainerOptions { BatchSize = 4, MaxSteps = 3, CheckpointEvery = 0, OnNonFiniteLoss = NonFiniteLoss.Skip }, tmp["run"]);
        Assert.Contains("every one of the 3 steps", Assert.Throws<TrainingDivergedException>(() => trainer.Run()).Message);
    }

    [Fact]
    public void RecipesAreStrictAndDamagedStageMetricsAreOneLine()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        string Recipe(string trainer, string output = "ft")
        {
            string path = tmp["recipe.json"];
            File.WriteAllText(path, $$"""{ "stages": [ { "stage": "finetune", "model": "{{model}}", "task": "sst2", "data": "{{glue}}", "out": "{{tmp[output]}}", "trainer": {{trainer}} } ] }""");
            return path;
        }
        var typo = Assert.Throws<InvalidDataException>(() => Recipes.Recipe.Load(Recipe("""{ "max_step": 1, "learnin_rate": 5 }""")));
        Assert.Contains("unknown key max_step in trainer (did you mean max_steps?)", typo.Message);

        // A completed stage whose metrics.json is damaged: one error naming the file, not a stack trace.
        var recipe = Recipes.Recipe.Load(Recipe("""{ "max_steps": 1 }"""));
        Directory.CreateDirectory(tmp["ft"]);
        File.Copy(Path.Combine(model, "config.json"), tmp["ft/config.json"]);
        File.WriteAllText(tmp["ft/metrics.json"], "{\"dev\": {\"accura");
        Assert.Contains("metrics.json", Assert.Throws<InvalidDataException>(() => recipe.Run()).Message);
    }

    [Fact]
    public void CommittedRecipesUseOnlyKnownKeys()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root!.FullName, "Distillery.slnx"))) root = root.Parent;
        foreach (var file in Directory.GetFiles(Path.Combine(root.FullName, "recipes"), "*.json"))
        {
            var stages = JsonNode.Parse(File.ReadAllText(file))!["stages"]!.AsArray();
            foreach (var stage in stages.Select(s => s!.DeepClone().AsObject()))
            {
                string kind = stage["stage"]!.GetValue<string>();
                stage.Remove("stage");
                Type type = kind switch
                {
                    "init" => typeof(InitOptions),
                    "pretrain" => typeof(PretrainOptions),
                    "finetune" => typeof(FinetuneOptions),
                    "prune" => typeof(Pruning.PruneOptions),
                    "reduce" => typeof(EmbeddingReductionOptions),
                    "export" => typeof(Recipes.ExportStageOptions),
                    _ => typeof(Distillation.DistillOptions),   // every method: its own options under its key
                };
                var e = Record.Exception(() => StrictJson.CheckKeys(stage, type, "the stage"));
                Assert.True(e == null, $"{file}: {e?.Message}");
                if (kind != "distill") continue;
                // Distill stages read into the one options record, with the method's own options.
                var distill = StrictJson.Deserialize<Distillation.DistillOptions>(stage, "the stage");
                Assert.Equal(stage["method"]?.GetValue<string>() ?? "kd", distill.Registered.Name);
                Assert.Equal(stage["corpus"] != null, distill.Corpus != null);
            }
        }
    }

    [Fact]
    public void SafetensorsHeaderFuzzGivesCleanErrors()
    {
        using var tmp = new TestData.TempDir();
        string good = tmp["good.safetensors"];
        using (var scope = NewDisposeScope())
            IO.Safetensors.Save(good, new Dictionary<string, Tensor> { ["a.weight"] = randn(3, 4), ["b.bias"] = zeros(5), ["c"] = ones(2, 2, 2).to(ScalarType.Float16) });
        byte[] original = File.ReadAllBytes(good);
        int headerLength = (int)BitConverter.ToUInt64(original, 0);
        var random = new Random(14);
        string path = tmp["fuzz.safetensors"];
        for (int i = 0; i < 300; i++)
        {
            var bytes = (byte[])original.Clone();
            switch (i % 4)
            {
                case 0: for (int k = 0; k < 1 + random.Next(4); k++) bytes[8 + random.Next(headerLength)] = (byte)random.Next(256); break;   // random bytes in the header
                case 1: bytes[8 + random.Next(headerLength)] = (byte)"0123456789[]{}\",:-"[random.Next(18)]; break;                             // JSON-ish bytes
                case 2: BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)random.NextInt64(0, headerLength * 2)); break;                   // header length
                default: bytes = bytes[..random.Next(bytes.Length)]; break;                                                                     // cut short
            }
            File.WriteAllBytes(path, bytes);
            var e = Record.Exception(() => { foreach (var t in IO.Safetensors.Load(path).Values) t.Dispose(); });
            Assert.True(e is null or IOException or InvalidDataException, $"mutation {i}: {e?.GetType().Name}: {e?.Message}");
            if (e != null) Assert.DoesNotContain('\n', e.Message.TrimEnd());
        }
    }

    [Fact]
    public void CliErrorsAreOneLine()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        var lr = CliTests.Run(tmp.Dir, "finetune", "--model", model, "--task", "sst2", "--data", glue, "--out", "ft", "--lr", "abc");
        CliTests.AssertOneLineError(lr, "--lr", "\"abc\"", "a number");
        Assert.DoesNotContain("System.", lr.Err);
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "finetune", "--precision", "fp8"), "--precision", "\"fp8\"", "auto, fp32, bf16");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "distill", "--method", "magic"), "--method", "\"magic\"", "kd, distilbert");
        File.WriteAllText(tmp["bad.json"], "{\"task\": \"sst2\", ");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "finetune", "--config", "bad.json", "--model", model, "--out", "ft"), "bad.json");
        File.WriteAllText(tmp["typo.json"], "{\"task\": \"sst2\", \"trainer\": {\"max_step\": 1}}");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "finetune", "--config", "typo.json", "--model", model, "--data", glue, "--out", "ft"), "typo.json", "unknown key max_step in trainer (did you mean max_steps?)");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "finetune", "--model", model, "--task", "sst2", "--data", glue, "--out", model), "is the input");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "convert", model, "--dtype", "float16", "--out", model), "is the input");
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "export", "onnx", "--model", model, "--out", Path.Combine(model, "m.onnx")), "is inside the input");
        Assert.Equal(0, CliTests.Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--vocab", tmp["vocab.txt"], "--out", "m").ExitCode);
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--vocab", tmp["vocab.txt"], "--out", "m"), "already holds a finished model", "--overwrite");
        Assert.Equal(0, CliTests.Run(tmp.Dir, "init", "--layers", "1", "--hidden", "32", "--heads", "2", "--vocab", tmp["vocab.txt"], "--out", "m", "--overwrite").ExitCode);
        // A library argument error reaches the user without .NET's " (Parameter 'options')" suffix.
        File.WriteAllText(tmp["squad.json"], """{"data": [{"title": "t", "paragraphs": [{"context": "good very good", "qas": [{"id": "1", "question": "good?", "answers": [{"text": "very", "answer_start": 5}]}]}]}]}""");
        var squad = CliTests.Run(tmp.Dir, "finetune", "--model", model, "--task", "squad", "--data", "squad.json", "--eval-data", "squad.json", "--max-length", "8", "--out", "sq");
        CliTests.AssertOneLineError(squad, "MaxLength (8)");
        Assert.DoesNotContain("(Parameter", squad.Err);
    }

    [Fact]
    public void ConfigWithoutOutTakesItFromTheFlag()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = Setup(tmp);
        File.WriteAllText(tmp["c.json"], """{"task": "sst2", "trainer": {"max_steps": 1, "batch_size": 4}}""");   // no "out", "model" or "data"
        var r = CliTests.Run(tmp.Dir, "finetune", "--config", "c.json", "--model", model, "--data", glue, "--out", "ft");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(tmp["ft"], "config.json")));
    }
}
