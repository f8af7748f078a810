using Distillery.Distillation;
using Distillery.Models;
using Distillery.Pruning;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// The distillation contract (STYLE.md) for every method: finite loss, no gradient reaches the teacher, the loss falls
/// when over-fitting one batch, no tensor leaks across steps, save/load round-trips; plus student initialisation.
/// </summary>
public sealed class DistillationTests
{
    static BertConfig Config(int layers, int hidden = 32, int labels = 3) => BertConfig.Create(layers, hidden, heads: 4, intermediate: 2 * hidden, vocabSize: 120) with
    {
        MaxPositionEmbeddings = 32,
        Labels = Enumerable.Range(0, labels).Select(i => $"L{i}").ToArray(),
        ProblemType = labels == 1 ? ProblemType.Regression : ProblemType.SingleLabelClassification,
    };

    static TaskBatch Batch(int batch = 4, int length = 10, long seed = 1, int labels = 3)
    {
        var random = new Random((int)seed);
        var rows = Enumerable.Range(0, batch).Select(b =>
        {
            int n = length - (b % 3);   // ragged: padding in some rows
            var ids = Enumerable.Range(0, n).Select(i => i == 0 ? 2 : 5 + random.Next(110)).ToArray();
            return new EncodedExample(ids, new int[n], random.Next(labels), (float)random.NextDouble() * 5, 1 + random.Next(n - 2), n - 1);
        }).ToList();
        return TaskBatch.Collate(rows, padId: 0);
    }

    public static IEnumerable<object[]> Heads() =>
    [
        [BertTask.SequenceClassification, 3],
        [BertTask.SequenceClassification, 1],   // regression
        [BertTask.QuestionAnswering, 2],
    ];

    static (Teacher Teacher, BertTaskModel Student, KnowledgeDistillation Method) Kd(BertTask task, int labels, KdOptions? options = null)
    {
        manual_seed(3);
        var teacherModel = BertTaskModel.Create(Config(4, labels: labels), task);
        var teacher = new Teacher(teacherModel);
        var student = StudentInit.EveryOtherLayer(4).Build(teacherModel, task, seed: 5);
        return (teacher, student, new KnowledgeDistillation(teacher, student, options ?? new KdOptions { Alpha = 0.5, Temperature = 2 }));
    }

    [Theory]
    [MemberData(nameof(Heads))]
    public void KdContract(BertTask task, int labels)
    {
        var (teacher, student, method) = Kd(task, labels);
        var batch = Batch(labels: Math.Max(labels, 2));
        Contract(method, teacher, student, batch, b => b.ToInputs());
    }

    [Fact]
    public void DistilBertContract()
    {
        using var tmp = new TestData.TempDir();
        var (teacherModel, batch) = MlmTeacherAndBatch();
        var teacher = new Teacher(teacherModel);
        var student = (BertForMaskedLM)StudentInit.EveryOtherLayer(4).Build(teacherModel, BertTask.MaskedLM, seed: 5);
        var method = new DistilBertMethod(teacher, student, new DistilBertOptions());
        Contract(method, teacher, student, batch, b => new BertInputs(tensor(b.InputIds, [b.Batch, b.Length])));
    }

    static (BertTaskModel Teacher, MlmBatch Batch) MlmTeacherAndBatch()
    {
        manual_seed(8);
        var teacher = BertTaskModel.Create(Config(4), BertTask.MaskedLM);
        var random = new Random(2);
        var ids = Enumerable.Range(0, 4 * 12).Select(i => (long)(i % 12 == 0 ? 2 : 5 + random.Next(110))).ToArray();
        var labels = ids.Select((id, i) => i % 12 != 0 && i % 4 == 1 ? id : -100L).ToArray();
        for (int i = 0; i < ids.Length; i++) if (labels[i] >= 0) ids[i] = 4;   // [MASK]
        return (teacher, new MlmBatch(ids, labels, 4, 12));
    }

    [Fact]
    public void DistilBertNeedsEqualWidthsForItsCosineTermAndAMaskedLmTeacher()
    {
        var (teacherModel, _) = MlmTeacherAndBatch();
        var narrow = (BertForMaskedLM)new StudentInit(StudentInitKind.Random, Arch: "L2-H16-A2-F32").Build(teacherModel, BertTask.MaskedLM, 1);
        Assert.Contains("equal hidden widths", Assert.Throws<ArgumentException>(() => new DistilBertMethod(new Teacher(teacherModel), narrow, new DistilBertOptions())).Message);
        var withoutCosine = new DistilBertMethod(new Teacher(teacherModel), narrow, new DistilBertOptions { AlphaCos = 0 });
        Assert.Same(narrow, withoutCosine.Student);
        using var classifier = BertTaskModel.Create(Config(2), BertTask.SequenceClassification);
        Assert.Contains("masked-LM teacher", Assert.Throws<ArgumentException>(() => new DistilBertMethod(new Teacher(classifier), narrow, new DistilBertOptions { AlphaCos = 0 })).Message);
    }

    [Fact]
    public void DistilBertSoftAndCosineTermsVanishWhenTheStudentIsTheTeacher()
    {
        var (teacherModel, batch) = MlmTeacherAndBatch();
        var student = (BertForMaskedLM)StudentInit.FirstLayers(4).Build(teacherModel, BertTask.MaskedLM, 1);
        student.eval();
        using var scope = NewDisposeScope();
        var method = new DistilBertMethod(new Teacher(teacherModel), student, new DistilBertOptions { AlphaMlm = 0 });
        Assert.Equal(0.0, method.Loss(batch).Loss.item<float>(), 4);
    }

