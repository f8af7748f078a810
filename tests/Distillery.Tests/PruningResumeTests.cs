using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.IO;
using Distillery.Models;
using Distillery.Pruning;
using Distillery.Training;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// Runs that prune while they train resume exactly: the pruning mask and the accumulated importance scores travel in the
/// checkpoint with the weights (iterative pruning, task-specific HomoDistil), and one-shot pruning rebuilds its shapes.
/// A run killed after a checkpoint and resumed ends bit-identical to the uninterrupted one.
/// </summary>
public sealed class PruningResumeTests
{
    /// <summary>A 2-layer H32 classifier (4 heads, FFN 64) at tmp/base and an SST-2 sample at tmp/glue.</summary>
    static void Setup(TestData.TempDir tmp)
    {
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        Directory.CreateDirectory(tmp["glue/SST-2"]);
        var random = new Random(5);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? (random.Next(2) == 0 ? "good" : "very") : (random.Next(2) == 0 ? "bad" : "not"))) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(tmp["glue/SST-2/train.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 64).Select(i => Row(random.Next(2) == 0))]);
        File.WriteAllLines(tmp["glue/SST-2/dev.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 16).Select(i => Row(i % 2 == 0))]);
        ModelInit.Run(new InitOptions { Layers = 2, Hidden = 32, Heads = 4, Ffn = 64, MaxPositions = 32, VocabPath = tmp["vocab.txt"], Out = tmp["base"], Task = BertTask.SequenceClassification, Seed = 3 });
    }

    // 8 steps, a checkpoint every 2, pruning from step 0 to step 6 (iterative: warm-up 0.1·8 = 0, final 0.3·8 = 2 steps);
    // a kill at step 5 resumes from step 4's checkpoint, mid-schedule, with some structures already masked.
    static TrainerOptions Trainer => new() { BatchSize = 8, LearningRate = 1e-3, MaxSteps = 8, WarmupSteps = 1, LogEvery = 1, CheckpointEvery = 2, Precision = ComputePrecision.Float32, Seed = 9 };

    /// <summary>Events that stop the run (as a kill would) once it reaches <paramref name="step"/>.</summary>
    static RunEvents KillAt(int step) => new() { StageProgress = (done, _) => { if (done == step) throw new OperationCanceledException("killed"); } };

    /// <summary>One run of <paramref name="kind"/> into <paramref name="output"/>: each prunes the base to hidden 24, 3 heads and 40 FFN neurons.</summary>
    static JsonObject Run(TestData.TempDir tmp, string kind, string output, bool resume = false, RunEvents? events = null)
    {
        var task = new TaskSpec { Name = TaskName.Sst2, Data = tmp["glue"] };
        PruneOptions Prune(bool iterative, ImportanceScore score) => new()
        {
            Model = tmp["base"], Task = task, Out = tmp[output], Target = "L2-H24-F40", Score = score, Iterative = iterative, ScoreBatches = 4, PruneEvery = 2, Trainer = Trainer,
        };
        return kind switch
        {
            "iterative-platon" => Pruner.Run(Prune(iterative: true, ImportanceScore.Platon), resume, events),
            "iterative-sensitivity" => Pruner.Run(Prune(iterative: true, ImportanceScore.Sensitivity), resume, events),
            "oneshot" => Pruner.Run(Prune(iterative: false, ImportanceScore.Sensitivity), resume, events),
            "homodistil" => Distiller.Run(new DistillOptions
            {
                Method = new HomoDistilOptions { Target = "L2-H24-F40", PruneEvery = 1 }, Teacher = tmp["base"], Task = task, Out = tmp[output], Trainer = Trainer,
            }, resume, events),
            _ => throw new ArgumentException(kind),
        };
    }

    internal static void AssertSameModel(string expected, string actual)
    {
        Assert.Equal(File.ReadAllText(Path.Combine(expected, BertCheckpoint.ConfigFile)), File.ReadAllText(Path.Combine(actual, BertCheckpoint.ConfigFile)));
        var a = Safetensors.Load(Path.Combine(expected, BertCheckpoint.WeightsFile));
        var b = Safetensors.Load(Path.Combine(actual, BertCheckpoint.WeightsFile));
        try
        {
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            foreach (var (name, t) in a)
                Assert.True(t.shape.SequenceEqual(b[name].shape) && t.eq(b[name]).all().item<bool>(), $"{name} differs after resume");
        }
        finally
        {
            foreach (var t in a.Values.Concat(b.Values)) t.Dispose();
        }
    }

    [Theory]
    [InlineData("iterative-platon")]
    [InlineData("iterative-sensitivity")]
    [InlineData("oneshot")]
    [InlineData("homodistil")]
    public void AKilledPruningRunResumesToTheSameModel(string kind)
    {
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        var whole = Run(tmp, kind, "whole");
        Assert.Throws<OperationCanceledException>(() => Run(tmp, kind, "split", events: KillAt(5)));
        Assert.False(File.Exists(tmp["split/config.json"]));
        if (kind != "oneshot")
        {
            // Step 4's checkpoint holds a mask already narrower than the base (the schedule is past its start).
            var mask = PruningMask.FromJson(JsonNode.Parse(File.ReadAllText(tmp["split/checkpoint/objective.json"]))!["mask"], BertCheckpoint.ReadConfig(tmp["base"]), "test");
            Assert.True(mask.Neurons.Sum(n => n.Count(k => !k)) > 0, "no neuron masked by step 4");
        }
        var resumed = Run(tmp, kind, "split", resume: true);
        AssertSameModel(tmp["whole"], tmp["split"]);
        Assert.Equal(whole["dev"]!.ToJsonString(), resumed["dev"]!.ToJsonString());
        Assert.Equal(8, resumed["steps"]!.GetValue<int>());
    }

    [Fact]
    public void ACheckpointWithoutTheMasksOrWithADamagedOneIsRefusedNamingTheFile()
    {
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        Assert.Throws<OperationCanceledException>(() => Run(tmp, "iterative-platon", "run", events: KillAt(5)));
        string values = tmp["run/checkpoint/objective.json"];
        var state = JsonNode.Parse(File.ReadAllText(values))!.AsObject();

        // A mask that is not 0s and 1s, and one of another model's shape: one line naming the file and the entry.
        var damaged = state.DeepClone().AsObject();
        damaged["mask"]!["heads"]![0] = "1x11";
        File.WriteAllText(values, damaged.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => Run(tmp, "iterative-platon", "run", resume: true));
        Assert.Contains("objective.json", e.Message);
        Assert.Contains("heads[0] holds 'x'", e.Message);
        damaged["mask"]!["heads"]![0] = "111";
        File.WriteAllText(values, damaged.ToJsonString());
        Assert.Contains("3 entries for 4 heads", Assert.Throws<InvalidDataException>(() => Run(tmp, "iterative-platon", "run", resume: true)).Message);

        // Scores of a weight the model does not have.
        File.WriteAllText(values, state.ToJsonString());
        string tensors = tmp["run/checkpoint/objective.safetensors"];
        var saved = Safetensors.Load(tensors);
        saved["score/bert.encoder.layer.7.intermediate.dense.weight"] = saved.Values.First().clone();
        Safetensors.Save(tensors, saved);
        foreach (var t in saved.Values) t.Dispose();
        Assert.Contains("names no tracked weight", Assert.Throws<InvalidDataException>(() => Run(tmp, "iterative-platon", "run", resume: true)).Message);

        // No objective state at all (a checkpoint written before masks were saved): refused, not resumed at full width.
        File.Delete(values);
        e = Assert.Throws<InvalidDataException>(() => Run(tmp, "iterative-platon", "run", resume: true));
        Assert.Contains("objective's own state", e.Message);
        Assert.False(File.Exists(tmp["run/config.json"]));
    }
}
