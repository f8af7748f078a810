using System.Text.Json.Nodes;
using Distillery.Data;
using Distillery.Models;
using Distillery.Text;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>Corpus, masking, the trainer (schedule, resume, NaN handling) and fine-tuning runs, on tiny models.</summary>
public sealed class TrainingTests
{
    /// <summary>A small uncased vocabulary written to a temp folder.</summary>
    static BertTextTokenizer TinyTokenizer(TestData.TempDir tmp)
    {
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        return BertTextTokenizer.FromVocab(tmp["vocab.txt"]);
    }

    static string TinyCorpus(TestData.TempDir tmp, int documents = 40)
    {
        var random = new Random(1);
        string[] words = ["the", "movie", "film", "is", "was", "good", "bad", "very", "not", "and", "this", "that", "it", "of", "to", "unaffable", "zq"];
        var lines = new List<string>();
        for (int d = 0; d < documents; d++)
        {
            for (int s = 0; s < 3; s++) lines.Add(string.Join(' ', Enumerable.Range(0, 12).Select(_ => words[random.Next(words.Length)])) + " .");
            lines.Add("");
        }
        File.WriteAllLines(tmp["corpus.txt"], lines);
        return tmp["corpus.txt"];
    }

    static BertConfig TinyConfig(int vocab) => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: vocab) with { MaxPositionEmbeddings = 64 };

    [Fact]
    public void CorpusIsPackedIntoFullSequencesAndCached()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        string file = TinyCorpus(tmp);
        var corpus = TextCorpus.Load([file], tokenizer, tmp["cache"]);
        Assert.Equal(40, corpus.Documents);
        Assert.Equal(40, corpus.Tokens.Count(t => t == tokenizer.SepId));   // one boundary per document
        var sequence = new int[16];
        corpus.CopySequence(1, 16, tokenizer.ClsId, tokenizer.SepId, sequence);
        Assert.Equal(tokenizer.ClsId, sequence[0]);
        Assert.Equal(tokenizer.SepId, sequence[15]);
        Assert.Equal(corpus.Tokens.AsSpan(14, 14).ToArray(), sequence[1..15]);
        Assert.Single(Directory.GetFiles(tmp["cache"]));
        var again = TextCorpus.Load([file], tokenizer, tmp["cache"]);   // from the cache
        Assert.Equal(corpus.Tokens, again.Tokens);
    }

    [Fact]
    public void NonUtf8CorpusIsAnErrorNamingFileAndLine()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        File.WriteAllBytes(tmp["latin1.txt"], [.. "good film\nbad film\n"u8, 0x43, 0xE6, 0x73, 0x61, 0x72, (byte)'\n']);
        var e = Assert.Throws<InvalidDataException>(() => TextCorpus.Load([tmp["latin1.txt"]], tokenizer, tmp["cache"]));
        Assert.Contains("latin1.txt:3: not valid UTF-8", e.Message);
        // Asked to, it reads such lines as Latin-1 instead.
        var corpus = TextCorpus.Load([tmp["latin1.txt"]], tokenizer, tmp["cache"], invalidUtf8: InvalidUtf8.Latin1);
        Assert.True(corpus.Tokens.Length > 4);
        Assert.Throws<FileNotFoundException>(() => TextCorpus.Load([tmp["missing.txt"]], tokenizer, tmp["cache"]));
    }

    [Fact]
    public void MaskingStatisticsFollowBert()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        var random = new Random(3);
        int predicted = 0, masked = 0, kept = 0, candidates = 0;
        for (int trial = 0; trial < 2000; trial++)
        {
            var ids = new int[40];
            ids[0] = tokenizer.ClsId;
            for (int i = 1; i < 39; i++) ids[i] = 5 + random.Next(tokenizer.VocabSize - 5);
            ids[39] = tokenizer.SepId;
            var original = (int[])ids.Clone();
            var labels = new int[40];
            int n = MlmMasking.Apply(ids, labels, tokenizer, new MaskingOptions(), random);
            // Exactly round(15% of the 38 candidates) = 6 positions; never [CLS]/[SEP].
            Assert.Equal(6, n);
            Assert.Equal(MlmMasking.IgnoreIndex, labels[0]);
            Assert.Equal(MlmMasking.IgnoreIndex, labels[39]);
            for (int i = 0; i < 40; i++)
            {
                if (labels[i] == MlmMasking.IgnoreIndex) { Assert.Equal(original[i], ids[i]); continue; }
                Assert.Equal(original[i], labels[i]);
                predicted++;
                if (ids[i] == tokenizer.MaskId) masked++;
                else if (ids[i] == original[i]) kept++;
            }
            candidates += 38;
        }
        Assert.Equal(12_000, predicted);
        Assert.InRange(masked / (double)predicted, 0.78, 0.82);   // 80% [MASK]
        // 10% unchanged, plus the few random replacements that drew the original token again.
        Assert.InRange(kept / (double)predicted, 0.085, 0.115);
        Assert.InRange((predicted - masked - kept) / (double)predicted, 0.085, 0.115);   // 10% random
    }

    [Fact]
    public void WholeWordMaskingPredictsEveryPieceOfAWord()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        var (word, _) = tokenizer.Tokenize("unaffable zq film");   // pieces: u ##n ##a ... — many continuations
        Assert.Contains(word, tokenizer.IsContinuation);
        var random = new Random(5);
        for (int trial = 0; trial < 200; trial++)
        {
            var ids = (int[])word.Clone();
            var labels = new int[ids.Length];
            MlmMasking.Apply(ids, labels, tokenizer, new MaskingOptions { WholeWord = true, Probability = 0.5 }, random);
            // A continuation piece is predicted exactly when the piece before it is.
            for (int i = 1; i < ids.Length; i++)
                if (tokenizer.IsContinuation(word[i]))
                    Assert.Equal(labels[i - 1] == MlmMasking.IgnoreIndex, labels[i] == MlmMasking.IgnoreIndex);
        }
    }

    [Fact]
    public void LearningRateWarmsUpThenDecaysLinearly()
    {
        Assert.Equal(0.25, Trainer<MlmBatch>.LearningRateAt(0, 100, 4, 1.0), 12);
        Assert.Equal(1.0, Trainer<MlmBatch>.LearningRateAt(3, 100, 4, 1.0), 12);
        Assert.Equal(96.0 / 96.0, Trainer<MlmBatch>.LearningRateAt(4, 100, 4, 1.0), 12);
        Assert.Equal(48.0 / 96.0, Trainer<MlmBatch>.LearningRateAt(52, 100, 4, 1.0), 12);
        Assert.Equal(1.0 / 96.0, Trainer<MlmBatch>.LearningRateAt(99, 100, 4, 1.0), 12);
        Assert.Equal(1.0, Trainer<MlmBatch>.LearningRateAt(0, 10, 0, 1.0), 12);
    }

    /// <summary>A tiny MLM model (initialised from <paramref name="seed"/>) and batches (always data seed 7).</summary>
    (BertForMaskedLM Model, MlmBatchSource Data) MlmSetup(TestData.TempDir tmp, long seed = 7)
    {
        var tokenizer = TinyTokenizer(tmp);
        var corpus = TextCorpus.Load([TinyCorpus(tmp)], tokenizer, tmp["cache"]);
        torch.manual_seed(seed);
        var model = (BertForMaskedLM)BertTaskModel.Create(TinyConfig(tokenizer.VocabSize), BertTask.MaskedLM);
        var data = new MlmBatchSource(corpus, tokenizer, Enumerable.Range(0, corpus.SequenceCount(24)).ToArray(), 24, 4, new MaskingOptions(), 7);
        return (model, data);
    }

    [Fact]
    public void ResumedRunEqualsUninterruptedRun()
    {
        var options = new TrainerOptions { BatchSize = 4, GradientAccumulation = 2, LearningRate = 1e-3, MaxSteps = 12, WarmupSteps = 2, CheckpointEvery = 5, LogEvery = 1, Seed = 11 };

        using var whole = new TestData.TempDir();
        var (reference, referenceData) = MlmSetup(whole);
        var uninterrupted = new Trainer<MlmBatch>(new MlmObjective(reference), referenceData, options, whole["run"]).Run();

        using var split = new TestData.TempDir();
        var (model, data) = MlmSetup(split);
        using var cancel = new CancellationTokenSource();
        var first = new Trainer<MlmBatch>(new MlmObjective(model), data, options, split["run"]) { OnProgress = p => { if (p.Step == 7) cancel.Cancel(); } };
        Assert.Throws<OperationCanceledException>(() => first.Run(cancel: cancel.Token));
        Assert.True(Directory.Exists(Path.Combine(split["run"], "checkpoint")));   // written at step 5; steps 6-7 are lost

        // A fresh process would start from a fresh model: resume must restore weights, optimizer and position.
        var (fresh, freshData) = MlmSetup(split, seed: 99);
        var resumed = new Trainer<MlmBatch>(new MlmObjective(fresh), freshData, options, split["run"]).Run(resume: true);

        Assert.Equal(12, resumed.Steps);
        // The log has each step once: lines of the lost steps 6-7 were dropped on resume.
        var steps = File.ReadLines(Path.Combine(split["run"], "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(n => n["loss"] != null).Select(n => n["step"]!.GetValue<int>()).ToList();
        Assert.Equal(Enumerable.Range(1, 12), steps);
        Assert.Equal(uninterrupted.FinalLoss, resumed.FinalLoss, 6);
        var a = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in fresh.named_parameters())
            Assert.True((a[name] - p).abs().max().item<float>() < 1e-6, $"{name} differs after resume");
        double firstLoss = JsonNode.Parse(File.ReadLines(Path.Combine(whole["run"], "metrics.jsonl")).First())!["loss"]!.GetValue<double>();
        Assert.True(uninterrupted.FinalLoss < firstLoss, $"loss did not fall: {firstLoss} → {uninterrupted.FinalLoss}");
    }

    /// <summary>The fields of each metrics.jsonl line that a resume must reproduce exactly (timing fields may differ).</summary>
    static List<string> LoggedTrajectory(string runDir) => File.ReadLines(Path.Combine(runDir, "metrics.jsonl"))
        .Select(l => JsonNode.Parse(l)!.AsObject())
        .Select(n => string.Join(" ", new[] { "step", "loss", "learning_rate", "grad_norm", "skipped_steps" }.Select(k => $"{k}={n[k]?.ToJsonString()}")))
        .ToList();

    /// <summary>(step, tag) of every scalar in a run's TensorBoard folder, across all its event files.</summary>
    static List<(long Step, string Tag)> TensorBoardScalars(string runDir) => Directory.GetFiles(Path.Combine(runDir, "tensorboard"), "events.out.tfevents.*")
        .SelectMany(TensorBoardEvents.Read).Where(r => r.Tag != null).Select(r => (r.Step, r.Tag!)).ToList();

    [Fact]
    public void KilledAtThreeStepsAndResumedEqualsUninterruptedRunWeightsAndLogs()
    {
        // Log every 4 steps, checkpoint every 3: each checkpoint falls inside a logging window (3 of 4, 2 of 4, 1 of 4
        // steps summed), so an exact log needs the window restored; each kill loses steps, and lines, after the checkpoint.
        var options = new TrainerOptions { BatchSize = 4, GradientAccumulation = 2, LearningRate = 1e-3, MaxSteps = 12, WarmupSteps = 2, CheckpointEvery = 3, LogEvery = 4, Seed = 11 };
        using var whole = new TestData.TempDir();
        var (reference, referenceData) = MlmSetup(whole);
        new Trainer<MlmBatch>(new MlmObjective(reference), referenceData, options, whole["run"]).Run();
        var expectedLog = LoggedTrajectory(whole["run"]);
        Assert.Equal(3, expectedLog.Count);
        var expectedScalars = TensorBoardScalars(whole["run"]);
        var referenceWeights = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);

        foreach (int killAt in new[] { 4, 8, 11 })
        {
            using var split = new TestData.TempDir();
            var (model, data) = MlmSetup(split);
            using var cancel = new CancellationTokenSource();
            var first = new Trainer<MlmBatch>(new MlmObjective(model), data, options, split["run"]) { OnProgress = p => { if (p.Step == killAt) cancel.Cancel(); } };
            Assert.Throws<OperationCanceledException>(() => first.Run(cancel: cancel.Token));

            // A fresh process starts from a fresh model: resume must restore weights, optimizer, position and the log window.
            var (fresh, freshData) = MlmSetup(split, seed: 99);
            new Trainer<MlmBatch>(new MlmObjective(fresh), freshData, options, split["run"]).Run(resume: true);

            foreach (var (name, p) in fresh.named_parameters())
                Assert.True(referenceWeights[name].eq(p).all().item<bool>(), $"kill at step {killAt}: {name} is not bit-identical after resume");
            Assert.Equal(expectedLog, LoggedTrajectory(split["run"]));
            // TensorBoard: each (step, tag) once, the same set as the uninterrupted run (the steps after the checkpoint were dropped).
            var scalars = TensorBoardScalars(split["run"]);
            Assert.Equal(scalars.Count, scalars.Distinct().Count());
            Assert.Equal(expectedScalars.OrderBy(s => s), scalars.OrderBy(s => s));
        }
    }

    /// <summary>MLM training that reports two named terms: the loss itself, and the micro-batch's token count.</summary>
    sealed class WithTerms(MlmObjective inner) : ITrainingObjective<MlmBatch>
    {
        readonly Dictionary<string, double> terms = [];
        public nn.Module Module => inner.Module;
        public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
        {
            var (loss, tokens) = inner.Loss(batch);
            terms["same"] = loss.item<float>();
            terms["tokens"] = tokens;
            return (loss, tokens);
        }
        public IReadOnlyDictionary<string, double> LossTerms => terms;
    }

    [Fact]
    public void LossTermsAreLoggedAveragedLikeTheLossAndSurviveAKillAndResume()
    {
        // Log every 4 steps, 2 micro-batches a step, checkpoint every 3: a kill at step 8 resumes inside a window.
        var options = new TrainerOptions { BatchSize = 4, GradientAccumulation = 2, LearningRate = 1e-3, MaxSteps = 12, WarmupSteps = 2, CheckpointEvery = 3, LogEvery = 4, Seed = 11 };
        using var whole = new TestData.TempDir();
        var (reference, referenceData) = MlmSetup(whole);
        new Trainer<MlmBatch>(new WithTerms(new MlmObjective(reference)), referenceData, options, whole["run"]).Run();
        var lines = File.ReadLines(Path.Combine(whole["run"], "metrics.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal([4, 8, 12], lines.Select(l => l["step"]!.GetValue<int>()));
        foreach (var line in lines)
        {
            // The same average as the loss (over the window's steps, each the mean of its micro-batches).
            Assert.Equal(line["loss"]!.GetValue<double>(), line["loss_same"]!.GetValue<double>(), 6);
            Assert.Equal(4 * 24, line["loss_tokens"]!.GetValue<double>(), 9);   // batch 4 x 24 tokens, averaged, not summed
        }
        Assert.Contains(TensorBoardScalars(whole["run"]), s => s == (12, "train/loss_same"));

        using var split = new TestData.TempDir();
        var (model, data) = MlmSetup(split);
        using var cancel = new CancellationTokenSource();
        var first = new Trainer<MlmBatch>(new WithTerms(new MlmObjective(model)), data, options, split["run"]) { OnProgress = p => { if (p.Step == 8) cancel.Cancel(); } };
        Assert.Throws<OperationCanceledException>(() => first.Run(cancel: cancel.Token));
        var (fresh, freshData) = MlmSetup(split, seed: 99);
        new Trainer<MlmBatch>(new WithTerms(new MlmObjective(fresh)), freshData, options, split["run"]).Run(resume: true);
        string Terms(JsonObject l) => $"{l["step"]} {l["loss"]} {l["loss_same"]} {l["loss_tokens"]}";
        Assert.Equal(lines.Select(Terms), File.ReadLines(Path.Combine(split["run"], "metrics.jsonl")).Select(l => Terms(JsonNode.Parse(l)!.AsObject())));
    }

    [Fact]
    public void ResumeWithDifferentOptionsIsRefused()
    {
        using var tmp = new TestData.TempDir();
        var (model, data) = MlmSetup(tmp);
        var options = new TrainerOptions { BatchSize = 4, MaxSteps = 4, CheckpointEvery = 2, LogEvery = 1 };
        using var cancel = new CancellationTokenSource();
        var trainer = new Trainer<MlmBatch>(new MlmObjective(model), data, options, tmp["run"]) { OnProgress = p => { if (p.Step == 3) cancel.Cancel(); } };
        Assert.Throws<OperationCanceledException>(() => trainer.Run(cancel: cancel.Token));
        var other = new Trainer<MlmBatch>(new MlmObjective(model), data, options with { LearningRate = 1e-3 }, tmp["run"]);
        var e = Assert.Throws<InvalidOperationException>(() => other.Run(resume: true));
        Assert.Contains("different training options", e.Message);
    }

    /// <summary>An objective whose loss turns NaN from a given step on.</summary>
    sealed class NaNAfter(BertForMaskedLM model, int goodSteps) : ITrainingObjective<MlmBatch>
    {
        int calls;
        public nn.Module Module => model;
        public (Tensor Loss, long Tokens) Loss(MlmBatch batch)
        {
            var (loss, _, _) = MlmObjective.Compute(model, batch);
            return (++calls > goodSteps ? loss * double.NaN : loss, batch.Batch * batch.Length);
        }
    }

    [Fact]
    public void NonFiniteLossStopsNamingTheStepOrIsSkipped()
    {
        using var tmp = new TestData.TempDir();
        var (model, data) = MlmSetup(tmp);
        var options = new TrainerOptions { BatchSize = 4, MaxSteps = 6, LogEvery = 1, CheckpointEvery = 0 };
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer<MlmBatch>(new NaNAfter(model, 3), data, options, tmp["stop"]).Run());
        Assert.Contains("step 4 of 6", e.Message);

        var before = model.named_parameters().First().parameter.clone();
        var result = new Trainer<MlmBatch>(new NaNAfter(model, 2), data, options with { OnNonFiniteLoss = NonFiniteLoss.Skip }, tmp["skip"]).Run();
        Assert.Equal(4, result.SkippedSteps);
        Assert.Equal(6, result.Steps);
        Assert.True(double.IsFinite(result.FinalLoss));
        Assert.False(model.named_parameters().First().parameter.isnan().any().item<bool>());
        Assert.True((before - model.named_parameters().First().parameter).abs().max().item<float>() > 0);
    }

    [Fact]
    public void BiasesAndLayerNormAreNotDecayed()
    {
        using var tmp = new TestData.TempDir();
        var (model, data) = MlmSetup(tmp);
        // With lr > 0, zero gradients (loss × 0) and Adam's update 0/(0+ε) = 0, only weight decay moves parameters.
        var zeroLoss = new ZeroLoss(model);
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.clone());
        new Trainer<MlmBatch>(zeroLoss, data, new TrainerOptions { BatchSize = 4, MaxSteps = 3, WarmupSteps = 0, LearningRate = 0.1, WeightDecay = 0.5, LogEvery = 1, CheckpointEvery = 0 }, tmp["run"]).Run();
        foreach (var (name, p) in model.named_parameters())
        {
            bool moved = (before[name] - p).abs().max().item<float>() > 0;
            bool exempt = name.EndsWith(".bias") || name.Contains("LayerNorm");
            Assert.True(moved != exempt || before[name].abs().max().item<float>() == 0, $"{name}: moved={moved}, exempt={exempt}");
        }
    }

    sealed class ZeroLoss(BertForMaskedLM model) : ITrainingObjective<MlmBatch>
    {
        public nn.Module Module => model;
        public (Tensor Loss, long Tokens) Loss(MlmBatch batch) => (MlmObjective.Compute(model, batch).Loss * 0.0, 1);
    }

    static void WriteTinySst2(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "SST-2"));
        var random = new Random(2);
        string Row(bool positive) => string.Join(' ', Enumerable.Range(0, 5).Select(_ => positive ? (random.Next(2) == 0 ? "good" : "very") : (random.Next(2) == 0 ? "bad" : "not"))) + "\t" + (positive ? 1 : 0);
        File.WriteAllLines(Path.Combine(dir, "SST-2", "train.tsv"), ["sentence\tlabel", .. Enumerable.Range(0, 64).Select(i => Row(i % 2 == 0))]);
        File.WriteAllLines(Path.Combine(dir, "SST-2", "dev.tsv"), ["sentence\tlabel", .. Enumerable.Range(0, 16).Select(i => Row(i % 2 == 0))]);
    }

    [Fact]
    public void FineTuningLearnsATinyTaskAndWritesItsRunFiles()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        torch.manual_seed(1);
        using (var model = BertTaskModel.Create(TinyConfig(tokenizer.VocabSize), BertTask.MaskedLM))
            BertCheckpoint.Save(model, tmp["base"], tokenizer);
        WriteTinySst2(tmp["glue"]);
        var options = new FinetuneOptions
        {
            Task = new() { Name = Training.TaskName.Sst2, Data = tmp["glue"] }, Model = tmp["base"], Out = tmp["ft"],
            Trainer = new TrainerOptions { BatchSize = 8, LearningRate = 3e-3, Epochs = 4, EvalEvery = 8, LogEvery = 4, WarmupRatio = 0.1 },
        };
        var metrics = FineTuning.Run(options);
        double accuracy = metrics["dev"]!["accuracy"]!.GetValue<double>();
        Assert.True(accuracy >= 0.9, $"dev accuracy {accuracy} on a separable task");
        foreach (var f in new[] { "config.json", "model.safetensors", "vocab.txt", "run_config.json", "metrics.json", "metrics.jsonl" })
            Assert.True(File.Exists(Path.Combine(tmp["ft"], f)), f);
        Assert.False(Directory.Exists(Path.Combine(tmp["ft"], "checkpoint")));
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(tmp["ft"], "tensorboard")));
        var config = BertConfig.Load(Path.Combine(tmp["ft"], "config.json"));
        Assert.Equal(["BertForSequenceClassification"], config.Architectures);
        // Throughput and MFU: training FLOPs per token (3× the forward's, at the mean example length) × tokens/s over
        // libtorch's GEMM peak, measured at the start of the run.
        var utilization = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp["ft"], "metrics.json")))!["utilization"]!;
        double tokensPerSecond = metrics["tokens_per_second"]!.GetValue<double>(), flopsPerToken = utilization["flops_per_token"]!.GetValue<double>();
        Assert.True(tokensPerSecond > 0);
        Assert.Equal(Math.Round(ForwardCost.TrainingFlopsPerToken(config, BertTask.SequenceClassification, utilization["counted_at_length"]!.GetValue<double>())), flopsPerToken, 0);
        Assert.Equal(flopsPerToken * tokensPerSecond / 1e9 / utilization["gemm_peak_gflops"]!.GetValue<double>(), utilization["mfu"]!.GetValue<double>(), 2);
        Assert.InRange(utilization["mfu"]!.GetValue<double>(), 1e-6, 1.0);
        // The saved model is the best dev checkpoint, and eval reproduces its score.
        var again = TaskPipeline.Evaluate(tmp["ft"], options.Task);
        Assert.Equal(accuracy, again["accuracy"], 6);
        // Per-example dev predictions (eval --predictions, the claims tables' paired bootstrap): the dev file's examples in
        // order (its labels alternate 1, 0), a class index each, and their accuracy is the metric.
        var dev = TaskPipeline.PredictDev(tmp["ft"], options.Task);
        Assert.Equal(Enumerable.Range(0, 16).Select(i => i % 2 == 0 ? 1.0 : 0.0), dev.Gold);
        Assert.All(dev.Predictions, p => Assert.True(p is 0.0 or 1.0, $"prediction {p} is not a class index"));
        Assert.Equal(again["accuracy"], dev.Gold.Zip(dev.Predictions).Count(p => p.First == p.Second) / 16.0, 6);
        Assert.Equal(again["accuracy"], dev.Metrics["accuracy"], 6);
        // The run config re-reads into the same options.
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp["ft"], "run_config.json")))!["options"]!;
        Assert.Equal("sst2", saved["task"]!.GetValue<string>());
        // Precision "auto" (the default) was resolved at the start, and the run files say what ran: bf16 where this CPU has
        // native bf16, fp32 elsewhere.
        var ran = Runtime.CpuFeatures.Current.HasNativeBf16 ? ComputePrecision.BFloat16 : ComputePrecision.Float32;
        Assert.Equal(ComputePrecision.Auto, options.Trainer.Precision);
        Assert.Equal(ComputePrecisions.Name(ran), saved["trainer"]!["precision"]!.GetValue<string>());
        Assert.Equal(ran.ToString(), metrics["precision"]!.GetValue<string>());
    }

    [Fact]
    public void PrecisionReadsFromOldAndNewRunFiles()
    {
        // Run files and recipes written before "auto" existed say fp32 or bf16 and still load; a missing key is auto.
        TrainerOptions Read(string json) => System.Text.Json.JsonSerializer.Deserialize<TrainerOptions>(json, RunFiles.Json)!;
        Assert.Equal(ComputePrecision.Float32, Read("{\"precision\": \"fp32\"}").Precision);
        Assert.Equal(ComputePrecision.BFloat16, Read("{\"precision\": \"bf16\"}").Precision);
        Assert.Equal(ComputePrecision.Auto, Read("{\"precision\": \"auto\"}").Precision);
        Assert.Equal(ComputePrecision.Auto, Read("{}").Precision);
        Assert.Contains("\"precision\": \"auto\"", System.Text.Json.JsonSerializer.Serialize(new TrainerOptions(), RunFiles.Json));
        Assert.Throws<System.Text.Json.JsonException>(() => Read("{\"precision\": \"fp16\"}"));
        // Resolving leaves explicit choices alone and turns auto into what this CPU runs natively.
        Assert.Equal(ComputePrecision.Float32, new TrainerOptions { Precision = ComputePrecision.Float32 }.WithResolvedPrecision(null).Precision);
        Assert.NotEqual(ComputePrecision.Auto, new TrainerOptions().WithResolvedPrecision(null).Precision);
    }

    [Fact]
    public void BadTaskInputStopsBeforeWritingAFinishedModel()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        using (var model = BertTaskModel.Create(TinyConfig(tokenizer.VocabSize), BertTask.MaskedLM))
            BertCheckpoint.Save(model, tmp["base"], tokenizer);
        WriteTinySst2(tmp["glue"]);
        FinetuneOptions Options(string task, int? maxLength = null) =>
            new() { Task = new() { Name = TaskNames.Parse(task), Data = tmp["glue"], MaxLength = maxLength }, Model = tmp["base"], Out = tmp["out-" + task] };

        var unknown = Assert.Throws<ArgumentException>(() => FineTuning.Run(Options("sst3")));
        Assert.Contains("unknown GLUE task 'sst3'", unknown.Message);
        var tooLong = Assert.Throws<ArgumentException>(() => FineTuning.Run(Options("sst2", maxLength: 128)));
        Assert.Contains("exceeds the model's 64 positions", tooLong.Message);
        var missing = Assert.Throws<FileNotFoundException>(() => FineTuning.Run(Options("rte")));
        Assert.Contains("RTE", missing.Message);
        File.AppendAllText(Path.Combine(tmp["glue"], "SST-2", "train.tsv"), "a broken row\twith\ttoo many columns\n");
        var bad = Assert.Throws<InvalidDataException>(() => FineTuning.Run(Options("sst2")));
        Assert.Contains("train.tsv:66", bad.Message);
        foreach (var dir in Directory.GetDirectories(tmp.Dir, "out-*"))
            Assert.False(File.Exists(Path.Combine(dir, "config.json")), $"{dir} looks finished");
    }

    [Fact]
    public void MnliIsScoredOnMatchedAndMismatchedDev()
    {
        using var tmp = new TestData.TempDir();
        var tokenizer = TinyTokenizer(tmp);
        using (var model = BertTaskModel.Create(TinyConfig(tokenizer.VocabSize), BertTask.MaskedLM))
            BertCheckpoint.Save(model, tmp["base"], tokenizer);
        string dir = tmp["glue/MNLI"];
        Directory.CreateDirectory(dir);
        string header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label";
        string[] labels = ["contradiction", "entailment", "neutral"];
        string Row(int i) => $"{i}\t0\t0\tfiction\t-\t-\t-\t-\tthe film was good\tit was {(i % 2 == 0 ? "good" : "bad")}\t{labels[i % 3]}\t{labels[i % 3]}";
        File.WriteAllLines(Path.Combine(dir, "train.tsv"), [header, .. Enumerable.Range(0, 24).Select(Row)]);
        File.WriteAllLines(Path.Combine(dir, "dev_matched.tsv"), [header, .. Enumerable.Range(0, 9).Select(Row)]);
        File.WriteAllLines(Path.Combine(dir, "dev_mismatched.tsv"), [header, .. Enumerable.Range(0, 6).Select(Row)]);
        var metrics = FineTuning.Run(new FinetuneOptions
        {
            Task = new() { Name = TaskName.Mnli, Data = tmp["glue"] }, Model = tmp["base"], Out = tmp["mnli"],
            Trainer = new TrainerOptions { BatchSize = 8, MaxSteps = 2, LogEvery = 1, CheckpointEvery = 0 },
        });
        var dev = metrics["dev"]!.AsObject();
        Assert.True(dev.ContainsKey("accuracy"), dev.ToJsonString());
        Assert.True(dev.ContainsKey("accuracy_dev_mismatched"), dev.ToJsonString());
        // Each split is scored on its own examples: 9 matched, 6 mismatched, so accuracies are multiples of 1/9 and 1/6.
        Assert.Equal(0, Math.Round(dev["accuracy"]!.GetValue<double>() * 9, 4) % 1);
        Assert.Equal(0, Math.Round(dev["accuracy_dev_mismatched"]!.GetValue<double>() * 6, 4) % 1);
    }
}