    [Theory]
    [InlineData(MiniLmRelations.V1)]
    [InlineData(MiniLmRelations.V2)]
    public void MiniLmContract(MiniLmRelations relations)
    {
        var (teacherModel, batch) = MlmTeacherAndBatch();
        var teacher = new Teacher(teacherModel);
        // Half the width and depth; v1 keeps the head count (4 heads of 4), v2 relates 2 relation heads.
        var student = (BertForMaskedLM)new StudentInit(StudentInitKind.Random, Arch: relations == MiniLmRelations.V1 ? "L2-H16-A4-F32" : "L2-H16-A2-F32").Build(teacherModel, BertTask.MaskedLM, seed: 5);
        var method = new MiniLm(teacher, student, new MiniLmOptions { Relations = relations, RelationHeads = 2 });
        Contract(method, teacher, student, batch, b => new BertInputs(tensor(b.InputIds, [b.Batch, b.Length])));
    }

    [Fact]
    public void MiniLmValueRelationWeightScalesTheValueTermAndZeroLeavesAttentionAlone()
    {
        // The loss is attention KL + w · value-relation KL (v1): with the same student and batch, the loss at w = 0, 1 and
        // 2 must be A, A + V and A + 2V, with V > 0 for an untrained student (small for this tiny model: ~1e-4).
        var (teacherModel, batch) = MlmTeacherAndBatch();
        var teacher = new Teacher(teacherModel);
        var student = (BertForMaskedLM)new StudentInit(StudentInitKind.Random, Arch: "L2-H16-A4-F32").Build(teacherModel, BertTask.MaskedLM, seed: 5);
        double LossAt(double weight)
        {
            using var scope = NewDisposeScope();
            student.eval();   // no dropout: the three losses see the same forward
            return new MiniLm(teacher, student, new MiniLmOptions { ValueRelationWeight = weight }).Loss(batch).Loss.item<float>();
        }
        double attention = LossAt(0), once = LossAt(1), twice = LossAt(2);
        double value = once - attention;
        Assert.True(value > 0, $"value-relation term {value}");
        Assert.True(Math.Abs(attention + 2 * value - twice) < 1e-6, $"w = 2 gave {twice}, expected {attention + 2 * value}");
        Assert.Throws<ArgumentException>(() => new MiniLmOptions { ValueRelationWeight = -1 }.Validate());
    }

    [Fact]
    public void TeacherDiscrepancyIsTheKlOfTheTeachersDistributionToTheStudents()
    {
        // p_t = (1/2, 1/2), p_s = (3/4, 1/4): KL = ½ ln(½ / ¾) + ½ ln(½ / ¼) = 0.1438410362.
        var d = Evaluation.TeacherDiscrepancy.Of([[0f, 0f], [1f, 2f]], [[MathF.Log(3), 0f], [1f, 2f]], regression: false);
        Assert.Equal(0.1438410362 / 2, d[Evaluation.TeacherDiscrepancy.Kl], 6);   // ln 3 in float
        Assert.Equal(1.0, d[Evaluation.TeacherDiscrepancy.Agreement]);   // both pairs pick class 0, then class 1
        Assert.Equal(0.0, Evaluation.TeacherDiscrepancy.Of([[2f, 0f]], [[0f, 2f]], regression: false)[Evaluation.TeacherDiscrepancy.Agreement]);
        var r = Evaluation.TeacherDiscrepancy.Of([[1f], [3f]], [[2f], [3f]], regression: true);
        Assert.Equal(0.5, r[Evaluation.TeacherDiscrepancy.Mse], 9);
        Assert.Throws<ArgumentException>(() => Evaluation.TeacherDiscrepancy.Of([[1f, 2f]], [[1f]], regression: false));
    }

