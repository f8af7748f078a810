// Fewer embedding dimensions for a sentence-embedding model, without training: the projection sentence-transformers'
// dimensionality-reduction recipe adds (a Dense module, no bias, identity activation, weights from PCA on embeddings of
// unlabeled sentences), here fitted on the model's own unit vectors and followed by a Normalize module, so the output
// has unit length again and cosine stays a dot product. Smaller vectors shrink a vector index and its search time by
// H / D; the encoder, and so the encoding speed, is unchanged.
//
//   X  [N, H]   the model's sentence vectors of N sentences, L2-normalised (their dot products are its cosines)
//   S = XᵀX / N [H, H]   second moment, uncentred: the vectors themselves, not their spread about the mean, are what
//                        the dot products are made of (centring would change the similarity it is meant to keep)
//   P  [D, H]   the eigenvectors of S with the D largest eigenvalues (the top right singular vectors of X): the rank-D
//               map minimising Σ ‖x − PᵀP x‖², so each vector keeps as much of itself as D dimensions can
//   energy kept = Σ top-D eigenvalues / trace S   (the mean share of a vector's squared length the projection keeps)
using System.Diagnostics;
using System.Text.Json.Nodes;
using Distillery.Inference;
using Distillery.IO;
using Distillery.Text;
using Distillery.Training;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>What <see cref="EmbeddingReduction.Run"/> fits and where it writes the reduced model.</summary>
public sealed record EmbeddingReductionOptions
{
    /// <summary>The sentence-embedding model folder to reduce (not changed).</summary>
    public required string Model { get; init; }
    /// <summary>Output model folder: the encoder as it was, with the projection and a Normalize module after it.</summary>
    public required string Out { get; init; }
    /// <summary>Dimensions to keep (1 to the hidden size − 1).</summary>
    public required int Dimension { get; init; }
    /// <summary>Text file of unlabeled sentences, one per line, to fit the projection on.</summary>
    public required string Sentences { get; init; }
    /// <summary>Use at most this many non-empty lines, the first ones (default 20,000).</summary>
    public int MaxSentences { get; init; } = 20_000;
    /// <summary>Sentences per encoding batch.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Checks the options; throws naming the bad one.</summary>
    public EmbeddingReductionOptions Validate()
    {
        if (Dimension < 1) throw new ArgumentException($"--dim must be at least 1 (got {Dimension})");
        if (MaxSentences < 1) throw new ArgumentException($"--max-sentences must be at least 1 (got {MaxSentences})");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size must be at least 1 (got {BatchSize})");
        if (!File.Exists(Sentences)) throw new FileNotFoundException($"{Sentences}: sentences file not found", Sentences);
        return this;
    }
}

/// <summary>Fits a PCA projection of a sentence-embedding model's vectors to fewer dimensions (see the file's header).</summary>
public static class EmbeddingReduction
{
    /// <summary>Name of the run record written into the output folder beside the model.</summary>
    public const string RecordFile = "metrics.json";

