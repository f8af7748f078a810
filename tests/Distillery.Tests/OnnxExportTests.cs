using Distillery.Export;
using Distillery.Export.Onnx;
using Distillery.Models;
using Distillery.Pruning;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// ONNX export: ONNX Runtime's outputs equal the TorchSharp forward (≤ 1e-4) for every head, for a physically pruned
/// model, across batch/sequence shapes with padding; the int8 graph stays within a stated tolerance and keeps the argmax.
/// </summary>
public sealed class OnnxExportTests(ITestOutputHelper output)
{
    /// <summary>fp32 parity bound required by the issue.</summary>
    const double Fp32Tolerance = 1e-4;

    static BertConfig Config(int vocab = 120) => BertConfig.Create(layers: 2, hidden: 32, heads: 4, intermediate: 64, vocabSize: vocab) with
    {
        MaxPositionEmbeddings = 40, Labels = ["a", "b", "c"], ProblemType = ProblemType.SingleLabelClassification,
        InitializerRange = 0.2,   // large weights so attention is far from uniform and small graph mistakes show
    };

    /// <summary>A model with random weights and non-zero biases / LayerNorm parameters everywhere.</summary>
    static BertTaskModel Model(BertTask task, BertConfig? config = null, int seed = 1)
    {
        manual_seed(seed);
        var model = BertTaskModel.Create(config ?? Config(), task);
        using (no_grad()) foreach (var p in model.parameters()) if (p.dim() == 1) p.add_(randn_like(p) * 0.1);
        model.eval();
        return model;
    }

    /// <summary>A padded batch: row r has <c>lengths[r]</c> real tokens, the rest [PAD] (0) with mask 0; pair rows get type 1 in their second half.</summary>
    static TokenizedBatch Batch(int vocab, int seed, params int[] lengths)
    {
        var random = new Random(seed);
        int count = lengths.Length, length = lengths.Max();
        var ids = new long[count * length];
        var types = new long[count * length];
        var mask = new long[count * length];
        for (int r = 0; r < count; r++)
            for (int j = 0; j < lengths[r]; j++)
            {
                ids[r * length + j] = random.Next(1, vocab);
                types[r * length + j] = r % 2 == 1 && j >= lengths[r] / 2 ? 1 : 0;
                mask[r * length + j] = 1;
            }
        return new TokenizedBatch(count, length, ids, types, mask);
    }

    static OnnxParityReport ExportAndCompare(BertTaskModel model, OnnxExportOptions? options, params TokenizedBatch[] batches)
    {
        using var tmp = new TestData.TempDir();
        string path = tmp["model.onnx"];
        OnnxExporter.Export(model, path, options);
        using var session = new InferenceSession(path);
        OnnxParityReport? worst = null;
        int agree = 0, total = 0;
        foreach (var batch in batches)   // several shapes through one session: the axes really are dynamic
        {
            var report = OnnxParity.Compare(model, session, batch);
            if (worst == null || report.MaxAbsDiff > worst.MaxAbsDiff) worst = report;
            if (!double.IsNaN(report.ArgmaxAgreement)) { agree += (int)Math.Round(report.ArgmaxAgreement * report.Predictions); total += report.Predictions; }
        }
        return worst! with { ArgmaxAgreement = total == 0 ? double.NaN : (double)agree / total, Predictions = total };
    }

    static readonly int[] ShapeA = [7, 12, 3];   // batch 3, sequence 12, padded rows
    static readonly int[] ShapeB = [20, 20];     // batch 2, sequence 20, no padding

    [Theory]
    [InlineData(BertTask.SequenceClassification)]
    [InlineData(BertTask.MaskedLM)]
    [InlineData(BertTask.QuestionAnswering)]
    public void Fp32GraphMatchesTorchSharp(BertTask task)
    {
        using var model = Model(task);
        var report = ExportAndCompare(model, null, Batch(120, 1, ShapeA), Batch(120, 2, ShapeB));
        Assert.True(report.MaxAbsDiff <= Fp32Tolerance, $"{task}: max |diff| {report.MaxAbsDiff:G3}");
        Assert.Equal(1.0, report.ArgmaxAgreement);
    }

    [Fact]
    public void PhysicallyPrunedGraphMatchesTorchSharp()
    {
        var config = Config() with { NumHiddenLayers = 3 };
        using var full = Model(BertTask.SequenceClassification, config);
        // Layer 0 keeps heads 1 and 3 and 40 neurons; layer 1 loses every head; layer 2 loses every FFN neuron.
        var mask = new PruningMask(
            [[false, true, false, true], [false, false, false, false], [true, true, true, true]],
            [Enumerable.Range(0, 64).Select(i => i < 40).ToArray(), Enumerable.Range(0, 64).Select(i => i % 3 == 0).ToArray(), new bool[64]]);
        using var pruned = StructuredPruning.Shrink(full, mask);
        pruned.eval();
        Assert.Equal([2, 0, 4], pruned.Config.LayerHeads);
        Assert.Equal([40, 22, 0], pruned.Config.LayerIntermediateSizes);
        var report = ExportAndCompare(pruned, null, Batch(120, 3, ShapeA), Batch(120, 4, ShapeB));
        output.WriteLine($"pruned fp32: max |diff| {report.MaxAbsDiff:G3}");
        Assert.True(report.MaxAbsDiff <= Fp32Tolerance, $"max |diff| {report.MaxAbsDiff:G3}");

        // The int8 graph of a pruned model builds and runs too (no zero-sized quantized matmul).
        var int8 = ExportAndCompare(pruned, new OnnxExportOptions { Int8 = true }, Batch(120, 3, ShapeA));
        Assert.True(int8.MaxAbsDiff < 0.5, $"int8 max |diff| {int8.MaxAbsDiff:G3}");
    }
}