    [Fact]
    public void TaskDistillationLogsTheTeacherDiscrepancyAndHomoDistilKeepsItsFinalModel()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = ReliabilityTests.Setup(tmp);
        var task = new TaskSpec { Name = TaskName.Sst2, Data = glue };
        var trainer = new TrainerOptions { BatchSize = 8, LearningRate = 1e-3, MaxSteps = 6, EvalEvery = 2, LogEvery = 1, CheckpointEvery = 0, Precision = ComputePrecision.Float32 };
        FineTuning.Run(new FinetuneOptions { Task = task, Model = model, Out = tmp["teacher"], Trainer = trainer });
        var kd = Distiller.Run(new DistillOptions { Method = new KdOptions(), Teacher = tmp["teacher"], Student = StudentInit.FirstLayers(1), Task = task, Out = tmp["kd"], Trainer = trainer });
        var homo = Distiller.Run(new DistillOptions { Method = new HomoDistilOptions { Target = "L2-H16", PruneEvery = 1 }, Teacher = tmp["teacher"], Task = task, Out = tmp["homo"], Trainer = trainer });
        foreach (var metrics in new[] { kd, homo })
        {
            var evaluations = metrics["evaluations"]!.AsArray();
            Assert.Equal([2, 4, 6], evaluations.Select(e => (int)e!["step"]!));
            foreach (var e in evaluations)
            {
                double kl = (double)e!["metrics"]![Evaluation.TeacherDiscrepancy.Kl]!, agreement = (double)e["metrics"]![Evaluation.TeacherDiscrepancy.Agreement]!;
                Assert.True(kl >= 0 && double.IsFinite(kl), $"KL {kl}");
                Assert.InRange(agreement, 0, 1);
            }
        }
        // HomoDistil's result is the student at the target width (the last evaluation), whatever the earlier ones scored.
        Assert.Equal(6, (int)homo["best_step"]!);
        Assert.Equal(16, BertCheckpoint.ReadConfig(tmp["homo"]).HiddenSize);
    }

    [Fact]
    public void TeacherLogitCacheGivesTheTeachersLogitsIsReusedAcrossRunsAndRefusesADamagedShard()
    {
        using var tmp = new TestData.TempDir();
        var (model, glue) = ReliabilityTests.Setup(tmp);
        var task = new TaskSpec { Name = TaskName.Sst2, Data = glue };
        var trainer = new TrainerOptions { BatchSize = 8, LearningRate = 1e-3, MaxSteps = 4, LogEvery = 1, CheckpointEvery = 0, Precision = ComputePrecision.Float32 };
        FineTuning.Run(new FinetuneOptions { Task = task, Model = model, Out = tmp["teacher"], Trainer = trainer });
        using var trained = TaskPipeline.Load(tmp["teacher"], task, seed: 1, needTrain: true);
        var examples = trained.Data.Train;
        var cache = TeacherLogitCache.Build(trained.Model, tmp["teacher"], examples, trained.Tokenizer.PadId, tmp["cache"]);
        Assert.False(cache.Reused);
        Assert.Equal(examples.Count, cache.Count);

        // A training batch's cached rows equal the teacher's forward on that batch (padded differently: rounding only),
        // and the KD loss through the cache equals the loss without it.
        var source = new TaskBatchSource(examples, 8, seed: 3, trained.Tokenizer.PadId);
        var batch = source.Get(0, 1);
        Assert.NotNull(batch.Rows);
        using (var scope = NewDisposeScope())
        {
            var teacher = new Teacher(trained.Model);
            var direct = teacher.Forward(batch.ToInputs()).Logits;
            Assert.True(cache.Rows(batch.Rows!).allclose(direct, rtol: 1e-4, atol: 1e-5));
            var student = StudentInit.FirstLayers(1).Build(trained.Model, BertTask.SequenceClassification, seed: 2);
            student.eval();
            double without = Losses.TaskHeadDistillation(teacher, student, batch, 0.5, 2).Loss.item<float>();
            teacher.Cache = cache;
            double with = Losses.TaskHeadDistillation(teacher, student, batch, 0.5, 2).Loss.item<float>();
            Assert.Equal(without, with, 5);
        }

        // The same teacher and examples: read back, not recomputed; other examples: another shard.
        var again = TeacherLogitCache.Build(trained.Model, tmp["teacher"], examples, trained.Tokenizer.PadId, tmp["cache"]);
        Assert.True(again.Reused);
        Assert.Equal(cache.File, again.File);
        using (var scope = NewDisposeScope()) Assert.True(again.Rows([0, 5, 63]).equal(cache.Rows([0, 5, 63])).all().item<bool>());
        TeacherLogitCache.Build(trained.Model, tmp["teacher"], examples.Take(10).ToList(), trained.Tokenizer.PadId, tmp["cache"]);
        Assert.Equal(2, Directory.GetFiles(tmp["cache"]).Length);

        // A shard of the wrong shape under the right name is one clear error naming it.
        using (var scope = NewDisposeScope())
            IO.Safetensors.Save(cache.File!, new Dictionary<string, Tensor> { [TeacherLogitCache.TensorName] = zeros(3, 2) });
        var error = Assert.Throws<InvalidDataException>(() => TeacherLogitCache.Build(trained.Model, tmp["teacher"], examples, trained.Tokenizer.PadId, tmp["cache"]));
        Assert.Contains(cache.File!, error.Message);

        // Only a method that distils the logits alone takes a cache.
        Assert.Contains("kd", Assert.Throws<ArgumentException>(() => Theseus.Method.Check(
            new DistillOptions { Method = new TheseusOptions(), Teacher = "t", Task = task, Out = "o", TeacherCache = "c" }, null, resume: false)).Message);
        // A kd run through the Distiller with the cache folder reads the shard written for its training set.
        File.Delete(cache.File!);
        Distiller.Run(new DistillOptions { Method = new KdOptions(), Teacher = tmp["teacher"], Student = StudentInit.FirstLayers(1), Task = task, Out = tmp["kd"], Trainer = trainer, TeacherCache = tmp["cache"] });
        Assert.True(File.Exists(cache.File!), "the run did not write the shard of its training examples");
    }

    [Fact]
    public void RelationMatricesMatchADirectComputation()
    {
        using var scope = NewDisposeScope();
        // One head, two tokens with orthogonal unit vectors: XXᵀ/√2 = [[0.7071, 0], [0, 0.7071]];
        // softmax rows: e^0.7071 / (e^0.7071 + 1) = 2.0281 / 3.0281 = 0.66976, and 0.33024.
        var x = tensor(new float[] { 1, 0, 0, 1 }).reshape(1, 1, 2, 2);
        var relation = MiniLmRelationsMath.SelfRelation(x, null);
        Assert.Equal(0.66976, relation[0, 0, 0, 0].item<float>(), 4);
        Assert.Equal(0.33024, relation[0, 0, 0, 1].item<float>(), 4);
        Assert.Equal(0.66976, relation[0, 0, 1, 1].item<float>(), 4);
        // A padded second token: all mass on the first key.
        var masked = MiniLmRelationsMath.SelfRelation(x, tensor(new long[] { 1, 0 }).reshape(1, 2));
        Assert.Equal(1.0, masked[0, 0, 0, 0].item<float>(), 6);
        // Re-splitting: two heads [a b], [c d] of one token concatenate to [a b c d]; four relation heads are [a] [b] [c] [d].
        var heads = tensor(new float[] { 1, 2, 3, 4 }).reshape(1, 2, 1, 2);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, MiniLmRelationsMath.Resplit(heads, 1).data<float>().ToArray());
        Assert.Equal([1L, 4L, 1L, 1L], MiniLmRelationsMath.Resplit(heads, 4).shape);
        Assert.Equal(3f, MiniLmRelationsMath.Resplit(heads, 4)[0, 2, 0, 0].item<float>());
    }

    [Theory]
    [InlineData(MiniLmRelations.V1)]
    [InlineData(MiniLmRelations.V2)]
    public void MiniLmLossIsZeroWhenTheStudentIsTheTeacher(MiniLmRelations relations)
    {
        var (teacherModel, batch) = MlmTeacherAndBatch();
        var student = (BertForMaskedLM)StudentInit.FirstLayers(4).Build(teacherModel, BertTask.MaskedLM, 1);
        student.eval();
        using var scope = NewDisposeScope();
        var method = new MiniLm(new Teacher(teacherModel), student, new MiniLmOptions { Relations = relations, RelationHeads = 8 });
        Assert.Equal(0.0, method.Loss(batch).Loss.item<float>(), 4);
    }

    [Fact]
    public void MiniLmV1WithDifferentHeadCountsSaysToUseV2()
    {
        var (teacherModel, _) = MlmTeacherAndBatch();
        var student = (BertForMaskedLM)new StudentInit(StudentInitKind.Random, Arch: "L2-H16-A2-F32").Build(teacherModel, BertTask.MaskedLM, 1);
        var e = Assert.Throws<ArgumentException>(() => new MiniLm(new Teacher(teacherModel), student, new MiniLmOptions()));
        Assert.Contains("4 heads and the student's last layer 2", e.Message);
        Assert.Contains("--relations v2", e.Message);
        Assert.Contains("not divisible by 3 relation heads", Assert.Throws<ArgumentException>(() => new MiniLm(new Teacher(teacherModel), student, new MiniLmOptions { Relations = MiniLmRelations.V2, RelationHeads = 3 })).Message);
        Assert.Contains("out of range 1..4", Assert.Throws<ArgumentException>(() => new MiniLm(new Teacher(teacherModel), student, new MiniLmOptions { Relations = MiniLmRelations.V2, RelationHeads = 2, TeacherLayer = 5 })).Message);
    }

    [Fact]
    public void QueriesKeysAndValuesOfLayerLComeFromTheInputOfLayerL()
    {
        var (teacherModel, batch) = MlmTeacherAndBatch();
        teacherModel.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var output = teacherModel.Bert.forward(new BertInputs(tensor(batch.InputIds, [batch.Batch, batch.Length])), new BertForwardOptions { OutputHiddenStates = true, OutputQueryKeyValue = true });
        for (int layer = 0; layer < 4; layer++)
        {
            var self = teacherModel.Bert.Encoder.Layers[layer].Attention.Self;
            // Layer L's input is hidden_states[L] (index 0 = embeddings): its value projection, split into heads, is V of layer L.
            var expected = self.Value.forward(output.HiddenStates![layer]).view(4, 12, 4, 8).permute(0, 2, 1, 3);
            Assert.True((expected - output.Values![layer]).abs().max().item<float>() < 1e-6, $"layer {layer}");
            var wrong = self.Value.forward(output.HiddenStates[layer + 1]).view(4, 12, 4, 8).permute(0, 2, 1, 3);
            Assert.True((wrong - output.Values[layer]).abs().max().item<float>() > 1e-3);
        }
    }

    [Fact]
    public void TheseusContract()
    {
        manual_seed(9);
        var predecessor = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        var method = new Theseus(predecessor, new TheseusOptions { SuccessorLayers = 2, Scheduler = TheseusScheduler.Constant, B = 1.0 }, seed: 3);
        // Only the two successor layers train (embeddings, pooler and classifier stay frozen), so the fall is slower.
        Contract(method, new Teacher(predecessor), method.Student, Batch(), b => b.ToInputs(), fallsTo: 0.97);
    }

    [Fact]
    public void TheseusWithPOneIsTheSuccessorAndWithPZeroThePredecessor()
    {
        manual_seed(10);
        using var predecessor = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        var method = new Theseus(predecessor, new TheseusOptions { SuccessorLayers = 2, Init = TheseusInit.EvenlySpread }, seed: 3);
        Assert.Equal(2, method.CompressRatio);
        // Make the successor differ from the layers it copied, so the comparison can tell them apart.
        using (no_grad()) foreach (var (name, p) in method.Student.named_parameters()) if (name.StartsWith("bert.encoder.")) p.add_(0.05);
        predecessor.eval();
        method.Student.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var inputs = Batch().ToInputs();
        Assert.True(method.Student.forward(inputs).Logits.equal(method.MixedForward(inputs, 1.0).Logits).all().item<bool>());
        Assert.True(predecessor.forward(inputs).Logits.equal(method.MixedForward(inputs, 0.0).Logits).all().item<bool>());
        Assert.False(predecessor.forward(inputs).Logits.equal(method.Student.forward(inputs).Logits).all().item<bool>());
        // Only the successor layers train; embeddings and head are frozen, as in the official code.
        Assert.All(method.Student.named_parameters(), p => Assert.Equal(p.name.StartsWith("bert.encoder."), p.parameter.requires_grad));
        Assert.All(predecessor.parameters(), p => Assert.False(p.requires_grad));
    }

    /// <summary>Batches of one fixed task batch.</summary>
    sealed class OneBatch(TaskBatch batch) : IBatchSource<TaskBatch>
    {
        public int BatchesPerEpoch => 1;
        public TaskBatch Get(int epoch, int index) => batch;
    }

    [Fact]
    public void TheseusTrainsThroughStepsThatDrawOnlyThePredecessor()
    {
        using var tmp = new TestData.TempDir();
        manual_seed(11);
        using var predecessor = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        // p = 0: every forward is the frozen predecessor, so no step has a gradient; training must still go on.
        var method = new Theseus(predecessor, new TheseusOptions { SuccessorLayers = 2, Scheduler = TheseusScheduler.Constant, B = 0 }, seed: 3);
        var before = method.Student.Bert.Encoder.Layers[0].Attention.Self.Query.Weight.clone();
        var result = new Trainer<TaskBatch>(method, new OneBatch(Batch()), new TrainerOptions { BatchSize = 4, MaxSteps = 3, LogEvery = 1, CheckpointEvery = 0 }, tmp["run"]).Run();
        Assert.Equal(3, result.Steps);
        Assert.True(double.IsFinite(result.FinalLoss));
        Assert.True(before.equal(method.Student.Bert.Encoder.Layers[0].Attention.Self.Query.Weight).all().item<bool>());
    }

    [Fact]
    public void TheseusSchedulersFollowTheirFormulas()
    {
        var linear = new TheseusOptions { Scheduler = TheseusScheduler.Linear, K = 0.1, B = 0.3 };
        Assert.Equal([0.3, 0.5, 0.8, 1.0, 1.0], new[] { 0, 2, 5, 7, 100 }.Select(t => Math.Round(linear.ReplaceRate(t), 10)));
        var constant = linear with { Scheduler = TheseusScheduler.Constant };
        Assert.Equal([0.3, 0.3], new[] { 0, 50 }.Select(constant.ReplaceRate));
        var anti = linear with { Scheduler = TheseusScheduler.AntiCurriculum };
        Assert.Equal([0.7, 0.5, 0.2, 0.0, 0.0], new[] { 0, 2, 5, 7, 100 }.Select(t => Math.Round(anti.ReplaceRate(t), 10)));
        using var predecessor = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        Assert.Contains("cannot be split into 3 equal groups", Assert.Throws<ArgumentException>(() => new Theseus(predecessor, new TheseusOptions { SuccessorLayers = 3 }, 1)).Message);
    }

    /// <summary>The contract every method passes (STYLE.md), on one batch.</summary>
    /// <remarks>The loss after 40 steps must be below <c>fallsTo</c> times the first.</remarks>
    static void Contract<TBatch>(IDistillationMethod<TBatch> method, Teacher teacher, BertTaskModel student, TBatch batch, Func<TBatch, BertInputs> inputsOf, double fallsTo = 0.75)
    {
        var teacherBefore = teacher.Model.parameters().Select(p => p.clone()).ToList();
        var optimizer = optim.AdamW(method.Module.parameters(), lr: 3e-3);
        student.train();
        double first = double.NaN, last = double.NaN;
        long liveAfterFirst = 0;
        const int steps = 40;
        for (int step = 0; step < steps; step++)
        {
            using (var scope = NewDisposeScope())
            {
                var (loss, tokens) = method.Loss(batch);
                double value = loss.item<float>();
                Assert.True(double.IsFinite(value), $"loss {value} at step {step}");
                Assert.True(tokens > 0);
                loss.backward();
                // No gradient reaches the teacher: its parameters are out of autograd altogether.
                Assert.All(teacher.Model.parameters(), p => { Assert.False(p.requires_grad); Assert.True(p.grad is null); });
                optimizer.step();
                optimizer.zero_grad();
                if (step == 0) first = value;
                last = value;
            }
            if (step == 1) liveAfterFirst = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        }
        // No tensors pile up across steps; over-fitting one batch drives the loss down; the teacher is untouched.
        long leaked = DisposeScopeManager.Statistics.ThreadTotalLiveCount - liveAfterFirst;
        Assert.True(leaked == 0, $"tensors leak across steps: {leaked} more live after {steps - 2} steps");
        Assert.True(last < fallsTo * first, $"loss did not fall below {fallsTo:P0} of its start: {first} → {last}");
        using (var scope = NewDisposeScope())
            foreach (var (before, after) in teacherBefore.Zip(teacher.Model.parameters()))
                Assert.Equal(0.0, (before - after).abs().max().item<float>());
        optimizer.Dispose();

        // The finished student (the student itself, or a model the method assembles or shrinks from it) saves and loads
        // back to the same function.
        using var tmp = new TestData.TempDir();
        var finished = method.Finish();
        BertCheckpoint.Save(finished, tmp["student"], tokenizer: null);
        var (loaded, _) = BertCheckpoint.Load(tmp["student"]);
        using (loaded)
        using (var scope = NewDisposeScope())
        {
            finished.eval();
            loaded.eval();
            var inputs = inputsOf(batch);
            Assert.Equal(0.0, (finished.forward(inputs).Logits - loaded.forward(inputs).Logits).abs().max().item<float>());
        }
    }

    [Fact]
    public void EmbeddingDistillationContract()
    {
        manual_seed(3);
        var teacherModel = BertTaskModel.Create(Config(4), BertTask.SentenceEmbedding);
        var teacher = new Teacher(teacherModel);
        var student = StudentInit.EveryOtherLayer(4).Build(teacherModel, BertTask.SentenceEmbedding, seed: 5);
        var method = new EmbeddingDistillation(teacher, student, new EmbeddingDistillationOptions { CosineWeight = 1 });
        Contract(method, teacher, student, Batch(), b => b.ToInputs());
    }

    [Fact]
    public void EmbeddingDistillationLossIsZeroForTheTeacherAndMseIsTwoOverHTimesTheCosineTermOnUnitVectors()
    {
        manual_seed(4);
        using var scope = NewDisposeScope();
        var a = nn.functional.normalize(randn(6, 32), dim: -1);
        var b = nn.functional.normalize(randn(6, 32), dim: -1);
        Assert.Equal(0f, EmbeddingDistillation.Compute(a, a, new EmbeddingDistillationOptions { CosineWeight = 1 }).item<float>(), 6);
        float mse = EmbeddingDistillation.Compute(a, b, new EmbeddingDistillationOptions()).item<float>();
        float cosine = EmbeddingDistillation.Compute(a, b, new EmbeddingDistillationOptions { MseWeight = 0, CosineWeight = 1 }).item<float>();
        Assert.Equal(2f / 32 * cosine, mse, 5);
        Assert.Throws<ArgumentException>(() => new EmbeddingDistillationOptions { MseWeight = 0 }.Validate());
        // A classification teacher is refused with one line.
        var teacher = new Teacher(BertTaskModel.Create(Config(2), BertTask.SequenceClassification));
        var e = Assert.Throws<ArgumentException>(() => new EmbeddingDistillation(teacher, BertTaskModel.Create(Config(1), BertTask.SentenceEmbedding), new()));
        Assert.StartsWith("embedding distillation needs a sentence-embedding teacher", e.Message);
    }

    [Fact]
    public void SoftLossIsZeroWhenTheStudentIsTheTeacher()
    {
        manual_seed(4);
        var teacherModel = BertTaskModel.Create(Config(2), BertTask.SequenceClassification);
        var student = StudentInit.FirstLayers(2).Build(teacherModel, BertTask.SequenceClassification, seed: 1);
        var method = new KnowledgeDistillation(new Teacher(teacherModel), student, new KdOptions { Alpha = 1, Temperature = 3 });
        student.eval();   // same function: no dropout
        using var scope = NewDisposeScope();
        Assert.Equal(0.0, method.Loss(Batch()).Loss.item<float>(), 5);
    }

    [Fact]
    public void HardLabelsOnUnlabeledDataAreRefused()
    {
        var (_, _, method) = Kd(BertTask.SequenceClassification, 3);
        var unlabeled = Batch() with { Labels = [-1, -1, -1, -1] };
        using var scope = NewDisposeScope();
        Assert.Contains("alpha 1", Assert.Throws<InvalidOperationException>(() => method.Loss(unlabeled)).Message);
        var (teacher, student, _) = Kd(BertTask.SequenceClassification, 3);
        var softOnly = new KnowledgeDistillation(teacher, student, new KdOptions { Alpha = 1 });
        Assert.True(double.IsFinite(softOnly.Loss(unlabeled).Loss.item<float>()));
    }

    [Fact]
    public void EveryOtherLayerStudentCopiesTheTeachersLayers()
    {
        manual_seed(6);
        using var teacher = BertTaskModel.Create(Config(6), BertTask.SequenceClassification);
        using var student = StudentInit.EveryOtherLayer(6).Build(teacher, BertTask.SequenceClassification, seed: 1);
        Assert.Equal(3, student.Config.NumHiddenLayers);
        var t = teacher.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var s = student.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        // Student layer k is teacher layer 2k; embeddings, pooler and classifier are the teacher's.
        foreach (var (k, teacherLayer) in new[] { (0, 0), (1, 2), (2, 4) })
            Assert.True(t[$"bert.encoder.layer.{teacherLayer}.attention.self.query.weight"].equal(s[$"bert.encoder.layer.{k}.attention.self.query.weight"]).all().item<bool>());
        foreach (var name in new[] { "bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight", "bert.embeddings.LayerNorm.bias" })
            Assert.True(t[name].equal(s[name]).all().item<bool>(), name);
        var explicitInit = new StudentInit(StudentInitKind.TeacherLayers, [0, 2, 5]).Build(teacher, BertTask.SequenceClassification, 1);
        Assert.True(t["bert.encoder.layer.5.output.dense.weight"].equal(explicitInit.named_parameters().First(p => p.name == "bert.encoder.layer.2.output.dense.weight").parameter).all().item<bool>());
    }

    [Fact]
    public void BadStudentsAreRefusedWithOneLine()
    {
        using var teacher = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        Assert.Contains("teacher layer 7 does not exist", Assert.Throws<ArgumentException>(() => new StudentInit(StudentInitKind.TeacherLayers, [0, 7]).Build(teacher, BertTask.SequenceClassification, 1)).Message);
        Assert.Contains("repeat", Assert.Throws<ArgumentException>(() => new StudentInit(StudentInitKind.TeacherLayers, [1, 1]).Build(teacher, BertTask.SequenceClassification, 1)).Message);
        Assert.Contains("L4-H256", Assert.Throws<FormatException>(() => new StudentInit(StudentInitKind.Random, Arch: "tiny").Build(teacher, BertTask.SequenceClassification, 1)).Message);

        // A student with another vocabulary.
        using var tmp = new TestData.TempDir();
        using (var other = BertTaskModel.Create(Config(2) with { VocabSize = 99 }, BertTask.SequenceClassification))
            BertCheckpoint.Save(other, tmp["other"], tokenizer: null);
        Assert.Contains("must share one", Assert.Throws<ArgumentException>(() => new StudentInit(StudentInitKind.Checkpoint, Checkpoint: tmp["other"]).Build(teacher, BertTask.SequenceClassification, 1)).Message);

        // Heads that do not match.
        using var qaStudent = BertTaskModel.Create(Config(2), BertTask.QuestionAnswering);
        Assert.Contains("differ", Assert.Throws<ArgumentException>(() => new KnowledgeDistillation(new Teacher(teacher), qaStudent, new KdOptions())).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => new KdOptions { Temperature = 0 }.Validate()).Message);
    }

    [Fact]
    public void NarrowRandomStudentKeepsEmbeddingsOnlyWhenWidthsMatch()
    {
        using var teacher = BertTaskModel.Create(Config(4, hidden: 32), BertTask.SequenceClassification);
        using var same = new StudentInit(StudentInitKind.Random, Arch: "L1-H32-A4-F64").Build(teacher, BertTask.SequenceClassification, 2);
        var w = teacher.named_parameters().First(p => p.name == "bert.embeddings.word_embeddings.weight").parameter;
        Assert.True(w.equal(same.named_parameters().First(p => p.name == "bert.embeddings.word_embeddings.weight").parameter).all().item<bool>());
        using var narrow = new StudentInit(StudentInitKind.Random, Arch: "L1-H16-A2-F32").Build(teacher, BertTask.SequenceClassification, 2);
        Assert.Equal([120L, 16L], narrow.named_parameters().First(p => p.name == "bert.embeddings.word_embeddings.weight").parameter.shape);
        Assert.Equal(3, narrow.Config.NumLabels);
    }

    // ---- HomoDistil ----

    static HomoDistil Homo(BertTaskModel teacherModel, string target, double alphaMlm = 1, ImportanceScore score = ImportanceScore.Sensitivity, int pruneEvery = 2) =>
        new(new Teacher(teacherModel), new HomoDistilOptions { Target = target, Score = score, PruneEvery = pruneEvery, AlphaMlm = alphaMlm }, seed: 5);

    [Theory]
    [InlineData(BertTask.SequenceClassification, 3, "L4-H24-F48")]
    [InlineData(BertTask.SequenceClassification, 1, "L4-H24-A2-F40")]   // regression
    [InlineData(BertTask.QuestionAnswering, 2, "L2-H24-F48")]          // half the depth too
    public void HomoDistilContract(BertTask task, int labels, string target)
    {
        manual_seed(3);
        var teacherModel = BertTaskModel.Create(Config(4, labels: labels), task);
        var method = Homo(teacherModel, target);
        Contract<TaskBatch>(method, new Teacher(teacherModel), method.Student, Batch(labels: Math.Max(labels, 2)), b => b.ToInputs());
    }

    [Fact]
    public void HomoDistilCorpusContract()
    {
        var (teacherModel, batch) = MlmTeacherAndBatch();
        var method = Homo(teacherModel, "L4-H24-F48");
        Contract<MlmBatch>(method, new Teacher(teacherModel), method.Student, batch, b => new BertInputs(tensor(b.InputIds, [b.Batch, b.Length])));
    }

    /// <summary>One optimizer step of <paramref name="method"/> on <paramref name="batch"/>, as the trainer takes it (scores read the gradients before the step; the schedule runs after it).</summary>
    static void TrainStep(HomoDistil method, optim.Optimizer optimizer, TaskBatch batch, int step, int total)
    {
        using (var scope = NewDisposeScope())
        {
            method.Loss(batch).Loss.backward();
            method.AfterBackward();
            optimizer.step();
            optimizer.zero_grad();
        }
        method.OnStepEnd(step, total);
    }

    [Theory]
    [InlineData(ImportanceScore.Sensitivity, "L4-H24-F48", 3)]
    [InlineData(ImportanceScore.Magnitude, "L4-H20-A2-F40", 2)]
    [InlineData(ImportanceScore.Platon, "L4-H16-F32", 2)]
    public void HomoDistilPrunesOnTheScheduleToExactlyTheTargetAndMaskedWeightsStayZero(ImportanceScore score, string target, int heads)
    {
        manual_seed(9);
        var teacherModel = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        var method = Homo(teacherModel, target, score: score);
        var student = method.Student;
        var optimizer = optim.AdamW(method.Module.parameters(), lr: 3e-3);
        const int total = 12;
        int hiddenBefore = 32;
        var batch = Batch();
        for (int step = 1; step <= total; step++)
        {
            TrainStep(method, optimizer, batch, step, total);
            var mask = method.Mask;
            int hidden = mask.KeptHidden(student.Config);
            Assert.True(hidden <= hiddenBefore, $"step {step}: the hidden mask grew back ({hiddenBefore} → {hidden})");
            hiddenBefore = hidden;
            // Every masked weight is exactly zero after the step (AdamW moved them; the mask put them back).
            using var check = NewDisposeScope();
            var dropped = Enumerable.Range(0, 32).Where(i => !mask.Hidden![i]).Select(i => (long)i).ToArray();
            foreach (var (name, p) in student.named_parameters())
                foreach (int axis in HiddenDims.Axes(name))
                    if (dropped.Length > 0) Assert.Equal(0f, p.index_select(axis, tensor(dropped)).abs().max().item<float>());
            for (int l = 0; l < 4; l++)
            {
                var layer = student.Bert.Encoder.Layers[l];
                for (int h = 0; h < 4; h++)
                    if (!mask.Heads[l][h]) Assert.Equal(0f, layer.Attention.Self.Query.Weight[TensorIndex.Slice(h * 8, (h + 1) * 8)].abs().max().item<float>());
                for (int n = 0; n < 64; n++)
                    if (!mask.Neurons[l][n]) Assert.Equal(0f, layer.Output.Dense.Weight[TensorIndex.Colon, n].abs().max().item<float>());
            }
            if (step == 2) Assert.True(hidden < 32 && hidden > method.Target.Hidden, $"step 2 of 12 should be partway: hidden {hidden}");
        }
        optimizer.Dispose();
        var widths = method.Target;
        Assert.Equal(widths.Hidden, method.Mask.KeptHidden(student.Config));
        Assert.All(method.Mask.Heads, h => Assert.Equal(heads, h.Count(k => k)));
        Assert.All(method.Mask.Neurons, n => Assert.Equal(widths.Ffn, n.Count(k => k)));

        // Finish: exactly the target's shapes, and the function the masked student computes.
        using var pruned = method.Finish();
        var c = pruned.Config;
        Assert.Equal(widths.Hidden, c.HiddenSize);
        Assert.Equal(4, c.NumHiddenLayers);
        Assert.All(Enumerable.Range(0, 4), l => { Assert.Equal(heads, c.HeadsInLayer(l)); Assert.Equal(widths.Ffn, c.IntermediateSizeOf(l)); });
        Assert.Equal(8, c.HeadSize);
        Assert.Equal(PruneTarget.Count(teacherModel.Config, BertTask.SequenceClassification, 4, widths.Hidden, heads, widths.Ffn), ParameterCounts.Of(pruned).Total);
        using var scope2 = NewDisposeScope();
        student.eval();
        pruned.eval();
        var inputs = batch.ToInputs();
        float diff = (student.forward(inputs).Logits - pruned.forward(inputs).Logits).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"masked student and pruned model differ by {diff}");
    }

    [Fact]
    public void OneShotHomoDistilKeepsFullWidthThroughTheWarmUpThenReachesTheTargetAtOnce()
    {
        // 20 steps, warm-up 0.25 (5 steps), a mask update every 2 steps: full width through step 4, the target from step
        // 6 (the first update at or after the warm-up), never in between. The cubic schedule would still be partway there.
        manual_seed(9);
        var teacherModel = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        var options = new HomoDistilOptions { Target = "L4-H24-F48", PruneEvery = 2, WarmupFraction = 0.25, OneShot = true };
        var method = new HomoDistil(new Teacher(teacherModel), options, seed: 5);
        var cubic = new HomoDistil(new Teacher(teacherModel), options with { OneShot = false }, seed: 5);
        var optimizer = optim.AdamW(method.Module.parameters(), lr: 3e-3);
        var batch = Batch();
        const int total = 20;
        for (int step = 1; step <= 8; step++)
        {
            TrainStep(method, optimizer, batch, step, total);
            int hidden = method.Mask.KeptHidden(method.Student.Config), neurons = method.Mask.Neurons[0].Count(k => k);
            if (step < 6) Assert.True(hidden == 32 && neurons == 64, $"step {step}: pruned during the warm-up (hidden {hidden}, neurons {neurons})");
            else Assert.True(hidden == 24 && neurons == 48, $"step {step}: not at the target (hidden {hidden}, neurons {neurons})");
        }
        optimizer.Dispose();
        Assert.Equal(1, method.Progress(6, total));
        Assert.InRange(cubic.Progress(6, total), 0.01, 0.99);
    }

    [Fact]
    public void HomoDistilLossIsZeroAtTheStartApartFromTheStudentsOwnLoss()
    {
        manual_seed(4);
        var classifier = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        var (mlmTeacher, mlmBatch) = MlmTeacherAndBatch();
        using var scope = NewDisposeScope();
        // Without the student's own loss: KL, hidden and attention terms all vanish (student = teacher, no dropout).
        var task = Homo(classifier, "L4-H16-F32", alphaMlm: 0);
        task.Student.eval();
        Assert.True(Math.Abs(task.Loss(Batch()).Loss.item<float>()) < 1e-7);
        var corpus = Homo(mlmTeacher, "L4-H16-F32", alphaMlm: 0);
        corpus.Student.eval();
        Assert.True(Math.Abs(corpus.Loss(mlmBatch).Loss.item<float>()) < 1e-7);
        // With it, the loss is exactly the student's (= the teacher's) own loss.
        var withTask = Homo(classifier, "L4-H16-F32");
        withTask.Student.eval();
        double own = TaskObjective.Compute(withTask.Student, Batch()).item<float>();
        Assert.True(own > 0.1);
        Assert.Equal(own, withTask.Loss(Batch()).Loss.item<float>(), 5);
        // A shallower target is not a copy: its hidden and attention terms are not zero (small at random init, where
        // each layer adds little to the residual stream, but far from the copies' zero).
        var shallow = Homo(classifier, "L2-H16-F32", alphaMlm: 0);
        shallow.Student.eval();
        float shallowLoss = shallow.Loss(Batch()).Loss.item<float>();
        Assert.True(shallowLoss > 1e-5, $"shallow loss {shallowLoss}");
    }

    [Fact]
    public void HomoDistilRefusesBadTargetsAndScoresWithOneLine()
    {
        using var teacher = BertTaskModel.Create(Config(4), BertTask.SequenceClassification);
        Assert.Contains("wider than the teacher", Assert.Throws<ArgumentException>(() => Homo(teacher, "L4-H64-A4")).Message);
        Assert.Contains("more than the teacher's 4", Assert.Throws<ArgumentException>(() => Homo(teacher, "L6-H16")).Message);
        Assert.Contains("do not divide", Assert.Throws<ArgumentException>(() => Homo(teacher, "L3-H16")).Message);
        Assert.Contains("not below the teacher", Assert.Throws<ArgumentException>(() => Homo(teacher, "100M")).Message);
        Assert.Contains("needs a target", Assert.Throws<ArgumentException>(() => new HomoDistilOptions().Validate()).Message);
        Assert.Contains("unknown importance score", Assert.Throws<ArgumentException>(() => new HomoDistilOptions { Target = "L4-H16", Score = (ImportanceScore)7 }.Validate()).Message);
        // Unlabeled batches (transfer data) need the task loss off.
        using (var scope = NewDisposeScope())
        {
            var unlabeled = Batch() with { Labels = [-1, -1, -1, -1] };
            Assert.Contains("alpha_mlm 0", Assert.Throws<InvalidOperationException>(() => Homo(teacher, "L4-H16").Loss(unlabeled)).Message);
            Assert.True(double.IsFinite(Homo(teacher, "L4-H16", alphaMlm: 0).Loss(unlabeled).Loss.item<float>()));
        }
        // A parameter count resolves to the widest model that fits.
        long budget = PruneTarget.Count(teacher.Config, BertTask.SequenceClassification, 4, 16, 2, 32);
        Assert.Equal(new TargetWidths(4, 16, 2, 32), Homo(teacher, budget.ToString()).Target);
    }
}
