using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.Inference;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Tests;

/// <summary>
/// Task-agnostic distillation end to end on a tiny corpus: each method's loss terms in metrics.jsonl (HomoDistil's
/// teacher-student KL per step, and the terms of the methods plotted beside it), and the masked-LM head a method leaves
/// untrained (MiniLM): said in config.json and metrics.json, refused by fill-mask and by methods that read a teacher's
/// head, ignored by fine-tuning and by MiniLM itself (the teacher-assistant path).
/// </summary>
public sealed class CorpusDistillationTests
{
    /// <summary>A tiny masked-LM teacher (L2-H32, 4 heads) at tmp/teacher, a corpus at tmp/corpus, SST-2 at tmp/glue.</summary>
    static void Setup(TestData.TempDir tmp)
    {
        File.WriteAllLines(tmp["vocab.txt"], Quickstart.GeneratedVocabulary());
        ModelInit.Run(new InitOptions { Layers = 2, Hidden = 32, Heads = 4, MaxPositions = 64, VocabPath = tmp["vocab.txt"], Out = tmp["teacher"], Seed = 1 });
        var random = new Random(4);
        string[] words = ["good", "bad", "very", "not"];
        Directory.CreateDirectory(tmp["corpus"]);
        File.WriteAllLines(tmp["corpus/a.txt"], Enumerable.Range(0, 60).Select(_ => string.Join(' ', Enumerable.Range(0, 12).Select(_ => words[random.Next(4)]))));
        RecipeTests.WriteTinyGlue(tmp["glue"]);
    }

    static TrainerOptions Trainer(int steps = 3) => new()
    {
        BatchSize = 4, LearningRate = 1e-3, MaxSteps = steps, WarmupSteps = 0, LogEvery = 1, CheckpointEvery = 0, Precision = ComputePrecision.Float32,
    };

    static DistillOptions OnCorpus(TestData.TempDir tmp, IDistillMethodOptions method, string teacher, string output, StudentInit? student = null) => new()
    {
        Method = method, Teacher = teacher, Student = student, Out = tmp[output], Trainer = Trainer(),
        Corpus = new CorpusSpec { Files = [tmp["corpus"]], SeqLength = 16, EvalSequences = 4, CacheDir = tmp["cache"] },
    };

    static List<JsonObject> LossLines(string run) => File.ReadLines(Path.Combine(run, "metrics.jsonl"))
        .Select(l => JsonNode.Parse(l)!.AsObject()).Where(n => n["loss"] != null).ToList();

