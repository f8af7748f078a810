using Distillery.Models;
using Distillery.Text;
using TorchSharp;

namespace Distillery.Inference;

/// <summary>
/// What <see cref="TextClassifier"/> and <see cref="QuestionAnswerer"/> share: a backend, the tokenizer saved with the
/// model, the length limit and its overlong-input policy. Immutable after loading, so safe to use from many threads.
/// </summary>
internal sealed class InferenceModel : IDisposable
{
    public IInferenceBackend Backend { get; }
    public BertTextTokenizer Tokenizer { get; }
    public InferenceOptions Options { get; }
    public InferenceBackend Kind { get; }
    /// <summary>Longest input in tokens, special tokens included.</summary>
    public int MaxLength { get; }

    private InferenceModel(IInferenceBackend backend, BertTextTokenizer tokenizer, InferenceOptions options, InferenceBackend kind, int maxLength)
    {
        Backend = backend;
        Tokenizer = tokenizer;
        Options = options;
        Kind = kind;
        MaxLength = maxLength;
    }

    /// <summary>
    /// Opens a model folder (TorchSharp) or an exported <c>.onnx</c> file (ONNX Runtime) that must carry a
    /// <paramref name="task"/> head, with the tokenizer from the same folder. Every problem is one line naming the file.
    /// Without <see cref="InferenceOptions.MaxLength"/> the limit is <paramref name="defaultMaxLength"/> (or the model's
    /// positions, at most 512), never more than the model's positions.
    /// </summary>
    public static InferenceModel Open(string path, InferenceOptions? options, BertTask task, int? defaultMaxLength = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        options = (options ?? InferenceOptions.Default).Validate();
        var kind = options.BackendFor(path);
        if (kind == InferenceBackend.OnnxRuntime && options.Precision == ComputePrecision.BFloat16)
            throw new ArgumentException($"{path}: bf16 applies to the TorchSharp backend; an ONNX model runs as exported (fp32 or int8)");
        IInferenceBackend backend;
        string tokenizerDir;
        if (kind == InferenceBackend.OnnxRuntime)
        {
            var onnx = OnnxRuntimeBackend.Load(path, options.IntraOpThreads, options.Warning);
            if (onnx.Task != task)
            {
                onnx.Dispose();
                throw new InvalidDataException($"{path}: is a {BertTasks.ArchitectureName(onnx.Task)} export, not {BertTasks.ArchitectureName(task)}");
            }
            backend = onnx;
            tokenizerDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        }
        else
        {
            if (File.Exists(path)) throw new ArgumentException($"{path}: is a file; the TorchSharp backend loads a model folder (config.json, model.safetensors, vocab.txt)");
            // torch.set_num_threads is process-wide; documented on InferenceOptions.IntraOpThreads.
            if (options.IntraOpThreads is int threads) torch.set_num_threads(threads);
            var (precision, warning) = ComputePrecisions.Resolve(options.Precision, Runtime.CpuFeatures.Current);
            if (warning != null) options.Warning?.Invoke(warning);
            backend = TorchSharpBackend.Load(path, task, precision);
            tokenizerDir = path;
        }
        try
        {
            string vocab = Path.Combine(tokenizerDir, BertCheckpoint.VocabFile);
            if (!File.Exists(vocab))
                throw new FileNotFoundException($"{vocab}: missing; the tokenizer (vocab.txt, tokenizer_config.json) must sit beside the model", vocab);
            var tokenizer = BertTextTokenizer.FromDirectory(tokenizerDir);
            if (tokenizer.VocabSize != backend.Config.VocabSize)
                throw new InvalidDataException($"{vocab}: {tokenizer.VocabSize} tokens, but the model's vocab_size is {backend.Config.VocabSize}");
            int positions = Math.Min(512, backend.Config.MaxPositionEmbeddings);
            if (options.MaxLength > backend.Config.MaxPositionEmbeddings)
                throw new ArgumentException($"MaxLength {options.MaxLength} exceeds the model's {backend.Config.MaxPositionEmbeddings} positions ({path})");
            return new InferenceModel(backend, tokenizer, options, kind, options.MaxLength ?? Math.Min(defaultMaxLength ?? positions, positions));
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>Reports a warning to the caller's callback, if any.</summary>
    public void Warn(string message) => Options.Warning?.Invoke(message);

    /// <summary>
    /// Encodes one text or pair within <see cref="MaxLength"/>: an input that fits is returned whole; a longer one is
    /// cut (longest text first) with a warning, or rejected, as <see cref="InferenceOptions.OverlongInput"/> says.
    /// </summary>
    public (TokenizedText Encoded, bool Truncated) Encode(string text, string? pair)
    {
        ArgumentNullException.ThrowIfNull(text);
        var full = Tokenizer.Encode(text, pair, int.MaxValue);
        if (full.Length <= MaxLength) return (full, false);
        if (Options.OverlongInput == OverlongInput.Error)
            throw new ArgumentException($"input is {full.Length} tokens (special tokens included), longer than the limit of {MaxLength}; shorten it or set OverlongInput = Truncate");
        Warn($"input of {full.Length} tokens truncated to {MaxLength}");
        return (Tokenizer.Encode(text, pair, MaxLength), true);
    }

    /// <summary>Pads encoded rows on the right to the longest ([B, T] ids, segment ids and attention mask).</summary>
    public TokenizedBatch Pad(IReadOnlyList<TokenizedText> rows)
    {
        int b = rows.Count, t = rows.Max(r => r.Length);
        var ids = new long[b * t];
        var types = new long[b * t];
        var mask = new long[b * t];
        Array.Fill(ids, Tokenizer.PadId);
        for (int i = 0; i < b; i++)
            for (int j = 0; j < rows[i].Length; j++)
            {
                ids[i * t + j] = rows[i].InputIds[j];
                types[i * t + j] = rows[i].TokenTypeIds[j];
                mask[i * t + j] = 1;
            }
        return new TokenizedBatch(b, t, ids, types, mask);
    }

    public void Dispose() => Backend.Dispose();
}
