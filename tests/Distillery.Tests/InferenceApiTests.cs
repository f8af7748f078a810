using System.Collections.Concurrent;
using Distillery.Export;
using Distillery.Inference;
using Distillery.IO;
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// The public inference API (<see cref="TextClassifier"/>, <see cref="QuestionAnswerer"/>) on tiny models saved to a
/// temporary folder: parity with the model's own forward pass, batch = one by one, many threads = sequential, bf16 close
/// to fp32, and one clear error per bad input.
/// </summary>
public sealed class InferenceApiTests
{
    // A 100-odd token vocabulary: whole words for the test sentences, letters and ## letters for anything else.
    static readonly string[] Words =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "!", "the", "a", "film", "movie", "good", "bad", "great",
        "boring", "fun", "who", "wrote", "it", "was", "written", "by", "jane", "austen", "in", "is", "what", "of", "and",
        "story", "book", "novel", "year", "published", "city", "london", "paris", "she", "he", "lived", "where", "when",
    ];
    static readonly string[] Vocab = [.. Words, .. "bcdefghijklmnopqrstuvwxyz0123456789".Select(c => c.ToString()), .. "abcdefghijklmnopqrstuvwxyz0123456789".Select(c => "##" + c)];

    internal static BertConfig Tiny(int labels = 3) => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: Vocab.Length) with
    {
        MaxPositionEmbeddings = 40,
        Labels = labels == 3 ? ["negative", "positive", "neutral"] : Enumerable.Range(0, labels).Select(i => $"LABEL_{i}").ToList(),
        HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,
    };

    /// <summary>Writes a tiny model of <paramref name="task"/> with its tokenizer to <paramref name="dir"/>.</summary>
    internal static void SaveTiny(string dir, BertTask task, int labels = 3, bool withTokenizer = true, long seed = 11)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), Vocab);
        var tokenizer = BertTextTokenizer.FromVocab(Path.Combine(dir, "vocab.txt"));
        manual_seed(seed);
        using var model = BertTaskModel.Create(Tiny(labels), task);
        BertCheckpoint.Save(model, dir, withTokenizer ? tokenizer : null);
        if (!withTokenizer) File.Delete(Path.Combine(dir, "vocab.txt"));
    }

    /// <summary>
    /// Exports the model folder <paramref name="dir"/> to <paramref name="onnxPath"/> with its tokenizer files beside it
    /// (as <c>distillery export onnx</c> lays them out), unless <paramref name="withTokenizer"/> is false.
    /// </summary>
    internal static void ExportTiny(string dir, string onnxPath, bool int8 = false, bool withTokenizer = true, Int8Scheme scheme = Int8Quantization.DefaultScheme)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(onnxPath)!);
        var (model, _) = BertCheckpoint.Load(dir);
        using (model) OnnxExporter.Export(model, onnxPath, new OnnxExportOptions { Int8 = int8, Int8Scheme = scheme });
        if (withTokenizer)
            foreach (string file in new[] { "vocab.txt", "tokenizer_config.json" })
                if (File.Exists(Path.Combine(dir, file))) File.Copy(Path.Combine(dir, file), Path.Combine(Path.GetDirectoryName(onnxPath)!, file), overwrite: true);
    }

    static readonly string[] Sentences =
    [
        "a good film", "the movie was boring", "a great story , and fun", "bad", "what a novel !", "she lived in london",
        "the book was published in paris", "it is a good movie and a great book", "zebra quartz", "he wrote it",
    ];

    static void AssertClose(Classification expected, Classification actual, double tolerance)
    {
        Assert.Equal(expected.Label, actual.Label);
        Assert.Equal(expected.Probabilities.Count, actual.Probabilities.Count);
        for (int i = 0; i < expected.Probabilities.Count; i++)
            Assert.True(Math.Abs(expected.Probabilities[i].Probability - actual.Probabilities[i].Probability) <= tolerance,
                $"label {i}: {expected.Probabilities[i].Probability} vs {actual.Probabilities[i].Probability}");
    }

    [Fact]
    public void PredictEqualsTheModelsOwnForward()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        using var classifier = TextClassifier.Load(tmp["cls"]);
        Assert.Equal(["negative", "positive", "neutral"], classifier.Labels);
        Assert.Equal(InferenceBackend.TorchSharp, classifier.Backend);
        var (model, _) = BertCheckpoint.Load(tmp["cls"]);
        using (model)
        {
            model.eval();
            var tokenizer = BertTextTokenizer.FromDirectory(tmp["cls"]);
            foreach (var (a, b) in new (string, string?)[] { ("a good film", null), ("who wrote it ?", "jane austen wrote it") })
            {
                var encoded = tokenizer.Encode(a, b);
                float[] logits;
                using (no_grad())
                using (var scope = NewDisposeScope())
                {
                    var ids = tensor(encoded.InputIds.Select(i => (long)i).ToArray(), [1, encoded.Length]);
                    var types = tensor(encoded.TokenTypeIds.Select(i => (long)i).ToArray(), [1, encoded.Length]);
                    logits = model.forward(new BertInputs(ids, TokenTypeIds: types)).Logits[0].data<float>().ToArray();
                }
                var expected = logits.Select(x => Math.Exp(x)).ToArray();
                var result = classifier.Predict(a, b);
                Assert.Equal(Array.IndexOf(logits, logits.Max()), result.LabelIndex);
                Assert.Equal(classifier.Labels[result.LabelIndex], result.Label);
                for (int i = 0; i < 3; i++) Assert.Equal(expected[i] / expected.Sum(), result.Probabilities[i].Probability, 5);
                Assert.False(result.Truncated);
            }
        }
    }

    [Fact]
    public void RegressionGivesAScore()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["reg"], BertTask.SequenceClassification, labels: 1);
        using var classifier = TextClassifier.Load(tmp["reg"]);
        Assert.True(classifier.IsRegression);
        var result = classifier.Predict("a good film", "a great movie");
        Assert.Null(result.Label);
        Assert.Empty(result.Probabilities);
        Assert.NotNull(result.Score);
        Assert.True(double.IsFinite(result.Score!.Value));
    }

    [Fact]
    public void PredictBatchEqualsPredictOneByOne()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        using var classifier = TextClassifier.Load(tmp["cls"], new InferenceOptions { BatchSize = 4 });   // 10 texts: 3 batches, padded
        var batch = classifier.PredictBatch(Sentences);
        Assert.Equal(Sentences.Length, batch.Count);
        for (int i = 0; i < Sentences.Length; i++) AssertClose(classifier.Predict(Sentences[i]), batch[i], 1e-5);

        var pairs = Sentences.Select((s, i) => (s, (string?)Sentences[(i + 3) % Sentences.Length])).ToList();
        var pairBatch = classifier.PredictBatch(pairs);
        for (int i = 0; i < pairs.Count; i++) AssertClose(classifier.Predict(pairs[i].Item1, pairs[i].Item2), pairBatch[i], 1e-5);
        Assert.Empty(classifier.PredictBatch(Array.Empty<string>()));
    }

    [Fact]
    public void ParallelCallsGiveTheSequentialResults()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        SaveTiny(tmp["qa"], BertTask.QuestionAnswering);
        using var classifier = TextClassifier.Load(tmp["cls"]);
        using var answerer = QuestionAnswerer.Load(tmp["qa"]);
        string context = string.Join(" ", Enumerable.Repeat("the novel was written by jane austen in london .", 6));   // several windows
        string[] questions = ["who wrote it ?", "where was it written ?", "what is the book ?"];

        var sequential = Sentences.Select(s => classifier.Predict(s)).ToArray();
        var sequentialBatch = classifier.PredictBatch(Sentences);
        var sequentialAnswers = questions.Select(q => answerer.Answer(q, context)).ToArray();
        Assert.True(sequentialAnswers[0].Windows > 1);

        const int calls = 240;
        var single = new Classification[calls];
        var batches = new IReadOnlyList<Classification>[calls / 10];
        var answers = new AnswerSpan[calls];
        var errors = new ConcurrentQueue<Exception>();
        Parallel.For(0, calls, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            try
            {
                single[i] = classifier.Predict(Sentences[i % Sentences.Length]);
                if (i % 10 == 0) batches[i / 10] = classifier.PredictBatch(Sentences);
                answers[i] = answerer.Answer(questions[i % questions.Length], context);
            }
            catch (Exception e) { errors.Enqueue(e); }
        });
        Assert.Empty(errors);
        for (int i = 0; i < calls; i++)
        {
            AssertClose(sequential[i % Sentences.Length], single[i], 1e-5);
            var expected = sequentialAnswers[i % questions.Length];
            Assert.Equal((expected.Text, expected.Start, expected.End), (answers[i].Text, answers[i].Start, answers[i].End));
            Assert.Equal(expected.Score, answers[i].Score, 4);
        }
        foreach (var b in batches)
            for (int j = 0; j < Sentences.Length; j++) AssertClose(sequentialBatch[j], b[j], 1e-5);
    }

    [Fact]
    public void CallsLeaveNoTensorsBehind()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        using var classifier = TextClassifier.Load(tmp["cls"]);
        classifier.Predict("a good film");
        long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++) classifier.PredictBatch(Sentences);
        Assert.Equal(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void Bf16IsCloseToFp32()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        using var fp32 = TextClassifier.Load(tmp["cls"]);
        using var bf16 = TextClassifier.Load(tmp["cls"], new InferenceOptions { Precision = ComputePrecision.BFloat16 });
        Assert.Equal("TorchSharp bf16", bf16.Description);
        double largest = 0;
        foreach (var (a, b) in fp32.PredictBatch(Sentences).Zip(bf16.PredictBatch(Sentences)))
            for (int i = 0; i < a.Probabilities.Count; i++)
                largest = Math.Max(largest, Math.Abs(a.Probabilities[i].Probability - b.Probabilities[i].Probability));
        Assert.True(largest > 0, "bf16 gave bit-identical results: the precision switch did nothing");
        Assert.True(largest < 0.02, $"bf16 probabilities differ from fp32 by {largest}");

        // bf16 casts weights per call: many threads at once still give the sequential results.
        var sequential = Sentences.Select(s => bf16.Predict(s)).ToArray();
        var parallel = new Classification[120];
        Parallel.For(0, parallel.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => parallel[i] = bf16.Predict(Sentences[i % Sentences.Length]));
        for (int i = 0; i < parallel.Length; i++) AssertClose(sequential[i % Sentences.Length], parallel[i], 1e-5);
    }

    [Fact]
    public void AnswerMatchesTheBestSpanOfTheModelsLogits()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["qa"], BertTask.QuestionAnswering);
        using var answerer = QuestionAnswerer.Load(tmp["qa"]);
        string question = "who wrote it ?", context = "jane austen wrote the novel in london .";
        var answer = answerer.Answer(question, context);
        Assert.Equal(1, answer.Windows);
        Assert.Equal(context[answer.Start..answer.End], answer.Text);

        // Brute force over the model's own logits: the best start <= end pair inside the context (≤ 30 tokens; the
        // whole input is under NBest = 20 tokens, so decoding's top-20 candidates see every position).
        var tokenizer = BertTextTokenizer.FromDirectory(tmp["qa"]);
        var encoded = tokenizer.Encode(question, context);
        Assert.True(encoded.Length <= 20);
        var (model, _) = BertCheckpoint.Load(tmp["qa"]);
        using (model)
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            model.eval();
            var ids = tensor(encoded.InputIds.Select(i => (long)i).ToArray(), [1, encoded.Length]);
            var types = tensor(encoded.TokenTypeIds.Select(i => (long)i).ToArray(), [1, encoded.Length]);
            var output = model.forward(new BertInputs(ids, TokenTypeIds: types));
            float[] start = output.StartLogits[0].data<float>().ToArray(), end = output.EndLogits[0].data<float>().ToArray();
            var best = (Score: double.NegativeInfinity, S: -1, E: -1);
            for (int s = 0; s < encoded.Length; s++)
                for (int e = s; e < encoded.Length && e - s < 30; e++)
                    if (encoded.SequenceIds[s] == 1 && encoded.SequenceIds[e] == 1 && start[s] + end[e] > best.Score)
                        best = (start[s] + end[e], s, e);
            Assert.Equal(encoded.Offsets[best.S].Start, answer.Start);
            Assert.Equal(encoded.Offsets[best.E].End, answer.End);
            Assert.Equal(best.Score, answer.Score, 4);
        }
    }

    [Fact]
    public void LongContextsAreWindowedNotCut()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["qa"], BertTask.QuestionAnswering);
        var warnings = new ConcurrentQueue<string>();
        using var answerer = QuestionAnswerer.Load(tmp["qa"], new InferenceOptions { Warning = warnings.Enqueue });
        string context = string.Join(" ", Enumerable.Range(0, 20).Select(i => i % 5 == 0 ? "jane austen wrote it in london ." : "the story was fun and good ."));
        var answer = answerer.Answer("who wrote it ?", context);
        Assert.True(answer.Windows >= 4, $"{answer.Windows} windows");
        Assert.False(answer.Truncated);
        Assert.Empty(warnings);
        Assert.Equal(context[answer.Start..answer.End], answer.Text);
        Assert.NotEmpty(answer.Text);
    }

    [Fact]
    public void OverlongInputIsTruncatedWithAWarningOrRejected()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        string longText = string.Join(" ", Enumerable.Repeat("a good film", 30));   // 90 words > 40 positions
        var warnings = new ConcurrentQueue<string>();
        using (var classifier = TextClassifier.Load(tmp["cls"], new InferenceOptions { Warning = warnings.Enqueue }))
        {
            var result = classifier.Predict(longText);
            Assert.True(result.Truncated);
            Assert.Equal("input of 92 tokens truncated to 40", Assert.Single(warnings));
            Assert.False(classifier.Predict("a good film").Truncated);
            Assert.Single(warnings);
            // Truncation keeps the first 38 word pieces: the same as predicting them directly.
            AssertClose(classifier.Predict(string.Join(" ", longText.Split(' ').Take(38))), result, 1e-5);
        }
        using (var strict = TextClassifier.Load(tmp["cls"], new InferenceOptions { OverlongInput = OverlongInput.Error }))
        {
            var e = Assert.Throws<ArgumentException>(() => strict.Predict(longText));
            Assert.Contains("input is 92 tokens", e.Message);
            Assert.Contains("limit of 40", e.Message);
            Assert.False(strict.Predict("a good film").Truncated);
        }
        // QA: the context is windowed, never cut; a question longer than its share of the window follows the policy.
        SaveTiny(tmp["qa"], BertTask.QuestionAnswering);
        string longQuestion = string.Join(" ", Enumerable.Repeat("who wrote it", 10)) + " ?";   // 31 tokens > 18 = (40 - 3) / 2
        var qaWarnings = new ConcurrentQueue<string>();
        using (var answerer = QuestionAnswerer.Load(tmp["qa"], new InferenceOptions { Warning = qaWarnings.Enqueue }))
        {
            Assert.Equal(9, answerer.DocStride);   // half of the 19 context tokens per window
            var answer = answerer.Answer(longQuestion, "jane austen wrote it in london .");
            Assert.True(answer.Truncated);
            Assert.Equal("question of 31 tokens truncated to 18", Assert.Single(qaWarnings));
        }
        using (var strictAnswerer = QuestionAnswerer.Load(tmp["qa"], new InferenceOptions { OverlongInput = OverlongInput.Error }))
            Assert.Contains("question is 31 tokens, longer than the limit of 18", Assert.Throws<ArgumentException>(() => strictAnswerer.Answer(longQuestion, "jane austen wrote it .")).Message);

        var tooLong = Assert.Throws<ArgumentException>(() => TextClassifier.Load(tmp["cls"], new InferenceOptions { MaxLength = 64 }));
        Assert.Contains("MaxLength 64 exceeds the model's 40 positions", tooLong.Message);
        using var shorter = TextClassifier.Load(tmp["cls"], new InferenceOptions { MaxLength = 8, OverlongInput = OverlongInput.Error });
        Assert.Contains("limit of 8", Assert.Throws<ArgumentException>(() => shorter.Predict("a good film and a great story")).Message);
    }

    [Fact]
    public void BadFilesGiveOneClearLine()
    {
        using var tmp = new TestData.TempDir();
        // Not an ONNX model.
        File.WriteAllText(tmp["bad.onnx"], "this is not a protobuf");
        var notOnnx = Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["bad.onnx"]));
        Assert.StartsWith($"{tmp["bad.onnx"]}: not an ONNX model (", notOnnx.Message);
        Assert.DoesNotContain('\n', notOnnx.Message);
        Assert.Throws<FileNotFoundException>(() => TextClassifier.Load(tmp["missing.onnx"]));

        // A model folder without its tokenizer.
        SaveTiny(tmp["novocab"], BertTask.SequenceClassification, withTokenizer: false);
        var noVocab = Assert.Throws<FileNotFoundException>(() => TextClassifier.Load(tmp["novocab"]));
        Assert.Equal($"{Path.Combine(tmp["novocab"], "vocab.txt")}: missing; the tokenizer (vocab.txt, tokenizer_config.json) must sit beside the model", noVocab.Message);

        // A masked-LM model (no classification head) and a QA model asked to classify.
        SaveTiny(tmp["mlm"], BertTask.MaskedLM);
        var mlm = Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["mlm"]));
        Assert.Contains("is a BertForMaskedLM model, not BertForSequenceClassification", mlm.Message);
        SaveTiny(tmp["qa"], BertTask.QuestionAnswering);
        Assert.Contains("not BertForSequenceClassification", Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["qa"])).Message);
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        Assert.Contains("not BertForQuestionAnswering", Assert.Throws<InvalidDataException>(() => QuestionAnswerer.Load(tmp["cls"])).Message);

        // A classification config whose weights lack the classifier: the head would be random.
        string weights = Path.Combine(tmp["cls"], BertCheckpoint.WeightsFile);
        var tensors = Safetensors.Load(weights);
        Safetensors.Save(weights, tensors.Where(kv => !kv.Key.StartsWith("classifier.", StringComparison.Ordinal)).ToDictionary());
        foreach (var t in tensors.Values) t.Dispose();
        var noHead = Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["cls"]));
        Assert.Contains("has no trained BertForSequenceClassification head (missing classifier.", noHead.Message);

        // Options: bf16 with ONNX Runtime, a bad thread count.
        Assert.Contains("bf16", Assert.Throws<ArgumentException>(() => TextClassifier.Load(tmp["bad.onnx"], new InferenceOptions { Precision = ComputePrecision.BFloat16 })).Message);
        Assert.Contains("IntraOpThreads", Assert.Throws<ArgumentException>(() => TextClassifier.Load(tmp["qa"], new InferenceOptions { IntraOpThreads = 0 })).Message);
    }

    [Fact]
    public void OnnxRuntimeBackendMatchesTorchSharp()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        SaveTiny(tmp["qa"], BertTask.QuestionAnswering);
        ExportTiny(tmp["cls"], tmp["onnx/cls.onnx"]);
        ExportTiny(tmp["qa"], tmp["onnx/qa.onnx"]);
        using var torchClassifier = TextClassifier.Load(tmp["cls"]);
        using var onnxClassifier = TextClassifier.Load(tmp["onnx/cls.onnx"], new InferenceOptions { IntraOpThreads = 1 });
        Assert.Equal(InferenceBackend.OnnxRuntime, onnxClassifier.Backend);
        Assert.Equal("ONNX Runtime fp32", onnxClassifier.Description);
        Assert.Equal(torchClassifier.Labels, onnxClassifier.Labels);
        var torchResults = torchClassifier.PredictBatch(Sentences);
        var onnxResults = onnxClassifier.PredictBatch(Sentences);
        for (int i = 0; i < Sentences.Length; i++)
        {
            AssertClose(torchResults[i], onnxResults[i], 1e-4);
            AssertClose(onnxClassifier.Predict(Sentences[i]), onnxResults[i], 1e-5);
        }

        using var torchAnswerer = QuestionAnswerer.Load(tmp["qa"]);
        using var onnxAnswerer = QuestionAnswerer.Load(tmp["onnx/qa.onnx"]);
        string context = string.Join(" ", Enumerable.Repeat("the novel was written by jane austen in london .", 6));
        foreach (string question in new[] { "who wrote it ?", "where was it written ?" })
        {
            var expected = torchAnswerer.Answer(question, context);
            var actual = onnxAnswerer.Answer(question, context);
            Assert.Equal((expected.Text, expected.Start, expected.End, expected.Windows), (actual.Text, actual.Start, actual.End, actual.Windows));
            Assert.Equal(expected.Score, actual.Score, 3);
        }

        // Many threads on one session: the sequential results.
        var parallel = new Classification[200];
        Parallel.For(0, parallel.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i => parallel[i] = onnxClassifier.Predict(Sentences[i % Sentences.Length]));
        for (int i = 0; i < parallel.Length; i++) AssertClose(onnxResults[i % Sentences.Length], parallel[i], 1e-5);
    }

    [Fact]
    public void Int8OnnxIsCloseToFp32()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        ExportTiny(tmp["cls"], tmp["int8/cls.onnx"], int8: true);
        using var fp32 = TextClassifier.Load(tmp["cls"]);
        using var int8 = TextClassifier.Load(tmp["int8/cls.onnx"]);
        Assert.Equal("ONNX Runtime int8 (7bit weights)", int8.Description);
        double largest = 0;
        foreach (var (a, b) in fp32.PredictBatch(Sentences).Zip(int8.PredictBatch(Sentences)))
            for (int i = 0; i < a.Probabilities.Count; i++)
                largest = Math.Max(largest, Math.Abs(a.Probabilities[i].Probability - b.Probabilities[i].Probability));
        Assert.True(largest < 0.05, $"int8 probabilities differ from fp32 by {largest}");

        // An 8-bit graph loads everywhere, and says when this CPU cannot compute it exactly (no VNNI / AMX-INT8); the
        // default 7-bit graph never warns.
        ExportTiny(tmp["cls"], tmp["int8-full/cls.onnx"], int8: true, scheme: Int8Scheme.Full8Bit);
        var warnings = new List<string>();
        using (var full = TextClassifier.Load(tmp["int8-full/cls.onnx"], new InferenceOptions { Warning = warnings.Add }))
            Assert.Equal("ONNX Runtime int8 (8bit weights)", full.Description);
        bool exactHere = Runtime.CpuFeatures.Current.HasInt8DotProduct;
        Assert.Equal(exactHere ? 0 : 1, warnings.Count(w => w.Contains("cls.onnx") && w.Contains("without VNNI")));
        warnings.Clear();
        using (TextClassifier.Load(tmp["int8/cls.onnx"], new InferenceOptions { Warning = warnings.Add })) Assert.Empty(warnings);
    }

    [Fact]
    public void OnnxErrorsGiveOneClearLine()
    {
        using var tmp = new TestData.TempDir();
        SaveTiny(tmp["cls"], BertTask.SequenceClassification);
        SaveTiny(tmp["mlm"], BertTask.MaskedLM);
        ExportTiny(tmp["cls"], tmp["bare/cls.onnx"], withTokenizer: false);
        var noVocab = Assert.Throws<FileNotFoundException>(() => TextClassifier.Load(tmp["bare/cls.onnx"]));
        Assert.StartsWith($"{Path.Combine(tmp["bare"], "vocab.txt")}: missing", noVocab.Message);

        ExportTiny(tmp["mlm"], tmp["mlm-onnx/mlm.onnx"]);
        var mlm = Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["mlm-onnx/mlm.onnx"]));
        Assert.Contains("is a BertForMaskedLM export, not BertForSequenceClassification", mlm.Message);

        // A valid protobuf that is not a model (an empty file parses as an empty ModelProto).
        File.WriteAllBytes(tmp["empty.onnx"], []);
        var empty = Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["empty.onnx"]));
        Assert.StartsWith($"{tmp["empty.onnx"]}: not an ONNX model (", empty.Message);

        // An ONNX model Distillery did not write (no metadata naming its head and config).
        var foreign = new Distillery.Export.Onnx.ModelProto { IrVersion = 8, Graph = new Distillery.Export.Onnx.GraphProto { Name = "g" } };
        foreign.OpsetImport.Add(new Distillery.Export.Onnx.OperatorSetIdProto { Domain = "", Version = 17 });
        File.WriteAllBytes(tmp["foreign.onnx"], Google.Protobuf.MessageExtensions.ToByteArray(foreign));
        var notOurs = Assert.Throws<InvalidDataException>(() => TextClassifier.Load(tmp["foreign.onnx"]));
        Assert.Equal($"{tmp["foreign.onnx"]}: no distillery.task metadata (not exported by Distillery)", notOurs.Message);

        // bf16 with ONNX Runtime.
        Assert.Contains("bf16", Assert.Throws<ArgumentException>(() => TextClassifier.Load(tmp["bare/cls.onnx"], new InferenceOptions { Precision = ComputePrecision.BFloat16 })).Message);
    }
}