    static JsonObject Json(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    public static IEnumerable<object[]> Methods() =>
    [
        // The method, and its logged terms with the weight each has in the loss (0: logged, not in the loss).
        ["distilbert", new Dictionary<string, double> { ["kl"] = 0, ["soft_kl"] = 5, ["mlm"] = 2, ["cos"] = 1 }],
        ["minilm", new Dictionary<string, double> { ["attention_kl"] = 1, ["value_relation_kl"] = 1 }],
        ["homodistil", new Dictionary<string, double> { ["kl"] = 1, ["mlm"] = 1, ["hidden"] = 1, ["attention"] = 1 }],
    ];

    static IDistillMethodOptions Options(string method) => method switch
    {
        "distilbert" => new DistilBertOptions(),
        "minilm" => new MiniLmOptions(),
        _ => new HomoDistilOptions { Target = "L2-H16-F64", PruneEvery = 1 },
    };

    [Fact]
    public void HomoDistilOnACorpusKilledAndResumedGivesTheUninterruptedModel()
    {
        // 6 steps, a checkpoint every 2, a mask update every step: the kill at step 3 resumes from step 2's masks and scores.
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        DistillOptions Options(string output) => OnCorpus(tmp, new HomoDistilOptions { Target = "L2-H16-F64", PruneEvery = 1 }, tmp["teacher"], output) with
        {
            Trainer = Trainer(steps: 6) with { CheckpointEvery = 2 },
        };
        Distiller.Run(Options("whole"));
        var kill = new RunEvents { StageProgress = (done, _) => { if (done == 3) throw new OperationCanceledException("killed"); } };
        Assert.Throws<OperationCanceledException>(() => Distiller.Run(Options("split"), events: kill));
        Distiller.Run(Options("split"), resume: true);
        PruningResumeTests.AssertSameModel(tmp["whole"], tmp["split"]);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void EveryLoggedStepHasTheMethodsNamedLossTermsFiniteAndTheyAddUpToTheLoss(string method, Dictionary<string, double> weights)
    {
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        Distiller.Run(OnCorpus(tmp, Options(method), tmp["teacher"], method));
        var lines = LossLines(tmp[method]);
        Assert.Equal([1, 2, 3], lines.Select(l => l["step"]!.GetValue<int>()));
        foreach (var line in lines)
        {
            var terms = line.Where(kv => kv.Key.StartsWith("loss_", StringComparison.Ordinal)).ToDictionary(kv => kv.Key[5..], kv => kv.Value);
            Assert.Equal(weights.Keys.Order(), terms.Keys.Order());
            foreach (var (name, value) in terms)
                Assert.True(value is not null && double.IsFinite(value.GetValue<double>()), $"{method} step {line["step"]}: loss_{name} is {value?.ToJsonString() ?? "null"}");
            // The terms are the loss's own (one step per line): their weighted sum is the logged loss.
            double sum = weights.Sum(w => w.Value * terms[w.Key]!.GetValue<double>()), loss = line["loss"]!.GetValue<double>();
            Assert.True(Math.Abs(sum - loss) <= 1e-4 * Math.Max(1, Math.Abs(loss)), $"{method} step {line["step"]}: terms add up to {sum}, the loss is {loss}");
        }
        if (method != "minilm")
        {
            // kl is KL(p_T || p_S) at T = 1 for both; HomoDistil at its default T = 1 logs it as its own loss term.
            Assert.All(lines, l => Assert.True(l["loss_kl"]!.GetValue<double>() >= 0));
        }
    }

    [Fact]
    public void AMiniLmStudentIsSavedWithItsHeadMarkedUntrainedAndNoMaskedLmEvaluation()
    {
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        var metrics = Distiller.Run(OnCorpus(tmp, new MiniLmOptions(), tmp["teacher"], "minilm"));
        var config = BertConfig.Load(Path.Combine(tmp["minilm"], "config.json"));
        Assert.Contains("minilm distils self-attention relations only", config.MlmHeadUntrained);
        Assert.Contains("distillery_mlm_head_untrained", File.ReadAllText(Path.Combine(tmp["minilm"], "config.json")));
        Assert.Null(metrics["eval"]);   // an untrained head's MLM accuracy is not the model's
        Assert.Equal(config.MlmHeadUntrained, metrics["mlm_head_untrained"]!.GetValue<string>());
        Assert.Equal(config.MlmHeadUntrained, Json(Path.Combine(tmp["minilm"], "metrics.json"))["mlm_head_untrained"]!.GetValue<string>());

        // Fill-mask refuses it, unless asked; DistilBERT's student (which trains its head) is not marked and is evaluated.
        using (var predictor = BertPredictor.Load(tmp["minilm"]))
        {
            var refused = Assert.Throws<InvalidOperationException>(() => predictor.FillMask("good [MASK] bad"));
            Assert.Contains("never trained", refused.Message);
            Assert.Contains("--allow-untrained-head", refused.Message);
            Assert.Single(predictor.FillMask("good [MASK] bad", topK: 3, allowUntrainedHead: true));
        }
        var distilbert = Distiller.Run(OnCorpus(tmp, new DistilBertOptions(), tmp["teacher"], "distilbert"));
        Assert.Null(BertConfig.Load(Path.Combine(tmp["distilbert"], "config.json")).MlmHeadUntrained);
        Assert.NotNull(distilbert["eval"]!["mlm_accuracy"]);
        Assert.Null(distilbert["mlm_head_untrained"]);

        // Fine-tuning ignores the MLM head: it runs, and the task model's config says nothing about a head it lacks.
        var finetuned = FineTuning.Run(new FinetuneOptions
        {
            Task = new TaskSpec { Name = TaskName.Sst2, Data = tmp["glue"] }, Model = tmp["minilm"], Out = tmp["sst2"],
            Trainer = Trainer(steps: 2) with { BatchSize = 8 },
        });
        Assert.NotNull(finetuned["dev"]!["accuracy"]);
        var task = BertConfig.Load(Path.Combine(tmp["sst2"], "config.json"));
        Assert.Equal(BertTask.SequenceClassification, BertCheckpoint.TaskOf(task));
        Assert.Null(task.MlmHeadUntrained);

        // Training the head (on the frozen encoder) makes it a masked-LM model again: the mark goes, the evaluation is back.
        var head = Pretraining.Run(new PretrainOptions
        {
            Corpus = [tmp["corpus"]], Out = tmp["head"], InitFrom = tmp["minilm"], FreezeEncoder = true, SeqLength = 16, EvalSequences = 4,
            CacheDir = tmp["cache"], Trainer = Trainer(steps: 2),
        });
        Assert.Null(BertConfig.Load(Path.Combine(tmp["head"], "config.json")).MlmHeadUntrained);
        Assert.NotNull(head["eval"]);
        // Its FLOPs count the frozen encoder's forward alone (no backward runs through it): 3× would report an MFU
        // above 1 (the real teacher's head fit reported 1.51).
        var headConfig = BertConfig.Load(Path.Combine(tmp["head"], "config.json"));
        double counted = head["utilization"]!["flops_per_token"]!.GetValue<double>();
        Assert.Equal(Math.Round(ForwardCost.TrainingFlopsPerToken(headConfig, BertTask.MaskedLM, 16, 0.15, frozenEncoder: true)), counted);
        Assert.True(counted < ForwardCost.TrainingFlopsPerToken(headConfig, BertTask.MaskedLM, 16, 0.15) / 2);
    }

    [Fact]
    public void AMiniLmAssistantTeachesMiniLmButNotTheMethodsThatDistilItsHead()
    {
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        // The teacher assistant: the teacher's depth at its width, MiniLM-distilled (so its head is untrained).
        Distiller.Run(OnCorpus(tmp, new MiniLmOptions(), tmp["teacher"], "assistant", new StudentInit(StudentInitKind.Random, Arch: "L2-H32-A4-F64")));
        Assert.NotNull(BertConfig.Load(Path.Combine(tmp["assistant"], "config.json")).MlmHeadUntrained);

        // MiniLM reads the assistant's encoder alone: it is a valid teacher, and says how it treats the head.
        var messages = new List<string>();
        Distiller.Run(OnCorpus(tmp, new MiniLmOptions(), tmp["assistant"], "student", new StudentInit(StudentInitKind.Random, Arch: "L1-H16-A4-F32")),
            events: new RunEvents { Message = messages.Add });
        Assert.Contains(messages, m => m.Contains("the teacher's masked-LM head is untrained; minilm reads only its encoder"));
        Assert.NotNull(BertConfig.Load(Path.Combine(tmp["student"], "config.json")).MlmHeadUntrained);

        // DistilBERT's soft targets and HomoDistil's KL are the teacher head's predictions: refused before any training.
        var distilbert = Assert.Throws<ArgumentException>(() => Distiller.Run(OnCorpus(tmp, new DistilBertOptions(), tmp["assistant"], "db")));
        Assert.Contains("distilbert distils the teacher's masked-LM predictions, but the teacher's masked-LM head was never trained", distilbert.Message);
        Assert.Contains("--freeze-encoder", distilbert.Message);
        var homodistil = Assert.Throws<ArgumentException>(() => Distiller.Run(OnCorpus(tmp, new HomoDistilOptions { Target = "L2-H16-F64" }, tmp["assistant"], "homo")));
        Assert.Contains("homodistil distils the teacher's masked-LM predictions", homodistil.Message);
        Assert.False(Directory.Exists(tmp["db"]) && File.Exists(Path.Combine(tmp["db"], "config.json")));
        // Without the soft-target term DistilBERT reads no teacher head, and its MLM term trains the student's.
        Distiller.Run(OnCorpus(tmp, new DistilBertOptions { AlphaCe = 0 }, tmp["assistant"], "db-no-ce"));
        Assert.Null(BertConfig.Load(Path.Combine(tmp["db-no-ce"], "config.json")).MlmHeadUntrained);

        // A teacher whose weights have no masked-LM head at all (a task model): MiniLM takes it, DistilBERT refuses it.
        ModelInit.Run(new InitOptions { Layers = 2, Hidden = 32, Heads = 4, MaxPositions = 64, VocabPath = tmp["vocab.txt"], Out = tmp["classifier"], Task = BertTask.SequenceClassification });
        Distiller.Run(OnCorpus(tmp, new MiniLmOptions(), tmp["classifier"], "from-classifier"));
        var headless = Assert.Throws<InvalidDataException>(() => Distiller.Run(OnCorpus(tmp, new DistilBertOptions(), tmp["classifier"], "db-headless")));
        Assert.Contains("no trained masked-LM head", headless.Message);
    }

    [Fact]
    public void FillMaskAndInspectSayTheHeadIsUntrainedOnTheCommandLine()
    {
        using var tmp = new TestData.TempDir();
        Setup(tmp);
        Distiller.Run(OnCorpus(tmp, new MiniLmOptions(), tmp["teacher"], "minilm"));
        CliTests.AssertOneLineError(CliTests.Run(tmp.Dir, "fill-mask", "minilm", "good [MASK] bad"), "never trained", "--allow-untrained-head");
        var allowed = CliTests.Run(tmp.Dir, "fill-mask", "minilm", "good [MASK] bad", "--allow-untrained-head");
        Assert.True(allowed.ExitCode == 0, allowed.Err);
        Assert.Contains("warning: the masked-LM head was never trained", allowed.Err);
        Assert.Contains("[MASK] at token", allowed.Out);
        var inspect = CliTests.Run(tmp.Dir, "inspect", "minilm");
        Assert.True(inspect.ExitCode == 0, inspect.Err);
        Assert.Contains("masked-LM head: untrained", inspect.Out);
        // The teacher (a trained, or at least never marked, head) fills masks as before, without a warning.
        var teacher = CliTests.Run(tmp.Dir, "fill-mask", "teacher", "good [MASK] bad");
        Assert.True(teacher.ExitCode == 0, teacher.Err);
        Assert.DoesNotContain("never trained", teacher.Err);
    }
}