    /// <summary>
    /// Encodes the sentences with the model (TorchSharp), fits the projection, writes the reduced model to
    /// <see cref="EmbeddingReductionOptions.Out"/> (config.json last) and returns the run record: dimensions, sentences,
    /// energy kept, seconds.
    /// </summary>
    /// <remarks>An existing finished output folder is refused unless <paramref name="overwrite"/>; the output may not be an input.</remarks>
    public static JsonObject Run(EmbeddingReductionOptions options, RunEvents? events = null, bool overwrite = false)
    {
        options.Validate();
        RunOutput.CheckFolder(options.Out, overwrite, resume: false, [options.Model, options.Sentences]);
        events ??= new RunEvents();
        var clock = Stopwatch.StartNew();
        var config = BertCheckpoint.ReadConfig(options.Model);
        // A sentence-transformers folder, or a bare encoder (BertModel), which is read as sentence-transformers reads one:
        // mean pooling + normalisation (how the imported all-MiniLM-L6-v2 is stored).
        if (BertCheckpoint.TaskOf(options.Model, config) != BertTask.SentenceEmbedding && !config.Architectures.Contains("BertModel"))
            throw new ArgumentException($"{options.Model}: a {string.Join(", ", config.Architectures)} model, not a sentence-embedding one (a sentence-transformers folder with modules.json, or a bare BertModel)");
        int hidden = config.HiddenSize;
        if (options.Dimension >= hidden)
            throw new ArgumentException($"--dim {options.Dimension} keeps nothing out: the model's vectors have {hidden} dimensions");
        var sentences = ReadSentences(options.Sentences, options.MaxSentences);
        if (sentences.Count < options.Dimension)
            throw new ArgumentException($"{options.Sentences}: {sentences.Count} non-empty lines, fewer than the {options.Dimension} dimensions to fit");

        var (loaded, _) = BertCheckpoint.Load(options.Model, BertTask.SentenceEmbedding);
        using var model = (BertForSentenceEmbedding)loaded;
        if (model.Projection is not null)
            throw new ArgumentException($"{options.Model}: already projected to {model.EmbeddingDimension} dimensions; reduce the model it came from");
        var tokenizer = BertCheckpoint.LoadTokenizer(options.Model, config);

        // X [N, H]: the model's vectors, normalised (a model without a Normalize module still compares by cosine).
        using var vectors = zeros(sentences.Count, hidden);
        using (var encoder = SentenceEncoder.Load(options.Model, new InferenceOptions { BatchSize = options.BatchSize, Backend = InferenceBackend.TorchSharp }))
        {
            const int chunk = 1024;
            events.StageStarted?.Invoke("encoding", sentences.Count);
            for (int start = 0; start < sentences.Count; start += chunk)
            {
                var part = encoder.EncodeBatch(sentences.Skip(start).Take(chunk).ToList());
                using var scope = NewDisposeScope();
                var block = tensor(part.SelectMany(v => v).ToArray(), [part.Count, hidden]);
                vectors.narrow(0, start, part.Count).copy_(BertForSentenceEmbedding.L2Normalize(block));
                events.StageProgress?.Invoke(start + part.Count, "");
            }
        }

        var (projection, energyKept) = Fit(vectors, options.Dimension);
        using (projection)
        {
            model.Projection = projection;
            model.SentenceConfig = model.SentenceConfig with { NormalizeBeforeProjection = true, Normalize = true };
            var record = new JsonObject
            {
                ["command"] = "reduce",
                ["model"] = options.Model,
                ["sentences_file"] = options.Sentences,
                ["sentences"] = sentences.Count,
                ["from_dimension"] = hidden,
                ["dimension"] = options.Dimension,
                ["energy_kept"] = Math.Round(energyKept, 6),
                ["wall_seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
                ["version"] = typeof(EmbeddingReduction).Assembly.GetName().Version?.ToString(),
            };
            RunOutput.Begin(options.Out, resume: false);
            AtomicFile.WriteAllText(Path.Combine(options.Out, RecordFile), record.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
            BertCheckpoint.Save(model, options.Out, tokenizer);   // config.json last: the folder is finished only then
            events.Message?.Invoke(Describe(record));
            return record;
        }
    }

    /// <summary>A reduce record in one line: "384 → 128 dimensions, 81.6% of the vectors' squared length kept (3,000 sentences)".</summary>
    public static string Describe(JsonObject record) =>
        $"{record["from_dimension"]} → {record["dimension"]} dimensions, {100 * record["energy_kept"]!.GetValue<double>():F1}% of the vectors' " +
        $"squared length kept ({record["sentences"]!.GetValue<int>():N0} sentences)";

    /// <summary>
    /// The top-<paramref name="dimension"/> eigenvectors of XᵀX / N as rows, [D, H], and the share of the trace their
    /// eigenvalues hold. Each row's sign is fixed (its largest-magnitude entry positive), so a fit is reproducible.
    /// </summary>
    public static (Tensor Projection, double EnergyKept) Fit(Tensor vectors, int dimension)
    {
        if (vectors.dim() != 2 || dimension < 1 || dimension > vectors.shape[1])
            throw new ArgumentException($"cannot fit {dimension} dimensions to vectors of shape [{string.Join(", ", vectors.shape)}]");
        using var scope = NewDisposeScope();
        var x = vectors.to(ScalarType.Float64);                                        // [N, H], float64 for the eigensolver
        var moment = x.t().matmul(x) / x.shape[0];                                     // [H, H]
        var (values, vectorsOfS) = linalg.eigh(moment);                                // ascending eigenvalues; columns
        var top = vectorsOfS.narrow(1, vectorsOfS.shape[1] - dimension, dimension).flip(1).t();   // [D, H], largest first
        var signs = top.gather(1, top.abs().argmax(1, keepdim: true)).sign();          // [D, 1]
        top = top * signs;
        double kept = values.narrow(0, values.shape[0] - dimension, dimension).sum().item<double>() / values.sum().item<double>();
        return (top.to(ScalarType.Float32).contiguous().MoveToOuterDisposeScope(), kept);
    }

    static List<string> ReadSentences(string path, int max)
    {
        var result = new List<string>();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            result.Add(line.Trim());
            if (result.Count == max) break;
        }
        return result;
    }
}
