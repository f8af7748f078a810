// Checks an exported graph against the model it came from: ONNX Runtime's outputs vs the TorchSharp forward (fp32,
// eval mode) on the same padded batch. The export command prints this; the tests assert on it.
using Distillery.Models;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Distillery.Export;

/// <summary>How closely a graph's outputs follow the TorchSharp model on one batch.</summary>
/// <param name="MaxAbsDiff">Largest |ONNX − TorchSharp| over every output value (padded positions included).</param>
/// <param name="ArgmaxAgreement">
/// Share of predictions whose argmax agrees: per example over labels (classification), per example start and end both
/// over real tokens (QA), per real token over the vocabulary (MLM); NaN for a one-output regression head.
/// </param>
/// <param name="Predictions">How many predictions the agreement counts (examples, or real tokens for MLM).</param>
/// <param name="MinCosine">Sentence embeddings: the lowest cosine similarity between a text's ONNX and TorchSharp vectors; NaN for other heads.</param>
public sealed record OnnxParityReport(double MaxAbsDiff, double ArgmaxAgreement, int Predictions, double MinCosine = double.NaN);

/// <summary>Runs an exported graph in ONNX Runtime and compares it with the TorchSharp model.</summary>
public static class OnnxParity
{
    /// <summary>One output of a graph: row-major values and their shape.</summary>
    public sealed record OutputTensor(float[] Data, long[] Shape);

    /// <summary>Runs <paramref name="session"/> on <paramref name="batch"/>; returns every output by name.</summary>
    public static IReadOnlyDictionary<string, OutputTensor> Run(InferenceSession session, TokenizedBatch batch)
    {
        long[] shape = [batch.Count, batch.Length];
        using var ids = OrtValue.CreateTensorValueFromMemory(batch.InputIds, shape);
        using var mask = OrtValue.CreateTensorValueFromMemory(batch.AttentionMask, shape);
        using var types = OrtValue.CreateTensorValueFromMemory(batch.TokenTypeIds, shape);
        using var options = new RunOptions();
        var names = session.OutputNames;
        using var outputs = session.Run(options, [OnnxExporter.InputIds, OnnxExporter.AttentionMask, OnnxExporter.TokenTypeIds], [ids, mask, types], names);
        var result = new Dictionary<string, OutputTensor>();
        for (int i = 0; i < names.Count; i++)
            result[names[i]] = new OutputTensor(outputs[i].GetTensorDataAsSpan<float>().ToArray(), outputs[i].GetTensorTypeAndShape().Shape);
        return result;
    }

