using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.Evaluation;
using Distillery.Export;
using Distillery.Inference;
using Distillery.IO;
using Distillery.Models;
using Distillery.Text;
using Distillery.Training;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// Sentence embeddings (issue 20): the head's pooling and normalisation, sentence-transformers' folder layout, the ONNX
/// graph against TorchSharp, <see cref="SentenceEncoder"/>, the metrics and tasks on the shared data, and the
/// distillation run. Tiny models (hidden 32, 2 layers) built in the test.
/// </summary>
public sealed class SentenceEmbeddingTests
{
    static readonly string[] Sentences =
    [
        "a good film", "the movie was boring", "a great story , and fun", "bad", "what a novel !", "she lived in london",
        "the book was published in paris", "it is a good movie and a great book", "zebra quartz", "he wrote it",
    ];

    static BertForSentenceEmbedding TinyModel(long seed = 11)
    {
        manual_seed(seed);
        var model = (BertForSentenceEmbedding)BertTaskModel.Create(InferenceApiTests.Tiny(), BertTask.SentenceEmbedding);
        // Random LayerNorm and biases (as the parity fixture does), so pooling differences cannot hide in symmetric weights.
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("LayerNorm") || name.EndsWith(".bias", StringComparison.Ordinal)) p.add_(randn_like(p) * 0.1);
        model.eval();
        return model;
    }

    static (Tensor Ids, Tensor Mask) Ragged()
    {
        // Row 0: 7 real tokens; row 1: 4 real tokens then padding (ids 0).
        var ids = tensor(new long[] { 2, 9, 13, 11, 27, 14, 3, 2, 40, 19, 3, 0, 0, 0 }, [2, 7]);
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }, [2, 7]);
        return (ids, mask);
    }

    [Fact]
    public void MeanPoolingAveragesRealTokensOnlyAndVectorsHaveUnitLength()
    {
        using var model = TinyModel();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (ids, mask) = Ragged();
        var output = model.forward(new BertInputs(ids, mask));
        var vectors = output.Logits;                                                                   // [2, 32]
        Assert.Equal(new long[] { 2, 32 }, vectors.shape);
        // By hand: row 1's mean over its 4 real tokens, normalised.
        var hidden = output.Encoder.LastHiddenState;                                                   // [2, 7, 32]
        var mean = hidden[1].narrow(0, 0, 4).mean([0]);
        var expected = mean / mean.norm();
        Assert.True((vectors[1] - expected).abs().max().item<float>() < 1e-6f);
        Assert.True((vectors.norm(1) - 1).abs().max().item<float>() < 1e-6f);
        // The padded row equals the same text encoded alone (padding changes nothing).
        var alone = model.forward(new BertInputs(ids[1].narrow(0, 0, 4).unsqueeze(0), mask[1].narrow(0, 0, 4).unsqueeze(0))).Logits[0];
        Assert.True((vectors[1] - alone).abs().max().item<float>() < 1e-5f);

        // CLS pooling without normalisation is h[CLS] as it is.
        model.SentenceConfig = new SentenceEmbeddingConfig { Pooling = SentencePooling.Cls, Normalize = false };
        var cls = model.forward(new BertInputs(ids, mask)).Logits;
        Assert.Equal(0f, (cls - hidden.select(1, 0)).abs().max().item<float>());
    }

    [Fact]
    public void SavesInSentenceTransformersLayoutAndLoadsBack()
    {
        using var tmp = new TestData.TempDir();
        using var model = TinyModel();
        model.SentenceConfig = new SentenceEmbeddingConfig { Pooling = SentencePooling.Cls, Normalize = false, MaxSeqLength = 32 };
        BertCheckpoint.Save(model, tmp["st"], tokenizer: null);

        var modules = JsonNode.Parse(File.ReadAllText(tmp["st/modules.json"]))!.AsArray();
        Assert.Equal(["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"], modules.Select(m => m!["type"]!.GetValue<string>()));
        var pooling = JsonNode.Parse(File.ReadAllText(tmp["st/1_Pooling/config.json"]))!;
        Assert.Equal(32, pooling["word_embedding_dimension"]!.GetValue<int>());
        Assert.True(pooling["pooling_mode_cls_token"]!.GetValue<bool>());
        Assert.False(pooling["pooling_mode_mean_tokens"]!.GetValue<bool>());
        Assert.Equal(32, JsonNode.Parse(File.ReadAllText(tmp["st/sentence_bert_config.json"]))!["max_seq_length"]!.GetValue<int>());
        Assert.Equal("BertModel", JsonNode.Parse(File.ReadAllText(tmp["st/config.json"]))!["architectures"]![0]!.GetValue<string>());
        // transformers' BertModel keys (no "bert." prefix), as sentence-transformers saves the encoder.
        var tensors = Safetensors.Load(tmp["st/model.safetensors"]);
        Assert.Contains("embeddings.word_embeddings.weight", tensors.Keys);
        Assert.DoesNotContain(tensors.Keys, k => k.StartsWith("bert.", StringComparison.Ordinal));
        foreach (var t in tensors.Values) t.Dispose();

        var (loaded, report) = BertCheckpoint.Load(tmp["st"]);
        using (loaded)
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var embedding = Assert.IsType<BertForSentenceEmbedding>(loaded);
            Assert.Equal(model.SentenceConfig, embedding.SentenceConfig);
            Assert.Empty(report.Initialized);
            loaded.eval();
            var (ids, mask) = Ragged();
            Assert.Equal(0f, (model.forward(new BertInputs(ids, mask)).Logits - loaded.forward(new BertInputs(ids, mask)).Logits).abs().max().item<float>());
        }

        // The default (mean + Normalize) writes the Normalize module too.
        model.SentenceConfig = new SentenceEmbeddingConfig();
        BertCheckpoint.Save(model, tmp["mean"], tokenizer: null);
        Assert.Equal(3, JsonNode.Parse(File.ReadAllText(tmp["mean/modules.json"]))!.AsArray().Count);
        Assert.Equal(new SentenceEmbeddingConfig(), SentenceTransformersLayout.Read(tmp["mean"], 32));
    }

    [Fact]
    public void UnsupportedOrMalformedSentenceTransformersFilesAreOneLine()
    {
        using var tmp = new TestData.TempDir();
        using var model = TinyModel();
        BertCheckpoint.Save(model, tmp["st"], tokenizer: null);
        string poolingPath = tmp["st/1_Pooling/config.json"];
        string original = File.ReadAllText(poolingPath);

        File.WriteAllText(poolingPath, original.Replace("\"pooling_mode_max_tokens\": false", "\"pooling_mode_max_tokens\": true"));
        var max = Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"]));
        Assert.Equal($"{poolingPath}: pooling pooling_mode_mean_tokens + pooling_mode_max_tokens is not supported (mean or cls, one of them)", max.Message);

        File.WriteAllText(poolingPath, original.Replace("\"word_embedding_dimension\": 32", "\"word_embedding_dimension\": 384"));
        Assert.Equal($"{poolingPath}: word_embedding_dimension 384 differs from the encoder's hidden_size 32",
            Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"])).Message);
        File.WriteAllText(poolingPath, original);

        string modulesPath = tmp["st/modules.json"];
        File.WriteAllText(modulesPath, "[{\"idx\": 0, \"type\"");
        Assert.StartsWith($"{modulesPath}: not valid JSON", Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"])).Message);
        File.WriteAllText(modulesPath, """
            [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
             {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
             {"idx":2,"name":"2","path":"2_LayerNorm","type":"sentence_transformers.models.LayerNorm"}]
            """);
        Assert.Equal($"{modulesPath}: module sentence_transformers.models.LayerNorm is not supported (Distillery reads Transformer → Pooling → [Normalize] → [Dense → Normalize])",
            Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"])).Message);
        // A Dense module (distillery reduce writes them) whose folder is missing; two Normalize modules in a row.
        File.WriteAllText(modulesPath, """
            [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
             {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
             {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"}]
            """);
        Assert.Equal($"{Path.Combine(tmp["st"], "2_Dense", "config.json")}: missing (a sentence-transformers folder needs it)",
            Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"])).Message);
        File.WriteAllText(modulesPath, """
            [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
             {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
             {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"},
             {"idx":3,"name":"3","path":"3_Normalize","type":"sentence_transformers.models.Normalize"}]
            """);
        Assert.Contains("modules Normalize → Normalize after the pooling are not supported",
            Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"])).Message);
        File.WriteAllText(modulesPath, """
            [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
             {"idx":1,"name":"1","path":"../elsewhere","type":"sentence_transformers.models.Pooling"}]
            """);
        Assert.Contains("must be a folder inside the model folder", Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["st"])).Message);
    }

    [Theory]
    [InlineData(OnnxGraphKind.Fused)]
    [InlineData(OnnxGraphKind.Plain)]
    public void OnnxGraphReturnsTheTorchSharpVectors(OnnxGraphKind graph)
    {
        using var tmp = new TestData.TempDir();
        using var model = TinyModel();
        string dir = tmp["model"];
        InferenceApiTests.SaveTiny(dir, BertTask.SentenceEmbedding);   // for the tokenizer
        var tokenizer = BertTextTokenizer.FromDirectory(dir);
        var batch = tokenizer.EncodeBatch(Sentences.Select(s => (s, (string?)null)).ToList(), maxLength: 32);

        OnnxExporter.Export(model, tmp["fp32.onnx"], new OnnxExportOptions { Graph = graph });
        using (var session = new InferenceSession(tmp["fp32.onnx"]))
        {
            Assert.Equal([OnnxExporter.SentenceEmbedding], session.OutputMetadata.Keys);
            var parity = OnnxParity.Compare(model, session, batch);
            Assert.True(parity.MinCosine >= 0.9999, $"{graph} fp32: lowest cosine {parity.MinCosine}");
            Assert.True(parity.MaxAbsDiff < 1e-4, $"{graph} fp32: max |diff| {parity.MaxAbsDiff}");
        }
        // int8: pooling and normalisation stay fp32; the quantized encoder moves the vectors only a little.
        OnnxExporter.Export(model, tmp["int8.onnx"], new OnnxExportOptions { Graph = graph, Int8 = true });
        using (var session = new InferenceSession(tmp["int8.onnx"]))
        {
            var parity = OnnxParity.Compare(model, session, batch);
            Assert.True(parity.MinCosine is >= 0.98 and < 1.0 + 1e-6, $"{graph} int8: lowest cosine {parity.MinCosine}");
        }
    }

    [Fact]
    public void SentenceEncoderGivesTheSameVectorsOnEveryBackendOneByOneBatchedAndInParallel()
    {
        using var tmp = new TestData.TempDir();
        InferenceApiTests.SaveTiny(tmp["model"], BertTask.SentenceEmbedding);
        InferenceApiTests.ExportTiny(tmp["model"], tmp["onnx/model.onnx"]);
        using var folder = SentenceEncoder.Load(tmp["model"], new InferenceOptions { BatchSize = 3 });
        using var onnx = SentenceEncoder.Load(tmp["onnx/model.onnx"]);
        Assert.Equal(InferenceBackend.OnnxRuntime, onnx.Backend);
        Assert.Equal(32, folder.Dimension);
        Assert.Equal(40, folder.MaxLength);   // min(256, the tiny model's 40 positions)

        var single = Sentences.Select(folder.Encode).ToArray();
        var batched = folder.EncodeBatch(Sentences);
        var viaOnnx = onnx.EncodeBatch(Sentences);
        for (int i = 0; i < Sentences.Length; i++)
        {
            Assert.Equal(1.0, Math.Sqrt(single[i].Sum(x => (double)x * x)), 5);
            Assert.True(single[i].Zip(batched[i]).All(p => Math.Abs(p.First - p.Second) < 1e-5f), $"sentence {i}: batched differs");
            Assert.True(SentenceEncoder.Similarity(single[i], viaOnnx[i]) >= 0.9999, $"sentence {i}: ONNX cosine {SentenceEncoder.Similarity(single[i], viaOnnx[i])}");
        }
        var parallel = new float[Sentences.Length * 4][];
        Parallel.For(0, parallel.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => parallel[i] = folder.Encode(Sentences[i % Sentences.Length]));
        for (int i = 0; i < parallel.Length; i++) Assert.Equal(single[i % Sentences.Length], parallel[i]);
    }

    [Fact]
    public void SentenceEncoderRefusesAnExportOfAnotherHead()
    {
        using var tmp = new TestData.TempDir();
        InferenceApiTests.SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        InferenceApiTests.ExportTiny(tmp["cls"], tmp["onnx/cls.onnx"]);
        var e = Assert.Throws<InvalidDataException>(() => SentenceEncoder.Load(tmp["onnx/cls.onnx"]));
        Assert.Equal($"{tmp["onnx/cls.onnx"]}: is a BertForSequenceClassification export, not BertModel", e.Message);
    }

    [Fact]
    public void RetrievalThresholdAndSimilarityMetricsFollowTheirDefinitions()
    {
        float[] V(params float[] x) => x;
        var documents = new[] { V(1, 0), V(0, 1), V(1, 1) };
        // Scores q·d/‖d‖: q0's d0 ranks first; q1's d0 third (behind d1 and d2); q2's d2 (0.71) second, behind d1 (0.8).
        var queries = new[] { V(1, 0), V(0, 1), V(0.2f, 0.8f) };
        var scores = EmbeddingMetrics.Retrieval(queries, documents, [0, 0, 2]);
        Assert.Equal(1.0 / 3, scores.RecallAt1, 12);
        Assert.Equal(1.0, scores.RecallAt10, 12);
        Assert.Equal((1 + 1.0 / 3 + 1.0 / 2) / 3, scores.Mrr, 12);

        // Labels separable at 0.5: the threshold lies between 0.4 and 0.6 and is right on every pair.
        var threshold = EmbeddingMetrics.BestThreshold([0.9, 0.6, 0.4, 0.1, 0.7], [1, 1, 0, 0, 1]);
        Assert.Equal(0.5, threshold.Threshold, 12);
        Assert.Equal(1.0, threshold.Accuracy, 12);
        // One outlier: the best rule misses exactly one pair.
        Assert.Equal(0.8, EmbeddingMetrics.BestThreshold([0.9, 0.6, 0.4, 0.1, 0.95], [1, 1, 0, 0, 0]).Accuracy, 12);

        Assert.Equal(1.0, EmbeddingMetrics.Cosine(V(1, 2), V(2, 4)), 12);
        Assert.True(double.IsNaN(EmbeddingMetrics.Cosine(V(0, 0), V(1, 0))));
    }

    /// <summary>
    /// The first <paramref name="rows"/> rows of the shared STS-B dev and MRPC train/dev files, and SQuAD dev's first
    /// <paramref name="articles"/> articles, under <paramref name="dir"/> (real data, sized for a test).
    /// </summary>
    internal static (string Glue, string Squad) SharedSample(string dir, int rows, int articles)
    {
        foreach (var (task, split) in new[] { ("STS-B", "dev"), ("MRPC", "train"), ("MRPC", "dev") })
        {
            Directory.CreateDirectory(Path.Combine(dir, "glue", task));
            File.WriteAllLines(Path.Combine(dir, "glue", task, split + ".tsv"), File.ReadLines(TestData.Path("glue", task, split + ".tsv")).Take(rows + 1));
        }
        var squad = JsonNode.Parse(File.ReadAllText(TestData.Path("squad", "dev-v1.1.json")))!;
        var kept = squad["data"]!.AsArray().Take(articles).Select(a => a!.DeepClone()).ToArray();
        squad["data"] = new JsonArray(kept);
        File.WriteAllText(Path.Combine(dir, "squad.json"), squad.ToJsonString());
        return (Path.Combine(dir, "glue"), Path.Combine(dir, "squad.json"));
    }

    [Fact]
    public void EmbeddingTasksScoreOracleVectorsPerfectlyOnTheSharedData()
    {
        var tokenizer = BertTextTokenizer.FromVocab(TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt"));
        using var tmp = new TestData.TempDir();
        var (glue, squadPath) = SharedSample(tmp.Dir, rows: 300, articles: 3);
        int Length(string text) => tokenizer.Encode(text, null, EmbeddingTasks.DefaultMaxLength).Length;
        // The tasks list pairs by their longer text and texts by length (a stable order); the oracles follow it.
        IEnumerable<Data.GlueExample> Ordered(Data.GlueTask task, string split) =>
            Data.Glue.Load(task, Data.Glue.SplitPath(glue, task, split)).OrderBy(e => Math.Max(Length(e.TextA), Length(e.TextB!)));

        // STS-B dev: pair i's vectors at angle (5 − score)·18°, so cosine rises with the gold score: Spearman 1.
        var sts = TaskPipeline.Prepare(new TaskSpec { Name = TaskName.StsEmbed, Data = glue }, 42, tokenizer, 512, needTrain: false);
        var stsGold = Ordered(Data.GlueTask.StsB, "dev").Select(e => e.Score).ToArray();
        Assert.Equal(2 * 300, sts.Eval.Count);
        var stsVectors = stsGold.SelectMany(s => new[] { new[] { 1f, 0f }, new[] { MathF.Cos((float)(5 - s) * MathF.PI / 10), MathF.Sin((float)(5 - s) * MathF.PI / 10) } }).ToList();
        Assert.Equal(1.0, sts.Score(stsVectors)["spearman"], 9);
        Assert.Equal("spearman", sts.PrimaryMetric);
        // Angles s·18° instead: cosine falls as the gold score rises, perfectly wrong.
        var reversed = stsGold.SelectMany(s => new[] { new[] { 1f, 0f }, new[] { MathF.Cos((float)s * MathF.PI / 10), MathF.Sin((float)s * MathF.PI / 10) } }).ToList();
        Assert.Equal(-1.0, sts.Score(reversed)["spearman"], 9);

        // MRPC: paraphrases get identical vectors, the rest orthogonal ones: a threshold from train is right on all of dev.
        var mrpc = TaskPipeline.Prepare(new TaskSpec { Name = TaskName.MrpcEmbed, Data = glue }, 42, tokenizer, 512, needTrain: false);
        var labels = new[] { "train", "dev" }.SelectMany(split => Ordered(Data.GlueTask.Mrpc, split).Select(e => e.Label)).ToArray();
        Assert.Equal(2 * (300 + 300), mrpc.Eval.Count);
        var mrpcScores = mrpc.Score(labels.SelectMany(l => new[] { new[] { 1f, 0f }, l == 1 ? new[] { 1f, 0f } : new[] { 0f, 1f } }).ToList());
        Assert.Equal(1.0, mrpcScores["accuracy"], 12);
        Assert.Equal(1.0, mrpcScores["f1"], 12);

        // SQuAD retrieval: random paragraph vectors; a question carries its own paragraph's (MRR 1) or the next one's (recall@1 0).
        var squad = TaskPipeline.Prepare(new TaskSpec { Name = TaskName.SquadRetrieval, Data = squadPath }, 42, tokenizer, 512, needTrain: false);
        var questions = Data.Squad.Load(squadPath);
        var contexts = questions.Select(q => q.Context).Distinct().OrderBy(Length).ToList();
        questions = questions.OrderBy(q => Length(q.Question)).ToList();
        Assert.Equal(contexts.Count + questions.Count, squad.Eval.Count);
        Assert.InRange(contexts.Count, 50, 200);
        var random = new Random(5);
        var paragraphVectors = contexts.Select(_ => Enumerable.Range(0, 48).Select(_ => (float)random.NextDouble() - 0.5f).ToArray()).ToList();
        var index = contexts.Select((c, i) => (c, i)).ToDictionary(x => x.c, x => x.i);
        var right = paragraphVectors.Concat(questions.Select(q => paragraphVectors[index[q.Context]])).ToList();
        Assert.Equal(1.0, squad.Score(right)["mrr"], 12);
        var wrong = paragraphVectors.Concat(questions.Select(q => paragraphVectors[(index[q.Context] + 1) % contexts.Count])).ToList();
        Assert.Equal(0.0, squad.Score(wrong)["recall_at_1"], 12);

        Assert.Equal("sts-embed evaluates sentence embeddings zero-shot and has no training set; distil onto it with unlabeled text (--transfer-data FILES)",
            Assert.Throws<ArgumentException>(() => TaskPipeline.Prepare(new TaskSpec { Name = TaskName.StsEmbed, Data = glue }, 42, tokenizer, 512, needTrain: true)).Message);
        Assert.Equal(TaskName.SquadRetrieval, TaskNames.Parse("squad-retrieval"));
        Assert.Equal(TaskName.Mrpc, TaskNames.Parse("mrpc"));
        Assert.Equal("mrpc-embed", TaskNames.ShortName(TaskNames.Parse("MRPC-embed")));
    }

    [Fact]
    public void EmbeddingDistillationRunWritesASentenceTransformersStudentAndResumesToTheSameWeights()
    {
        using var tmp = new TestData.TempDir();
        InferenceApiTests.SaveTiny(tmp["teacher"], BertTask.SentenceEmbedding);
        var (glue, _) = SharedSample(tmp["data"], rows: 100, articles: 1);
        File.WriteAllLines(tmp["sentences.txt"], Enumerable.Range(0, 40).Select(i => Sentences[i % Sentences.Length] + (i % 3 == 0 ? " , the end" : "")));
        DistillOptions Options(string outDir) => new()
        {
            Method = new EmbeddingDistillationOptions { CosineWeight = 0.5 },
            Teacher = tmp["teacher"],
            Task = new TaskSpec { Name = TaskName.StsEmbed, Data = glue, MaxLength = 32 },
            TransferData = [tmp["sentences.txt"]],
            Out = outDir,
            Trainer = new TrainerOptions { MaxSteps = 6, BatchSize = 8, LearningRate = 1e-3, CheckpointEvery = 2, LogEvery = 1, Precision = ComputePrecision.Float32 },
        };
        var metrics = Distiller.Run(Options(tmp["whole"]));
        Assert.Equal(6, metrics["steps"]!.GetValue<int>());
        Assert.True(double.IsFinite(metrics["dev"]!["spearman"]!.GetValue<double>()));
        Assert.True(File.Exists(tmp["whole/run_config.json"]));
        Assert.Equal("embedding", JsonNode.Parse(File.ReadAllText(tmp["whole/run_config.json"]))!["options"]!["method"]!.GetValue<string>());
        Assert.True(SentenceTransformersLayout.IsPresent(tmp["whole"]));
        Assert.Equal(1, BertCheckpoint.ReadConfig(tmp["whole"]).NumHiddenLayers);   // every other layer of 2

        var kill = new RunEvents { StageProgress = (done, _) => { if (done == 3) throw new OperationCanceledException("killed"); } };
        Assert.Throws<OperationCanceledException>(() => Distiller.Run(Options(tmp["resumed"]), events: kill));
        Distiller.Run(Options(tmp["resumed"]), resume: true);
        static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));
        Assert.Equal(Hash(tmp["whole/model.safetensors"]), Hash(tmp["resumed/model.safetensors"]));

        // A classification task is refused before anything loads.
        var e = Assert.Throws<ArgumentException>(() => Distiller.Run(Options(tmp["cls"]) with { Task = new TaskSpec { Name = TaskName.Sst2, Data = TestData.Path("glue") } }));
        Assert.StartsWith("embedding distils sentence embeddings", e.Message);
    }

    [Fact]
    public void ReduceFitsAnOrthonormalPcaProjectionThatKeepsTheMostEnergy()
    {
        // Vectors with most of their energy in 3 known directions: the fit finds that subspace, rows orthonormal.
        using var scope = NewDisposeScope();
        manual_seed(5);
        var basis = linalg.qr(randn(16, 16)).Q.narrow(1, 0, 3).t();                     // [3, 16] orthonormal rows
        var x = randn(400, 3).matmul(basis) * 3 + randn(400, 16) * 0.05;                // [400, 16]
        x = BertForSentenceEmbedding.L2Normalize(x);
        var (p3, kept3) = EmbeddingReduction.Fit(x, 3);
        Assert.Equal(new long[] { 3, 16 }, p3.shape);
        Assert.True((p3.matmul(p3.t()) - eye(3)).abs().max().item<float>() < 1e-5f, "rows orthonormal");
        // The subspace is the planted one: projecting the basis onto it keeps (almost) all of it.
        Assert.True(basis.matmul(p3.t()).pow(2).sum().item<float>() > 2.99f);
        // Energy kept: the top singular values' share of ‖X‖², and it grows with D.
        var sv = linalg.svdvals(x.to(ScalarType.Float64)).pow(2);
        Assert.Equal(sv.narrow(0, 0, 3).sum().item<double>() / sv.sum().item<double>(), kept3, 6);
        Assert.True(kept3 > 0.98);
        var (p1, kept1) = EmbeddingReduction.Fit(x, 1);
        Assert.True(kept1 < kept3);
        Assert.Equal(p3[0].abs().argmax().item<long>(), p1[0].abs().argmax().item<long>());
        Assert.True(p1[0].max().item<float>() >= -p1[0].min().item<float>(), "sign fixed: the largest-magnitude entry is positive");
        p3.Dispose();
        p1.Dispose();
    }

    [Fact]
    public void ReducedModelSavesADenseModuleLoadsBackAndExportsToOnnx()
    {
        using var tmp = new TestData.TempDir();
        InferenceApiTests.SaveTiny(tmp["model"], BertTask.SentenceEmbedding);
        File.WriteAllLines(tmp["sentences.txt"], Enumerable.Range(0, 60).Select(i => Sentences[i % Sentences.Length] + (i % 4 == 0 ? "" : $" {i % 7}")));
        var options = new EmbeddingReductionOptions { Model = tmp["model"], Out = tmp["reduced"], Dimension = 8, Sentences = tmp["sentences.txt"] };
        var record = EmbeddingReduction.Run(options);
        Assert.Equal(8, record["dimension"]!.GetValue<int>());
        Assert.Equal(32, record["from_dimension"]!.GetValue<int>());
        Assert.InRange(record["energy_kept"]!.GetValue<double>(), 0.2, 1.0);

        // sentence-transformers' layout: Normalize → Dense (no bias, identity) → Normalize, the weight as linear.weight [D, H].
        var modules = JsonNode.Parse(File.ReadAllText(tmp["reduced/modules.json"]))!.AsArray();
        Assert.Equal(["Transformer", "Pooling", "Normalize", "Dense", "Normalize"], modules.Select(m => m!["type"]!.GetValue<string>().Split('.')[^1]));
        Assert.Equal(["", "1_Pooling", "2_Normalize", "3_Dense", "4_Normalize"], modules.Select(m => m!["path"]!.GetValue<string>()));
        var dense = JsonNode.Parse(File.ReadAllText(tmp["reduced/3_Dense/config.json"]))!;
        Assert.Equal(32, dense["in_features"]!.GetValue<int>());
        Assert.Equal(8, dense["out_features"]!.GetValue<int>());
        Assert.False(dense["bias"]!.GetValue<bool>());
        Assert.Equal("torch.nn.modules.linear.Identity", dense["activation_function"]!.GetValue<string>());
        var weights = Safetensors.Load(tmp["reduced/3_Dense/model.safetensors"]);
        Assert.Equal(["linear.weight"], weights.Keys);
        Assert.Equal(new long[] { 8, 32 }, weights["linear.weight"].shape);

        // Loaded: unit vectors of 8 dimensions, normalise(normalise(pool(h)) Pᵀ) by hand; the encoder as it was.
        var (loaded, _) = BertCheckpoint.Load(tmp["reduced"]);
        var (original, _) = BertCheckpoint.Load(tmp["model"], BertTask.SentenceEmbedding);
        using (loaded)
        using (original)
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var reduced = Assert.IsType<BertForSentenceEmbedding>(loaded);
            Assert.Equal(8, reduced.EmbeddingDimension);
            Assert.Equal(8 * 32, ParameterCounts.Of(reduced).Total - ParameterCounts.Of(original).Total);
            loaded.eval();
            original.eval();
            var (ids, mask) = Ragged();
            var full = original.forward(new BertInputs(ids, mask)).Logits;                                          // [2, 32]
            var expected = BertForSentenceEmbedding.L2Normalize(BertForSentenceEmbedding.L2Normalize(full).matmul(weights["linear.weight"].t()));
            var got = loaded.forward(new BertInputs(ids, mask)).Logits;                                             // [2, 8]
            Assert.Equal(new long[] { 2, 8 }, got.shape);
            Assert.True((got - expected).abs().max().item<float>() < 1e-6f);
        }
        foreach (var t in weights.Values) t.Dispose();

        // ONNX: the projection is in the graph; the vectors equal TorchSharp's; the encoder API reports 8 dimensions.
        InferenceApiTests.ExportTiny(tmp["reduced"], tmp["onnx/model.onnx"]);
        using var folder = SentenceEncoder.Load(tmp["reduced"]);
        using var onnx = SentenceEncoder.Load(tmp["onnx/model.onnx"]);
        Assert.Equal(8, folder.Dimension);
        Assert.Equal(8, onnx.Dimension);
        var a = folder.EncodeBatch(Sentences);
        var b = onnx.EncodeBatch(Sentences);
        for (int i = 0; i < Sentences.Length; i++)
        {
            Assert.Equal(1.0, Math.Sqrt(a[i].Sum(v => (double)v * v)), 5);
            Assert.True(SentenceEncoder.Similarity(a[i], b[i]) >= 0.9999, $"sentence {i}: ONNX cosine {SentenceEncoder.Similarity(a[i], b[i])}");
        }

        // Refused with one line: a reduced model again, too many dimensions, its own input as output, an existing output.
        Assert.Contains("already projected to 8 dimensions", Assert.Throws<ArgumentException>(() => EmbeddingReduction.Run(options with { Model = tmp["reduced"], Out = tmp["again"] })).Message);
        Assert.Contains("--dim 32 keeps nothing out", Assert.Throws<ArgumentException>(() => EmbeddingReduction.Run(options with { Dimension = 32, Out = tmp["wide"] })).Message);
        Assert.ThrowsAny<Exception>(() => EmbeddingReduction.Run(options with { Out = tmp["model"] }));
        Assert.ThrowsAny<Exception>(() => EmbeddingReduction.Run(options));
        Assert.True(File.Exists(tmp["model/config.json"]) && !Directory.Exists(tmp["model/3_Dense"]), "the input is untouched");

        // A Dense module this reader does not support is one line naming its file.
        string densePath = tmp["reduced/3_Dense/config.json"];
        File.WriteAllText(densePath, File.ReadAllText(densePath).Replace("\"bias\": false", "\"bias\": true"));
        Assert.Equal($"{densePath}: a Dense module with a bias is not supported (Distillery reads bias false, identity activation)",
            Assert.Throws<InvalidDataException>(() => BertCheckpoint.Load(tmp["reduced"])).Message);
    }

    [Fact]
    public void ARecipeGoesFromTheTeacherToAReducedInt8OnnxStudentInOneRun()
    {
        using var tmp = new TestData.TempDir();
        InferenceApiTests.SaveTiny(tmp["teacher"], BertTask.SentenceEmbedding);
        var (glue, _) = SharedSample(tmp["data"], rows: 60, articles: 1);
        File.WriteAllLines(tmp["sentences.txt"], Enumerable.Range(0, 40).Select(i => Sentences[i % Sentences.Length] + $" {i}"));
        string Q(string path) => JsonValue.Create(path)!.ToJsonString();
        File.WriteAllText(tmp["recipe.json"], $$"""
            { "name": "embed", "stages": [
              { "stage": "distill", "method": "embedding", "teacher": {{Q(tmp["teacher"])}}, "task": "sts-embed", "data": {{Q(glue)}},
                "max_length": 32, "transfer_data": [{{Q(tmp["sentences.txt"])}}], "out": {{Q(tmp["l1"])}},
                "trainer": { "batch_size": 8, "learning_rate": 1e-3, "max_steps": 3, "precision": "fp32" } },
              { "stage": "reduce", "dimension": 8, "sentences": {{Q(tmp["sentences.txt"])}}, "out": {{Q(tmp["l1-d8"])}} },
              { "stage": "export", "int8": true, "out": {{Q(tmp["onnx/model.int8.onnx"])}} },
              { "stage": "export", "out": {{Q(tmp["onnx-fp32/model.onnx"])}} } ] }
            """);
        var recipe = Recipes.Recipe.Load(tmp["recipe.json"]);
        // Both exports read the reduced model (an export's graph is not the next stage's input).
        Assert.Equal(tmp["l1-d8"], Assert.IsType<Recipes.ExportStageOptions>(recipe.Stages[3].Options).Model);
        var results = recipe.Run();
        Assert.Equal(8, results[1]!["dimension"]!.GetValue<int>());
        Assert.True(results[2]!["int8"]!.GetValue<bool>());
        Assert.True(results[3]!["check_min_cosine"]!.GetValue<double>() >= 0.9999);
        using (var encoder = SentenceEncoder.Load(tmp["onnx/model.int8.onnx"]))
        {
            Assert.Equal(InferenceBackend.OnnxRuntime, encoder.Backend);
            Assert.Equal(8, encoder.Dimension);
        }
        // Run again: every stage is complete and skipped, the graphs untouched.
        var written = File.GetLastWriteTimeUtc(tmp["onnx/model.int8.onnx"]);
        var skipped = new List<bool>();
        Recipes.Recipe.Load(tmp["recipe.json"]).Run(starting: (_, done) => skipped.Add(done));
        Assert.Equal([true, true, true, true], skipped);
        Assert.Equal(written, File.GetLastWriteTimeUtc(tmp["onnx/model.int8.onnx"]));

        // An export stage must write a .onnx file: one line naming the stage.
        File.WriteAllText(tmp["bad.json"], $$"""{ "stages": [ { "stage": "export", "model": {{Q(tmp["l1"])}}, "out": {{Q(tmp["graph"])}} } ] }""");
        var e = Assert.Throws<InvalidDataException>(() => Recipes.Recipe.Load(tmp["bad.json"]));
        Assert.Equal($"{tmp["bad.json"]}: stages[0] (export): out \"{tmp["graph"]}\" must be a .onnx file", e.Message);
    }

    [Fact]
    public void AProjectionSetInsideADisposeScopeOutlivesIt()
    {
        using var model = TinyModel();
        using (var scope = NewDisposeScope())
        {
            model.Projection = randn(4, 32);
            model.Projection = model.Projection;   // setting it to itself keeps it
        }
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var (ids, mask) = Ragged();
            var vectors = model.forward(new BertInputs(ids, mask)).Logits;
            Assert.Equal(new long[] { 2, 4 }, vectors.shape);
            Assert.True((vectors.norm(1) - 1).abs().max().item<float>() < 1e-6f);
        }
        Assert.Throws<ArgumentException>(() => model.Projection = zeros(4, 31));
        model.Projection = null;
        Assert.Equal(32, model.EmbeddingDimension);
    }

    [Fact]
    public void EmbeddingDistillationFromAReducedTeacherSharesTheTeachersVectorsThroughTheCache()
    {
        using var tmp = new TestData.TempDir();
        InferenceApiTests.SaveTiny(tmp["teacher"], BertTask.SentenceEmbedding);
        var (glue, _) = SharedSample(tmp["data"], rows: 60, articles: 1);
        File.WriteAllLines(tmp["sentences.txt"], Enumerable.Range(0, 40).Select(i => Sentences[i % Sentences.Length] + $" {i % 9}"));
        EmbeddingReduction.Run(new EmbeddingReductionOptions { Model = tmp["teacher"], Out = tmp["teacher-d8"], Dimension = 8, Sentences = tmp["sentences.txt"] });
        DistillOptions Options(string outDir) => new()
        {
            Method = new EmbeddingDistillationOptions(), Teacher = tmp["teacher-d8"],
            Task = new TaskSpec { Name = TaskName.StsEmbed, Data = glue, MaxLength = 32 },
            TransferData = [tmp["sentences.txt"]], TeacherCache = tmp["cache"], Out = outDir,
            Trainer = new TrainerOptions { MaxSteps = 4, BatchSize = 8, LearningRate = 1e-3, Precision = ComputePrecision.Float32 },
        };
        var messages = new List<string>();
        Distiller.Run(Options(tmp["a"]), events: new RunEvents { Message = messages.Add });
        Assert.Contains(messages, m => m.StartsWith("teacher vectors on 40 examples computed once", StringComparison.Ordinal));
        var shard = Assert.Single(Directory.GetFiles(tmp["cache"]));
        messages.Clear();
        Distiller.Run(Options(tmp["b"]), events: new RunEvents { Message = messages.Add });
        Assert.Contains(messages, m => m.StartsWith("teacher vectors on 40 examples read from", StringComparison.Ordinal));
        static string Hash(string file) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));
        Assert.Equal(Hash(tmp["a/model.safetensors"]), Hash(tmp["b/model.safetensors"]));

        // The shard holds the reduced teacher's 8-dimensional vectors of the sentences; the student inherits the
        // projection (frozen) and gives vectors of the same length.
        var tensors = Safetensors.Load(shard);
        Assert.Equal(new long[] { 40, 8 }, tensors[TeacherLogitCache.TensorName].shape);
        foreach (var t in tensors.Values) t.Dispose();
        var (student, _) = BertCheckpoint.Load(tmp["a"]);
        using (student) Assert.Equal(8, Assert.IsType<BertForSentenceEmbedding>(student).EmbeddingDimension);
        Assert.True(File.Exists(tmp["a/3_Dense/model.safetensors"]));
        Assert.Equal(Hash(tmp["teacher-d8/3_Dense/model.safetensors"]), Hash(tmp["a/3_Dense/model.safetensors"]));
    }
}
