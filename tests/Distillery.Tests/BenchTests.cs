using Distillery.Runtime;
using Distillery.Bench;
using Distillery.Models;
using Distillery.Text;
using Distillery.Training;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary><c>distillery bench</c> across backends on tiny SST-2 classifiers (few timed iterations), and its plot.</summary>
public sealed class BenchTests
{
    static void SaveTinyClassifier(string dir, int layers, long seed)
    {
        var tokenizer = BertTextTokenizer.FromVocab(TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt"));
        var config = BertConfig.Create(layers: layers, hidden: 32, heads: 2, intermediate: 64, vocabSize: tokenizer.VocabSize) with { MaxPositionEmbeddings = 128 };
        manual_seed(seed);
        using var model = BertTaskModel.Create(config, BertTask.SequenceClassification);
        BertCheckpoint.Save(model, dir, tokenizer);
    }

    [Fact]
    public void EveryBackendIsScoredAndTimedAndPlotted()
    {
        using var tmp = new TestData.TempDir();
        SaveTinyClassifier(tmp["big"], layers: 2, seed: 1);
        SaveTinyClassifier(tmp["small"], layers: 1, seed: 2);
        var options = new BenchOptions
        {
            Models = [tmp["big"], tmp["small"]], Task = new() { Name = Training.TaskName.Sst2, Data = TestData.Path("glue") }, SeqLength = 32, Iterations = 3,
            Backends = BenchBackends.ParseList("torch-fp32, torch-bf16,onnx-fp32,onnx-int8"), PeakShapes = SmallShapes, PeakSecondsPerShape = 0.05,
        };
        var progress = new List<string>();
        var results = ModelBench.Run(options, progress.Add);

        Assert.Equal(8, results.Count);
        BenchBackend[] four = [BenchBackend.TorchFp32, BenchBackend.TorchBf16, BenchBackend.OnnxFp32, BenchBackend.OnnxInt8];
        Assert.Equal(four.Concat(four), results.Select(r => r.Backend));
        Assert.Equal([tmp["big"], tmp["big"], tmp["big"], tmp["big"], tmp["small"], tmp["small"], tmp["small"], tmp["small"]], results.Select(r => r.Model));
        Assert.Contains(progress, p => p.StartsWith("exporting", StringComparison.Ordinal));
        foreach (var r in results)
        {
            Assert.Equal("accuracy", r.PrimaryMetric);
            Assert.InRange(r.Score, 0, 1);
            Assert.True(r.Batch1.MedianMs > 0 && r.Batch32.MedianMs > 0);
            Assert.Equal((1, 32, 3), (r.Batch1.Batch, r.Batch1.SeqLength, r.Batch1.Iterations));
            Assert.Equal(32, r.Batch32.Batch);
        }

        // TorchSharp fp32 scores exactly as eval does; the others score through their own runtime, close to it.
        for (int m = 0; m < 2; m++)
        {
            var rows = results.Skip(4 * m).Take(4).ToList();
            var evaluated = TaskPipeline.Evaluate(rows[0].Model, options.Task);
            Assert.Equal(evaluated["accuracy"], rows[0].Score);
            Assert.InRange(Math.Abs(rows[1].Score - rows[0].Score), 0, 0.03);   // bf16
            Assert.InRange(Math.Abs(rows[2].Score - rows[0].Score), 0, 0.01);   // ONNX fp32: the same function
            Assert.InRange(Math.Abs(rows[3].Score - rows[0].Score), 0, 0.05);   // int8
            // What each loads from disk: the folder for TorchSharp, the .onnx (+ vocab) for ONNX Runtime; int8 is smaller.
            Assert.Equal(BertCheckpoint.BytesOnDisk(rows[0].Model), rows[0].BytesOnDisk);
            Assert.True(rows[3].BytesOnDisk < rows[2].BytesOnDisk, $"int8 {rows[3].BytesOnDisk} bytes, fp32 {rows[2].BytesOnDisk}");
        }

        string markdown = ModelBench.Markdown(results, options);
        Assert.Contains("| backend |", markdown);
        // Rows are labelled by backend; torch-bf16 says "(emulated)" on a CPU without native bf16.
        foreach (var backend in four) Assert.Contains($"| {tmp["big"]} | {results[0].Arch} | {BenchBackends.Label(backend, Runtime.CpuFeatures.Current)} |", markdown);
        Assert.Contains("| 100.0% | ", markdown);
        Assert.Contains("| 1.00x |", markdown);

        string png = tmp["bench.png"];
        BenchPlot.SavePng(results, png, "sst2", width: 800, height: 500);
        byte[] bytes = File.ReadAllBytes(png);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
        int width = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), height = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20));
        Assert.Equal((800, 500), (width, height));
        Assert.True(bytes.Length > 10_000, $"PNG of {bytes.Length} bytes: nearly empty");
    }

    /// <summary>
    /// --rounds N: every row is timed once per pass (the first pass alone scores), reports the median of its passes'
    /// medians and p90s, and the record and the table carry every pass's; rounds below 1 are refused.
    /// </summary>
    [Fact]
    public void RoundsTimeEveryRowOncePerPassAndReportTheMedian()
    {
        using var tmp = new TestData.TempDir();
        SaveTinyClassifier(tmp["big"], layers: 2, seed: 1);
        SaveTinyClassifier(tmp["small"], layers: 1, seed: 2);
        var options = new BenchOptions
        {
            Models = [tmp["big"], tmp["small"]], Task = new() { Name = Training.TaskName.Sst2, Data = TestData.Path("glue") }, SeqLength = 16, Iterations = 2,
            Rounds = 3, Evaluate = false, Backends = BenchBackends.ParseList("torch-fp32,onnx-fp32"), PeakShapes = SmallShapes, PeakSecondsPerShape = 0.05,
        };
        var progress = new List<string>();
        var results = ModelBench.Run(options, progress.Add);

        Assert.Equal(4, results.Count);
        Assert.Equal([tmp["big"], tmp["big"], tmp["small"], tmp["small"]], results.Select(r => r.Model));
        Assert.Equal(4 * 3, progress.Count(p => p.StartsWith("timing", StringComparison.Ordinal)));
        Assert.Contains(progress, p => p.EndsWith(", pass 3/3", StringComparison.Ordinal));
        foreach (var r in results)
        {
            Assert.Equal(3, r.Batch1Passes!.Count);
            Assert.Equal(3, r.Batch32Passes!.Count);
            // The median of three passes is the middle one; iterations add up.
            Assert.Equal(r.Batch1Passes.Select(p => p.MedianMs).Order().ElementAt(1), r.Batch1.MedianMs);
            Assert.Equal(r.Batch1Passes.Select(p => p.P90Ms).Order().ElementAt(1), r.Batch1.P90Ms);
            Assert.Equal(r.Batch32Passes.Select(p => p.MedianMs).Order().ElementAt(1), r.Batch32.MedianMs);
            Assert.Equal((1, 16, 3 * 2), (r.Batch1.Batch, r.Batch1.SeqLength, r.Batch1.Iterations));
            Assert.Equal(32, r.Batch32.Batch);
            Assert.Empty(r.Scores);
        }
        // ONNX rows keep the op counts of the first pass.
        Assert.NotNull(results[1].OptimizedOps);

        var record = ModelBench.Record(results, options);
        Assert.Equal(3, record["rounds"]!.GetValue<int>());
        var passes = record["rows"]![0]!["batch1_passes"]!.AsArray();
        Assert.Equal(results[0].Batch1Passes!.Select(p => p.MedianMs), passes.Select(p => p!["median_ms"]!.GetValue<double>()));
        string markdown = ModelBench.Markdown(results, options);
        Assert.Contains("every row timed in 3 passes", markdown);
        Assert.Contains($"Spread over the passes (lowest-highest of the passes' medians): {tmp["big"]} (torch-fp32) batch 1 ", markdown);

        // Even counts average the middle two.
        var two = ModelBench.MedianOfPasses([new LatencyResult(1, 8, 2.0, 4.0, 5), new LatencyResult(1, 8, 3.0, 8.0, 5)]);
        Assert.Equal((2.5, 6.0, 10), (two.MedianMs, two.P90Ms, two.Iterations));
        var bad = Assert.Throws<ArgumentException>(() => (options with { Rounds = 0 }).Validate());
        Assert.Contains("Rounds must be positive", bad.Message);
    }

    /// <summary>Small GEMMs for the peak measurement, so the tests stay fast (the bench's default shapes take seconds).</summary>
    static readonly GemmShape[] SmallShapes = [new(256, 64, 128), new(128, 128, 128)];

    /// <summary>
    /// Every row carries the model's FLOPs per sequence (a hand count), the peak of the backend that ran it, and its
    /// achieved GFLOP/s and share of that peak; a foreign "peer" graph of the first model is timed in the same run, scored
    /// when it has the classifier (then exactly as the fused export, the same function) and n/a when it has not; the
    /// JSON record holds both peaks and every row; ONNX rows record the op types ONNX Runtime runs.
    /// </summary>
    [Fact]
    public void RowsReportFlopsPeakFractionsAndAPeerGraph()
    {
        using var tmp = new TestData.TempDir();
        SaveTinyClassifier(tmp["model"], layers: 2, seed: 3);
        // Peers: the model's plain export stripped of Distillery's metadata (so only its names say what it is), scored
        // through its "logits"; and the same graph with that output renamed, as a bare encoder export would be.
        var (model, _) = BertCheckpoint.Load(tmp["model"]);
        using (model)
        {
            model.eval();
            Export.OnnxExporter.Export(model, tmp["plain.onnx"], new Export.OnnxExportOptions { Graph = Export.OnnxGraphKind.Plain });
        }
        var proto = Export.Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(tmp["plain.onnx"]));
        proto.MetadataProps.Clear();
        File.WriteAllBytes(tmp["peer.onnx"], Google.Protobuf.MessageExtensions.ToByteArray(proto));
        proto.Graph.Output[0].Name = "sentence_output";
        proto.Graph.Node.Single(n => n.Output.Contains("logits")).Output[0] = "sentence_output";
        File.WriteAllBytes(tmp["encoder.onnx"], Google.Protobuf.MessageExtensions.ToByteArray(proto));

        foreach (var (peer, scored) in new[] { (tmp["peer.onnx"], true), (tmp["encoder.onnx"], false) })
        {
            var options = new BenchOptions
            {
                Models = [tmp["model"]], Task = new() { Name = Training.TaskName.Sst2, Data = TestData.Path("glue") }, SeqLength = 32, Iterations = 2,
                Backends = BenchBackends.ParseList("torch-fp32,onnx-fp32,onnx-fp32-plain"), Peer = peer, PeakShapes = SmallShapes, PeakSecondsPerShape = 0.05,
            };
            var results = ModelBench.Run(options);
            Assert.Equal([BenchBackend.TorchFp32, BenchBackend.OnnxFp32, BenchBackend.OnnxFp32Plain, BenchBackend.OnnxPeer], results.Select(r => r.Backend));
            Assert.Equal(peer, results[3].Model);

            // L2-H32, 2 heads, FFN 64, length 32, 2 labels. Per layer and token: QKV 2·32·96 + output 2·32·32 + FFN 2·2·32·64
            // + scores and context 2·2·32·32 = 20480; × 2 layers × 32 tokens, + pooler 2·32·32 + classifier 2·32·2.
            const double flops = 20480.0 * 2 * 32 + 2 * 32 * 32 + 2 * 32 * 2;
            Assert.All(results.Take(3), r => Assert.Equal(flops, r.FlopsPerSequence));
            Assert.Equal(scored ? flops : flops - (2 * 32 * 32 + 2 * 32 * 2), results[3].FlopsPerSequence);   // a bare encoder has no head
            Assert.Equal("libtorch", results[0].Peak!.Backend);
            Assert.All(results.Skip(1), r => Assert.Equal("onnxruntime", r.Peak!.Backend));
            Assert.All(results, r => Assert.Equal(SmallShapes, r.Peak!.Shapes.Select(s => s.Shape)));
            foreach (var r in results)
            {
                Assert.Equal(r.FlopsPerSequence * r.Batch32.SequencesPerSecond / 1e9, r.GFlops(r.Batch32), 9);
                Assert.Equal(r.GFlops(r.Batch1) / r.Peak!.PeakGFlops, r.PeakFraction(r.Batch1), 9);
                Assert.True(r.PeakFraction(r.Batch1) > 0 && r.Peak.PeakGFlops > 0);
            }
            Assert.Null(results[0].OptimizedOps);
            Assert.True(results[1].OptimizedOps!.ContainsKey("Attention"));          // the fused export, as ONNX Runtime runs it
            Assert.False(results[2].OptimizedOps!.ContainsKey("Attention"));
            Assert.True(results[3].OptimizedOps!.ContainsKey("Softmax"));            // the peer is the plain graph

            if (scored) Assert.Equal(results[1].Score, results[3].Score);          // the same function: the same predictions
            else Assert.True(double.IsNaN(results[3].Score));

            string markdown = ModelBench.Markdown(results, options);
            Assert.Contains("| % of peak b1 |", markdown);
            Assert.Contains("fp32 GEMM peak", markdown);
            Assert.Contains($"| {peer} | {results[0].Arch} | onnx-peer |", markdown);
            if (!scored) Assert.Contains("| n/a | n/a |", markdown);

            var record = ModelBench.Record(results, options);
            var peaks = record["gemm_peaks"]!.AsArray();
            Assert.Equal(["libtorch", "onnxruntime"], peaks.Select(p => (string)p!["backend"]!));
            Assert.All(peaks, p => Assert.Equal(SmallShapes.Length, p!["shapes"]!.AsArray().Count));
            var rows = record["rows"]!.AsArray();
            Assert.Equal(4, rows.Count);
            Assert.Equal("onnx-peer", (string)rows[3]!["backend"]!);
            Assert.Equal(results[1].PeakFraction(results[1].Batch32), (double)rows[1]!["batch32"]!["peak_fraction"]!, 9);
            Assert.Equal(scored, rows[3]!["score"] is not null);
        }
        Assert.Contains("give an .onnx file", Assert.Throws<ArgumentException>(() => new BenchOptions { Models = ["m"], Task = new() { Name = Training.TaskName.Sst2, Data = "d" }, Peer = "model.pt" }.Validate()).Message);
    }

    /// <summary>
    /// A stand-in (<c>distillery init --like</c>) has a pruned model's every shape (heads and FFN width per layer) and
    /// so its parameters and bytes on disk, with other weights; bench --no-eval times it and scores nothing (n/a, null
    /// in the record), so a model whose weights are gone can still be timed.
    /// </summary>
    [Fact]
    public void AStandInHasAPrunedModelsShapesAndIsTimedWithoutAScore()
    {
        using var tmp = new TestData.TempDir();
        string vocab = TestData.Path("tokenizers", "bert-base-uncased", "vocab.txt");
        var tokenizer = BertTextTokenizer.FromVocab(vocab);
        var pruned = BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: tokenizer.VocabSize)
            with { MaxPositionEmbeddings = 96, LayerHeads = [3, 1], LayerIntermediateSizes = [40, 24], AttentionHeadSize = 8 };
        manual_seed(4);
        using (var model = BertTaskModel.Create(pruned, BertTask.MaskedLM)) BertCheckpoint.Save(model, tmp["pruned"], tokenizer);

        var config = ModelInit.Run(new InitOptions { Like = tmp["pruned"], VocabPath = vocab, Task = BertTask.SequenceClassification, Seed = 9, Out = tmp["stand-in"] });
        Assert.Equal((2, 32, 96), (config.NumHiddenLayers, config.HiddenSize, config.MaxPositionEmbeddings));
        Assert.Equal([3, 1], config.LayerHeads!);
        Assert.Equal([40, 24], config.LayerIntermediateSizes!);
        Assert.Equal(8, config.HeadSize);
        var (original, _) = BertCheckpoint.Load(tmp["pruned"], BertTask.SequenceClassification);   // the same head as the stand-in's
        var (standIn, _) = BertCheckpoint.Load(tmp["stand-in"]);
        using (original)
        using (standIn)
        {
            Assert.Equal(BertTask.SequenceClassification, standIn.Task);
            Assert.Equal(ParameterCounts.Of(original).Total, ParameterCounts.Of(standIn).Total);
            var a = original.state_dict();
            var b = standIn.state_dict();
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            Assert.All(a.Keys, k => Assert.Equal(a[k].shape, b[k].shape));
            Assert.False(a["bert.encoder.layer.0.attention.self.query.weight"].allclose(b["bert.encoder.layer.0.attention.self.query.weight"]));
            // What a fine-tuned model of those shapes holds on disk (the weights file to the byte; config.json's label
            // names and mark may differ by a few bytes).
            BertCheckpoint.Save(original, tmp["fine-tuned"], tokenizer);
        }
        Assert.Equal(new FileInfo(Path.Combine(tmp["fine-tuned"], BertCheckpoint.WeightsFile)).Length, new FileInfo(Path.Combine(tmp["stand-in"], BertCheckpoint.WeightsFile)).Length);

        var options = new BenchOptions
        {
            Models = [tmp["stand-in"]], Task = new() { Name = Training.TaskName.Sst2, Data = TestData.Path("glue") }, SeqLength = 32, Iterations = 2, Evaluate = false,
            Backends = BenchBackends.ParseList("torch-fp32,onnx-int8"), PeakShapes = SmallShapes, PeakSecondsPerShape = 0.05,
        };
        var progress = new List<string>();
        var results = ModelBench.Run(options, progress.Add);
        Assert.Equal(2, results.Count);
        Assert.All(results, r => { Assert.Empty(r.Scores); Assert.True(double.IsNaN(r.Score)); Assert.True(r.Batch1.MedianMs > 0); });
        Assert.DoesNotContain(progress, p => p.StartsWith("scoring", StringComparison.Ordinal));
        Assert.Contains("not scored (timing and size only)", ModelBench.Markdown(results, options));
        var record = ModelBench.Record(results, options);
        Assert.False((bool)record["evaluated"]!);
        Assert.All(record["rows"]!.AsArray(), r => Assert.Null(r!["score"]));

        // --like takes every shape, so no shape option beside it; another vocabulary is refused with both sizes.
        Assert.Contains("--like takes every shape", Assert.Throws<ArgumentException>(() => ModelInit.Run(new InitOptions { Like = tmp["pruned"], Arch = "L2-H128", VocabPath = vocab, Out = tmp["x"] })).Message);
        File.WriteAllLines(tmp["small-vocab.txt"], ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]);
        Assert.Contains($"has a vocabulary of {tokenizer.VocabSize} tokens but --vocab", Assert.Throws<ArgumentException>(() => ModelInit.Run(new InitOptions { Like = tmp["pruned"], VocabPath = tmp["small-vocab.txt"], Out = tmp["y"] })).Message);
        Assert.False(Directory.Exists(tmp["y"]) && File.Exists(Path.Combine(tmp["y"], BertCheckpoint.ConfigFile)));
    }

    [Fact]
    public void BackendListsAreCheckedByName()
    {
        Assert.Equal([BenchBackend.OnnxInt8, BenchBackend.TorchFp32], BenchBackends.ParseList("onnx-int8,torch-fp32,onnx-int8"));
        var e = Assert.Throws<ArgumentException>(() => BenchBackends.ParseList("torch-fp32,onnx-fp16"));
        Assert.Equal("--backends: unknown backend \"onnx-fp16\" (known: torch-fp32, torch-bf16, onnx-fp32, onnx-int8, onnx-fp32-plain, onnx-int8-plain)", e.Message);
        Assert.Throws<ArgumentException>(() => BenchBackends.ParseList("onnx-peer"));   // the peer row comes from --peer
        Assert.Throws<ArgumentException>(() => BenchBackends.ParseList(" , "));

        // Emulated bf16 is marked, and left out of the recommended list (the quickstart's), only where the CPU lacks bf16.
        var avx2 = Runtime.CpuFeatures.FromCpuInfo("flags : avx2\n");
        var native = Runtime.CpuFeatures.FromCpuInfo("flags : avx2 avx512f avx512_vnni avx512_bf16\n");
        Assert.Equal("torch-bf16 (emulated)", BenchBackends.Label(BenchBackend.TorchBf16, avx2));
        Assert.Equal("torch-bf16", BenchBackends.Label(BenchBackend.TorchBf16, native));
        Assert.Equal("torch-fp32", BenchBackends.Label(BenchBackend.TorchFp32, avx2));
        Assert.Equal([BenchBackend.TorchFp32, BenchBackend.OnnxFp32, BenchBackend.OnnxInt8], BenchBackends.RecommendedFor(avx2));
        Assert.Equal([BenchBackend.TorchFp32, BenchBackend.TorchBf16, BenchBackend.OnnxFp32, BenchBackend.OnnxInt8], BenchBackends.RecommendedFor(native));
        Assert.Throws<ArgumentException>(() => new BenchOptions { Models = ["m"], Task = new() { Name = Training.TaskName.Sst2, Data = "d" }, Backends = [] }.Validate());
    }
}