    /// <summary>The TorchSharp model's outputs on <paramref name="batch"/>, named as the graph names them (fp32, eval mode).</summary>
    public static IReadOnlyDictionary<string, OutputTensor> Reference(BertTaskModel model, TokenizedBatch batch)
    {
        bool training = model.training;
        var precision = model.modules().OfType<IPrecisionSwitchable>().Select(m => m.Precision).FirstOrDefault();
        model.eval();
        model.SetPrecision(ComputePrecision.Float32);
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            long[] shape = [batch.Count, batch.Length];
            var output = model.forward(new BertInputs(tensor(batch.InputIds, shape), tensor(batch.AttentionMask, shape), tensor(batch.TokenTypeIds, shape)));
            static OutputTensor Of(Tensor t) => new(t.contiguous().data<float>().ToArray(), t.shape);
            return model.Task switch
            {
                BertTask.QuestionAnswering => new Dictionary<string, OutputTensor> { [OnnxExporter.StartLogits] = Of(output.StartLogits), [OnnxExporter.EndLogits] = Of(output.EndLogits) },
                BertTask.SentenceEmbedding => new Dictionary<string, OutputTensor> { [OnnxExporter.SentenceEmbedding] = Of(output.Logits) },
                _ => new Dictionary<string, OutputTensor> { [OnnxExporter.Logits] = Of(output.Logits) },
            };
        }
        finally
        {
            model.SetPrecision(precision);
            model.train(training);
        }
    }

    /// <summary>Compares the graph in <paramref name="session"/> with <paramref name="model"/> on <paramref name="batch"/>.</summary>
    public static OnnxParityReport Compare(BertTaskModel model, InferenceSession session, TokenizedBatch batch)
    {
        var onnx = Run(session, batch);
        var reference = Reference(model, batch);
        double maxDiff = 0;
        foreach (var (name, expected) in reference)
        {
            if (!onnx.TryGetValue(name, out var actual)) throw new InvalidDataException($"the graph has no output {name}");
            if (!actual.Shape.SequenceEqual(expected.Shape))
                throw new InvalidDataException($"output {name} has shape [{string.Join(", ", actual.Shape)}], the model gives [{string.Join(", ", expected.Shape)}]");
            for (int i = 0; i < expected.Data.Length; i++)
            {
                double diff = Math.Abs((double)actual.Data[i] - expected.Data[i]);
                if (double.IsNaN(diff)) diff = double.PositiveInfinity;
                maxDiff = Math.Max(maxDiff, diff);
            }
        }
        if (model.Task == BertTask.SentenceEmbedding)
        {
            var cosines = RowCosines(onnx[OnnxExporter.SentenceEmbedding], reference[OnnxExporter.SentenceEmbedding]);
            return new OnnxParityReport(maxDiff, double.NaN, 0, cosines.Length == 0 ? double.NaN : cosines.Min());
        }
        var (agree, count) = model.Task switch
        {
            BertTask.SequenceClassification => ArgmaxRows(onnx[OnnxExporter.Logits], reference[OnnxExporter.Logits], null),
            BertTask.QuestionAnswering => SpanAgreement(onnx, reference, batch),
            _ => ArgmaxRows(onnx[OnnxExporter.Logits], reference[OnnxExporter.Logits], batch.AttentionMask),
        };
        return new OnnxParityReport(maxDiff, count == 0 ? double.NaN : (double)agree / count, count);
    }

    /// <summary>Cosine similarity of each row of two [N, H] outputs (NaN where a row is all zeros).</summary>
    public static double[] RowCosines(OutputTensor actual, OutputTensor expected)
    {
        int width = (int)expected.Shape[^1], rows = expected.Data.Length / width;
        var result = new double[rows];
        for (int r = 0; r < rows; r++)
            result[r] = Evaluation.EmbeddingMetrics.Cosine(actual.Data.AsSpan(r * width, width), expected.Data.AsSpan(r * width, width));
        return result;
    }

    /// <summary>Argmax agreement over the last axis, row by row; rows where <paramref name="keep"/> is 0 are skipped.</summary>
    private static (int Agree, int Count) ArgmaxRows(OutputTensor actual, OutputTensor expected, long[]? keep)
    {
        int width = (int)expected.Shape[^1];
        if (width < 2) return (0, 0);   // regression: no argmax
        int rows = expected.Data.Length / width, agree = 0, count = 0;
        for (int r = 0; r < rows; r++)
        {
            if (keep != null && keep[r] == 0) continue;
            count++;
            if (Argmax(actual.Data, r * width, width, null) == Argmax(expected.Data, r * width, width, null)) agree++;
        }
        return (agree, count);
    }

    /// <summary>Examples whose start and end argmax (over real tokens) both agree.</summary>
    private static (int Agree, int Count) SpanAgreement(IReadOnlyDictionary<string, OutputTensor> actual, IReadOnlyDictionary<string, OutputTensor> expected, TokenizedBatch batch)
    {
        int agree = 0;
        for (int b = 0; b < batch.Count; b++)
        {
            int o = b * batch.Length;
            bool same = true;
            foreach (var name in new[] { OnnxExporter.StartLogits, OnnxExporter.EndLogits })
                same &= Argmax(actual[name].Data, o, batch.Length, batch.AttentionMask) == Argmax(expected[name].Data, o, batch.Length, batch.AttentionMask);
            if (same) agree++;
        }
        return (agree, batch.Count);
    }

    private static int Argmax(float[] data, int offset, int length, long[]? mask)
    {
        int best = -1;
        for (int i = 0; i < length; i++)
            if ((mask == null || mask[offset + i] != 0) && (best < 0 || data[offset + i] > data[offset + best])) best = i;
        return best;
    }
}
