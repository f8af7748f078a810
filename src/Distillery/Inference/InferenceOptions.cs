using Distillery.Models;

namespace Distillery.Inference;

/// <summary>What runs the model's forward pass.</summary>
public enum InferenceBackend
{
    /// <summary>The model folder's safetensors weights in TorchSharp (libtorch), fp32 or bf16 matmuls.</summary>
    TorchSharp,
    /// <summary>An exported <c>.onnx</c> file in ONNX Runtime (CPU execution provider).</summary>
    OnnxRuntime,
}

/// <summary>What to do with an input longer than the model (or <see cref="InferenceOptions.MaxLength"/>) allows.</summary>
public enum OverlongInput
{
    /// <summary>Cut it (longest text first, as Hugging Face's <c>longest_first</c>), report through <see cref="InferenceOptions.Warning"/> and set <c>Truncated</c> on the result.</summary>
    Truncate,
    /// <summary>Throw an <see cref="ArgumentException"/> naming the input's length and the limit.</summary>
    Error,
}

/// <summary>
/// How <see cref="TextClassifier"/> and <see cref="QuestionAnswerer"/> load and run a model. The defaults suit a model
/// folder on CPU: TorchSharp, fp32, libtorch's own thread count, the model's full length, truncation with a warning.
/// </summary>
public sealed record InferenceOptions
{
    /// <summary>The defaults.</summary>
    public static readonly InferenceOptions Default = new();

    /// <summary>Backend; null picks it from the path: a <c>.onnx</c> file → ONNX Runtime, a folder → TorchSharp.</summary>
    public InferenceBackend? Backend { get; init; }
    /// <summary>
    /// Matmul precision of the TorchSharp backend (<see cref="ComputePrecision.BFloat16"/>: bf16 products with fp32
    /// weights and accumulation, the model's <see cref="BertTaskModel.SetPrecision(ComputePrecision)"/>; bf16 on a CPU
    /// without native bf16 runs emulated and slower, with one <see cref="Warning"/>; <see cref="ComputePrecision.Auto"/>:
    /// bf16 only where the CPU has it natively). Default fp32: predictions are the model's own. ONNX Runtime runs the
    /// graph as exported (fp32, or int8 when exported with <c>--int8</c>), so bf16 there is an error.
    /// </summary>
    public ComputePrecision Precision { get; init; } = ComputePrecision.Float32;
    /// <summary>
    /// Threads one forward pass may use; null leaves the backend's default. ONNX Runtime: the session's intra-op pool.
    /// TorchSharp: <c>torch.set_num_threads</c>, which is process-wide (it changes every TorchSharp model in the process).
    /// </summary>
    public int? IntraOpThreads { get; init; }
    /// <summary>Longest input in tokens, special tokens included; null means the model's positions (at most 512).</summary>
    public int? MaxLength { get; init; }
    /// <summary>Inputs longer than the limit: truncate with a warning (default) or fail.</summary>
    public OverlongInput OverlongInput { get; init; } = OverlongInput.Truncate;
    /// <summary>
    /// Hears warnings (an input was truncated; load warnings). Called on the thread that made the call, possibly from
    /// several threads at once. Null: warnings go nowhere (results still carry <c>Truncated</c>).
    /// </summary>
    public Action<string>? Warning { get; init; }
    /// <summary>Inputs per forward pass in <c>PredictBatch</c> (longer lists run as several batches).</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>QuestionAnswerer: context tokens shared by consecutive windows of a long context (SQuAD's doc stride).</summary>
    public int DocStride { get; init; } = 128;
    /// <summary>QuestionAnswerer: longest answer in tokens.</summary>
    public int MaxAnswerTokens { get; init; } = 30;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad field.</summary>
    public InferenceOptions Validate()
    {
        if (IntraOpThreads is < 1) throw new ArgumentException($"IntraOpThreads must be at least 1, got {IntraOpThreads}", nameof(IntraOpThreads));
        if (MaxLength is < 4) throw new ArgumentException($"MaxLength must be at least 4 tokens, got {MaxLength}", nameof(MaxLength));
        if (BatchSize < 1) throw new ArgumentException($"BatchSize must be at least 1, got {BatchSize}", nameof(BatchSize));
        if (DocStride < 0) throw new ArgumentException($"DocStride must not be negative, got {DocStride}", nameof(DocStride));
        if (MaxAnswerTokens < 1) throw new ArgumentException($"MaxAnswerTokens must be at least 1, got {MaxAnswerTokens}", nameof(MaxAnswerTokens));
        if (!Enum.IsDefined(OverlongInput)) throw new ArgumentException($"OverlongInput {OverlongInput} is not Truncate or Error", nameof(OverlongInput));
        if (!Enum.IsDefined(Precision)) throw new ArgumentException($"Precision {(int)Precision} is not fp32, bf16 or auto", nameof(Precision));
        if (Backend == InferenceBackend.OnnxRuntime && Precision == ComputePrecision.BFloat16)
            throw new ArgumentException("Precision: bf16 applies to the TorchSharp backend; an ONNX model runs as exported (fp32 or int8)", nameof(Precision));
        return this;
    }

    /// <summary>The backend for <paramref name="path"/>: <see cref="Backend"/> if set, else ONNX Runtime for a <c>.onnx</c> file.</summary>
    public InferenceBackend BackendFor(string path) =>
        Backend ?? (path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(path) ? InferenceBackend.OnnxRuntime : InferenceBackend.TorchSharp);
}
