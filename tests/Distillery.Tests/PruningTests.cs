using Distillery.Models;
using Distillery.Pruning;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>Structured pruning: physical removal equals masking, exact shapes, round trips, scores, the cubic schedule.</summary>
public sealed class PruningTests
{
    static BertConfig Config() => BertConfig.Create(layers: 3, hidden: 32, heads: 4, intermediate: 16, vocabSize: 100) with
    {
        MaxPositionEmbeddings = 24, Labels = ["a", "b"], ProblemType = ProblemType.SingleLabelClassification,
    };

    static BertInputs Inputs()
    {
        var ids = randint(1, 100, [3, 11], dtype: ScalarType.Int64, generator: new Generator(7));
        var mask = ones(3, 11, dtype: ScalarType.Int64);
        mask[0, TensorIndex.Slice(6)] = 0;
        return new BertInputs(ids, mask);
    }

    /// <summary>Layer 0 keeps heads 1, 3 and neurons 0..9; layer 1 loses every head; layer 2 loses every neuron.</summary>
    static PruningMask Mask() => new(
        [[false, true, false, true], [false, false, false, false], [true, true, true, true]],
        [Enumerable.Range(0, 16).Select(i => i < 10).ToArray(), Enumerable.Range(0, 16).Select(i => i % 3 == 0).ToArray(), new bool[16]]);

    [Fact]
    public void PhysicallyPrunedModelEqualsTheMaskedModel()
    {
        manual_seed(1);
        using var model = BertTaskModel.Create(Config(), BertTask.SequenceClassification);
        using (no_grad()) foreach (var p in model.parameters()) p.add_(randn_like(p) * 0.05);   // non-zero biases everywhere
        model.eval();
        using var pruned = StructuredPruning.Shrink(model, Mask());
        pruned.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var inputs = Inputs();
        // Masked reference 1: the forward's head mask plus zeroed FFN neurons, on a copy.
        using var zeroed = StructuredPruning.Shrink(model, PruningMask.KeepAll(model.Config));
        zeroed.eval();
        StructuredPruning.ZeroMasked(zeroed, Mask());
        var masked = zeroed.forward(inputs).Logits;
        var viaHeadMask = zeroed.forward(inputs, new BertForwardOptions { HeadMask = Mask().HeadMaskTensors() }).Logits;
        var physical = pruned.forward(inputs).Logits;
        Assert.True((masked - physical).abs().max().item<float>() < 1e-5, $"max diff {(masked - physical).abs().max().item<float>()}");
        Assert.True((viaHeadMask - physical).abs().max().item<float>() < 1e-5);
        // Pruning changed the function (the test would pass trivially otherwise).
        Assert.True((model.forward(inputs).Logits - physical).abs().max().item<float>() > 1e-4);
    }

    [Fact]
    public void PrunedShapesAreExactlyTheTargetAndRoundTrip()
    {
        using var model = BertTaskModel.Create(Config(), BertTask.SequenceClassification);
        using var pruned = StructuredPruning.Shrink(model, Mask());
        Assert.Equal([2, 0, 4], pruned.Config.LayerHeads);
        Assert.Equal([10, 6, 0], pruned.Config.LayerIntermediateSizes);
        var p = pruned.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal([16L, 32L], p["bert.encoder.layer.0.attention.self.query.weight"].shape);
        Assert.Equal([32L, 0L], p["bert.encoder.layer.1.attention.output.dense.weight"].shape);
        Assert.Equal([0L, 32L], p["bert.encoder.layer.2.intermediate.dense.weight"].shape);
        Assert.True(ParameterCounts.Of(pruned).Encoder < ParameterCounts.Of(model).Encoder);

        // Per-layer keep counts from scores give exactly those widths.
        var scores = new ImportanceTracker(model, ImportanceScore.Magnitude).Scores();
        using var narrow = StructuredPruning.Shrink(model, MaskSelection.PerLayer(scores, keepHeads: 1, keepNeurons: 5));
        Assert.Equal([1, 1, 1], narrow.Config.LayerHeads);
        Assert.Equal([5, 5, 5], narrow.Config.LayerIntermediateSizes);

        using var tmp = new TestData.TempDir();
        BertCheckpoint.Save(pruned, tmp["pruned"], tokenizer: null);
        Assert.True(new FileInfo(tmp["pruned/model.safetensors"]).Length < model.parameters().Sum(x => x.numel()) * 4);
        var (loaded, report) = BertCheckpoint.Load(tmp["pruned"]);
        using (loaded)
        using (var scope = NewDisposeScope())
        {
            Assert.Empty(report.Initialized);
            pruned.eval();
            loaded.eval();
            var inputs = Inputs();
            Assert.Equal(0.0, (pruned.forward(inputs).Logits - loaded.forward(inputs).Logits).abs().max().item<float>());
        }
    }

