using Distillery.Models;
using Distillery.Text;

namespace Distillery.Inference;

/// <summary>
/// Sentence embeddings for .NET apps (semantic search, clustering, RAG), tokenizer included: a sentence-transformers
/// model such as all-MiniLM-L6-v2 or a student distilled from it.
/// <code>
/// using var encoder = SentenceEncoder.Load("models/minilm-l6-h384");     // a folder (TorchSharp) or model.onnx (ONNX Runtime)
/// float[] query = encoder.Encode("who wrote pride and prejudice?");
/// var documents = encoder.EncodeBatch(paragraphs);
/// double score = SentenceEncoder.Similarity(query, documents[0]);          // cosine similarity
/// </code>
/// The vectors are what the model defines: pooled over tokens and L2-normalised (unit length) for every model with a
/// Normalize module, which includes all-MiniLM-L6-v2, a folder without sentence-transformers' files (mean pooling +
/// normalisation, as sentence-transformers builds for a plain transformers model) and every model Distillery writes by
/// default. Inputs longer than the model's max_seq_length (256 unless <see cref="InferenceOptions.MaxLength"/> says
/// otherwise) are cut, as sentence-transformers cuts them, and reported through <see cref="InferenceOptions.Warning"/>.
/// Thread safety: as <see cref="TextClassifier"/>, one instance may serve any number of threads at once; do not dispose
/// while calls are running.
/// </summary>
public sealed class SentenceEncoder : IDisposable
{
    private readonly InferenceModel model;

    private readonly Lazy<int> dimension;

    private SentenceEncoder(InferenceModel model)
    {
        this.model = model;
        dimension = new(() => Encode("").Length);
    }

    /// <summary>
    /// Loads a sentence-embedding model: a model folder (config.json, model.safetensors, vocab.txt, and optionally
    /// sentence-transformers' modules.json and 1_Pooling/) or an <c>.onnx</c> file exported from one, with vocab.txt beside
    /// it. Errors are one line naming the file: not an ONNX model, an export of another head, a missing vocab.txt.
    /// </summary>
    public static SentenceEncoder Load(string dirOrOnnx, InferenceOptions? options = null) =>
        new(InferenceModel.Open(dirOrOnnx, options, BertTask.SentenceEmbedding, new SentenceEmbeddingConfig().MaxSeqLength));

    /// <summary>
    /// Length of every vector: the encoder's hidden size, or a projection's (Dense module's) output size. Measured on
    /// the first call by encoding an empty text, so it is the backend's own answer whatever the model's head.
    /// </summary>
    public int Dimension => dimension.Value;
    /// <summary>The backend running the model.</summary>
    public InferenceBackend Backend => model.Kind;
    /// <summary>Backend and precision, e.g. "ONNX Runtime int8".</summary>
    public string Description => model.Backend.Description;
    /// <summary>Longest input in tokens, special tokens included; longer texts are cut.</summary>
    public int MaxLength => model.MaxLength;

    /// <summary>The vector of one text.</summary>
    public float[] Encode(string text) => Run([text])[0];

    /// <summary>
    /// The vectors of many texts, in input order. Texts are grouped by length into batches of
    /// <see cref="InferenceOptions.BatchSize"/> (little padding), as sentence-transformers' <c>encode</c> does.
    /// </summary>
    public IReadOnlyList<float[]> EncodeBatch(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var encoded = texts.Select(t => model.Encode(t, null).Encoded).ToArray();
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => encoded[i].Length).ToArray();
        var result = new float[texts.Count][];
        int size = model.Options.BatchSize;
        for (int start = 0; start < order.Length; start += size)
        {
            var rows = order.Skip(start).Take(size).ToArray();
            var vectors = Run(rows.Select(i => encoded[i]).ToList());
            for (int k = 0; k < rows.Length; k++) result[rows[k]] = vectors[k];
        }
        return result;
    }

    /// <summary>Cosine similarity of two vectors (the dot product, for unit-length vectors); NaN for a zero vector.</summary>
    public static double Similarity(float[] a, float[] b) => Evaluation.EmbeddingMetrics.Cosine(a, b);

    private float[][] Run(IReadOnlyList<string> texts) => Run(texts.Select(t => model.Encode(t, null).Encoded).ToList());

    private float[][] Run(IReadOnlyList<TokenizedText> rows)
    {
        var output = model.Backend.Run(model.Pad(rows));   // [B, H]
        return Enumerable.Range(0, rows.Count).Select(i => BatchLogits.Row(output.Logits!, output.Batch, i)).ToArray();
    }

    /// <inheritdoc/>
    public void Dispose() => model.Dispose();
}
