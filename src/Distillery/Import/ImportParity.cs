// Checks an imported model folder against the ONNX graph it came from: ONNX Runtime runs the original graph, Distillery
// runs the folder in TorchSharp (fp32, eval mode), on the same padded batches of real sentences, and the encoder's
// outputs are compared: last_hidden_state at every real (non-padding) token, and the pooler output.
using Distillery.Data;
using Distillery.Models;
using Distillery.Text;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Distillery.Import;

/// <summary>How closely an imported folder reproduces its source graph.</summary>
/// <param name="Sentences">Examples compared (single sentences or pairs).</param>
/// <param name="Tokens">Real tokens whose hidden states were compared.</param>
/// <param name="MaxHiddenDiff">Largest |ONNX Runtime − Distillery| over last_hidden_state at real tokens.</param>
/// <param name="MaxPoolerDiff">Largest difference over the pooler output (NaN when the graph has none).</param>
/// <param name="Data">Which examples (for the record).</param>
public sealed record ImportParityReport(int Sentences, long Tokens, double MaxHiddenDiff, double MaxPoolerDiff, string Data)
{
    /// <summary>Both differences within <paramref name="tolerance"/> (a missing pooler counts as within).</summary>
    public bool Within(double tolerance) => MaxHiddenDiff <= tolerance && (double.IsNaN(MaxPoolerDiff) || MaxPoolerDiff <= tolerance);
}

/// <summary>Compares an imported folder with the original graph in ONNX Runtime.</summary>
public static class ImportParity
{
    /// <summary>The tolerance the importer promises (fp32 round-off of two different kernels).</summary>
    public const double Tolerance = 1e-4;

    /// <summary>
    /// Real dev sentences for the check: the first <paramref name="perTask"/> examples of SST-2 dev (single sentences)
    /// and of MRPC dev (pairs), from the shared data; without the shared data, a few fixed sentences and pairs (said in
    /// the description).
    /// </summary>
    public static (IReadOnlyList<(string A, string? B)> Texts, string Description) DevSentences(int perTask = 128)
    {
        if (SharedData.TryFind() is not { } shared || !File.Exists(Path.Combine(shared, "glue", "SST-2", "dev.tsv")) || !File.Exists(Path.Combine(shared, "glue", "MRPC", "dev.tsv")))
            return (FallbackSentences, $"{FallbackSentences.Count} built-in sentences and pairs (no shared data found), padded batches of 32");
        var sst2 = Glue.Load(GlueTask.Sst2, Path.Combine(shared, "glue", "SST-2", "dev.tsv")).Take(perTask).Select(e => (e.TextA, e.TextB));
        var mrpc = Glue.Load(GlueTask.Mrpc, Path.Combine(shared, "glue", "MRPC", "dev.tsv")).Take(perTask).Select(e => (e.TextA, e.TextB));
        var texts = sst2.Concat(mrpc).ToList();
        return (texts, $"first {perTask} of SST-2 dev and of MRPC dev, padded batches of 32, up to 128 tokens");
    }

    static readonly IReadOnlyList<(string A, string? B)> FallbackSentences =
    [
        ("it's a charming and often affecting journey.", null),
        ("the movie is a disaster from start to finish, with nothing to recommend it.", null),
        ("unflinchingly bleak and desperate", null),
        ("a gorgeous, witty, seductive movie.", null),
        ("The company said its profit rose 12 percent in the third quarter.", "Third-quarter profit at the company rose by 12 percent, it said."),
        ("He was arrested on Tuesday in Boston.", "Police in Boston detained the man on Tuesday afternoon after a long search."),
        ("Distillation makes a small model learn from a large one.", "A compact student imitates its teacher's predictions."),
        ("short", "a much longer second sentence that makes the padding matter for the first rows of the batch"),
    ];