    [Fact]
    public void MagnitudeScoreSumsEachStructuresWeights()
    {
        var config = BertConfig.Create(layers: 1, hidden: 4, heads: 2, intermediate: 2, vocabSize: 20) with { MaxPositionEmbeddings = 8 };
        using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        var layer = model.Bert.Encoder.Layers[0];
        using (no_grad())
        {
            foreach (var dense in new[] { layer.Attention.Self.Query, layer.Attention.Self.Key, layer.Attention.Self.Value, layer.Attention.Output.Dense, layer.Intermediate.Dense, layer.Output.Dense })
                dense.Weight.zero_();
            // Head 1 (rows 2-3 of Q/K/V, columns 2-3 of the output projection): |−1| + |2| + |3| = 6; head 0 stays 0.
            layer.Attention.Self.Query.Weight[2, 0] = -1;
            layer.Attention.Self.Value.Weight[3, 1] = 2;
            layer.Attention.Output.Dense.Weight[0, 2] = 3;
            // Neuron 0: intermediate row 0 and output column 0: 0.5 + 0.25 = 0.75; neuron 1: 4.
            layer.Intermediate.Dense.Weight[0, 3] = 0.5f;
            layer.Output.Dense.Weight[1, 0] = -0.25f;
            layer.Intermediate.Dense.Weight[1, 1] = 4;
        }
        var scores = new ImportanceTracker(model, ImportanceScore.Magnitude).Scores();
        Assert.Equal([0.0, 6.0], scores.Heads[0]);
        Assert.Equal([0.75, 4.0], scores.Neurons[0]);
        Assert.Equal([false, true], MaskSelection.PerLayer(scores, 1, 1).Heads[0]);
        Assert.Equal([false, true], MaskSelection.PerLayer(scores, 1, 1).Neurons[0]);
    }

    [Fact]
    public void SensitivityAndPlatonScoresFollowTheirFormulas()
    {
        var config = BertConfig.Create(layers: 1, hidden: 4, heads: 2, intermediate: 2, vocabSize: 20) with { MaxPositionEmbeddings = 8 };
        using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        var w = model.Bert.Encoder.Layers[0].Intermediate.Dense.Weight;   // [2, 4]
        using var sensitivity = new ImportanceTracker(model, ImportanceScore.Sensitivity);
        using var platon = new ImportanceTracker(model, ImportanceScore.Platon, beta1: 0.5, beta2: 0.5);
        using (no_grad()) { w.zero_(); w[0, 0] = 2; w[1, 1] = 1; }
        // Two steps of hand-set gradients: I = |θ·g| is 2·3 = 6 then 2·1 = 2 for neuron 0; 1·1 = 1 then 1·5 = 5 for neuron 1.
        foreach (var (g0, g1) in new[] { (3f, 1f), (1f, 5f) })
        {
            foreach (var p in model.parameters()) p.grad = zeros_like(p);
            w.grad![0, 0] = g0;
            w.grad![1, 1] = g1;
            sensitivity.Accumulate();
            platon.Accumulate();
        }
        Assert.Equal([8.0, 6.0], sensitivity.Scores().Neurons[0]);
        // PLATON with β = 0.5: Ī₁ = 0.5·I₁, Ū₁ = 0.5·I₁; Ī₂ = 0.5·Ī₁ + 0.5·I₂, Ū₂ = 0.5·Ū₁ + 0.5·|I₂ − Ī₂|.
        // neuron 0: Ī = 1.5 + 1 = 2.5, Ū = 1.5 + 0.5·|2 − 2.5| = 1.75 → 4.375; neuron 1: Ī = 0.25 + 2.5 = 2.75, Ū = 0.25 + 0.5·|5 − 2.75| = 1.375 → 3.78125
        var p2 = platon.Scores().Neurons[0];
        Assert.Equal(4.375, p2[0], 5);
        Assert.Equal(3.78125, p2[1], 5);
    }

