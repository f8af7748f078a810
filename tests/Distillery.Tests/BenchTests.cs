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
            Backends = BenchBackends.ParseList("torch-fp32, torch-bf16,onnx-fp32,onnx-int8"),
        };
        var progress = new List<string>();
        var results = ModelBench.Run(options, progress.Add);

        Assert.Equal(8, results.Count);
        Assert.Equal(BenchBackends.All.Concat(BenchBackends.All), results.Select(r => r.Backend));
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
        foreach (var backend in BenchBackends.All) Assert.Contains($"| {tmp["big"]} | {results[0].Arch} | {BenchBackends.Label(backend, Runtime.CpuFeatures.Current)} |", markdown);
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

    [Fact]
    public void BackendListsAreCheckedByName()
    {
        Assert.Equal([BenchBackend.OnnxInt8, BenchBackend.TorchFp32], BenchBackends.ParseList("onnx-int8,torch-fp32,onnx-int8"));
        var e = Assert.Throws<ArgumentException>(() => BenchBackends.ParseList("torch-fp32,onnx-fp16"));
        Assert.Equal("--backends: unknown backend \"onnx-fp16\" (known: torch-fp32, torch-bf16, onnx-fp32, onnx-int8)", e.Message);
        Assert.Throws<ArgumentException>(() => BenchBackends.ParseList(" , "));

        // Emulated bf16 is marked, and left out of the recommended list (the quickstart's), only where the CPU lacks bf16.
        var avx2 = Runtime.CpuFeatures.FromCpuInfo("flags : avx2\n");
        var native = Runtime.CpuFeatures.FromCpuInfo("flags : avx2 avx512f avx512_vnni avx512_bf16\n");
        Assert.Equal("torch-bf16 (emulated)", BenchBackends.Label(BenchBackend.TorchBf16, avx2));
        Assert.Equal("torch-bf16", BenchBackends.Label(BenchBackend.TorchBf16, native));
        Assert.Equal("torch-fp32", BenchBackends.Label(BenchBackend.TorchFp32, avx2));
        Assert.Equal([BenchBackend.TorchFp32, BenchBackend.OnnxFp32, BenchBackend.OnnxInt8], BenchBackends.RecommendedFor(avx2));
        Assert.Equal(BenchBackends.All, BenchBackends.RecommendedFor(native));
        Assert.Throws<ArgumentException>(() => new BenchOptions { Models = ["m"], Task = new() { Name = Training.TaskName.Sst2, Data = "d" }, Backends = [] }.Validate());
    }
}
