namespace Distillery.Models;

/// <summary>What <c>distillery inspect</c> reports about a model folder.</summary>
/// <param name="Directory">The folder.</param>
/// <param name="Config">Its validated config.</param>
/// <param name="Task">The head it carries.</param>
/// <param name="Parameters">Parameter counts by part.</param>
/// <param name="Files">Each file of the folder with its size in bytes.</param>
/// <param name="SeqLength">Sequence length the FLOPs are given for.</param>
/// <param name="EncoderFlopsPerToken">Encoder FLOPs per token at <paramref name="SeqLength"/>.</param>
/// <param name="HeadFlops">Head FLOPs (per token for MLM, per sequence otherwise).</param>
public sealed record ModelReport(string Directory, BertConfig Config, BertTask Task, ParameterCounts Parameters,
    IReadOnlyList<(string Name, long Bytes)> Files, int SeqLength, double EncoderFlopsPerToken, double HeadFlops)
{
    /// <summary>A sentence-embedding model's head: pooling and normalisation settings.</summary>
    public SentenceEmbeddingConfig? Sentence { get; init; }
    /// <summary>A sentence-embedding model's vector length (a projection's output size, else the hidden size).</summary>
    public int? EmbeddingDimension { get; init; }

    /// <summary>Bytes of all files.</summary>
    public long BytesOnDisk => Files.Sum(f => f.Bytes);
}

/// <summary>Reads a model folder's shape and size without keeping the model.</summary>
public static class ModelInspector
{
    /// <summary>Loads the folder (every tensor checked) and reports its parameters, files and cost.</summary>
    public static ModelReport Inspect(string dir, int seqLength = 128)
    {
        var (model, _) = BertCheckpoint.Load(dir);
        using (model)
        {
            // The folder's own files, and those of the sentence-transformers module folders it names (1_Pooling/, a Dense's weights).
            var files = new DirectoryInfo(dir).GetFiles().Select(f => f.Name).Union(SentenceTransformersLayout.Files(dir))
                .Order(StringComparer.Ordinal).Select(f => (f, new FileInfo(Path.Combine(dir, f)).Length)).ToList();
            var config = model.Config;
            var embedding = model as BertForSentenceEmbedding;
            return new ModelReport(Path.GetFullPath(dir), config, model.Task, ParameterCounts.Of(model), files, seqLength,
                ForwardCost.EncoderFlopsPerToken(config, seqLength), ForwardCost.HeadFlops(config, model.Task))
            {
                Sentence = embedding?.SentenceConfig, EmbeddingDimension = embedding?.EmbeddingDimension,
            };
        }
    }
}