    /// <summary>
    /// Runs the graph <paramref name="onnx"/> (bytes of the original file) and the folder <paramref name="folder"/> on
    /// <paramref name="texts"/> in padded batches; returns the largest differences.
    /// </summary>
    public static ImportParityReport Check(byte[] onnx, string folder, IReadOnlyList<(string A, string? B)> texts, string description,
        int batchSize = 32, int maxLength = 128)
    {
        var config = BertCheckpoint.ReadConfig(folder);
        var tokenizer = BertCheckpoint.LoadTokenizer(folder, config);
        // A task head is needed to load a folder; its (fresh) head is never run: only the encoder's outputs are compared.
        var (model, _) = BertCheckpoint.Load(folder, BertTask.SequenceClassification);
        using var _m = model;
        model.eval();
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(onnx, sessionOptions);
        var inputNames = session.InputMetadata.Keys.ToHashSet();
        foreach (var required in new[] { "input_ids", "attention_mask" })
            if (!inputNames.Contains(required)) throw new InvalidDataException($"the graph has no input {required} (it has {string.Join(", ", inputNames)})");
        var outputs = session.OutputMetadata.ToList();
        string hiddenName = outputs.FirstOrDefault(o => o.Value.Dimensions.Length == 3).Key
            ?? throw new InvalidDataException("the graph has no rank-3 output (last_hidden_state)");
        string? poolerName = outputs.FirstOrDefault(o => o.Value.Dimensions.Length == 2).Key;

        double maxHidden = 0, maxPooler = poolerName == null ? double.NaN : 0;
        long tokens = 0;
        for (int start = 0; start < texts.Count; start += batchSize)
        {
            var batch = tokenizer.EncodeBatch(texts.Skip(start).Take(batchSize).ToList(), maxLength);
            long[] shape = [batch.Count, batch.Length];
            var feeds = new List<(string, OrtValue)>
            {
                ("input_ids", OrtValue.CreateTensorValueFromMemory(batch.InputIds, shape)),
                ("attention_mask", OrtValue.CreateTensorValueFromMemory(batch.AttentionMask, shape)),
            };
            if (inputNames.Contains("token_type_ids")) feeds.Add(("token_type_ids", OrtValue.CreateTensorValueFromMemory(batch.TokenTypeIds, shape)));
            string[] wanted = poolerName == null ? [hiddenName] : [hiddenName, poolerName];
            float[] onnxHidden, onnxPooler = [];
            try
            {
                using var runOptions = new RunOptions();
                using var results = session.Run(runOptions, feeds.Select(f => f.Item1).ToArray(), feeds.Select(f => f.Item2).ToArray(), wanted);
                onnxHidden = results[0].GetTensorDataAsSpan<float>().ToArray();
                if (poolerName != null) onnxPooler = results[1].GetTensorDataAsSpan<float>().ToArray();
            }
            finally
            {
                foreach (var (_, value) in feeds) value.Dispose();
            }

            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var encoder = model.Bert.forward(new BertInputs(tensor(batch.InputIds, shape), tensor(batch.AttentionMask, shape), tensor(batch.TokenTypeIds, shape)));
            var hidden = encoder.LastHiddenState.contiguous().data<float>().ToArray();   // [B, T, H]
            if (hidden.Length != onnxHidden.Length)
                throw new InvalidDataException($"last_hidden_state has {onnxHidden.Length} values in ONNX Runtime but {hidden.Length} in Distillery");
            int width = config.HiddenSize;
            for (int position = 0; position < batch.AttentionMask.Length; position++)
            {
                if (batch.AttentionMask[position] == 0) continue;   // padding: no meaning in either model
                tokens++;
                for (int j = 0; j < width; j++)
                    maxHidden = Max(maxHidden, onnxHidden[position * width + j], hidden[position * width + j]);
            }
            if (poolerName != null && encoder.PoolerOutput is { } pooled)
            {
                var ours = pooled.contiguous().data<float>().ToArray();
                for (int i = 0; i < ours.Length; i++) maxPooler = Max(maxPooler, onnxPooler[i], ours[i]);
            }
        }
        return new ImportParityReport(texts.Count, tokens, maxHidden, maxPooler, description);
    }

    static double Max(double current, float a, float b)
    {
        double diff = Math.Abs((double)a - b);
        return double.IsNaN(diff) ? double.PositiveInfinity : Math.Max(current, diff);
    }
}