    [Fact]
    public void CubicScheduleRisesFromZeroToTheTarget()
    {
        var schedule = new CubicSchedule(FinalSparsity: 0.8, TotalSteps: 110, WarmupSteps: 10, FinalSteps: 20);
        Assert.Equal(0.0, schedule.Sparsity(0));
        Assert.Equal(0.0, schedule.Sparsity(9));
        Assert.Equal(0.0, schedule.Sparsity(10));
        // halfway through the 80-step pruning phase: 0.8·(1 − 0.5³) = 0.7
        Assert.Equal(0.7, schedule.Sparsity(50), 10);
        Assert.Equal(0.8, schedule.Sparsity(90), 10);
        Assert.Equal(0.8, schedule.Sparsity(109), 10);
        Assert.True(schedule.Sparsity(30) < schedule.Sparsity(31));
        Assert.Throws<ArgumentException>(() => new CubicSchedule(0.5, 10, 5, 5).Sparsity(3));
    }

    [Theory]
    [InlineData(false, ImportanceScore.Sensitivity)]
    [InlineData(true, ImportanceScore.Platon)]
    public void PruneRunsOneShotAndIterativeToTheTargetWidth(bool iterative, ImportanceScore score)
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        Directory.CreateDirectory(tmp["glue/SST-2"]);
        var random = new Random(2);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? "good" : "bad")) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(tmp["glue/SST-2/train.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 48).Select(i => Row(random.Next(2) == 0))]);
        File.WriteAllLines(tmp["glue/SST-2/dev.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 16).Select(i => Row(i % 2 == 0))]);
        ModelInit.Run(new InitOptions { Layers = 2, Hidden = 32, Heads = 4, Ffn = 64, MaxPositions = 32, VocabPath = tmp["vocab.txt"], Out = tmp["base"], Task = BertTask.SequenceClassification });
        var metrics = Pruner.Run(new PruneOptions
        {
            Model = tmp["base"], Task = new() { Name = Training.TaskName.Sst2, Data = tmp["glue"] }, Out = tmp["pruned"], KeepHeads = 2, KeepNeurons = 16, Score = score,
            Iterative = iterative, ScoreBatches = 4, PruneEvery = 2,
            Trainer = new Training.TrainerOptions { BatchSize = 8, LearningRate = 1e-3, Epochs = 2, LogEvery = 2, CheckpointEvery = 0 },
        });
        Assert.Equal("prune", metrics["command"]!.GetValue<string>());
        var config = BertConfig.Load(tmp["pruned/config.json"]);
        Assert.Equal([2, 2], config.LayerHeads);
        Assert.Equal([16, 16], Enumerable.Range(0, config.NumHiddenLayers).Select(config.IntermediateSizeOf));
        Assert.Equal(16, config.IntermediateSize);   // one width for every layer: written where transformers reads it
    }

    // ---- Hidden dimensions ----

    static BertConfig Hidden32() => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: 100) with
    {
        MaxPositionEmbeddings = 24, Labels = ["a", "b", "c"], ProblemType = ProblemType.SingleLabelClassification,
    };

    static BertTaskModel Perturbed(BertConfig config, BertTask task, long seed)
    {
        manual_seed(seed);
        var model = BertTaskModel.Create(config, task);
        using (no_grad()) foreach (var p in model.parameters()) p.add_(randn_like(p) * 0.05);   // non-zero biases and LayerNorms
        model.eval();
        return model;
    }

    /// <summary>Keeps 24 of 32 hidden dimensions (every fourth dropped), plus some heads and neurons.</summary>
    static PruningMask HiddenMask() => new(
        [[true, false, true, true], [true, true, true, false]],
        [Enumerable.Range(0, 64).Select(i => i % 5 != 0).ToArray(), Enumerable.Range(0, 64).Select(i => i < 40).ToArray()],
        Enumerable.Range(0, 32).Select(i => i % 4 != 1).ToArray());

    [Theory]
    [InlineData(BertTask.SequenceClassification)]
    [InlineData(BertTask.QuestionAnswering)]
    [InlineData(BertTask.MaskedLM)]
    public void HiddenPrunedModelEqualsTheMaskedModel(BertTask task)
    {
        using var model = Perturbed(Hidden32(), task, 11);
        using var pruned = StructuredPruning.Shrink(model, HiddenMask());
        pruned.eval();
        Assert.Equal(24, pruned.Config.HiddenSize);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var inputs = Inputs();
        // The masked model: a full-width copy with the pruned weights zeroed and LayerNorms over the kept dimensions.
        using var masked = StructuredPruning.Shrink(model, PruningMask.KeepAll(model.Config));
        masked.eval();
        StructuredPruning.ZeroMasked(masked, HiddenMask());
        var physical = pruned.forward(inputs).Logits;
        var maskedLogits = masked.forward(inputs).Logits;
        float diff = (maskedLogits - physical).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"max diff {diff}");
        // The kept dimensions of every hidden state are the pruned model's, the dropped ones exactly zero.
        var options = new BertForwardOptions { OutputHiddenStates = true };
        var kept = tensor(Enumerable.Range(0, 32).Where(i => i % 4 != 1).Select(i => (long)i).ToArray());
        var dropped = tensor(Enumerable.Range(0, 32).Where(i => i % 4 == 1).Select(i => (long)i).ToArray());
        foreach (var (m, p) in masked.forward(inputs, options).Encoder.HiddenStates!.Zip(pruned.forward(inputs, options).Encoder.HiddenStates!))
        {
            Assert.True((m.index_select(-1, kept) - p).abs().max().item<float>() < 1e-5);
            Assert.Equal(0f, m.index_select(-1, dropped).abs().max().item<float>());
        }
        // Zeroing alone is not enough: LayerNorm over all 32 dimensions computes another function.
        masked.SetHiddenMask(null);
        Assert.True((masked.forward(inputs).Logits - physical).abs().max().item<float>() > 1e-4);
    }

    [Fact]
    public void PruningToANamedWidthGivesExactlyThoseShapesAndRoundTrips()
    {
        using var model = Perturbed(Hidden32(), BertTask.SequenceClassification, 12);
        var scores = new ImportanceTracker(model, ImportanceScore.Magnitude).Scores();
        // The head size stays 8: H'/heads no longer gives it (and num_attention_heads keeps the unpruned 4, with the
        // per-layer counts beside it, as for head pruning), so config.json records distillery_attention_head_size.
        foreach (var (name, heads) in new[] { ("L2-H24-F48", 3), ("L2-H24-A2-F48", 2) })
        {
            var target = PruneTarget.Parse(name).Resolve(model.Config, model.Task);
            Assert.Equal(new TargetWidths(2, 24, heads, 48), target);
            using var pruned = StructuredPruning.Shrink(model, MaskSelection.PerLayer(scores, target.Heads, target.Ffn, target.Hidden));
            var p = pruned.named_parameters().ToDictionary(x => x.name, x => x.parameter);
            Assert.Equal([100L, 24L], p["bert.embeddings.word_embeddings.weight"].shape);
            Assert.Equal([24L, 24L], p["bert.embeddings.position_embeddings.weight"].shape);
            Assert.Equal([24L], p["bert.embeddings.LayerNorm.weight"].shape);
            Assert.Equal([heads * 8L, 24L], p["bert.encoder.layer.1.attention.self.key.weight"].shape);
            Assert.Equal([24L, heads * 8L], p["bert.encoder.layer.0.attention.output.dense.weight"].shape);
            Assert.Equal([24L], p["bert.encoder.layer.0.attention.output.LayerNorm.bias"].shape);
            Assert.Equal([48L, 24L], p["bert.encoder.layer.1.intermediate.dense.weight"].shape);
            Assert.Equal([24L, 48L], p["bert.encoder.layer.1.output.dense.weight"].shape);
            Assert.Equal([24L, 24L], p["bert.pooler.dense.weight"].shape);
            Assert.Equal([3L, 24L], p["classifier.weight"].shape);
            Assert.Equal(8, pruned.Config.HeadSize);
            Assert.Equal(8, pruned.Config.AttentionHeadSize);
            Assert.Equal([heads, heads], pruned.Config.LayerHeads);
            Assert.Equal(PruneTarget.Count(model.Config, model.Task, 2, 24, heads, 48), ParameterCounts.Of(pruned).Total);

            // Save and load with the ordinary loader: the same function, the same config.
            using var tmp = new TestData.TempDir();
            BertCheckpoint.Save(pruned, tmp["pruned"], tokenizer: null);
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tmp["pruned/config.json"]))!;
            Assert.Equal(24, json["hidden_size"]!.GetValue<int>());
            Assert.Equal(8, json["distillery_attention_head_size"]!.GetValue<int>());
            var (loaded, report) = BertCheckpoint.Load(tmp["pruned"]);
            using (loaded)
            using (var scope = NewDisposeScope())
            {
                Assert.Empty(report.Initialized);
                pruned.eval();
                loaded.eval();
                var inputs = Inputs();
                Assert.Equal(0.0, (pruned.forward(inputs).Logits - loaded.forward(inputs).Logits).abs().max().item<float>());
            }
        }
    }

    [Fact]
    public void TargetsAreParsedResolvedAndRefusedWithOneLine()
    {
        var c = Hidden32();
        // A parameter count: the widest H' (heads and FFN scaled with it) whose model fits, at the teacher's depth.
        long budget = PruneTarget.Count(c, BertTask.SequenceClassification, 2, 20, 3, 40);
        var widths = PruneTarget.Parse(budget.ToString()).Resolve(c, BertTask.SequenceClassification);
        Assert.Equal(new TargetWidths(2, 20, 3, 40), widths);   // heads round(4·20/32 = 2.5) = 3, FFN 64·20/32 = 40
        Assert.True(PruneTarget.Count(c, BertTask.SequenceClassification, 2, 21, 3, 42) > budget);
        Assert.Equal(9_600_000, PruneTarget.Parse("9.6M").Parameters);
        Assert.Contains("more than the teacher's 2", Assert.Throws<ArgumentException>(() => PruneTarget.Parse("L3-H16").Resolve(c, BertTask.MaskedLM)).Message);
        Assert.Contains("wider than the teacher", Assert.Throws<ArgumentException>(() => PruneTarget.Parse("L2-H64-A4").Resolve(c, BertTask.MaskedLM)).Message);
        Assert.Contains("not below the teacher", Assert.Throws<ArgumentException>(() => PruneTarget.Parse("1B").Resolve(c, BertTask.MaskedLM)).Message);
        Assert.Contains("neither an architecture", Assert.Throws<FormatException>(() => PruneTarget.Parse("small")).Message);
    }

    [Fact]
    public void HiddenScoresSumEveryResidualReadAndWrite()
    {
        var config = BertConfig.Create(layers: 1, hidden: 4, heads: 2, intermediate: 2, vocabSize: 20) with { MaxPositionEmbeddings = 8 };
        using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using (no_grad())
        {
            foreach (var x in p.Values) x.zero_();
            p["bert.embeddings.word_embeddings.weight"][3, 1] = -2;          // column 1 of a table: dim 1
            p["bert.embeddings.LayerNorm.weight"][1] = 1;                     // dim 1
            p["bert.encoder.layer.0.attention.self.query.weight"][0, 2] = 3;  // a reader's column 2: dim 2
            p["bert.encoder.layer.0.output.dense.weight"][2, 1] = 0.5f;       // a writer's row 2: dim 2 (column 1 is neuron 1)
            p["bert.encoder.layer.0.output.LayerNorm.bias"][0] = -1;          // dim 0
            p["bert.pooler.dense.weight"][0, 3] = 4;                          // pooler [H, H]: row 0 and column 3
            p["classifier.weight"][1, 3] = 1;                                 // dim 3
            p["bert.encoder.layer.0.intermediate.dense.weight"][1, 0] = 7;    // intermediate [F, H] column 0: dim 0
        }
        var magnitude = new ImportanceTracker(model, ImportanceScore.Magnitude).Scores();
        Assert.Equal([1.0 + 4 + 7, 3.0, 3.5, 4.0 + 1], magnitude.Hidden);
        Assert.Equal([true, false, false, true], MaskSelection.PerLayer(magnitude, 2, 2, keepHidden: 2).Hidden!);

        // Sensitivity: |θ·g| summed the same way, accumulated over steps.
        using var sensitivity = new ImportanceTracker(model, ImportanceScore.Sensitivity);
        foreach (var g in new[] { 1f, 2f })
        {
            foreach (var x in model.parameters()) x.grad = zeros_like(x);
            p["bert.embeddings.word_embeddings.weight"].grad![3, 1] = g;           // |−2·g|
            p["bert.pooler.dense.weight"].grad![0, 3] = -g;                      // |4·(−g)| to dims 0 and 3
            p["bert.encoder.layer.0.attention.self.query.weight"].grad![1, 2] = 5; // θ = 0 there: no score
            sensitivity.Accumulate();
        }
        Assert.Equal([12.0, 6.0, 0.0, 12.0], sensitivity.Scores().Hidden);
    }

    [Fact]
    public void PruneToAHiddenTargetGivesThatModel()
    {
        using var tmp = new TestData.TempDir();
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        Directory.CreateDirectory(tmp["glue/SST-2"]);
        var random = new Random(3);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? "good" : "bad")) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(tmp["glue/SST-2/train.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 48).Select(i => Row(random.Next(2) == 0))]);
        File.WriteAllLines(tmp["glue/SST-2/dev.tsv"], ["sentence\tlabel", .. Enumerable.Range(0, 16).Select(i => Row(i % 2 == 0))]);
        ModelInit.Run(new InitOptions { Layers = 2, Hidden = 32, Heads = 4, Ffn = 64, MaxPositions = 32, VocabPath = tmp["vocab.txt"], Out = tmp["base"], Task = BertTask.SequenceClassification });
        foreach (bool iterative in new[] { false, true })
        {
            Pruner.Run(new PruneOptions
            {
                Model = tmp["base"], Task = new() { Name = Training.TaskName.Sst2, Data = tmp["glue"] }, Out = tmp[$"pruned{iterative}"], Target = "L2-H24-F40", Score = ImportanceScore.Magnitude,
                Iterative = iterative, PruneEvery = 2,
                Trainer = new Training.TrainerOptions { BatchSize = 8, LearningRate = 1e-3, Epochs = 1, LogEvery = 2, CheckpointEvery = 0 },
            });
            var config = BertConfig.Load(tmp[$"pruned{iterative}/config.json"]);
            Assert.Equal(24, config.HiddenSize);
            Assert.Equal(8, config.HeadSize);
            Assert.Equal([40, 40], Enumerable.Range(0, config.NumHiddenLayers).Select(config.IntermediateSizeOf));
            Assert.Equal([3, 3], config.LayerHeads);
        }
        Assert.Contains("keeps every layer", Assert.Throws<ArgumentException>(() => Pruner.Run(new PruneOptions
            { Model = tmp["base"], Task = new() { Name = Training.TaskName.Sst2, Data = tmp["glue"] }, Out = tmp["x"], Target = "L1-H24" })).Message);
    }
}
